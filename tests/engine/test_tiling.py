"""Tiled inference: the tile layout, and the merge of the tiles' views into objects, checked against
the ground truth of synthetic scenes seen through "oracle" detectors (a tile's view of each object is
the ground truth cut by the tile, possibly degraded near the tile's borders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskrcnn.config import tiling_problem
from maskrcnn.data.shapes import draw_large_scene, random_scene
from maskrcnn.engine.tiling import Window, checkpoint_tiling, detect_tiled, tile_windows, tiling_record
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
    extra = tiling_record(128, 40)
    assert extra == {"tile": {"size": 128, "overlap": 40}}
    assert tiling_record(128, None) == {"tile": {"size": 128, "overlap": 32}}
    assert tiling_record(None, None) == {}
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
    true label, and a score that grows with the part of the object the tile shows."""

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
            # More sure of what it sees more of, as a model is of a whole object than of a sliver.
            visible = seen[keep].flatten(1).sum(1) / self.dense[keep].flatten(1).sum(1)
            scores = 0.5 + 0.49 * visible
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
