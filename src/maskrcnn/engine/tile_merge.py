"""Merging the detections of overlapping tiles into objects (:mod:`maskrcnn.engine.tiling` cuts the
image and runs the model), using the masks, not only the boxes.

Neighbouring tiles share ``overlap`` pixels or more: an object inside a shared strip is seen by both
tiles, an object across a tile's border is seen cut by one tile and (whole or cut) by the next. Each
detection of a tile is a *view*; a view is *cut* when its mask reaches a border of its tile inside the
image. Views of different tiles are views of one object when:

1. their masks, over the pixels both tiles see, have an IoU of at least ``match_iou`` (0.4), and they
   have one label or one of them is cut (a piece of an object is easily taken for another class: the
   lower part of a triangle for a square). Views are joined greedily, the pairs of highest IoU times
   the lower of their scores first (Mask R-CNN's NMS is per class, so a tile may see one object twice,
   as two classes: its weaker detection must not take the place of its first), and never two views of
   one tile (the model's own NMS already separated those);
2. an object of several views, each of them its tile's second look at what the tile gave another
   object (mask IoU 0.5 with a higher-scoring view of the tile: one object kept as two classes by the
   per-class NMS), is that object again and is dropped;
3. an object whose mask has an IoU of 0.5 or more with a higher-scoring object of its label is a repeat
   of it (unless both are detections of one tile alone, as the model gave them) and is dropped;
4. an object all of whose views are cut, one of which lies mostly (half its pixels) inside a view of a
   larger object that scores at least as high, is a fragment of that object (a sliver at the edge of
   one tile, or of two tiles side by side, where the next tile sees the object whole) and is dropped.

Then, for each object:

* its score is its best view's score, its label that of the view deciding most of its pixels;
* each pixel of its mask is decided by the view, among those that saw the pixel, whose tile has the
  pixel farthest from a tile border (the image's own border does not count): a pixel near one tile's
  edge is taken from the tile where it lies inside, so a mask is cut nowhere and the halves of an
  object across a border join seamlessly. Views scoring under half of the best view's score do not
  decide pixels (a weak second look must not overwrite a confident one);
* its box is the model's box for an object seen by one tile, else its mask's extent;
* with a model that gives keypoints, each of its keypoints is taken, as its pixels are, from the deciding
  view whose tile has that keypoint farthest from a tile border (a view near its tile's edge may have
  had to guess where a keypoint beyond it lies).

Detections without masks (a keypoint-only model) cannot be joined this way: tiling refuses such models
(:data:`~maskrcnn.engine.inference.NO_MASKS_FOR_TILES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from maskrcnn.structures import CroppedMasks

if TYPE_CHECKING:
    from maskrcnn.engine.tiling import Window

__all__ = ["DECIDING_SCORE", "MATCH_IOU", "View", "merge_tile_detections"]

MATCH_IOU = 0.4
"""Mask IoU, over the pixels two tiles share, from which two detections are views of one object."""

DECIDING_SCORE = 0.5
"""Views scoring under this fraction of an object's best view do not decide its pixels or its label."""

# A mask this close to a border of its tile (pixels) is taken as cut by it: masks pasted from the
# model's 28 x 28 grid often stop a pixel or two short of where the object leaves the tile.
_CUT_MARGIN = 2

# An object of cut views is a fragment of a larger one when this fraction of one of its views' pixels
# lies inside a view of the larger one...
_FRAGMENT_COVERED = 0.5
# ... and the larger one scores at least as high as the fragment (times this).
_FRAGMENT_SCORE = 1.0

# A tile's view whose mask has this IoU with a higher-scoring view of the same tile is a second look.
_SECOND_LOOK_IOU = 0.5

# An object whose mask has this IoU with a higher-scoring object of its label (from other tiles) is a
# repeat of it.
_REPEAT_IOU = 0.5


@dataclass
class View:
    """One detection of one tile (``tile``: its index in the tiles), in image coordinates."""

    tile: int
    label: int
    score: float
    box: Tensor  # float [4] xyxy
    crop: np.ndarray  # bool [h, w], tight
    origin: tuple[int, int]  # (y0, x0)
    keypoints: np.ndarray | None = None  # float [K, 3]: x, y (image pixels), score; None: no keypoints

    @property
    def extent(self) -> tuple[int, int, int, int]:
        """``(y0, x0, y1, x1)``, ends exclusive."""
        y, x = self.origin
        return y, x, y + self.crop.shape[0], x + self.crop.shape[1]


def _intersect(a: Sequence[int], b: Sequence[int]) -> tuple[int, int, int, int] | None:
    """The intersection of two ``(y0, x0, y1, x1)`` rectangles, ``None`` when empty."""
    y0, x0, y1, x1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (y0, x0, y1, x1) if y0 < y1 and x0 < x1 else None


def _pixels(view: View, region: tuple[int, int, int, int]) -> np.ndarray:
    """The view's mask over ``region`` (inside its extent)."""
    y, x = view.origin
    return view.crop[region[0] - y : region[2] - y, region[1] - x : region[3] - x]


def _cut(view: View, window: Window) -> bool:
    """Whether the view's mask reaches (within :data:`_CUT_MARGIN` pixels) a border of its tile inside
    the image: the object may go on beyond the tile."""
    y0, x0, y1, x1 = view.extent
    height, width = window.image_size
    return (
        (window.top > 0 and y0 <= window.top + _CUT_MARGIN)
        or (window.left > 0 and x0 <= window.left + _CUT_MARGIN)
        or (window.bottom < height and y1 >= window.bottom - _CUT_MARGIN)
        or (window.right < width and x1 >= window.right - _CUT_MARGIN)
    )


@dataclass
class _Match:
    """Two views of neighbouring tiles whose masks overlap in the pixels both tiles see (``shared``):
    ``iou`` is their masks' IoU there, ``covered_i`` the fraction of view ``i``'s mask (all of it) that
    view ``j``'s mask covers (and ``covered_j`` the other way)."""

    i: int
    j: int
    iou: float
    covered_i: float
    covered_j: float


def _match(a: View, b: View, i: int, j: int, shared: tuple[int, int, int, int]) -> _Match | None:
    """The :class:`_Match` of two views, ``None`` when their masks do not meet in ``shared``."""
    inside_a = _intersect(a.extent, shared)
    inside_b = _intersect(b.extent, shared)
    both = _intersect(inside_a, inside_b) if inside_a and inside_b else None
    if both is None:
        return None
    inter = int(np.count_nonzero(_pixels(a, both) & _pixels(b, both)))
    if not inter:
        return None
    area_a = int(np.count_nonzero(_pixels(a, inside_a)))  # type: ignore[arg-type]
    area_b = int(np.count_nonzero(_pixels(b, inside_b)))  # type: ignore[arg-type]
    iou = inter / (area_a + area_b - inter)
    return _Match(i, j, iou, inter / int(np.count_nonzero(a.crop)), inter / int(np.count_nonzero(b.crop)))


def _matches(views: list[View], windows: list[Window]) -> list[_Match]:
    """The :class:`_Match` of every pair of views of overlapping tiles whose masks meet where both tiles
    see."""
    if not views:
        return []
    extents = np.array([view.extent for view in views], dtype=np.int64).reshape(-1, 4)
    tile_of = np.array([view.tile for view in views], dtype=np.int64)
    rects = np.array([(w.top, w.left, w.bottom, w.right) for w in windows], dtype=np.int64)
    members = {int(t): np.flatnonzero(tile_of == t) for t in np.unique(tile_of)}
    pairs = []
    for ta, in_a in members.items():
        # The later tiles whose windows intersect this one's.
        lo, hi = np.maximum(rects[ta, :2], rects[:, :2]), np.minimum(rects[ta, 2:], rects[:, 2:])
        for tb in np.flatnonzero((lo < hi).all(axis=1)):
            if tb <= ta or int(tb) not in members:
                continue
            in_b = members[int(tb)]
            shared = (*lo[tb].tolist(), *hi[tb].tolist())
            a, b = extents[in_a][:, None], extents[in_b][None]
            # The two extents meet inside the shared pixels.
            meet_lo = np.maximum(np.maximum(a[..., :2], b[..., :2]), lo[tb])
            meet_hi = np.minimum(np.minimum(a[..., 2:], b[..., 2:]), hi[tb])
            for i, j in zip(*np.nonzero((meet_lo < meet_hi).all(axis=-1)), strict=True):
                va, vb = int(in_a[i]), int(in_b[j])
                found = _match(views[va], views[vb], va, vb, shared)  # type: ignore[arg-type]
                if found is not None:
                    pairs.append(found)
    return pairs


def _groups(views: list[View], windows: list[Window], match_iou: float) -> list[list[int]]:
    """The views joined into objects (see the module docstring), at most one view per tile in an object.

    First, views are joined greedily when their IoU over the shared pixels is at least ``match_iou``,
    the pairs of highest IoU times the lower score first: of one label, or of any when one of them is
    cut by its tile's border. Then an object all of whose views are cut, one of which lies mostly
    (:data:`_FRAGMENT_COVERED` of its pixels) inside a view of a larger object, is a fragment of that
    object, and is dropped.
    """
    parent = list(range(len(views)))
    tiles = [{view.tile} for view in views]
    cut = [_cut(view, windows[view.tile]) for view in views]

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> bool:
        ri, rj = root(i), root(j)
        if ri == rj or tiles[ri] & tiles[rj]:
            return False
        parent[rj] = ri
        tiles[ri] |= tiles[rj]
        return True

    matches = _matches(views, windows)
    # Confident pairs first: a tile's second, weaker detection of an object (Mask R-CNN's NMS is per
    # class, so one object may come twice, as two classes) must not take the place of its first.
    weight = [min(views[m.i].score, views[m.j].score) * m.iou for m in matches]
    for k in sorted(range(len(matches)), key=lambda k: (-weight[k], matches[k].i, matches[k].j)):
        m = matches[k]
        if m.iou >= match_iou and (views[m.i].label == views[m.j].label or cut[m.i] or cut[m.j]):
            join(m.i, m.j)
    # An object all of whose views are cut, one of which lies mostly inside a view of a larger object,
    # is a fragment of that object (a sliver at the edge of one tile, or of two
    # tiles side by side, where the next tile sees the object whole).
    group = [root(i) for i in range(len(views))]
    all_cut: dict[int, bool] = {}
    largest: dict[int, int] = {}
    best: dict[int, float] = {}
    for i, g in enumerate(group):
        all_cut[g] = all_cut.get(g, True) and cut[i]
        largest[g] = max(largest.get(g, 0), int(np.count_nonzero(views[i].crop)))
        best[g] = max(best.get(g, 0.0), views[i].score)
    fragments = set()
    for m in matches:
        for piece, covered, other in ((m.i, m.covered_i, m.j), (m.j, m.covered_j, m.i)):
            gp, go = group[piece], group[other]
            if (
                gp != go
                and all_cut[gp]
                and covered >= _FRAGMENT_COVERED
                and largest[go] > largest[gp]
                and best[go] >= _FRAGMENT_SCORE * best[gp]  # a weak detection hides no confident one
            ):
                fragments.add(gp)
    # An object of several views each of which is its tile's second look at something that tile gave
    # another object (Mask R-CNN's per-class NMS may keep one object as two classes) is that object
    # again, and is dropped; a single view stays, as the model said it.
    second = _second_looks(views)
    size = {g: len(tiles[g]) for g in set(group)}
    seconds = {g for g in set(group) if size[g] > 1}
    for i, g in enumerate(group):
        if not second[i]:
            seconds.discard(g)
    dropped = {i for i, g in enumerate(group) if g in fragments or g in seconds}
    groups: dict[int, list[int]] = {}
    for i in range(len(views)):
        if i not in dropped:
            groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _second_looks(views: list[View]) -> list[bool]:
    """Per view, whether a higher-scoring view of its tile has a mask of IoU at least
    :data:`_SECOND_LOOK_IOU` with its own."""
    second = [False] * len(views)
    by_tile: dict[int, list[int]] = {}
    for i, view in enumerate(views):
        by_tile.setdefault(view.tile, []).append(i)
    for members in by_tile.values():
        members.sort(key=lambda i: -views[i].score)
        for n, i in enumerate(members):
            for j in members[n + 1 :]:
                if second[j]:
                    continue
                a, b = views[i], views[j]
                both = _intersect(a.extent, b.extent)
                if both is None:
                    continue
                inter = int(np.count_nonzero(_pixels(a, both) & _pixels(b, both)))
                union = int(np.count_nonzero(a.crop)) + int(np.count_nonzero(b.crop)) - inter
                second[j] = inter >= _SECOND_LOOK_IOU * union
    return second


def _deciding(members: list[View]) -> list[View]:
    """The views of an object that decide its pixels, label and keypoints: those scoring at least
    :data:`DECIDING_SCORE` times its best view."""
    best = max(view.score for view in members)
    return [view for view in members if view.score >= DECIDING_SCORE * best]


def _joined_keypoints(deciding: list[View], windows: list[Window]) -> np.ndarray:
    """float ``[K, 3]``: each keypoint from the view whose tile has it farthest from a tile border
    (ties: the first of ``deciding``)."""
    height, width = windows[0].image_size
    points = np.stack([view.keypoints for view in deciding])  # type: ignore[misc]  # [V, K, 3]
    # The pixel each keypoint lies in (continuous coordinates: pixel x covers x .. x + 1).
    xs = np.clip(np.floor(points[..., 0]), 0, width - 1).astype(np.int64)
    ys = np.clip(np.floor(points[..., 1]), 0, height - 1).astype(np.int64)
    depth = np.stack(
        [
            windows[view.tile].depth(ys[v], xs[v]).diagonal()  # [K]: keypoint k's own pixel
            for v, view in enumerate(deciding)
        ]
    )
    chosen = depth.argmax(axis=0)  # [K]
    return points[chosen, np.arange(points.shape[1])]


def _join(members: list[View], windows: list[Window]) -> tuple[np.ndarray, tuple[int, int], View]:
    """One object's mask from its views (the pixel rule of the module docstring): a tight bool crop, its
    origin, and the view that decided most of its pixels."""
    deciding = _deciding(members)
    extents = np.array([view.extent for view in deciding])
    y0, x0 = extents[:, :2].min(axis=0)
    y1, x1 = extents[:, 2:].max(axis=0)
    ys, xs = np.arange(y0, y1), np.arange(x0, x1)
    best_depth = np.full((len(ys), len(xs)), -1, dtype=np.int64)
    decider = np.full((len(ys), len(xs)), -1, dtype=np.int64)
    mask = np.zeros((len(ys), len(xs)), dtype=bool)
    for k, view in enumerate(deciding):
        depth = windows[view.tile].depth(ys, xs)
        # The view's mask over the whole extent (False outside its own extent, which is inside its tile).
        placed = np.zeros_like(mask)
        vy0, vx0, vy1, vx1 = view.extent
        placed[vy0 - y0 : vy1 - y0, vx0 - x0 : vx1 - x0] = view.crop
        closer = depth > best_depth
        mask[closer] = placed[closer]
        decider[closer] = k
        best_depth = np.maximum(best_depth, depth)
    counts = np.bincount(decider[mask], minlength=len(deciding))
    main = deciding[int(counts.argmax())] if mask.any() else deciding[0]
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return np.zeros((0, 0), dtype=bool), (0, 0), main
    return (
        mask[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1],
        (int(y0 + rows[0]), int(x0 + columns[0])),
        main,
    )


def _without_repeats(
    crops: list[np.ndarray],
    origins: list[tuple[int, int]],
    labels: list[int],
    scores: list[float],
    tiles: list[int],
) -> list[int]:
    """The objects to keep, highest score first: an object whose mask has an IoU of at least
    :data:`_REPEAT_IOU` with a higher-scoring object of its label is that object again (seen through
    other tiles) and is left out, unless both come from one tile alone (that tile's detections are as
    the model gave them). ``tiles``: the tile of an object seen by one tile, else -1."""
    order = sorted(range(len(scores)), key=lambda k: -scores[k])
    extents = np.array(
        [(y, x, y + c.shape[0], x + c.shape[1]) for c, (y, x) in zip(crops, origins, strict=True)],
        dtype=np.int64,
    ).reshape(-1, 4)
    areas = [int(np.count_nonzero(c)) for c in crops]
    kept: list[int] = []
    for k in order:
        if kept:
            others = np.array(kept)
            lo = np.maximum(extents[others, :2], extents[k, :2])
            hi = np.minimum(extents[others, 2:], extents[k, 2:])
            near = others[(lo < hi).all(axis=1)]
            if any(_repeats(k, j, crops, origins, labels, tiles, areas) for j in near):
                continue
        kept.append(k)
    return kept


def _repeats(
    k: int,
    j: int,
    crops: list[np.ndarray],
    origins: list[tuple[int, int]],
    labels: list[int],
    tiles: list[int],
    areas: list[int],
) -> bool:
    """Whether object ``k`` repeats the kept object ``j`` (see :func:`_without_repeats`)."""
    if labels[k] != labels[j] or (tiles[k] == tiles[j] and tiles[k] >= 0):
        return False
    (yk, xk), (yj, xj) = origins[k], origins[j]
    ck, cj = crops[k], crops[j]
    y0, x0 = max(yk, yj), max(xk, xj)
    y1, x1 = min(yk + ck.shape[0], yj + cj.shape[0]), min(xk + ck.shape[1], xj + cj.shape[1])
    both_k = ck[y0 - yk : y1 - yk, x0 - xk : x1 - xk]
    both_j = cj[y0 - yj : y1 - yj, x0 - xj : x1 - xj]
    inter = int(np.count_nonzero(both_k & both_j))
    return inter >= _REPEAT_IOU * (areas[k] + areas[j] - inter)


def merge_tile_detections(
    views: list[View],
    windows: list[Window],
    *,
    match_iou: float = MATCH_IOU,
    num_keypoints: int = 0,
) -> dict[str, Any]:
    """The objects of an image from its tiles' detections (see the module docstring and
    :func:`detect_tiled` for the result); with ``num_keypoints`` K (every view then has its
    ``keypoints``), also ``keypoints`` ``[D, K, 3]`` ``(x, y, 1)`` and ``keypoints_scores`` ``[D, K]``."""
    image_size = windows[0].image_size if windows else (0, 0)
    boxes, labels, scores, crops, origins, tiles, points = [], [], [], [], [], [], []
    for group in _groups(views, windows, match_iou):
        members = [views[i] for i in group]
        if len(members) == 1:
            main = members[0]
            crop, origin, box = main.crop, main.origin, main.box
            keypoints = main.keypoints
        else:
            crop, origin, main = _join(members, windows)
            if not crop.size:
                continue
            y, x = origin
            box = torch.tensor([x, y, x + crop.shape[1], y + crop.shape[0]], dtype=torch.float32)
            keypoints = _joined_keypoints(_deciding(members), windows) if num_keypoints else None
        points.append(keypoints)
        boxes.append(box)
        labels.append(main.label)
        scores.append(max(view.score for view in members))
        crops.append(np.ascontiguousarray(crop))
        origins.append(origin)
        tiles.append(main.tile if len(members) == 1 else -1)
    order = _without_repeats(crops, origins, labels, scores, tiles)
    merged = {
        "boxes": torch.stack([boxes[k] for k in order]) if order else torch.zeros((0, 4)),
        "labels": torch.tensor([labels[k] for k in order], dtype=torch.int64),
        "scores": torch.tensor([scores[k] for k in order], dtype=torch.float32),
        "masks": CroppedMasks(
            [torch.from_numpy(crops[k]) for k in order], [origins[k] for k in order], image_size
        ),
    }
    if num_keypoints:
        kept = np.array([points[k] for k in order], dtype=np.float32).reshape(len(order), num_keypoints, 3)
        keypoints = torch.from_numpy(kept)
        merged["keypoints_scores"] = keypoints[..., 2].clone()
        keypoints[..., 2] = 1.0  # the model's form: (x, y, 1)
        merged["keypoints"] = keypoints
    return merged
