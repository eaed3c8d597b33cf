"""Second stage: classify and refine the proposals, then predict a mask and/or keypoints for each
detection.

Training: proposals (with the ground-truth boxes appended) are matched to the ground truth and sampled
(512 per image, a quarter foreground), the box branch is trained on all sampled proposals and the mask and
keypoint branches on the foreground ones. Evaluation: the box branch scores every proposal for every
class, the best per-class boxes survive NMS, and the mask and keypoint branches run on those detections.
A model has a mask branch, a keypoint branch or both (torchvision's keypoint R-CNN has no masks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.modeling.box_head import fastrcnn_loss
from maskrcnn.modeling.keypoint_head import keypoint_predictions, keypointrcnn_loss
from maskrcnn.modeling.layers import full_precision, full_precision_region
from maskrcnn.modeling.mask_head import mask_probabilities, maskrcnn_loss
from maskrcnn.ops import (
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    MultiScaleRoIAlign,
    batched_nms,
    box_iou,
    clip_boxes_to_image,
    remove_small_boxes,
)

__all__ = ["RoIHeads", "TrainingSamples"]


@dataclass
class TrainingSamples:
    """The proposals sampled for the box branch, per image.

    Attributes:
        proposals: ``[K_i, 4]`` sampled proposals (ground-truth boxes included).
        labels: ``int64[K_i]`` class of the matched ground truth, 0 for background.
        matched_idxs: ``int64[K_i]`` index of the matched ground truth (0 for background: unused).
        regression_targets: ``[K_i, 4]`` encoded matched boxes.
    """

    proposals: list[Tensor]
    labels: list[Tensor]
    matched_idxs: list[Tensor]
    regression_targets: list[Tensor]


class RoIHeads(nn.Module):
    """Box, mask and keypoint branches, with torchvision's module names (``box_head``, ``box_predictor``,
    ``mask_head``, ``keypoint_head``...).

    Args:
        box_roi_pool: RoIAlign of the proposals (7x7, sampling ratio 2).
        box_head: pooled features -> ``[K, D]`` representation.
        box_predictor: representation -> class logits and per-class deltas.
        mask_roi_pool: RoIAlign for the mask branch (14x14); ``None`` (with the mask head and predictor):
            no mask branch.
        mask_head: pooled features -> mask features.
        mask_predictor: mask features -> ``[K, num_classes, 28, 28]`` logits.
        keypoint_roi_pool: RoIAlign for the keypoint branch (14x14); ``None`` (the default, with the
            keypoint head and predictor): no keypoint branch.
        keypoint_head: pooled features -> keypoint features.
        keypoint_predictor: keypoint features -> ``[K, num_keypoints, 56, 56]`` heatmap logits.
        fg_iou_thresh: proposals with at least this IoU are foreground.
        bg_iou_thresh: proposals below this IoU with every object are background.
        batch_size_per_image: proposals sampled per image for the losses.
        positive_fraction: largest share of foreground in the sample.
        bbox_reg_weights: box coder weights ``(wx, wy, ww, wh)``.
        score_thresh: detections need a higher class probability.
        nms_thresh: IoU of the per-class NMS.
        detections_per_img: most detections kept per image.
        box_loss: ``smooth_l1`` or ``l1``.
        smooth_l1_beta: transition point of the smooth-L1 loss.
    """

    def __init__(
        self,
        *,
        box_roi_pool: MultiScaleRoIAlign,
        box_head: nn.Module,
        box_predictor: nn.Module,
        mask_roi_pool: MultiScaleRoIAlign | None,
        mask_head: nn.Module | None,
        mask_predictor: nn.Module | None,
        keypoint_roi_pool: MultiScaleRoIAlign | None = None,
        keypoint_head: nn.Module | None = None,
        keypoint_predictor: nn.Module | None = None,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        box_loss: str = "smooth_l1",
        smooth_l1_beta: float = 1.0 / 9.0,
    ) -> None:
        super().__init__()
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor
        self.keypoint_roi_pool = keypoint_roi_pool
        self.keypoint_head = keypoint_head
        self.keypoint_predictor = keypoint_predictor
        for branch, parts in (
            ("mask", (mask_roi_pool, mask_head, mask_predictor)),
            ("keypoint", (keypoint_roi_pool, keypoint_head, keypoint_predictor)),
        ):
            if len({p is None for p in parts}) != 1:
                raise ValueError(
                    f"RoIHeads: give the {branch} RoI pool, head and predictor together, or none"
                )
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(bbox_reg_weights)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.box_loss = box_loss
        self.smooth_l1_beta = smooth_l1_beta

    @property
    def has_masks(self) -> bool:
        """Whether detections get masks."""
        return self.mask_predictor is not None

    @property
    def num_keypoints(self) -> int:
        """Keypoints per detection (0: no keypoint branch)."""
        if self.keypoint_predictor is None:
            return 0
        return int(self.keypoint_predictor.out_channels)

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: Sequence[dict[str, Tensor]] | None = None,
        *,
        score_thresh: float | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Detections (evaluation) or losses (training).

        Args:
            features: pyramid levels ``name -> [N, C, H_l, W_l]``.
            proposals: per image ``[P_i, 4]`` boxes in resized-image pixels.
            image_shapes: per image ``(h, w)`` before padding.
            targets: in training, per image ``boxes``, ``labels`` and ``masks`` / ``keypoints`` (resized)
                for the branches the model has.
            score_thresh: in evaluation, this call's score threshold instead of the module's own
                :attr:`score_thresh` (``None``: the module's); the module is left unchanged.

        Returns:
            ``(detections, losses)``: in evaluation, per image ``boxes [D, 4]``, ``labels int64[D]``,
            ``scores [D]``, with a mask branch ``masks [D, 1, M, M]`` probabilities (pasted later), with a
            keypoint branch ``keypoints [D, K, 3]`` ``(x, y, 1)`` and ``keypoints_scores [D, K]``, and no
            losses; in training, no detections and ``loss_classifier``, ``loss_box_reg``, ``loss_mask``
            and/or ``loss_keypoint``.
        """
        if self.training:
            if targets is None:
                raise ValueError("RoIHeads: targets are required in training mode")
            return [], self.losses(features, proposals, image_shapes, targets)
        return self.detect(features, proposals, image_shapes, score_thresh=score_thresh), {}

    # ------------------------------------------------------------------------------------------------
    # Training

    def losses(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: Sequence[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        samples = self.select_training_samples(proposals, targets)
        class_logits, box_regression = self.box_branch(features, samples.proposals, image_shapes)
        loss_classifier, loss_box_reg = fastrcnn_loss(
            class_logits,
            box_regression,
            samples.labels,
            samples.regression_targets,
            box_loss=self.box_loss,
            beta=self.smooth_l1_beta,
        )
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        # The mask and keypoint branches learn from the foreground proposals only.
        positive = [torch.where(labels > 0)[0] for labels in samples.labels]
        fg_proposals = [p[i] for p, i in zip(samples.proposals, positive, strict=True)]
        fg_matched = [m[i] for m, i in zip(samples.matched_idxs, positive, strict=True)]
        if self.has_masks:
            mask_logits = self.mask_branch(features, fg_proposals, image_shapes)
            losses["loss_mask"] = maskrcnn_loss(
                mask_logits,
                fg_proposals,
                [t["masks"] for t in targets],
                [t["labels"] for t in targets],
                fg_matched,
            )
        if self.num_keypoints:
            keypoint_logits = self.keypoint_branch(features, fg_proposals, image_shapes)
            losses["loss_keypoint"] = keypointrcnn_loss(
                keypoint_logits, fg_proposals, [t["keypoints"] for t in targets], fg_matched
            )
        return losses

    def select_training_samples(
        self, proposals: Sequence[Tensor], targets: Sequence[dict[str, Tensor]]
    ) -> TrainingSamples:
        """Append the ground truth to the proposals, match, sample, and encode the regression targets.

        The ground-truth boxes are perfect proposals: appending them guarantees foreground samples early
        in training, when the RPN proposes little of use.
        """
        dtype = proposals[0].dtype
        all_proposals = [
            torch.cat((p, t["boxes"].to(dtype))) for p, t in zip(proposals, targets, strict=True)
        ]
        labels, matched = self.assign_targets(all_proposals, targets)
        pos_masks, neg_masks = self.fg_bg_sampler(labels)
        samples = TrainingSamples([], [], [], [])
        for i, (pos, neg) in enumerate(zip(pos_masks, neg_masks, strict=True)):
            keep = torch.where(pos | neg)[0]
            boxes = all_proposals[i][keep]
            gt = targets[i]["boxes"].to(dtype)
            # Background proposals never use their targets; without ground truth, encode them onto
            # themselves so that no log(0) appears.
            matched_boxes = gt[matched[i][keep]] if gt.numel() else boxes
            samples.proposals.append(boxes)
            samples.labels.append(labels[i][keep])
            samples.matched_idxs.append(matched[i][keep])
            samples.regression_targets.append(self.box_coder.encode_single(matched_boxes, boxes))
        return samples

    def assign_targets(
        self, proposals: Sequence[Tensor], targets: Sequence[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image ``int64`` labels (class, 0 background, -1 ignored) and matched ground-truth indices."""
        labels, matched = [], []
        for boxes, target in zip(proposals, targets, strict=True):
            gt = target["boxes"].to(boxes.dtype)
            if gt.numel() == 0:
                zeros = torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
                labels.append(zeros)
                matched.append(zeros)
                continue
            idx = self.proposal_matcher(box_iou(gt, boxes))
            clamped = idx.clamp(min=0)
            label = target["labels"][clamped].to(torch.int64)
            label[idx == Matcher.BELOW_LOW_THRESHOLD] = 0
            label[idx == Matcher.BETWEEN_THRESHOLDS] = -1
            labels.append(label)
            matched.append(clamped)
        return labels, matched

    # ------------------------------------------------------------------------------------------------
    # Both modes

    def box_branch(
        self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        """``[K, num_classes]`` class logits and ``[K, num_classes * 4]`` deltas of all images' boxes, in at
        float32: under autocast the box head runs in float32 (see
        :func:`~maskrcnn.modeling.layers.full_precision_region`)."""
        pooled = self.box_roi_pool(features, boxes, image_shapes)
        with full_precision_region(pooled):
            return self.box_predictor(self.box_head(full_precision(pooled)))

    def mask_branch(
        self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        """``[K, num_classes, M, M]`` mask logits of the boxes of all images, in at least float32."""
        assert self.mask_roi_pool is not None
        assert self.mask_head is not None
        assert self.mask_predictor is not None
        pooled = self.mask_roi_pool(features, boxes, image_shapes)
        return full_precision(self.mask_predictor(self.mask_head(pooled)))

    def keypoint_branch(
        self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        """``[K, num_keypoints, S, S]`` heatmap logits of the boxes of all images, in at least float32."""
        assert self.keypoint_roi_pool is not None
        assert self.keypoint_head is not None
        assert self.keypoint_predictor is not None
        pooled = self.keypoint_roi_pool(features, boxes, image_shapes)
        return full_precision(self.keypoint_predictor(self.keypoint_head(pooled)))

    # ------------------------------------------------------------------------------------------------
    # Evaluation

    def detect(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        *,
        score_thresh: float | None = None,
    ) -> list[dict[str, Tensor]]:
        class_logits, box_regression = self.box_branch(features, proposals, image_shapes)
        detections = self.postprocess_detections(
            class_logits, box_regression, proposals, image_shapes, score_thresh=score_thresh
        )
        return self.describe(features, detections, image_shapes)

    def detect_in_boxes(
        self,
        features: dict[str, Tensor],
        boxes: list[Tensor],
        image_shapes: list[tuple[int, int]],
        labels: list[Tensor],
    ) -> list[dict[str, Tensor]]:
        """Detections for boxes given from elsewhere (another detector, a person): the boxes as they are,
        their classes, and the masks and keypoints of the branches the model has.

        Args:
            boxes: per image ``[B_i, 4]`` xyxy in resized-image pixels.
            labels: per image ``int64 [B_i]``: each box's class, or 0 where it is not known: the box
                branch's most probable foreground class is taken.

        Returns:
            per image ``boxes`` (the given ones), ``labels``, ``scores`` (the box branch's softmax
            probability of the label) and the branches' outputs as :meth:`detect` gives them.
        """
        class_logits, _ = self.box_branch(features, boxes, image_shapes)
        probabilities = F.softmax(class_logits, -1).split([len(b) for b in boxes])
        detections = []
        for image_boxes, probs, given in zip(boxes, probabilities, labels, strict=True):
            best = probs[:, 1:].argmax(1) + 1
            chosen = torch.where(given > 0, given.to(best.device), best)
            scores = probs.gather(1, chosen[:, None])[:, 0]
            detections.append({"boxes": image_boxes, "labels": chosen, "scores": scores})
        return self.describe(features, detections, image_shapes)

    def describe(
        self,
        features: dict[str, Tensor],
        detections: list[dict[str, Tensor]],
        image_shapes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Add each detection's mask probabilities (``masks [D, 1, M, M]``) and keypoints to per image
        ``boxes`` and ``labels``, for the branches the model has; returns ``detections``."""
        boxes = [d["boxes"] for d in detections]
        if self.has_masks:
            mask_logits = self.mask_branch(features, boxes, image_shapes)
            labels = [d["labels"] for d in detections]
            for det, probs in zip(detections, mask_probabilities(mask_logits, labels), strict=True):
                det["masks"] = probs
        if self.num_keypoints:
            keypoint_logits = self.keypoint_branch(features, boxes, image_shapes)
            for det, (points, scores) in zip(
                detections, keypoint_predictions(keypoint_logits, boxes), strict=True
            ):
                det["keypoints"], det["keypoints_scores"] = points, scores
        return detections

    def postprocess_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        *,
        score_thresh: float | None = None,
    ) -> list[dict[str, Tensor]]:
        """Per-class boxes and scores -> thresholded, per-class NMS'd, top-N detections per image.

        Every proposal yields one candidate per foreground class (its class-specific box, its softmax
        probability); background candidates are dropped, and so are those scoring ``score_thresh``
        (default: the module's :attr:`score_thresh`) or less.
        """
        threshold = self.score_thresh if score_thresh is None else score_thresh
        num_classes = class_logits.shape[-1]
        counts = [len(p) for p in proposals]
        boxes_all = self.box_coder.decode(box_regression, proposals).split(counts)
        scores_all = F.softmax(class_logits, -1).split(counts)
        detections = []
        for boxes, scores, shape in zip(boxes_all, scores_all, image_shapes, strict=True):
            boxes = clip_boxes_to_image(boxes, shape)
            labels = torch.arange(num_classes, device=boxes.device).view(1, -1).expand_as(scores)
            boxes = boxes[:, 1:].reshape(-1, 4)
            scores = scores[:, 1:].reshape(-1)
            labels = labels[:, 1:].reshape(-1)
            keep = torch.where(scores > threshold)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            detections.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
        return detections
