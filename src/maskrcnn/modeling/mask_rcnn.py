"""Mask R-CNN (He et al., 2017): the stages wired together, input validation, and ``build_model(cfg)``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from maskrcnn.config import ModelConfig, validate
from maskrcnn.modeling.backbone import resnet
from maskrcnn.modeling.box_head import ConvFCHead, FastRCNNPredictor, TwoMLPHead
from maskrcnn.modeling.fpn import FEATURE_NAMES, BackboneWithFPN, FeaturePyramidNetwork
from maskrcnn.modeling.keypoint_head import KeypointRCNNHeads, KeypointRCNNPredictor
from maskrcnn.modeling.layers import norm_factory
from maskrcnn.modeling.mask_head import MaskRCNNHeads, MaskRCNNPredictor
from maskrcnn.modeling.roi_heads import RoIHeads
from maskrcnn.modeling.rpn import RegionProposalNetwork, RPNHead
from maskrcnn.modeling.transform import RCNNTransform, resize_boxes
from maskrcnn.ops import AnchorGenerator, MultiScaleRoIAlign
from maskrcnn.structures import ImageList

__all__ = ["MaskRCNN", "build_model", "check_targets"]

Target = dict[str, Tensor]


class MaskRCNN(nn.Module):
    """Transform -> backbone + FPN -> RPN -> RoI heads -> detections in input-image pixels.

    The call is torchvision's: ``model(images, targets)`` returns a dict of losses in training mode;
    ``model(images)`` returns, per image, ``boxes [D, 4]`` (xyxy pixels), ``labels int64[D]``,
    ``scores [D]`` and ``masks [D, 1, H, W]`` (probabilities; threshold at 0.5) in evaluation mode, and
    with a keypoint head ``keypoints [D, K, 3]`` (``x, y, 1`` pixels) and ``keypoints_scores [D, K]``
    (a model built without a mask head gives no ``masks``: torchvision's keypoint R-CNN).

    Args:
        transform: normalisation, resizing and batching.
        backbone: images to the feature pyramid.
        rpn: proposals.
        roi_heads: detections and masks.
        num_classes: classes including the background (to validate targets).
        channels_last: feed the backbone a channels-last batch (faster convolutions on CPU and GPU, and
            RoIAlign reads channels-last maps without a copy).
    """

    def __init__(
        self,
        *,
        transform: RCNNTransform,
        backbone: BackboneWithFPN,
        rpn: RegionProposalNetwork,
        roi_heads: RoIHeads,
        num_classes: int,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.num_classes = num_classes
        self.channels_last = channels_last

    def forward(
        self,
        images: Sequence[Tensor],
        targets: Sequence[Target] | None = None,
        *,
        score_thresh: float | None = None,
        paste_masks: bool = True,
    ) -> dict[str, Tensor] | list[Target]:
        """Losses (training) or detections (evaluation) for a list of ``[C, H, W]`` 0..1 images.

        Images may have different sizes; a target may hold zero objects. ``score_thresh`` (evaluation)
        replaces ``roi_heads.score_thresh`` for this call only, without changing the module (``None``:
        the module's own). Detections hold ``masks`` ``[D, 1, H, W]`` (probabilities pasted into the
        image), or with ``paste_masks=False`` the ``[D, 1, M, M]`` RoI probabilities for the caller to
        paste (:func:`maskrcnn.ops.paste_masks_thresholded` pastes only the detections it keeps).
        """
        check_images(images, self.transform.image_mean)
        if self.training:
            if targets is None:
                raise ValueError(
                    "MaskRCNN: targets are required in training mode (call model.eval() to predict)"
                )
            check_targets(
                images,
                targets,
                self.num_classes,
                masks=self.roi_heads.has_masks,
                num_keypoints=self.roi_heads.num_keypoints,
            )
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(images, targets)
        features = self._features(batch)
        proposals, rpn_losses = self.rpn(batch, features, targets)
        detections, head_losses = self.roi_heads(
            features, proposals, batch.image_sizes, targets, score_thresh=score_thresh
        )
        if self.training:
            return {**rpn_losses, **head_losses}
        return self.transform.postprocess(
            detections, batch.image_sizes, original_sizes, paste_masks=paste_masks
        )

    def detect_in_boxes(
        self,
        images: Sequence[Tensor],
        boxes: Sequence[Tensor],
        labels: Sequence[Tensor | None] | None = None,
        *,
        paste_masks: bool = True,
    ) -> list[Target]:
        """Detections for given boxes (evaluation mode): the masks (and keypoints) the model predicts
        inside boxes found by another detector or drawn by a person; the RPN is not run.

        Args:
            images: ``[C, H, W]`` 0..1 images.
            boxes: per image ``[B_i, 4]`` xyxy in the image's pixels.
            labels: per image ``int64 [B_i]`` classes in ``1..num_classes - 1``, 0 where a box's class is
                not known (the model's most probable class is taken), or ``None`` for all unknown.

        Returns:
            per image what :meth:`forward` returns in evaluation, for the given boxes in their order:
            ``boxes`` (the given ones, up to float rounding), ``labels``, ``scores`` (the model's
            probability of each label), ``masks`` and, with a keypoint head, the keypoints.

        Raises:
            ValueError: in training mode; not one ``[B_i, 4]`` box tensor (and label tensor) per image,
                or a label outside ``0..num_classes - 1``.
        """
        if self.training:
            raise ValueError("MaskRCNN.detect_in_boxes: call model.eval() first")
        check_images(images, self.transform.image_mean)
        given_labels = list(labels) if labels is not None else [None] * len(boxes)
        if len(boxes) != len(images) or len(given_labels) != len(images):
            raise ValueError(
                f"{len(images)} images, {len(boxes)} box tensors and {len(given_labels)} label tensors"
            )
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, _ = self.transform(images)
        features = self._features(batch)
        scaled, chosen = [], []
        for k, (b, lab, original, size) in enumerate(
            zip(boxes, given_labels, original_sizes, batch.image_sizes, strict=True)
        ):
            if b.dim() != 2 or b.shape[-1] != 4:
                raise ValueError(f"image {k}: boxes must be [B, 4] xyxy, got {list(b.shape)}")
            lab = torch.zeros(len(b), dtype=torch.int64) if lab is None else lab.to(torch.int64)
            if lab.shape != (len(b),) or (
                len(lab) and not 0 <= int(lab.min()) <= int(lab.max()) < self.num_classes
            ):
                raise ValueError(f"image {k}: labels must be [{len(b)}] in 0..{self.num_classes - 1}")
            scaled.append(resize_boxes(b.to(batch.tensors.device, torch.float32), original, size))
            chosen.append(lab.to(batch.tensors.device))
        detections = self.roi_heads.detect_in_boxes(features, scaled, batch.image_sizes, chosen)
        return self.transform.postprocess(
            detections, batch.image_sizes, original_sizes, paste_masks=paste_masks
        )

    def _features(self, batch: ImageList) -> dict[str, Tensor]:
        """The feature pyramid of a batch (channels-last when the model says so)."""
        if self.channels_last:
            batch.tensors = batch.tensors.contiguous(memory_format=torch.channels_last)
        return self.backbone(batch.tensors)


def check_images(images: Sequence[Tensor], mean: Sequence[float]) -> None:
    """Raise a ``ValueError`` naming the image if one is not a floating ``[C, H, W]`` tensor."""
    if isinstance(images, Tensor) and images.dim() == 3:
        raise ValueError("MaskRCNN: pass a list of [C, H, W] images, not a single image tensor")
    if len(images) == 0:
        raise ValueError("MaskRCNN: no images")
    for i, img in enumerate(images):
        if not isinstance(img, Tensor) or img.dim() != 3:
            shape = list(img.shape) if isinstance(img, Tensor) else type(img).__name__
            raise ValueError(f"MaskRCNN: image {i} must be a [C, H, W] tensor, got {shape}")
        if not img.is_floating_point():
            raise ValueError(
                f"MaskRCNN: image {i} has dtype {img.dtype}; expected floats in 0..1 "
                "(divide uint8 images by 255)"
            )
        if img.shape[0] != len(mean):
            raise ValueError(
                f"MaskRCNN: image {i} has {img.shape[0]} channels; the model expects {len(mean)}"
            )
        if min(img.shape[-2:]) < 1:
            raise ValueError(f"MaskRCNN: image {i} is empty (shape {list(img.shape)})")


def check_targets(
    images: Sequence[Tensor],
    targets: Sequence[Target],
    num_classes: int,
    *,
    masks: bool = True,
    num_keypoints: int = 0,
) -> None:
    """Validate training targets at the model's boundary, naming the image and the bad value.

    Each target needs ``boxes`` float ``[N, 4]`` with positive width and height, ``labels`` int64 ``[N]``
    in ``1..num_classes - 1``, for a model with masks ``masks`` ``[N, H, W]`` of the image's size, and for
    one with ``num_keypoints`` K ``keypoints`` float ``[N, K, 3]``.
    """
    if len(targets) != len(images):
        raise ValueError(f"MaskRCNN: {len(images)} images but {len(targets)} targets")
    needed = ("boxes", "labels") + (("masks",) if masks else ()) + (("keypoints",) if num_keypoints else ())
    for i, (img, t) in enumerate(zip(images, targets, strict=True)):
        for key in needed:
            if key not in t:
                raise ValueError(f"MaskRCNN: target of image {i} has no {key!r} (has {sorted(t)})")
        boxes, labels = t["boxes"], t["labels"]
        if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
            raise ValueError(
                f"MaskRCNN: image {i}: boxes must be a float [N, 4] tensor, "
                f"got {boxes.dtype} {list(boxes.shape)}"
            )
        n = boxes.shape[0]
        if labels.shape != (n,) or labels.dtype != torch.int64:
            raise ValueError(
                f"MaskRCNN: image {i}: labels must be int64 [{n}], got {labels.dtype} {list(labels.shape)}"
            )
        if masks and t["masks"].shape != (n, *img.shape[-2:]):
            raise ValueError(
                f"MaskRCNN: image {i}: masks must be [{n}, {img.shape[-2]}, {img.shape[-1]}] "
                f"(one per box, the image's size), got {list(t['masks'].shape)}"
            )
        if num_keypoints:
            keypoints = t["keypoints"]
            if keypoints.shape != (n, num_keypoints, 3) or not keypoints.is_floating_point():
                raise ValueError(
                    f"MaskRCNN: image {i}: keypoints must be a float [{n}, {num_keypoints}, 3] tensor "
                    f"((x, y, visibility) per keypoint of each box), got {keypoints.dtype} "
                    f"{list(keypoints.shape)}"
                )
            if not bool(torch.isfinite(keypoints).all()):
                k = int(torch.where(~torch.isfinite(keypoints).flatten(1).all(1))[0][0])
                raise ValueError(f"MaskRCNN: image {i}: keypoints of box {k} are not finite")
        if n == 0:
            continue
        bad = ~torch.isfinite(boxes).all(dim=1) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if bool(bad.any()):
            k = int(torch.where(bad)[0][0])
            raise ValueError(
                f"MaskRCNN: image {i}: box {k} {[round(v, 3) for v in boxes[k].tolist()]} must have "
                "finite coordinates and positive width and height (x2 > x1, y2 > y1)"
            )
        out_of_range = (labels < 1) | (labels >= num_classes)
        if bool(out_of_range.any()):
            k = int(torch.where(out_of_range)[0][0])
            raise ValueError(
                f"MaskRCNN: image {i}: label {int(labels[k])} of box {k} is outside 1..{num_classes - 1} "
                "(0 is the background; num_classes counts it)"
            )


def build_model(cfg: ModelConfig) -> MaskRCNN:
    """Build a Mask R-CNN from a :class:`~maskrcnn.config.ModelConfig` (randomly initialised).

    Load weights afterwards with :func:`maskrcnn.weights.load_weights`.
    """
    validate(cfg)
    b, rc, hc = cfg.backbone, cfg.rpn, cfg.roi_heads
    body = resnet(
        b.name,
        norm=norm_factory(b.norm, gn_groups=b.gn_groups),  # type: ignore[arg-type]  # never "none"
        in_channels=b.in_channels,
        width=b.width,
        trainable_layers=b.trainable_layers,
    )
    fpn = FeaturePyramidNetwork(
        body.out_channels, b.fpn_channels, norm=norm_factory(b.fpn_norm, gn_groups=b.gn_groups)
    )
    backbone = BackboneWithFPN(body=body, fpn=fpn)
    channels = b.fpn_channels

    anchor_generator = AnchorGenerator(sizes=cfg.anchors.sizes, aspect_ratios=cfg.anchors.aspect_ratios)
    rpn = RegionProposalNetwork(
        anchor_generator=anchor_generator,
        head=RPNHead(channels, anchor_generator.num_anchors_per_location()[0], conv_depth=rc.conv_depth),
        fg_iou_thresh=rc.fg_iou_thresh,
        bg_iou_thresh=rc.bg_iou_thresh,
        batch_size_per_image=rc.batch_size_per_image,
        positive_fraction=rc.positive_fraction,
        pre_nms_top_n={"training": rc.pre_nms_top_n_train, "testing": rc.pre_nms_top_n_test},
        post_nms_top_n={"training": rc.post_nms_top_n_train, "testing": rc.post_nms_top_n_test},
        nms_thresh=rc.nms_thresh,
        score_thresh=rc.score_thresh,
        min_size=rc.min_size,
        box_loss=rc.box_loss,
        smooth_l1_beta=rc.smooth_l1_beta,
    )

    head_norm = norm_factory(hc.head_norm, gn_groups=b.gn_groups)
    pooled = FEATURE_NAMES[:4]  # RoIs are pooled from P2..P5; P6 serves the RPN only
    box_head: nn.Module
    if hc.box_head == "mlp":
        box_head = TwoMLPHead(channels * hc.box_pool_size**2, hc.representation_size)
    else:
        box_head = ConvFCHead(
            channels,
            hc.box_pool_size,
            conv_channels=hc.box_head_convs,
            fc_sizes=(hc.representation_size,),
            norm=head_norm,
        )
    # Modules are created in a fixed order (box head, mask head, box predictor, mask predictor, then the
    # keypoint branch): the random initialisation of a seeded run depends on it.
    mask_head = (
        MaskRCNNHeads(channels, hc.mask_head_channels, dilation=hc.mask_dilation, norm=head_norm)
        if hc.mask_head
        else None
    )
    box_predictor = FastRCNNPredictor(hc.representation_size, cfg.num_classes)
    mask_branch: dict[str, nn.Module | None] = {
        "mask_roi_pool": None,
        "mask_head": None,
        "mask_predictor": None,
    }
    if mask_head is not None:
        mask_branch = {
            "mask_roi_pool": MultiScaleRoIAlign(
                pooled, hc.mask_pool_size, hc.pool_sampling_ratio, aligned=hc.pool_aligned
            ),
            "mask_head": mask_head,
            "mask_predictor": MaskRCNNPredictor(
                mask_head.out_channels, hc.mask_predictor_channels, cfg.num_classes
            ),
        }
    keypoint_branch: dict[str, nn.Module] = {}
    if hc.num_keypoints:
        keypoint_head = KeypointRCNNHeads(channels, hc.keypoint_head_channels)
        keypoint_branch = {
            "keypoint_roi_pool": MultiScaleRoIAlign(
                pooled, hc.keypoint_pool_size, hc.pool_sampling_ratio, aligned=hc.pool_aligned
            ),
            "keypoint_head": keypoint_head,
            "keypoint_predictor": KeypointRCNNPredictor(keypoint_head.out_channels, hc.num_keypoints),
        }
    roi_heads = RoIHeads(
        box_roi_pool=MultiScaleRoIAlign(
            pooled, hc.box_pool_size, hc.pool_sampling_ratio, aligned=hc.pool_aligned
        ),
        box_head=box_head,
        box_predictor=box_predictor,
        **mask_branch,  # type: ignore[arg-type]
        **keypoint_branch,  # type: ignore[arg-type]
        fg_iou_thresh=hc.fg_iou_thresh,
        bg_iou_thresh=hc.bg_iou_thresh,
        batch_size_per_image=hc.batch_size_per_image,
        positive_fraction=hc.positive_fraction,
        bbox_reg_weights=hc.bbox_reg_weights,
        score_thresh=hc.score_thresh,
        nms_thresh=hc.nms_thresh,
        detections_per_img=hc.detections_per_img,
        box_loss=hc.box_loss,
        smooth_l1_beta=hc.smooth_l1_beta,
    )
    t = cfg.transform
    transform = RCNNTransform(
        min_size=t.min_size,
        max_size=t.max_size,
        image_mean=t.image_mean,
        image_std=t.image_std,
        size_divisible=t.size_divisible,
    )
    model = MaskRCNN(
        transform=transform,
        backbone=backbone,
        rpn=rpn,
        roi_heads=roi_heads,
        num_classes=cfg.num_classes,
        channels_last=b.channels_last,
    )
    if b.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
