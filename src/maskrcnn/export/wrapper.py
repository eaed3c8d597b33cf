"""The whole detector for one image as one traceable module: what ``maskrcnn export`` exports.

:class:`ExportableMaskRCNN` runs the model's own submodules (backbone + FPN, RPN head, anchors, box and
mask heads, box coders) and redoes, in a trace-friendly form, only the glue between them that the eager
model writes with Python-side decisions: the resize and padding, proposal selection, per-level pooling,
detection post-processing and the mapping back to input pixels. The three steps that cannot be traced
at all are the custom operators of :mod:`maskrcnn.export.ops`. The eager model is not changed.

Input: one ``float32 [3, H, W]`` RGB image in 0..1. Outputs (in this order, and so named in ONNX):
``boxes [D, 4]`` xyxy in input-image pixels, ``labels int64 [D]``, ``scores [D]`` by decreasing score,
and ``masks [D, 1, M, M]`` per-detection mask probabilities of the detection's class in its box (not
pasted: see :func:`maskrcnn.export.paste_masks`). ``D`` may be 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.export.ops import grouped_nms, resize_image, roi_align_level
from maskrcnn.modeling.mask_rcnn import MaskRCNN
from maskrcnn.modeling.rpn import flatten_predictions
from maskrcnn.ops import LevelMapper, MultiScaleRoIAlign, clip_boxes_to_image
from maskrcnn.ops.poolers import infer_scale

__all__ = ["OUTPUT_NAMES", "ExportableMaskRCNN", "LevelPooler"]

OUTPUT_NAMES = ("boxes", "labels", "scores", "masks")


class LevelPooler(nn.Module):
    """:class:`~maskrcnn.ops.MultiScaleRoIAlign` for one image with the level scales fixed in advance.

    The eager pooler infers each level's scale from the map and image sizes at every call; an FPN's
    levels are 1/4, 1/8, ... of the padded image, which is what it infers for any resized image at
    least 68 px high (see :mod:`maskrcnn.export`). Here they are measured once, on a probe image.

    Args:
        pooler: the model's pooler (its output size, sampling ratio, alignment and level mapping).
        scales: feature-map pixels per image pixel for each of ``pooler.featmap_names``, finest first.
    """

    def __init__(self, pooler: MultiScaleRoIAlign, scales: Sequence[float]) -> None:
        super().__init__()
        self.featmap_names = list(pooler.featmap_names)
        self.output_size = pooler.output_size
        self.sampling_ratio = pooler.sampling_ratio
        self.aligned = pooler.aligned
        self.scales = [float(s) for s in scales]
        levels = [-torch.log2(torch.tensor(s)).item() for s in self.scales]
        self.mapper = LevelMapper(
            k_min=round(levels[0]),
            k_max=round(levels[-1]),
            canonical_scale=pooler.canonical_scale,
            canonical_level=pooler.canonical_level,
        )

    def forward(self, features: dict[str, Tensor], boxes: Tensor) -> Tensor:
        """``[K, 4]`` boxes (resized-image pixels) -> ``[K, C, PH, PW]`` features from their levels."""
        rois = torch.cat((boxes.new_zeros((boxes.shape[0], 1)), boxes), dim=1)
        maps = [features[name] for name in self.featmap_names]
        ph, pw = self.output_size
        out = maps[0].new_zeros((boxes.shape[0], maps[0].shape[1], ph, pw))
        if len(maps) == 1:
            level = torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
        else:
            level = self.mapper([boxes])
        for lvl, (feature, scale) in enumerate(zip(maps, self.scales, strict=True)):
            # Each level pools only its own RoIs (a data-dependent count), written back into place.
            idx = torch.where(level == lvl)[0]
            pooled = roi_align_level(feature, rois[idx], scale, ph, pw, self.sampling_ratio, self.aligned)
            out = out.index_put((idx,), pooled)
        return out


def _pyramid_scales(model: MaskRCNN, names: Sequence[str]) -> list[float]:
    """Scales of the pooled levels, as the eager pooler infers them, on a probe image of 64 x 64 px
    (two strides of the coarsest level, so that every map is at least 1 px)."""
    stride = model.transform.size_divisible
    side = 2 * stride
    probe = torch.zeros(1, 3, side, side, dtype=next(model.parameters()).dtype)
    with torch.inference_mode():
        features = model.backbone(probe)
    return [infer_scale(features[name], (side, side)) for name in names]


class ExportableMaskRCNN(nn.Module):
    """One ``[3, H, W]`` image in 0..1 -> ``(boxes, labels, scores, masks)`` (see the module docstring).

    Evaluation-mode behaviour of ``model`` (its ``min_size[-1]``, ``max_size``, thresholds, top-k and
    detection cap), in a form ``torch.export`` traces with ``H`` and ``W`` symbolic.

    Args:
        model: an evaluation-mode :class:`~maskrcnn.modeling.MaskRCNN` (its modules are shared, not
            copied).
    """

    def __init__(self, model: MaskRCNN) -> None:
        super().__init__()
        if not model.roi_heads.has_masks:
            raise ValueError(
                "export writes boxes and masks: this model has no mask head (a keypoint R-CNN); "
                "run it with `maskrcnn predict` instead"
            )
        self.model = model.eval()
        roi_heads = model.roi_heads
        scales = _pyramid_scales(model, roi_heads.box_roi_pool.featmap_names)
        self.box_pool = LevelPooler(roi_heads.box_roi_pool, scales)
        self.mask_pool = LevelPooler(roi_heads.mask_roi_pool, scales)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``[3, H, W]`` -> ``boxes [D, 4]``, ``labels int64[D]``, ``scores [D]``, ``masks [D, 1, M, M]``."""
        transform = self.model.transform
        height, width = image.shape[-2], image.shape[-1]
        resized = resize_image(transform.normalize(image), transform.min_size[-1], transform.max_size)
        size = (resized.shape[-2], resized.shape[-1])
        stride = transform.size_divisible
        pad_h = (size[0] + stride - 1) // stride * stride - size[0]
        pad_w = (size[1] + stride - 1) // stride * stride - size[1]
        batch = F.pad(resized, (0, pad_w, 0, pad_h))[None]
        features = self.model.backbone(batch)
        proposals = self.proposals(batch, features, size)
        boxes, scores, labels = self.detections(features, proposals, size)
        masks = self.mask_probabilities(features, boxes, labels)
        return self.to_input_pixels(boxes, size, (height, width)), labels, scores, masks

    def proposals(self, batch: Tensor, features: dict[str, Tensor], size: tuple[int, int]) -> Tensor:
        """The RPN's proposals for ``batch`` (``[1, 3, H', W']``): ``[P, 4]`` by decreasing objectness.

        :meth:`RegionProposalNetwork.select_proposals` in evaluation mode, with the filters (small boxes,
        the score threshold) turned into ``-inf`` scores that NMS ignores.
        """
        rpn = self.model.rpn
        maps = list(features.values())
        logits_per_level, deltas_per_level = rpn.head(maps)
        grid_sizes = [(m.shape[-2], m.shape[-1]) for m in maps]
        strides = [(batch.shape[-2] // gh, batch.shape[-1] // gw) for gh, gw in grid_sizes]
        anchors = torch.cat(rpn.anchor_generator.grid_anchors(grid_sizes, strides, batch.dtype, batch.device))
        logits, deltas = flatten_predictions(logits_per_level, deltas_per_level)
        logits, deltas = logits[0], deltas[0]
        pre_nms, post_nms = rpn.pre_nms_top_n["testing"], rpn.post_nms_top_n["testing"]
        top_idx, level_idx = [], []
        offset = 0
        for level, lg in enumerate(logits_per_level):
            count = lg.shape[1] * lg.shape[2] * lg.shape[3]
            idx = logits[offset : offset + count].topk(torch.sym_min(pre_nms, count)).indices
            top_idx.append(idx + offset)
            level_idx.append(torch.full_like(idx, level))
            offset = offset + count
        idx, levels = torch.cat(top_idx), torch.cat(level_idx)
        scores = torch.sigmoid(logits[idx])
        boxes = clip_boxes_to_image(rpn.box_coder.decode_single(deltas[idx], anchors[idx]), size)
        valid = _large_enough(boxes, rpn.min_size) & (scores >= rpn.score_thresh)
        scores = torch.where(valid, scores, float("-inf"))
        keep = grouped_nms(boxes, scores, levels, len(maps), rpn.nms_thresh, float("-inf"))[:post_nms]
        return boxes[keep]

    def detections(
        self, features: dict[str, Tensor], proposals: Tensor, size: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`RoIHeads.postprocess_detections` for ``[P, 4]`` proposals: ``[D, 4]`` boxes (resized
        image pixels), ``[D]`` scores and ``int64[D]`` labels, by decreasing score."""
        heads = self.model.roi_heads
        class_logits, box_regression = heads.box_predictor(heads.box_head(self.box_pool(features, proposals)))
        num_classes = class_logits.shape[-1]
        boxes = heads.box_coder.decode_single(box_regression, proposals).reshape(-1, num_classes, 4)
        boxes = clip_boxes_to_image(boxes, size)[:, 1:].reshape(-1, 4)
        scores = F.softmax(class_logits, -1)[:, 1:].reshape(-1)
        labels = torch.arange(1, num_classes, device=boxes.device).repeat(proposals.shape[0])
        scores = torch.where(_large_enough(boxes, 1e-2), scores, float("-inf"))
        keep = grouped_nms(boxes, scores, labels, num_classes, heads.nms_thresh, heads.score_thresh)
        keep = keep[: heads.detections_per_img]
        return boxes[keep], scores[keep], labels[keep]

    def mask_probabilities(self, features: dict[str, Tensor], boxes: Tensor, labels: Tensor) -> Tensor:
        """``[D, 1, M, M]`` sigmoid of each detection's own class's mask logits."""
        heads = self.model.roi_heads
        logits = heads.mask_predictor(heads.mask_head(self.mask_pool(features, boxes)))
        picked = logits[torch.arange(labels.shape[0], device=labels.device), labels]
        return picked.sigmoid()[:, None]

    @staticmethod
    def to_input_pixels(boxes: Tensor, size: tuple[int, int], original: tuple[int, int]) -> Tensor:
        """``[D, 4]`` boxes from the resized image to the input's pixels, with float32 ratios as
        :func:`~maskrcnn.modeling.transform.resize_boxes` computes them."""
        ratio_h, ratio_w = (
            torch.scalar_tensor(new, dtype=torch.float32, device=boxes.device)
            / torch.scalar_tensor(old, dtype=torch.float32, device=boxes.device)
            for new, old in zip(original, size, strict=True)
        )
        x1, y1, x2, y2 = boxes.unbind(1)
        return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


def _large_enough(boxes: Tensor, min_size: float) -> Tensor:
    """``bool[N]``: both sides of each ``[N, 4]`` box at least ``min_size`` (``remove_small_boxes``)."""
    return ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
