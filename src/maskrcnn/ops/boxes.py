"""Box utilities on ``[N, 4]`` tensors of absolute pixel coordinates.

Boxes are ``(x1, y1, x2, y2)`` floats unless a name says otherwise (``cxcywh``: centre, width, height).
Every function keeps the input's dtype and device and accepts ``N == 0``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "box_area",
    "box_convert",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xyxy_to_cxcywh",
    "clip_boxes_to_image",
    "pairwise_intersection",
    "remove_small_boxes",
]


def box_area(boxes: Tensor) -> Tensor:
    """Area of each box.

    Args:
        boxes: ``[N, 4]`` xyxy boxes.

    Returns:
        ``[N]`` areas, ``(x2 - x1) * (y2 - y1)`` (negative for inverted boxes, as in torchvision).
    """
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def pairwise_intersection(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection area of every pair.

    Args:
        boxes1: ``[N, 4]`` xyxy boxes.
        boxes2: ``[M, 4]`` xyxy boxes.

    Returns:
        ``[N, M]`` intersection areas (0 where boxes do not overlap).
    """
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair, ``inter / (area1 + area2 - inter)``.

    Two zero-area boxes have ``0 / 0 = nan`` IoU, as in torchvision; training data is validated so that
    ground-truth boxes have a positive area before they get here.

    Args:
        boxes1: ``[N, 4]`` xyxy boxes.
        boxes2: ``[M, 4]`` xyxy boxes.

    Returns:
        ``[N, M]`` IoU values in ``[0, 1]``.
    """
    inter = pairwise_intersection(boxes1, boxes2)
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter
    return inter / union


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp boxes so that they lie inside an image.

    Args:
        boxes: ``[..., 4]`` xyxy boxes.
        size: ``(height, width)`` of the image.

    Returns:
        ``[..., 4]`` boxes with x in ``[0, width]`` and y in ``[0, height]``.
    """
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose width and height are both at least ``min_size``.

    Args:
        boxes: ``[N, 4]`` xyxy boxes.
        min_size: the smallest side length kept, in pixels.

    Returns:
        ``int64[K]`` indices into ``boxes``, increasing.
    """
    ws = boxes[:, 2] - boxes[:, 0]
    hs = boxes[:, 3] - boxes[:, 1]
    keep = (ws >= min_size) & (hs >= min_size)
    return torch.where(keep)[0]


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` xyxy boxes to ``[..., 4]`` (centre x, centre y, width, height)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (centre x, centre y, width, height) boxes to ``[..., 4]`` xyxy."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert ``[..., 4]`` boxes between ``"xyxy"`` and ``"cxcywh"`` (torchvision's names)."""
    converters = {
        ("xyxy", "cxcywh"): box_xyxy_to_cxcywh,
        ("cxcywh", "xyxy"): box_cxcywh_to_xyxy,
    }
    if in_fmt == out_fmt and in_fmt in ("xyxy", "cxcywh"):
        return boxes.clone()
    try:
        return converters[(in_fmt, out_fmt)](boxes)
    except KeyError:
        raise ValueError(
            f"box_convert: unsupported formats {in_fmt!r} -> {out_fmt!r}; use 'xyxy' or 'cxcywh'"
        ) from None
