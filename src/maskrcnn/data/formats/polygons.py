"""Binary masks as polygons: what the polygon formats (LabelMe, VIA, YOLO) are written from.

A mask's outline is traced by marching squares (contourpy, at the level 0.5 between the pixels' values 0
and 1): every vertex is the middle of a pixel's side, so a straight run of pixels is a straight edge and a
staircase a slanted one. Coordinates are pixel corners (pixel ``k`` spans ``[k, k + 1]``), the convention
of :func:`maskrcnn.ops.polygons_to_mask` (pycocotools), which rasterises the traced polygons back to the
same mask, pixel for pixel (``tolerance=0``).

Polygons cannot have holes in these formats, nor several parts in VIA and YOLO: a hole is joined to the
ring around it, and a part to a near one, by a zero-width cut (out along one edge and back along it)
between their nearest vertices. pycocotools fills by parity, so a cut traversed twice adds nothing and
removes nothing: the mask stays exact. (Tools that fill a polygon's edges as well, OpenCV's ``fillPoly``
in Ultralytics, draw a cut as a line of pixels: the cuts are kept short for them.)

Simplification (``tolerance > 0``, Douglas-Peucker through shapely, keeping the rings from crossing) drops
the vertices that lie within ``tolerance`` pixels of the simplified outline: far fewer points to edit in an
annotation tool, at the cost of a pixel here and there along slanted edges (:data:`DEFAULT_TOLERANCE`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import contourpy
import numpy as np
import shapely
from torch import Tensor

from maskrcnn.structures import CroppedMasks

__all__ = ["DEFAULT_TOLERANCE", "cropped_polygons", "join_polygons", "mask_polygons"]

DEFAULT_TOLERANCE = 0.4
"""Pixels: the simplification the writers use unless told otherwise. Measured on shapes-dataset objects of
40 to 65 px and of 17 to 31 px and on ~30 px ellipses with a hole: mask IoU of the round trip 0.999 on
average, 0.988 for the worst object, keeping 13 to 29 % of the traced vertices (a 50 px circle: 240 traced,
61 kept). 0.45 keeps a fifth fewer, but small objects fall to IoU 0.97; at 0.5 single-pixel steps are cut
off (IoU 0.86 for the worst); at 0.3 the round trip is still exact, with 1.3 to 1.7 times the vertices."""

# pycocotools rounds every vertex to a 1/5-pixel grid, half up, before it rasterises (``rleFrPoly``: scale 5,
# ``(int)(5 * v + 0.5)``). A traced vertex at a pixel's centre line, ``k + 0.5``, lies exactly on a rounding
# boundary: written as text (YOLO's coordinates divided by the image size) and read back a hair lower, it
# would round down and move the outline. Every vertex is moved to the middle of its rounding cell, the grid
# point itself (``k + 0.5`` to ``k + 0.6``; pixel corners stay): pycocotools sees the same grid points, now
# with a margin of 0.1 px either way.
_GRID = 5.0

# The nearest-vertex search compares vertices of one ring with those of another in blocks of this many
# pairs, so that a large outline never needs a huge distance matrix at once.
_BLOCK = 1 << 20


def _traced_parts(crop: np.ndarray) -> list[list[np.ndarray]]:
    """The parts of a bool ``[h, w]`` mask, each ``[outer ring, *holes]``: float64 ``[n, 2]`` ``(x, y)``
    open rings (the first vertex not repeated) in pixel-corner coordinates of the crop."""
    # Padded by a pixel of background so that outlines along the crop's border close.
    padded = np.pad(crop.astype(np.float64), 1)
    generator = contourpy.contour_generator(z=padded, fill_type=contourpy.FillType.OuterOffset)
    points, offsets = generator.filled(0.5, 1.5)
    parts = []
    for part_points, part_offsets in zip(points, offsets, strict=True):
        # contourpy's coordinates are indices of the padded array, whose pixel k + 1 is the crop's pixel k
        # with its centre at k + 0.5: a padded index minus 0.5 is a pixel-corner coordinate. (b - 1: each
        # ring ends with its first vertex again.)
        parts.append([part_points[a : b - 1] - 0.5 for a, b in pairwise(part_offsets)])
    return parts


def _simplified(rings: list[np.ndarray], tolerance: float) -> list[np.ndarray]:
    """A part's rings simplified together (the holes stay inside the outer ring and apart from each other);
    the part as traced when simplification would take a quarter of its area away (an object of a few
    pixels, which a tolerance of a pixel or more reduces to a sliver that covers no pixel centre)."""
    polygon = shapely.Polygon(rings[0], rings[1:])
    simple = shapely.simplify(polygon, tolerance, preserve_topology=True)
    if not isinstance(simple, shapely.Polygon) or simple.area < 0.75 * polygon.area:
        return rings
    out = [np.asarray(simple.exterior.coords)[:-1]]
    out += [np.asarray(hole.coords)[:-1] for hole in simple.interiors]
    return [ring for ring in out if len(ring) >= 3]


def _nearest_pair(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """``(i, j)`` with ``a[i]`` and ``b[j]`` the closest pair of vertices (``[n, 2]`` and ``[m, 2]``)."""
    if len(a) < len(b):
        j, i = _nearest_pair(b, a)
        return i, j
    # Only the vertices of the larger ring that can beat the distance from b[0] to it are compared.
    bound = float(np.sqrt(((a - b[0]) ** 2).sum(1).min()))
    near = np.nonzero(((a >= b.min(0) - bound) & (a <= b.max(0) + bound)).all(1))[0]
    best, pair = math.inf, (0, 0)
    step = max(1, _BLOCK // len(b))
    for start in range(0, len(near), step):
        block = a[near[start : start + step]]
        distances = ((block[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        i, j = divmod(int(np.argmin(distances)), len(b))
        if distances[i, j] < best:
            best, pair = float(distances[i, j]), (int(near[start + i]), j)
    return pair


def _box_distances(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """How far a ring is from each of others, told from their boxes (``[4]`` and ``[4, R]``: x0, y0, x1,
    y1): the gap between boxes apart, and for boxes that overlap (a hole inside its ring) the nearest pair
    of their sides."""
    x0, y0, x1, y1 = boxes
    dx = np.maximum(np.maximum(x0 - box[2], box[0] - x1), 0.0)
    dy = np.maximum(np.maximum(y0 - box[3], box[1] - y1), 0.0)
    sides = np.minimum(np.abs(x0 - box[0]), np.abs(x1 - box[2]))
    sides = np.minimum(sides, np.minimum(np.abs(y0 - box[1]), np.abs(y1 - box[3])))
    return np.where((dx > 0) | (dy > 0), np.hypot(dx, dy), sides)


def _spanning_tree(rings: list[np.ndarray]) -> list[tuple[int, int]]:
    """``(parent, child)`` pairs joining every ring to ring 0: Prim's tree over :func:`_box_distances`, so
    that each ring is cut to a near one. Boxes, not vertices, are compared: a noisy mask of 10,000 specks
    costs 10,000^2 box distances (about 2 s), where comparing every vertex with every other would take
    minutes."""
    boxes = np.stack([np.concatenate([ring.min(0), ring.max(0)]) for ring in rings], axis=1)
    joined = np.zeros(len(rings), dtype=bool)
    joined[0] = True
    best = _box_distances(boxes[:, 0], boxes)
    parent = np.zeros(len(rings), dtype=np.int64)
    edges = []
    for _ in range(len(rings) - 1):
        child = int(np.argmin(np.where(joined, np.inf, best)))
        edges.append((int(parent[child]), child))
        joined[child] = True
        distances = _box_distances(boxes[:, child], boxes)
        closer = distances < best
        best = np.where(closer, distances, best)
        parent = np.where(closer, child, parent)
    return edges


def _joined(rings: list[np.ndarray]) -> np.ndarray:
    """Rings (an outer ring and its holes, or the parts of an object) as one ring, each joined to its parent
    in :func:`_spanning_tree` by a zero-width cut between their nearest vertices: around the parent to
    ``parent[i]``, across to ``child[j]``, all around the child back to ``child[j]``, back across to
    ``parent[i]`` and on around the parent (``parent[:i + 1] + child[j:] + child[:j + 1] + parent[i:]``,
    done for every child at once)."""
    if len(rings) == 1:
        return rings[0]
    attached: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (ring, vertex) -> [(child, vertex)]
    for parent, child in _spanning_tree(rings):
        i, j = _nearest_pair(rings[parent], rings[child])
        attached.setdefault((parent, i), []).append((child, j))
    out: list[np.ndarray] = []
    # Depth first without recursion (a mask can have thousands of parts). A frame walks one ring: its
    # vertex order, the position reached, and the parent's vertex to return to at the end.
    root = list(range(len(rings[0])))
    stack: list[tuple[int, list[int], int, np.ndarray | None]] = [(0, root, 0, None)]
    while stack:
        k, order, position, back = stack.pop()
        if position == len(order):
            if back is not None:
                out.append(back)
            continue
        vertex = rings[k][order[position]]
        out.append(vertex)
        stack.append((k, order, position + 1, back))
        if position == len(rings[k]):
            continue  # a child's walk back at its first vertex, whose children were visited at the start
        for child, j in reversed(attached.get((k, order[position]), [])):
            n = len(rings[child])
            stack.append((child, [(j + t) % n for t in range(n + 1)], 0, vertex))
    return np.stack(out)


def _on_grid(ring: np.ndarray) -> np.ndarray:
    """Vertices moved to the middle of pycocotools' rounding cells (see ``_GRID``): the same rasterisation,
    robust to ~0.1 px of error from text formats."""
    return np.floor(ring * _GRID + 0.5) / _GRID


def _flat(ring: np.ndarray, origin: tuple[int, int]) -> list[float]:
    y0, x0 = origin
    return _on_grid(ring + np.array([x0, y0], dtype=np.float64)).reshape(-1).tolist()


def mask_polygons(
    mask: Tensor | np.ndarray, *, tolerance: float = 0.0, origin: tuple[int, int] = (0, 0)
) -> list[list[float]]:
    """The polygons of one binary mask: one per connected part, its holes joined into it by zero-width cuts.

    Args:
        mask: ``[h, w]`` (nonzero = inside): the whole image's mask, or a crop of it at ``origin``.
        tolerance: simplification in pixels (0: the traced outline, which rasterises back exactly).
        origin: ``(y0, x0)``, where the mask's pixel ``[0, 0]`` lies in the image.

    Returns:
        flat ``[x1, y1, x2, y2, ...]`` polygons in the image's pixel-corner coordinates (COCO's
        ``segmentation`` list: :func:`maskrcnn.ops.polygons_to_mask` gives their union); ``[]`` for an empty
        mask.
    """
    array = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    array = array != 0
    if not array.any():
        return []
    out = []
    for rings in _traced_parts(array):
        if tolerance > 0:
            rings = _simplified(rings, tolerance)
        out.append(_flat(_joined(rings), origin))
    return out


def join_polygons(parts: Sequence[Sequence[float]]) -> list[float]:
    """Several flat polygons (the parts of one object) as one, each joined to the others by a zero-width cut
    between nearest vertices (VIA and YOLO hold one polygon per object); ``[]`` for none."""
    if not parts:
        return []
    return _joined([np.asarray(part, dtype=np.float64).reshape(-1, 2) for part in parts]).reshape(-1).tolist()


def cropped_polygons(masks: CroppedMasks | Tensor, *, tolerance: float = 0.0) -> list[list[list[float]]]:
    """:func:`mask_polygons` of each mask: of its crop (the object's extent, not the whole image).

    Args:
        masks: :class:`~maskrcnn.structures.CroppedMasks`, or ``[N, H, W]`` (nonzero = inside).
        tolerance: see :func:`mask_polygons`.

    Returns:
        per mask its parts' polygons, in image coordinates (``[]`` for an empty mask).
    """
    if isinstance(masks, Tensor):
        masks = CroppedMasks.from_dense(masks)
    return [mask_polygons(crop, tolerance=tolerance, origin=origin) for crop, origin in masks.cpu()]
