"""Instance masks: polygons and RLE (through pycocotools), boxes of masks, pasting RoI masks into images.

Shapes: a mask is ``uint8 [H, W]`` with values 0/1; a stack is ``[N, H, W]``. RLE dicts are COCO's
``{"size": [H, W], "counts": str}`` (compressed) or ``{"size": ..., "counts": [int, ...]}`` (uncompressed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as coco_mask
from torch import Tensor

from maskrcnn.structures import CroppedMasks

__all__ = [
    "MASK_THRESHOLD",
    "binarize_masks",
    "expand_boxes",
    "expand_masks",
    "masks_to_boxes",
    "paste_mask_in_image",
    "paste_masks_cropped",
    "paste_masks_in_image",
    "paste_masks_thresholded",
    "polygons_to_mask",
    "rle_area",
    "rle_decode",
    "rle_encode",
    "rle_to_crops",
]

Polygon = Sequence[float]

# A pixel belongs to an instance when its mask probability is above this (Mask R-CNN's 0.5).
MASK_THRESHOLD = 0.5


def binarize_masks(probabilities: Tensor, threshold: float = MASK_THRESHOLD) -> Tensor:
    """``probabilities > threshold`` as a bool tensor of the same shape (a pixel at exactly the threshold
    is outside). Done where the probabilities are (the GPU), so that only booleans travel to the CPU."""
    return probabilities > threshold


def polygons_to_mask(polygons: Sequence[Polygon], height: int, width: int) -> Tensor:
    """Rasterise one instance given as one or several polygons (COCO's ``segmentation`` list).

    Args:
        polygons: parts of the instance, each a flat ``[x1, y1, x2, y2, ...]`` list of at least 3 points,
            in pixel coordinates.
        height: image height.
        width: image width.

    Returns:
        ``uint8 [height, width]`` union of the parts, rasterised by pycocotools the way the COCO metrics
        rasterise ground truth.
    """
    parts = [list(map(float, p)) for p in polygons]
    for k, p in enumerate(parts):
        if len(p) < 6 or len(p) % 2:
            raise ValueError(
                f"polygon part {k} has {len(p)} coordinates; "
                "it needs an even number and at least 3 points (6 values)"
            )
        if not all(math.isfinite(v) for v in p):  # pycocotools would crash the process on them
            raise ValueError(f"polygon part {k} has a non-finite coordinate")
    if not parts:
        return torch.zeros((height, width), dtype=torch.uint8)
    # pycocotools walks every edge at sub-pixel steps: a vertex a billion pixels away (a typo, a broken
    # export) would make it allocate gigabytes. Parts reaching further than an image size beyond the
    # image are clipped to that frame first (the same region; pycocotools' rounding along a cut edge can
    # move pixels on its border); parts within the frame, every sensible annotation, go through untouched.
    margin = float(max(height, width))
    parts = [_clip_polygon(p, height, width, margin) for p in parts]
    parts = [p for p in parts if len(p) >= 6]
    if not parts:
        return torch.zeros((height, width), dtype=torch.uint8)
    rles = coco_mask.frPyObjects(parts, height, width)
    return torch.from_numpy(coco_mask.decode(coco_mask.merge(rles)).astype(np.uint8))


def _clip_polygon(part: list[float], height: int, width: int, margin: float) -> list[float]:
    """A flat ``[x1, y1, ...]`` polygon clipped to ``[-margin, width + margin] x [-margin, height +
    margin]`` (Sutherland-Hodgman: exact for the region inside that convex frame); unchanged when it lies
    within."""
    points = np.asarray(part, dtype=np.float64).reshape(-1, 2)
    low = np.array([-margin, -margin])
    high = np.array([width + margin, height + margin])
    if ((points >= low) & (points <= high)).all():
        return part
    for axis in (0, 1):
        for bound, inside in ((low[axis], np.greater_equal), (high[axis], np.less_equal)):
            if len(points) == 0:
                return []
            clipped = []
            for a, b in zip(points, np.roll(points, -1, axis=0), strict=True):
                a_in, b_in = inside(a[axis], bound), inside(b[axis], bound)
                if a_in:
                    clipped.append(a)
                if a_in != b_in:  # the edge crosses the bound: keep the crossing point
                    # Halved before subtracting, and mixed as (1 - t) a + t b, so that coordinates
                    # near the float limit (1e308) cannot overflow into inf or NaN.
                    t = (bound / 2 - a[axis] / 2) / (b[axis] / 2 - a[axis] / 2)
                    crossing = (1 - t) * a + t * b
                    crossing[axis] = bound
                    clipped.append(crossing)
            points = np.asarray(clipped, dtype=np.float64).reshape(-1, 2)
    return points.reshape(-1).tolist()


def rle_encode(masks: Tensor) -> list[dict[str, Any]]:
    """Compressed COCO RLE of each mask.

    Args:
        masks: ``[N, H, W]`` (or ``[H, W]``) binary masks, any dtype (nonzero = inside). Bool masks
            stored column by column (``masks.transpose(1, 2)`` contiguous, as
            :func:`paste_masks_thresholded` returns them) are encoded without any copy.

    Returns:
        ``N`` dicts ``{"size": [H, W], "counts": str}``, JSON-ready.
    """
    if masks.dim() == 2:
        masks = masks[None]
    array = masks.detach().cpu().numpy()
    # pycocotools reads uint8 [H, W, N] in Fortran order: each mask column by column. A bool array is
    # reinterpreted (same bytes), not converted; asfortranarray copies only when the layout differs.
    array = array.view(np.uint8) if array.dtype == np.bool_ else (array != 0).view(np.uint8)
    array = np.asfortranarray(array.transpose(1, 2, 0))
    rles = coco_mask.encode(array)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def _to_compressed(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    height, width = rle["size"]
    if isinstance(counts, list):  # uncompressed: COCO "iscrowd" annotations are stored this way
        return coco_mask.frPyObjects(rle, height, width)
    if isinstance(counts, str):
        return {"size": [height, width], "counts": counts.encode("ascii")}
    return rle


def rle_to_crops(rles: Sequence[dict[str, Any]], image_size: tuple[int, int]) -> CroppedMasks:
    """COCO RLE masks of one ``(H, W)`` image (compressed or not, as results files and COCO annotations
    hold them) as :class:`~maskrcnn.structures.CroppedMasks`, decoding one full-size mask at a time (never
    ``[N, H, W]``): about 2 ms a mask on a 2048 x 1365 image, 0.2 ms on a 640 x 480 one."""
    crops, origins = [], []
    for rle in rles:
        compressed = _to_compressed(rle)
        x, y, w, h = (int(v) for v in coco_mask.toBbox(compressed))  # the mask's exact extent
        full = torch.from_numpy(coco_mask.decode(compressed))
        crops.append(full[y : y + h, x : x + w].bool())
        origins.append((y, x))
    return CroppedMasks(crops, origins, image_size)


def rle_decode(rles: dict[str, Any] | Sequence[dict[str, Any]]) -> Tensor:
    """Decode compressed or uncompressed COCO RLE.

    Args:
        rles: one RLE dict or a list of them (all the same size).

    Returns:
        ``uint8 [H, W]`` for one dict, ``uint8 [N, H, W]`` for a list.
    """
    if isinstance(rles, dict):
        return torch.from_numpy(coco_mask.decode(_to_compressed(rles)).astype(np.uint8))
    if len(rles) == 0:
        raise ValueError("rle_decode: empty list (the image size is unknown)")
    decoded = coco_mask.decode([_to_compressed(r) for r in rles])  # [H, W, N]
    return torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1)).astype(np.uint8))


def rle_area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels of an RLE."""
    return int(coco_mask.area(_to_compressed(rle)))


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight box of each mask, in pixel-edge coordinates.

    A mask covering pixel columns ``x0..x1`` and rows ``y0..y1`` gets the box
    ``(x0, y0, x1 + 1, y1 + 1)``: pixel ``i`` spans ``[i, i + 1)``, so the box has the mask's true extent and
    a one-pixel object has a 1x1 box (this is COCO's ``bbox`` as xyxy; torchvision's function of the same
    name returns ``(x0, y0, x1, y1)`` instead). Empty masks get ``(0, 0, 0, 0)``.

    Args:
        masks: ``[N, H, W]`` masks (nonzero = inside).

    Returns:
        ``float32 [N, 4]`` xyxy boxes.
    """
    n = masks.shape[0]
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    # Reduced straight on the masks (nonzero = inside): no full-size boolean copy of the stack. Bool and
    # uint8 masks are read as bytes by amax, several times faster than any() (100 masks of a 2048-px
    # photo: 20 ms instead of 240).
    if masks.dtype in (torch.bool, torch.uint8) and masks.shape[-1] and masks.shape[-2]:
        flat = masks.view(torch.uint8)
        rows, cols = flat.amax(dim=2) != 0, flat.amax(dim=1) != 0  # [N, H], [N, W]
    else:
        rows = masks.any(dim=2).bool()
        cols = masks.any(dim=1).bool()
    h, w = masks.shape[-2:]
    y_idx = torch.arange(h, device=masks.device)
    x_idx = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, y_idx, h).min(dim=1).values
    y1 = torch.where(rows, y_idx, -1).max(dim=1).values + 1
    x0 = torch.where(cols, x_idx, w).min(dim=1).values
    x1 = torch.where(cols, x_idx, -1).max(dim=1).values + 1
    boxes = torch.stack((x0, y0, x1, y1), dim=1).float()
    return torch.where(rows.any(dim=1)[:, None], boxes, 0.0)


def expand_masks(masks: Tensor, padding: int) -> tuple[Tensor, float]:
    """Pad ``[N, 1, M, M]`` masks with ``padding`` zeros per side; returns them and the size ratio."""
    m = masks.shape[-1]
    scale = float(m + 2 * padding) / m
    return F.pad(masks, (padding,) * 4), scale


def expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """Scale ``[N, 4]`` xyxy boxes about their centres by ``scale``."""
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    w_half = w_half * scale
    h_half = h_half * scale
    return torch.stack((x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half), dim=1)


def _paste_region(mask: Tensor, box: Sequence[int], im_h: int, im_w: int) -> tuple[Tensor, slice, slice]:
    """Resize one ``[M, M]`` mask to its integer box and return the part inside the image and where."""
    x0, y0, x1, y1 = box
    # Integer boxes are inclusive of their last pixel, hence the +1, as in the reference implementations.
    w = max(x1 - x0 + 1, 1)
    h = max(y1 - y0 + 1, 1)
    resized = F.interpolate(mask[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    # A box wholly outside the image gives an empty region (never a negative, wrapping slice).
    ix0, iy0 = min(max(x0, 0), im_w), min(max(y0, 0), im_h)
    ix1, iy1 = max(min(x1 + 1, im_w), ix0), max(min(y1 + 1, im_h), iy0)
    crop = resized[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    return crop, slice(iy0, iy1), slice(ix0, ix1)


def paste_mask_in_image(mask: Tensor, box: Sequence[int], im_h: int, im_w: int) -> Tensor:
    """Paste one ``[M, M]`` mask into an ``[im_h, im_w]`` image at the integer xyxy ``box``."""
    out = mask.new_zeros((im_h, im_w))
    crop, ys, xs = _paste_region(mask, box, im_h, im_w)
    if crop.numel():
        out[ys, xs] = crop
    return out


def paste_masks_in_image(
    masks: Tensor, boxes: Tensor, img_shape: tuple[int, int], padding: int = 1
) -> Tensor:
    """Paste RoI mask probabilities into full-image masks (torchvision's ``paste_masks_in_image``).

    Each ``M x M`` mask is padded by ``padding`` pixels and its box grown by the same ratio (so the
    bilinear resize does not smear the mask's border), the box is truncated to integers, the mask resized
    bilinearly to the box and written into a zero image. Only the box region is resized and written:
    the cost grows with the boxes' area, plus one zero-filled output.

    Args:
        masks: ``[N, 1, M, M]`` mask probabilities.
        boxes: ``[N, 4]`` xyxy boxes in image pixels.
        img_shape: ``(H, W)`` of the output.
        padding: pixels of zero padding around each mask.

    Returns:
        ``[N, 1, H, W]`` masks in ``masks``' dtype and device.
    """
    im_h, im_w = int(img_shape[0]), int(img_shape[1])
    n = masks.shape[0]
    out = masks.new_zeros((n, 1, im_h, im_w))
    if n == 0:
        return out
    padded, scale = expand_masks(masks, padding)
    int_boxes = expand_boxes(boxes, scale).to(torch.int64).tolist()
    for i, box in enumerate(int_boxes):
        crop, ys, xs = _paste_region(padded[i, 0], box, im_h, im_w)
        if crop.numel():
            out[i, 0, ys, xs] = crop
    return out


def paste_masks_cropped(
    masks: Tensor, boxes: Tensor, img_shape: tuple[int, int], threshold: float, padding: int = 1
) -> CroppedMasks:
    """``paste_masks_in_image(masks, boxes, img_shape, padding)[:, 0] > threshold``, kept as crops.

    The same resize of each mask into its box, thresholded inside the box only, and each result cut to
    its extent: no image-size array is made (100 detections on a 2048 x 1365 photo would be 280 MB of
    booleans, or 1.1 GB of floats).

    Args:
        masks: ``[N, 1, M, M]`` mask probabilities.
        boxes: ``[N, 4]`` xyxy boxes in image pixels.
        img_shape: ``(H, W)`` of the image.
        threshold: a pixel is inside when its probability is above this; at least 0, so that the pixels
            outside the box (probability 0) are outside.
        padding: as in :func:`paste_masks_in_image`.

    Returns:
        the ``N`` masks, crops on ``masks``' device.
    """
    if threshold < 0:
        raise ValueError(f"the mask threshold must be at least 0, got {threshold}")
    im_h, im_w = int(img_shape[0]), int(img_shape[1])
    crops: list[Tensor] = []
    origins: list[tuple[int, int]] = []
    if masks.shape[0]:
        padded, scale = expand_masks(masks, padding)
        for i, box in enumerate(expand_boxes(boxes, scale).to(torch.int64).tolist()):
            crop, ys, xs = _paste_region(padded[i, 0], box, im_h, im_w)
            crops.append(crop > threshold)
            origins.append((ys.start, xs.start))
    return CroppedMasks.from_regions(crops, origins, (im_h, im_w))


def paste_masks_thresholded(
    masks: Tensor, boxes: Tensor, img_shape: tuple[int, int], threshold: float, padding: int = 1
) -> Tensor:
    """:func:`paste_masks_cropped` at full size: bool ``[N, H, W]`` on ``masks``' device, stored column by
    column (the order of COCO's RLE: :func:`rle_encode` then needs no copy)."""
    masks_out = paste_masks_cropped(masks, boxes, img_shape, threshold, padding)
    if not len(masks_out):
        return torch.zeros((0, int(img_shape[0]), int(img_shape[1])), dtype=torch.bool, device=masks.device)
    return masks_out.dense()
