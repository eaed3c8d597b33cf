"""Masks -> polygons: exact at tolerance 0 through pycocotools (holes, parts, single pixels, the image's
border), robust to the rounding of text formats, and close at the default tolerance with far fewer
vertices."""

import numpy as np
import pytest
import torch

from maskrcnn.data.formats.polygons import DEFAULT_TOLERANCE, cropped_polygons, join_polygons, mask_polygons
from maskrcnn.data.shapes import ShapesDataset
from maskrcnn.ops import polygons_to_mask
from maskrcnn.structures import CroppedMasks


def _raster(polygons, height, width):
    return polygons_to_mask(polygons, height, width).numpy().astype(bool)


def _iou(a, b):
    return float((a & b).sum() / (a | b).sum())


def _blobs(rng, height, width, discs=4, holes=3):
    """Discs of random sizes with random holes punched in: several parts, holes, parts in holes."""
    yy, xx = np.mgrid[:height, :width]
    out = np.zeros((height, width), dtype=bool)
    for _ in range(discs):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(1, 12)
        out |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    for _ in range(holes):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.5, 4)
        out &= ~((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
    return out


@pytest.mark.parametrize("kind", ["blobs", "noise"])
def test_traced_polygons_rasterise_back_exactly(kind):
    rng = np.random.default_rng(0)
    for _ in range(60):
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        if kind == "noise":  # diagonal neighbours and one-pixel holes everywhere: every saddle case
            mask = rng.random((height, width)) < rng.uniform(0.2, 0.8)
        else:
            mask = _blobs(rng, height, width)
        parts = mask_polygons(mask)
        if not mask.any():
            assert parts == []
            continue
        assert np.array_equal(_raster(parts, height, width), mask)
        # One polygon for the formats that hold one per object: the cuts change nothing either.
        assert np.array_equal(_raster([join_polygons(parts)], height, width), mask)


def test_a_hole_is_joined_into_its_ring_and_stays_a_hole():
    mask = np.zeros((12, 12), dtype=bool)
    mask[2:10, 2:10] = True
    mask[5:7, 5:7] = False
    (polygon,) = mask_polygons(mask)  # one part: the hole is inside its polygon, joined by a cut
    assert np.array_equal(_raster([polygon], 12, 12), mask)
    # The traced ring (a vertex on every pixel side: 4 x 8) and the hole's (4 x 2), and the cut's two ends
    # once more.
    assert len(polygon) // 2 == 32 + 8 + 2
    points = np.asarray(polygon).reshape(-1, 2)
    assert ((points > 4.9) & (points < 7.1)).all(1).sum() == 8 + 1  # the hole's, its first twice
    (simple,) = mask_polygons(mask, tolerance=DEFAULT_TOLERANCE)
    assert len(simple) // 2 == 8 + 4 + 2  # straight runs are single edges now, the small hole a diamond
    assert np.array_equal(_raster([simple], 12, 12), mask)


def test_parts_are_polygons_of_their_own_and_join_into_one():
    mask = np.zeros((10, 20), dtype=bool)
    mask[1:4, 1:5] = True
    mask[6:9, 12:19] = True
    parts = mask_polygons(mask)
    assert len(parts) == 2
    assert [np.array_equal(_raster([p], 10, 20), mask & (np.arange(20) < 10)) for p in parts].count(True) == 1
    joined = join_polygons(parts)
    assert len(joined) == sum(len(p) for p in parts) + 4  # the cut's two ends, twice
    assert np.array_equal(_raster([joined], 10, 20), mask)
    assert join_polygons([]) == []


def test_one_pixel_objects_survive_any_tolerance():
    for tolerance in (0.0, DEFAULT_TOLERANCE, 1.0, 5.0):
        mask = np.zeros((5, 5), dtype=bool)
        mask[2, 3] = True
        (polygon,) = mask_polygons(mask, tolerance=tolerance)
        # The diamond through the middles of the pixel's sides (on pycocotools' grid: see below).
        assert polygon == [3.0, 2.6, 3.6, 2.0, 4.0, 2.6, 3.6, 3.0]
        assert np.array_equal(_raster([polygon], 5, 5), mask)
        pair = np.zeros((5, 5), dtype=bool)
        pair[1, 1] = pair[2, 2] = True  # diagonal neighbours: two parts
        assert np.array_equal(_raster(mask_polygons(pair, tolerance=tolerance), 5, 5), pair)


def test_objects_on_the_border_stay_inside_the_image():
    mask = np.ones((6, 9), dtype=bool)
    mask[2:4, 3:5] = False
    parts = mask_polygons(mask)
    xs = [v for p in parts for v in p[0::2]]
    ys = [v for p in parts for v in p[1::2]]
    assert (min(xs), max(xs), min(ys), max(ys)) == (0.0, 9.0, 0.0, 6.0)  # pixel corners: the image's edges
    assert np.array_equal(_raster(parts, 6, 9), mask)
    corner = np.zeros((6, 9), dtype=bool)
    corner[0, 8] = corner[5, 0] = True
    assert np.array_equal(_raster(mask_polygons(corner), 6, 9), corner)


def test_empty_masks_have_no_polygons():
    assert mask_polygons(np.zeros((4, 4), dtype=bool)) == []
    assert mask_polygons(torch.zeros(0, 0, dtype=torch.bool)) == []
    masks = torch.zeros(2, 8, 8, dtype=torch.uint8)
    masks[1, 2:4, 3:6] = 1
    assert cropped_polygons(masks)[0] == []


def test_vertices_survive_the_rounding_of_text_formats():
    # YOLO writes coordinates divided by the image size as decimals; read back they can be a hair off. A
    # vertex at a pixel's centre line (k + 0.5) would sit on pycocotools' rounding boundary and move: the
    # vertices lie in the middle of its 1/5-px cells instead, so errors up to 0.1 px change nothing.
    rng = np.random.default_rng(1)
    for _ in range(40):
        height, width = (int(v) for v in rng.integers(5, 50, 2))
        mask = rng.random((height, width)) < 0.5
        parts = mask_polygons(mask)
        assert all(abs(v * 5 - round(v * 5)) < 1e-9 for p in parts for v in p)  # on the 1/5-px grid
        jittered = [[v + rng.uniform(-0.09, 0.09) for v in p] for p in parts]
        assert np.array_equal(_raster(jittered, height, width), mask)


def test_crops_give_the_polygons_of_the_whole_image():
    rng = np.random.default_rng(2)
    masks = torch.from_numpy(np.stack([_blobs(rng, 30, 40) for _ in range(3)]))
    crops = CroppedMasks.from_dense(masks)
    assert crops.origins != [(0, 0)] * 3  # the crops really are offset
    for tolerance in (0.0, DEFAULT_TOLERANCE):
        whole = [mask_polygons(m, tolerance=tolerance) for m in masks]
        assert cropped_polygons(crops, tolerance=tolerance) == whole
        assert cropped_polygons(masks, tolerance=tolerance) == whole


def _iou_and_vertices(masks, tolerance):
    ious, kept, traced = [], 0, 0
    for mask, parts, parts0 in zip(
        masks, cropped_polygons(masks, tolerance=tolerance), cropped_polygons(masks), strict=True
    ):
        ious.append(_iou(_raster(parts, *mask.shape), mask.numpy().astype(bool)))
        kept += sum(len(p) for p in parts)
        traced += sum(len(p) for p in parts0)
    return ious, kept / traced


def _ellipses_with_holes(count):
    """~30 px ellipses at random angles, each with a hole."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    out = []
    for _ in range(count):
        angle, a, b = rng.uniform(0, np.pi), rng.uniform(10, 16), rng.uniform(7, 15)
        u = (xx - 24) * np.cos(angle) + (yy - 24) * np.sin(angle)
        v = (yy - 24) * np.cos(angle) - (xx - 24) * np.sin(angle)
        mask = (u / a) ** 2 + (v / b) ** 2 < 1
        r, hy, hx = rng.uniform(2, 4), 24 + rng.uniform(-3, 3), 24 + rng.uniform(-3, 3)
        out.append(mask & ~((yy - hy) ** 2 + (xx - hx) ** 2 < r * r))
    return torch.from_numpy(np.stack(out))


def _shapes_masks(**options):
    dataset = ShapesDataset(count=12, **options)
    return torch.cat([dataset[i][1]["masks"] for i in range(len(dataset))])


@pytest.mark.parametrize(
    "masks",
    [
        # The shapes dataset's objects (40 to 65 px), smaller ones (17 to 31 px), ellipses of ~30 px.
        lambda: _shapes_masks(seed=3),
        lambda: _shapes_masks(seed=4, min_size=8, max_size=15, buffer=16),
        lambda: _ellipses_with_holes(20),
    ],
    ids=["shapes", "small-shapes", "ellipses"],
)
def test_the_default_tolerance_keeps_the_masks_with_far_fewer_vertices(masks):
    masks = masks()
    ious, kept = _iou_and_vertices(masks, DEFAULT_TOLERANCE)
    assert min(ious) > 0.98
    assert np.mean(ious) > 0.995
    assert kept < 0.35  # of the traced vertices
    # Where the default sits: a larger tolerance cuts off single-pixel steps of small objects.
    assert min(_iou_and_vertices(masks, 0.5)[0]) < 0.98
