"""Tiled inference: detections in images far larger than the model's input, one complete mask per object.

A microscopy slide or an aerial scene of 20,000 pixels a side, resized to the model's 800-1333 pixels,
loses its small objects; run whole at full resolution, it exhausts memory. Here the image is cut into
overlapping square tiles of ``size`` pixels (:func:`tile_windows`), the tiles go through the model in
batches, and their detections are mapped back to the image and merged (:func:`merge_tile_detections`).

**Scale.** Each tile goes to the model as it is, so the model's own transform treats it as any image of
``size`` pixels: resized so that its short side is the transform's ``min_size`` (capped by
``max_size``). Every tile of an image at least ``size`` pixels a side is exactly ``size x size`` (the
last row and column of tiles are moved inside the image rather than cut short), so every tile is scaled
by the same factor, ``min_size / size``, as the random crops of ``size`` pixels a model is trained on
(``maskrcnn train --tile SIZE``): the model is applied at the scale it learned. A side shorter than
``size`` is one tile of that side's length, as a training crop of such an image is.

**Merging**: the tiles' detections are joined into objects by their masks, each pixel of an object
taken from the tile where it lies farthest from a border (:mod:`maskrcnn.engine.tile_merge`), and so is
each keypoint of a model with keypoints. A model without masks (keypoint-only) cannot be tiled: its
detections have nothing to be joined by, and it is refused
(:data:`~maskrcnn.engine.inference.NO_MASKS_FOR_TILES`).

**Memory** is bounded by a batch of tiles and by the objects: an image given as a PIL image is kept in its
own mode (1.2 GB for 20,000 x 20,000 RGB) and converted to floats one tile at a time, masks are kept as
crops of their extents (:class:`~maskrcnn.structures.CroppedMasks`) until they are written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from maskrcnn.config import tiling_problem
from maskrcnn.data.image_io import pil_to_tensor
from maskrcnn.engine.tile_merge import MATCH_IOU, View, merge_tile_detections
from maskrcnn.structures import CroppedMasks

__all__ = [
    "TileImage",
    "TilingError",
    "Window",
    "checkpoint_tiling",
    "default_overlap",
    "detect_tiled",
    "image_size_of",
    "tile_windows",
    "tiling_record",
]

TileImage = Tensor | Image.Image
"""An image to tile: float ``[3, H, W]`` in 0..1, or a PIL image (converted one tile at a time)."""


def default_overlap(size: int) -> int:
    """The overlap used when none is given: a quarter of the tile."""
    return size // 4


class TilingError(ValueError):
    """Tile settings that do not fit the checkpoint (an overlap for a model trained on whole images)."""


def tiling_record(tile: int | None, overlap: int | None) -> dict[str, Any]:
    """What a checkpoint's ``extra`` records of the tiles its model was validated on (``eval.tile``):
    ``{"tile": {"size", "overlap"}}``, or nothing for whole images; read by :func:`checkpoint_tiling`."""
    if tile is None:
        return {}
    return {"tile": {"size": tile, "overlap": default_overlap(tile) if overlap is None else overlap}}


def checkpoint_tiling(
    tile: int | str | None, overlap: int | None, extra: dict[str, Any]
) -> tuple[int | None, int | None]:
    """The tiling to apply a checkpoint with: ``tile`` ``"checkpoint"`` takes the tiles it was validated
    on (its ``extra["tile"]``, written by training with ``eval.tile``; ``overlap`` still overrides), or
    none for a model trained on whole images; else ``(tile, overlap)`` as given."""
    if tile != "checkpoint":
        return (None if tile is None else int(tile)), overlap
    trained = extra.get("tile")
    if not isinstance(trained, dict) or not trained.get("size"):
        if overlap is not None:
            raise TilingError(
                "a tile overlap without tiles: the checkpoint was not trained on tiles, give a tile size"
            )
        return None, None
    return int(trained["size"]), overlap if overlap is not None else trained.get("overlap")


@dataclass(frozen=True)
class Window:
    """A tile: rows ``top..bottom - 1`` and columns ``left..right - 1`` of an image of ``image_size``."""

    top: int
    left: int
    bottom: int
    right: int
    image_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def depth(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """int64 ``[len(ys), len(xs)]``: how far each pixel lies inside the tile, in pixels to its nearest
        border inside the image (the image's own border does not count); -1 outside the tile."""
        height, width = self.image_size
        far = np.int64(height + width)  # farther than any pixel from any border
        dy = np.full(len(ys), far, dtype=np.int64)
        if self.top > 0:
            dy = np.minimum(dy, ys - self.top)
        if self.bottom < height:
            dy = np.minimum(dy, self.bottom - 1 - ys)
        dx = np.full(len(xs), far, dtype=np.int64)
        if self.left > 0:
            dx = np.minimum(dx, xs - self.left)
        if self.right < width:
            dx = np.minimum(dx, self.right - 1 - xs)
        dy = np.where((ys >= self.top) & (ys < self.bottom), dy, -1)
        dx = np.where((xs >= self.left) & (xs < self.right), dx, -1)
        return np.minimum(dy[:, None], dx[None, :])


def _spans(length: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Start and end of the tiles along one side: as few as give every neighbour ``overlap`` shared
    pixels, spread evenly from one end to the other (so each overlap is at least ``overlap``)."""
    if length <= size:
        return [(0, length)]
    count = math.ceil((length - size) / (size - overlap)) + 1
    return [
        (start, start + size) for start in (round(k * (length - size) / (count - 1)) for k in range(count))
    ]


def tile_windows(height: int, width: int, *, size: int, overlap: int) -> list[Window]:
    """The tiles covering an ``height x width`` image, row by row."""
    problem = tiling_problem(size, overlap)
    if problem:
        raise ValueError(f"tile {size}, overlap {overlap}: {problem}")
    rows, columns = _spans(height, size, overlap), _spans(width, size, overlap)
    return [
        Window(top, left, bottom, right, (height, width)) for top, bottom in rows for left, right in columns
    ]


def image_size_of(image: TileImage) -> tuple[int, int]:
    """``(H, W)`` of a float ``[3, H, W]`` tensor or a PIL image."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    return int(image.shape[-2]), int(image.shape[-1])


def _tile(image: TileImage, window: Window) -> Tensor:
    """float ``[3, h, w]``: the tile's pixels."""
    if isinstance(image, Image.Image):
        return pil_to_tensor(image.crop((window.left, window.top, window.right, window.bottom)))
    return image[:, window.top : window.bottom, window.left : window.right]


def detect_tiled(
    detect: Callable[[list[Tensor]], list[dict[str, Any]]],
    image: TileImage,
    *,
    size: int,
    overlap: int | None = None,
    batch_size: int = 1,
    match_iou: float = MATCH_IOU,
    min_score: float = 0.0,
    on_tiles: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Detect in ``image`` tile by tile and merge the tiles' detections (see the module docstring).

    Args:
        detect: the model on a list of float ``[3, h, w]`` tiles (on the CPU; it moves them), per tile
            ``boxes`` float ``[D, 4]`` (tile pixels), ``labels`` int64 ``[D]``, ``scores`` float ``[D]``,
            ``masks`` :class:`~maskrcnn.structures.CroppedMasks` of the tile's size and, from a model
            with keypoints, ``keypoints`` ``[D, K, 3]`` (tile pixels) and ``keypoints_scores`` ``[D, K]``.
        image: float ``[3, H, W]`` in 0..1, or a PIL image of any mode (converted tile by tile).
        size: tile side in pixels.
        overlap: pixels neighbouring tiles share at least (``None``: :func:`default_overlap`).
        batch_size: tiles per call of ``detect``.
        match_iou: see :data:`MATCH_IOU`.
        min_score: leave out the tiles' detections scoring lower (merging fewer views is faster): for
            results kept from a score ``t`` up, views under ``DECIDING_SCORE * t`` would decide no pixel
            and no label of them (:mod:`maskrcnn.engine.tile_merge`).
        on_tiles: called with ``(tiles done, tiles in all)`` after each batch (a progress bar).

    Returns:
        ``boxes`` float ``[D, 4]``, ``labels`` int64 ``[D]``, ``scores`` float ``[D]`` (highest first) in
        image pixels, ``masks``: :class:`~maskrcnn.structures.CroppedMasks` of the image's size, and
        with keypoints ``keypoints`` ``[D, K, 3]`` ``(x, y, 1)`` image pixels and ``keypoints_scores``
        ``[D, K]``.
    """
    height, width = image_size_of(image)
    overlap = default_overlap(size) if overlap is None else overlap
    windows = tile_windows(height, width, size=size, overlap=overlap)
    views: list[View] = []
    num_keypoints = 0
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        outputs = detect([_tile(image, window) for window in batch])
        for index, (window, output) in enumerate(zip(batch, outputs, strict=True)):
            if "keypoints" in output:
                num_keypoints = int(output["keypoints"].shape[1])
            views.extend(v for v in _views(start + index, window, output) if v.score >= min_score)
        if on_tiles is not None:
            on_tiles(min(start + batch_size, len(windows)), len(windows))
    return merge_tile_detections(views, windows, match_iou=match_iou, num_keypoints=num_keypoints)


def _views(tile: int, window: Window, output: dict[str, Any]) -> list[View]:
    """A tile's detections moved to image coordinates (keypoints: ``x, y, score``)."""
    shift = torch.tensor([window.left, window.top, window.left, window.top], dtype=torch.float32)
    boxes = output["boxes"].float().cpu() + shift
    masks: CroppedMasks = output["masks"].cpu()
    points = None
    if "keypoints" in output:
        points = output["keypoints"].detach().to("cpu", torch.float32).clone()
        points[..., 0] += window.left
        points[..., 1] += window.top
        points[..., 2] = output["keypoints_scores"].detach().to("cpu", torch.float32)
        points = points.numpy()
    views = []
    for k, (crop, (y, x)) in enumerate(masks):
        if not crop.numel():
            continue  # a detection without a pixel above the mask threshold is no object to merge
        views.append(
            View(
                tile=tile,
                label=int(output["labels"][k]),
                score=float(output["scores"][k]),
                box=boxes[k],
                crop=crop.numpy(),
                origin=(y + window.top, x + window.left),
                keypoints=None if points is None else points[k],
            )
        )
    return views
