"""Tiled inference: the tile layout, and the merge of the tiles' views into objects, checked against
the ground truth of synthetic scenes seen through "oracle" detectors (a tile's view of each object is
the ground truth cut by the tile, possibly degraded near the tile's borders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskrcnn.data.shapes import draw_large_scene, random_scene
from maskrcnn.engine.tiling import (
    Window,
    _View,
    checkpoint_tiling,
    detect_tiled,
    merge_tile_detections,
    tile_windows,
    tiling_problem,
)
from maskrcnn.structures import CroppedMasks


@pytest.mark.parametrize(
    ("height", "width", "size", "overlap"),
    [(1000, 700, 128, 32), (128, 128, 128, 32), (100, 300, 128, 0), (257, 129, 128, 64), (40, 50, 64, 16)],
)
def test_tiles_cover_the_image_with_full_size_tiles_and_at_least_the_overlap(height, width, size, overlap):
    windows = tile_windows(height, width, size=size, overlap=overlap)
    covered = torch.zeros((height, width), dtype=torch.int64)
    for w in windows:
        assert 0 <= w.top < w.bottom <= height
        assert 0 <= w.left < w.right <= width
        # Full tiles wherever the image has room: every tile is scaled alike by the model's transform.
        assert w.size == (min(size, height), min(size, width))
        covered[w.top : w.bottom, w.left : w.right] += 1
    assert covered.min() >= 1
    tops = sorted({w.top for w in windows})
    bottoms = sorted({w.bottom for w in windows})
    for (_, b0), t1 in zip(zip(tops, bottoms, strict=True), tops[1:], strict=False):
        assert b0 - t1 >= overlap  # neighbours share at least the overlap
    assert len(tops) == max(1, int(np.ceil((height - size) / (size - overlap))) + 1)


def test_tiling_settings_are_checked():
    assert tiling_problem(16, None) is not None
    assert tiling_problem(128, 65) is not None
    assert tiling_problem(128, 64) is None
    with pytest.raises(ValueError, match="overlap"):
        tile_windows(100, 100, size=64, overlap=40)
    extra = {"tile": {"size": 128, "overlap": 40}}
    assert checkpoint_tiling("checkpoint", None, extra) == (128, 40)
    assert checkpoint_tiling("checkpoint", 16, extra) == (128, 16)
    assert checkpoint_tiling("checkpoint", None, {}) == (None, None)
    assert checkpoint_tiling(None, None, extra) == (None, None)
    assert checkpoint_tiling(256, None, extra) == (256, None)
    with pytest.raises(ValueError, match="not trained on tiles"):
        checkpoint_tiling("checkpoint", 16, {})


def scene(size: int, count: int, seed: int) -> tuple[torch.Tensor, CroppedMasks, torch.Tensor]:
    """A crowded scene of shapes 40..65 pixels across, anywhere (many cut by tile borders)."""
    layout = random_scene(
        np.random.default_rng(seed),
        height=size,
        width=size,
        min_shapes=count,
        max_shapes=count,
        min_size=20,
        max_size=32,
        buffer=0,
    )
    picture, masks, labels = draw_large_scene(layout, height=size, width=size)
    image = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).float() / 255
    return image, masks, labels


class Oracle:
    """A detector that sees each tile's ground truth: per object present, its mask cut by the tile
    (``erode`` pixels near the tile's inner borders lost, as a model's mask may be poor there), the
    true label and a score."""

    def __init__(self, masks: CroppedMasks, labels: torch.Tensor, windows: list[Window], erode: int = 0):
        self.dense, self.labels, self.erode = masks.dense().contiguous(), labels, erode
        self.windows = iter(windows)
        self.calls: list[int] = []

    def __call__(self, tiles: list[torch.Tensor]) -> list[dict]:
        self.calls.append(len(tiles))
        outputs = []
        for tile in tiles:
            w = next(self.windows)
            assert tuple(tile.shape[-2:]) == w.size
            seen = self.dense[:, w.top : w.bottom, w.left : w.right].clone()
            height, width = w.image_size
            e = self.erode
            if e:
                if w.top > 0:
                    seen[:, :e] = False
                if w.left > 0:
                    seen[:, :, :e] = False
                if w.bottom < height:
                    seen[:, -e:] = False
                if w.right < width:
                    seen[:, :, -e:] = False
            keep = seen.flatten(1).any(1)
            crops = CroppedMasks.from_dense(seen[keep])
            scores = torch.linspace(0.99, 0.6, int(keep.sum()))
            outputs.append(
                {"boxes": crops.boxes(), "labels": self.labels[keep], "scores": scores, "masks": crops}
            )
        return outputs


def as_sorted_rles(masks: CroppedMasks) -> list[str]:
    return sorted(rle["counts"] for rle in masks.rle())


# Views lose up to 2 pixels at the tiles' inner borders, as a model's pasted masks may.
@pytest.mark.parametrize(("overlap", "erode"), [(32, 0), (64, 0), (48, 2)])
def test_every_object_comes_out_once_with_its_whole_mask(overlap, erode):
    # Shapes up to 65 pixels on 128-pixel tiles: some lie inside an overlap (seen whole by two tiles),
    # most cross a border, and with an overlap of 32 many are cut by every tile that sees them.
    image, masks, labels = scene(640, 150, seed=3)
    windows = tile_windows(640, 640, size=128, overlap=overlap)
    oracle = Oracle(masks, labels, windows, erode=erode)
    merged = detect_tiled(oracle, image, size=128, overlap=overlap, batch_size=5)
    assert oracle.calls == [5] * (len(windows) // 5) + ([len(windows) % 5] if len(windows) % 5 else [])
    # One detection per object, each mask the object's own, pixel for pixel (with eroded views, from
    # the tile where each pixel lies far enough from the border).
    assert len(merged["scores"]) == len(masks)
    assert as_sorted_rles(merged["masks"]) == as_sorted_rles(masks)
    assert sorted(merged["labels"].tolist()) == sorted(labels.tolist())
    assert torch.all(merged["scores"][:-1] >= merged["scores"][1:])
    # Objects seen by one tile keep that tile's box; joined ones get their mask's extent.
    got = {rle["counts"]: box for rle, box in zip(merged["masks"].rle(), merged["boxes"], strict=True)}
    for rle, box in zip(masks.rle(), masks.boxes(), strict=True):
        torch.testing.assert_close(got[rle["counts"]], box)


def test_objects_cut_by_every_tile_join_across_many_tiles():
    # One long bar crosses six tiles: every view is cut, and only the joined pieces make the bar.
    dense = torch.zeros((1, 100, 600), dtype=torch.bool)
    dense[0, 40:60, 10:590] = True
    masks, labels = CroppedMasks.from_dense(dense), torch.tensor([2])
    windows = tile_windows(100, 600, size=128, overlap=32)
    assert len(windows) == 6
    merged = detect_tiled(
        Oracle(masks, labels, windows, erode=3), torch.zeros(3, 100, 600), size=128, overlap=32
    )
    assert len(merged["scores"]) == 1
    assert torch.equal(merged["masks"].dense(), dense)
    torch.testing.assert_close(merged["boxes"], torch.tensor([[10.0, 40.0, 590.0, 60.0]]))


def view(tile: int, label: int, score: float, dense: torch.Tensor, window: Window) -> _View:
    """A hand-made view: the part of an image-size mask inside the tile."""
    inside = torch.zeros_like(dense)
    inside[window.top : window.bottom, window.left : window.right] = dense[
        window.top : window.bottom, window.left : window.right
    ]
    crops = CroppedMasks.from_dense(inside[None])
    (crop, origin), box = next(iter(crops)), crops.boxes()[0]
    return _View(tile=tile, label=label, score=score, box=box, crop=crop.numpy(), origin=origin)


def two_tiles() -> list[Window]:
    windows = tile_windows(64, 112, size=64, overlap=16)
    assert [(w.left, w.right) for w in windows] == [(0, 64), (48, 112)]
    return windows


def test_a_piece_taken_for_another_class_still_joins_its_object():
    windows = two_tiles()
    dense = torch.zeros((64, 112), dtype=torch.bool)
    dense[20:40, 30:90] = True  # across the border of both tiles
    views = [view(0, 3, 0.9, dense, windows[0]), view(1, 1, 0.8, dense, windows[1])]
    merged = merge_tile_detections(views, windows)
    assert len(merged["scores"]) == 1
    assert torch.equal(merged["masks"].mask(0), dense)
    assert merged["scores"].tolist() == pytest.approx([0.9])
    # Two objects of different classes that are whole in their tiles stay apart, however close.
    left, right = torch.zeros_like(dense), torch.zeros_like(dense)
    left[10:30, 50:56], right[10:30, 56:62] = True, True
    apart = merge_tile_detections(
        [view(0, 1, 0.9, left, windows[0]), view(1, 2, 0.9, right, windows[1])], windows
    )
    assert len(apart["scores"]) == 2


def test_two_views_of_one_tile_are_never_one_object():
    windows = two_tiles()
    a, b = torch.zeros((64, 112), dtype=torch.bool), torch.zeros((64, 112), dtype=torch.bool)
    a[10:30, 49:54] = True
    b[10:30, 55:60] = True  # two objects side by side inside the overlap (columns 48..63)
    # Tile 1 takes them for one object; tile 0 sees both: one of them joins tile 1's view, not both.
    views = [
        view(0, 1, 0.9, a, windows[0]),
        view(0, 1, 0.8, b, windows[0]),
        view(1, 1, 0.7, a | b, windows[1]),
    ]
    merged = merge_tile_detections(views, windows)
    assert len(merged["scores"]) == 2
    assert sorted(merged["scores"].tolist()) == pytest.approx([0.8, 0.9])


def test_a_weak_second_view_does_not_decide_pixels():
    windows = two_tiles()
    truth = torch.zeros((64, 112), dtype=torch.bool)
    truth[20:40, 50:62] = True  # inside the overlap (columns 48..63): both tiles see it whole
    poor = truth.clone()
    poor[20:40, 50:56] = False  # tile 1 sees it badly where it lies deeper in tile 1 than in tile 0
    poor[20:40, 56:62] = True
    strong, weak = view(0, 1, 0.9, truth, windows[0]), view(1, 1, 0.3, truth | poor, windows[1])
    merged = merge_tile_detections([strong, weak], windows)
    assert len(merged["scores"]) == 1
    assert torch.equal(merged["masks"].mask(0), truth)
    assert merged["scores"].tolist() == pytest.approx([0.9])


def test_a_sliver_at_a_tiles_edge_is_part_of_the_object_the_next_tile_sees_whole():
    windows = two_tiles()
    truth = torch.zeros((64, 112), dtype=torch.bool)
    truth[20:40, 30:62] = True  # ends 2 pixels before tile 0's right border: tile 0 sees it whole
    sliver = torch.zeros_like(truth)
    sliver[22:38, 48:50] = True  # tile 1's view: a sliver on its left border, a poor mask
    merged = merge_tile_detections(
        [view(0, 1, 0.9, truth, windows[0]), view(1, 2, 0.6, sliver, windows[1])], windows
    )
    assert len(merged["scores"]) == 1
    assert torch.equal(merged["masks"].mask(0), truth)
