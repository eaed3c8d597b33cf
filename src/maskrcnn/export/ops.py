"""The three steps of inference that do not trace, as ``torch.library`` custom operators.

``torch.export`` cannot follow the model's own RoIAlign (it groups RoIs by sampling grid in Python) or
its NMS (a data-dependent greedy loop), and it would compute the resize's output size in float32 in the
ONNX graph, where the model computes it in float64 (float32 picks a size one pixel off for about one
image size in ten). Each step is therefore one opaque operator in the exported graph:

* its eager kernel calls the model's own implementation, so a ``.pt2`` program computes exactly what
  the model computes;
* its fake kernel gives the output's shape (symbolic in the image size, or data-dependent for NMS);
* :mod:`maskrcnn.export.onnx` translates it into the standard ONNX operators (``Resize``, ``RoiAlign``,
  ``NonMaxSuppression``).

Importing this module registers the operators (``torch.ops.maskrcnn_export.*``); a saved ``.pt2``
program needs them registered before ``torch.export.load`` (see :func:`maskrcnn.export.load_exported`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from maskrcnn.modeling.transform import RCNNTransform
from maskrcnn.ops import batched_nms, roi_align

__all__ = ["grouped_nms", "resize_image", "roi_align_level"]


def resized_size(height: int, width: int, *, min_size: int, max_size: int) -> tuple[int, int]:
    """The ``(h, w)`` that :meth:`RCNNTransform.resize` gives an ``(height, width)`` image (float64 scale,
    then ``floor``, as ``F.interpolate(scale_factor=..., recompute_scale_factor=True)`` computes it; at
    least 1).

    Works on Python ints and on the symbolic sizes of an export alike.
    """
    scale = torch.sym_min(min_size / torch.sym_min(height, width), max_size / torch.sym_max(height, width))
    # At least one pixel a side, as the transform keeps very thin images.
    return torch.sym_max(1, math.floor(height * scale)), torch.sym_max(1, math.floor(width * scale))


@torch.library.custom_op("maskrcnn_export::resize_image", mutates_args=())
def resize_image(image: Tensor, min_size: int, max_size: int) -> Tensor:
    """Resize a ``[C, H, W]`` image as the model's transform does in evaluation (short side to
    ``min_size`` unless the long side would exceed ``max_size``; bilinear). Returns ``[C, h, w]``."""
    transform = RCNNTransform(min_size=(min_size,), max_size=max_size, image_mean=(0.0,), image_std=(1.0,))
    return transform.eval().resize(image, None)[0]


@resize_image.register_fake
def _(image: Tensor, min_size: int, max_size: int) -> Tensor:
    h, w = resized_size(image.shape[-2], image.shape[-1], min_size=min_size, max_size=max_size)
    return image.new_empty((image.shape[0], h, w))


@torch.library.custom_op("maskrcnn_export::roi_align", mutates_args=())
def roi_align_level(
    feature: Tensor,
    rois: Tensor,
    spatial_scale: float,
    output_height: int,
    output_width: int,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """:func:`maskrcnn.ops.roi_align` of ``[K, 5]`` RoIs ``(batch_index, x1, y1, x2, y2)`` on one
    ``[N, C, H, W]`` map. Returns ``[K, C, output_height, output_width]`` (contiguous)."""
    out = roi_align(
        feature,
        rois,
        (output_height, output_width),
        spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio,
        aligned=aligned,
    )
    return out.contiguous()


@roi_align_level.register_fake
def _(
    feature: Tensor,
    rois: Tensor,
    spatial_scale: float,
    output_height: int,
    output_width: int,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    return feature.new_empty((rois.shape[0], feature.shape[1], output_height, output_width))


@torch.library.custom_op("maskrcnn_export::grouped_nms", mutates_args=())
def grouped_nms(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    num_groups: int,
    iou_threshold: float,
    score_threshold: float,
) -> Tensor:
    """Per-group greedy NMS of the boxes scoring above ``score_threshold``.

    Args:
        boxes: ``[N, 4]`` xyxy boxes.
        scores: ``[N]`` scores; a box takes part when its score is ``> score_threshold`` (``-inf``
            scores never do: that is how the callers drop boxes without changing shapes).
        groups: ``int64[N]`` group of each box, in ``0..num_groups - 1`` (class, or pyramid level).
        num_groups: the number of groups (the ONNX translation lays one score row out per group).
        iou_threshold: a box is dropped when it overlaps a kept, higher-scored box of its group by more.
        score_threshold: see ``scores``.

    Returns:
        ``int64[K]`` indices of the kept boxes by decreasing score, what
        :func:`maskrcnn.ops.batched_nms` returns for the boxes that pass the threshold.
    """
    candidates = torch.where(scores > score_threshold)[0]
    keep = batched_nms(boxes[candidates], scores[candidates], groups[candidates], iou_threshold)
    return candidates[keep]


@grouped_nms.register_fake
def _(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    num_groups: int,
    iou_threshold: float,
    score_threshold: float,
) -> Tensor:
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.int64)
