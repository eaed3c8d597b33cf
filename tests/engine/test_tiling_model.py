"""Tiled inference with a model trained for it (``tools/make_tiling_model.py``: 128-pixel crops of
crowded shapes scenes) on a larger scene than it ever saw: every object found once, with a mask as
good as when the model sees the object centred in a tile; the whole image at once loses them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from maskrcnn.data.shapes import draw_large_scene, random_scene
from maskrcnn.engine.predictor import Detections, Predictor
from maskrcnn.engine.tiling import tile_windows
from maskrcnn.structures import CroppedMasks

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiling" / "shapes-128.safetensors"
SIZE, TILE, OVERLAP = 640, 128, 32

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scene():
    layout = random_scene(
        np.random.default_rng(11),
        height=SIZE,
        width=SIZE,
        min_shapes=110,
        max_shapes=110,
        min_size=20,
        max_size=32,
        buffer=0,
    )
    return draw_large_scene(layout, height=SIZE, width=SIZE)


def ious(found: CroppedMasks, truth: CroppedMasks) -> torch.Tensor:
    """``[D, G]`` mask IoU."""
    a = found.dense().reshape(len(found), -1).float()
    b = truth.dense().reshape(len(truth), -1).float()
    inter = a @ b.T
    return inter / (a.sum(1)[:, None] + b.sum(1)[None] - inter).clamp(min=1)


def matched(detections: Detections, truth: CroppedMasks, labels: torch.Tensor) -> torch.Tensor:
    """``[D, G]``: detection ``d`` is object ``g`` (mask IoU at least 0.5, same class)."""
    same = detections.labels[:, None] == labels[None]
    return (ious(detections.mask_crops, truth) >= 0.5) & same


def test_tiles_find_each_object_once_with_a_whole_mask(scene):
    picture, truth, labels = scene
    tiled = Predictor.from_checkpoint(FIXTURE, tile=TILE, tile_overlap=OVERLAP, batch_size=8)
    detections = tiled(picture)
    hits = matched(detections, truth, labels)
    assert hits.any(0).float().mean() >= 0.9  # found
    assert (hits.sum(0) > 1).sum() <= 0.02 * len(truth)  # found once
    # Nearly every object crosses a tile border (shapes up to 65 pixels on tiles of 128).
    windows = tile_windows(SIZE, SIZE, size=TILE, overlap=OVERLAP)
    edges = {w.top for w in windows} | {w.bottom for w in windows}
    cut = torch.tensor(
        [any(y0 < e < y1 or x0 < e < x1 for e in edges) for x0, y0, x1, y1 in truth.boxes().tolist()]
    )
    assert cut.float().mean() > 0.9
    # Their masks, stitched from several tiles, are as good as when the model sees each object alone in
    # a tile of its own, centred.
    stitched = ious(detections.mask_crops, truth).max(0).values
    whole = Predictor.from_checkpoint(FIXTURE, tile=None)
    centred = []
    for k, (x0, y0, x1, y1) in enumerate(truth.boxes().tolist()):
        top = int(min(max((y0 + y1) / 2 - TILE / 2, 0), SIZE - TILE))
        left = int(min(max((x0 + x1) / 2 - TILE / 2, 0), SIZE - TILE))
        alone = whole(picture.crop((left, top, left + TILE, top + TILE)))
        own = CroppedMasks.from_dense(truth.mask(k)[None, top : top + TILE, left : left + TILE])
        centred.append(float(ious(alone.mask_crops, own).max()) if len(alone) else 0.0)
    assert stitched[cut].mean() >= torch.tensor(centred)[cut].mean() - 0.03


def test_the_whole_image_at_once_loses_the_small_objects(scene):
    picture, truth, labels = scene
    # The model's transform resizes the 640-pixel scene to its 128 pixels: shapes become 8-13 px.
    detections = Predictor.from_checkpoint(FIXTURE, tile=None)(picture)
    assert matched(detections, truth, labels).any(0).float().mean() < 0.1


def test_the_checkpoint_says_it_was_trained_on_tiles():
    predictor = Predictor.from_checkpoint(FIXTURE)
    assert (predictor.tile, predictor.tile_overlap) == (TILE, OVERLAP)
    assert Predictor.from_checkpoint(FIXTURE, tile=None).tile is None
