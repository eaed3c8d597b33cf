"""Region proposal network (Ren et al., 2015): objectness and box deltas for every anchor, then proposals.

Module names follow torchvision (``head.conv.0.0``, ``head.cls_logits``, ``head.bbox_pred``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.modeling.layers import ConvNormAct, full_precision
from maskrcnn.ops import (
    AnchorGenerator,
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    batched_nms,
    box_iou,
    clip_boxes_to_image,
    remove_small_boxes,
)
from maskrcnn.structures import ImageList

__all__ = ["RPNHead", "RegionProposalNetwork", "box_regression_loss", "flatten_predictions", "rpn_loss"]


class RPNHead(nn.Module):
    """Shared 3x3 convolution(s) and two 1x1 siblings, applied to every pyramid level.

    Args:
        in_channels: channels of the feature maps.
        num_anchors: anchors per location ``A``.
        conv_depth: 3x3 conv + ReLU layers before the siblings (1 in the original, 2 in torchvision's v2).
    """

    def __init__(self, in_channels: int, num_anchors: int, *, conv_depth: int = 1) -> None:
        super().__init__()
        self.conv = nn.Sequential(*(ConvNormAct(in_channels, in_channels) for _ in range(conv_depth)))
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level ``[N, C, H, W]`` -> (``[N, A, H, W]`` objectness logits, ``[N, 4A, H, W]`` deltas)."""
        logits, deltas = [], []
        for feature in features:
            t = self.conv(feature)
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def flatten_predictions(logits: Sequence[Tensor], deltas: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-level head outputs as per-image rows in anchor order (location-major, then anchor).

    Args:
        logits: per level ``[N, A, H, W]``.
        deltas: per level ``[N, 4A, H, W]``.

    Returns:
        ``[N, sum_l H_l W_l A]`` logits and ``[N, sum_l H_l W_l A, 4]`` deltas, in at least float32
        (see :func:`~maskrcnn.modeling.layers.full_precision`).
    """
    flat_logits, flat_deltas = [], []
    for lg, dl in zip(logits, deltas, strict=True):
        n, a, h, w = lg.shape
        flat_logits.append(lg.permute(0, 2, 3, 1).reshape(n, h * w * a))
        flat_deltas.append(dl.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, h * w * a, 4))
    return full_precision(torch.cat(flat_logits, dim=1)), full_precision(torch.cat(flat_deltas, dim=1))


def box_regression_loss(pred: Tensor, target: Tensor, *, kind: str, beta: float) -> Tensor:
    """Summed smooth-L1 (with ``beta``) or L1 loss over ``[K, 4]`` deltas."""
    if kind == "l1":
        return F.l1_loss(pred, target, reduction="sum")
    return F.smooth_l1_loss(pred, target, beta=beta, reduction="sum")


def rpn_loss(
    logits: Tensor,
    deltas: Tensor,
    labels: Sequence[Tensor],
    regression_targets: Sequence[Tensor],
    sampler: BalancedPositiveNegativeSampler,
    *,
    box_loss: str = "smooth_l1",
    beta: float = 1.0 / 9.0,
) -> tuple[Tensor, Tensor]:
    """Objectness and box losses on a balanced sample of anchors.

    Args:
        logits: ``[N, R]`` objectness logits.
        deltas: ``[N, R, 4]`` predicted deltas.
        labels: per image ``[R]``: 1 object, 0 background, -1 ignored.
        regression_targets: per image ``[R, 4]`` encoded matched boxes.
        sampler: picks the anchors that count (256 per image, half positive by default).

    Returns:
        ``(loss_objectness, loss_rpn_box_reg)``: binary cross-entropy averaged over the sampled anchors,
        and the box loss on the positive ones, divided by the number of sampled anchors (so an image with
        no object has a zero box loss that still back-propagates).
    """
    pos_masks, neg_masks = sampler(labels)
    pos = torch.where(torch.cat(pos_masks))[0]
    sampled = torch.cat([pos, torch.where(torch.cat(neg_masks))[0]])
    flat_labels = torch.cat(labels)
    box = box_regression_loss(
        deltas.reshape(-1, 4)[pos], torch.cat(regression_targets)[pos], kind=box_loss, beta=beta
    ) / max(sampled.numel(), 1)
    objectness = F.binary_cross_entropy_with_logits(logits.reshape(-1)[sampled], flat_labels[sampled])
    return objectness, box


class RegionProposalNetwork(nn.Module):
    """Anchors, head, proposal selection and (in training) the RPN losses.

    Proposal selection per image: the ``pre_nms_top_n`` highest-scored anchors of each level, decoded,
    clipped to the image, tiny boxes and low scores dropped, NMS per level, and the ``post_nms_top_n``
    best overall. Different values apply in training and in evaluation.

    Args:
        anchor_generator: anchors per level.
        head: :class:`RPNHead`.
        fg_iou_thresh: anchors at least this IoU with a ground-truth box are positive.
        bg_iou_thresh: anchors below this IoU with every ground-truth box are negative.
        batch_size_per_image: anchors sampled per image for the losses.
        positive_fraction: largest share of positives in that sample.
        pre_nms_top_n: ``{"training": k, "testing": k}`` anchors kept per level before NMS.
        post_nms_top_n: ``{"training": k, "testing": k}`` proposals kept per image after NMS.
        nms_thresh: IoU of the per-level NMS.
        score_thresh: proposals with a lower objectness probability are dropped.
        min_size: proposals with a side shorter than this (pixels) are dropped.
        box_loss: ``smooth_l1`` or ``l1``.
        smooth_l1_beta: transition point of the smooth-L1 loss.
    """

    def __init__(
        self,
        *,
        anchor_generator: AnchorGenerator,
        head: RPNHead,
        fg_iou_thresh: float = 0.7,
        bg_iou_thresh: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n: dict[str, int] | None = None,
        post_nms_top_n: dict[str, int] | None = None,
        nms_thresh: float = 0.7,
        score_thresh: float = 0.0,
        min_size: float = 1e-3,
        box_loss: str = "smooth_l1",
        smooth_l1_beta: float = 1.0 / 9.0,
    ) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        # allow_low_quality_matches: every ground-truth box gets at least its best anchors.
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = pre_nms_top_n or {"training": 2000, "testing": 1000}
        self.post_nms_top_n = post_nms_top_n or {"training": 2000, "testing": 1000}
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = min_size
        self.box_loss = box_loss
        self.smooth_l1_beta = smooth_l1_beta

    def _mode(self) -> str:
        return "training" if self.training else "testing"

    def forward(
        self,
        images: ImageList,
        features: dict[str, Tensor],
        targets: Sequence[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals for each image, and the losses in training.

        Args:
            images: the padded batch (its sizes clip the proposals).
            features: pyramid levels ``name -> [N, C, H_l, W_l]``, all used, finest first.
            targets: in training, per image a dict with ``boxes`` ``[G, 4]``.

        Returns:
            ``(proposals, losses)``: per image ``[P, 4]`` boxes sorted by decreasing objectness, and
            ``{"loss_objectness", "loss_rpn_box_reg"}`` in training (else empty).
        """
        maps = list(features.values())
        logits_per_level, deltas_per_level = self.head(maps)
        anchors = self.anchor_generator(images, maps)
        per_level = [lg.shape[1] * lg.shape[2] * lg.shape[3] for lg in logits_per_level]
        logits, deltas = flatten_predictions(logits_per_level, deltas_per_level)
        proposals = self.select_proposals(
            anchors[0], logits.detach(), deltas.detach(), images.image_sizes, per_level
        )

        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("RegionProposalNetwork: targets are required in training mode")
            labels, regression_targets = self.assign_targets(anchors, [t["boxes"] for t in targets])
            loss_objectness, loss_box = rpn_loss(
                logits,
                deltas,
                labels,
                regression_targets,
                self.fg_bg_sampler,
                box_loss=self.box_loss,
                beta=self.smooth_l1_beta,
            )
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}
        return proposals, losses

    def select_proposals(
        self,
        anchors: Tensor,
        logits: Tensor,
        deltas: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        anchors_per_level: Sequence[int],
    ) -> list[Tensor]:
        """Top-k per level, decode, clip, filter, per-level NMS, top-k per image.

        Args:
            anchors: ``[R, 4]`` anchors (the same for every image of the batch).
            logits: ``[N, R]`` objectness logits.
            deltas: ``[N, R, 4]`` deltas.
            image_sizes: per image ``(h, w)`` before padding.
            anchors_per_level: ``R`` split by level.

        Returns:
            per image, ``[P, 4]`` proposals by decreasing score.
        """
        mode = self._mode()
        pre_nms, post_nms = self.pre_nms_top_n[mode], self.post_nms_top_n[mode]
        top_idx, level_idx = [], []
        offset = 0
        per_level = zip(logits.split(list(anchors_per_level), 1), anchors_per_level, strict=True)
        for level, (lg, count) in enumerate(per_level):
            idx = lg.topk(min(pre_nms, count), dim=1).indices
            top_idx.append(idx + offset)
            level_idx.append(torch.full_like(idx, level))
            offset += count
        idx = torch.cat(top_idx, dim=1)  # [N, K]
        levels = torch.cat(level_idx, dim=1)
        scores = torch.sigmoid(torch.gather(logits, 1, idx))
        picked = torch.gather(deltas, 1, idx[:, :, None].expand(-1, -1, 4))
        # Decoding only the selected anchors: the rest would be thrown away.
        boxes = self.box_coder.decode_single(picked.reshape(-1, 4), anchors[idx.reshape(-1)]).view(
            *idx.shape, 4
        )

        proposals = []
        for img_boxes, img_scores, img_levels, size in zip(boxes, scores, levels, image_sizes, strict=True):
            img_boxes = clip_boxes_to_image(img_boxes, size)
            keep = remove_small_boxes(img_boxes, self.min_size)
            img_boxes, img_scores, img_levels = img_boxes[keep], img_scores[keep], img_levels[keep]
            keep = torch.where(img_scores >= self.score_thresh)[0]
            img_boxes, img_scores, img_levels = img_boxes[keep], img_scores[keep], img_levels[keep]
            keep = batched_nms(img_boxes, img_scores, img_levels, self.nms_thresh)[:post_nms]
            proposals.append(img_boxes[keep])
        return proposals

    def assign_targets(
        self, anchors: Sequence[Tensor], gt_boxes: Sequence[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Label every anchor (1 object, 0 background, -1 ignored) and encode its matched box.

        Returns:
            per image, ``[R]`` float labels and ``[R, 4]`` regression targets.
        """
        labels, targets = [], []
        for anchors_i, gt in zip(anchors, gt_boxes, strict=True):
            if gt.numel() == 0:
                # No object: every anchor is background; the targets are never used.
                labels.append(torch.zeros(anchors_i.shape[0], dtype=anchors_i.dtype, device=anchors_i.device))
                targets.append(torch.zeros_like(anchors_i))
                continue
            matched = self.proposal_matcher(box_iou(gt.to(anchors_i.dtype), anchors_i))
            label = (matched >= 0).to(anchors_i.dtype)
            label[matched == Matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(label)
            targets.append(
                self.box_coder.encode_single(gt.to(anchors_i.dtype)[matched.clamp(min=0)], anchors_i)
            )
        return labels, targets
