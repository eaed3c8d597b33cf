"""Keypoints downstream of the model: the Predictor's detections, results.json, the pictures (dots and
skeleton at their pixels), tiles, videos, and models without masks."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.engine.given_boxes import GivenBoxes
from maskrcnn.engine.inference import NO_MASKS_FOR_TILES
from maskrcnn.engine.inspect import ground_truth_grid
from maskrcnn.engine.prediction_writer import NEEDS_MASKS, detections_to_coco, write_predictions
from maskrcnn.engine.predictor import Predictor
from maskrcnn.engine.sources import iter_sources
from maskrcnn.engine.tiling import tile_windows
from maskrcnn.modeling import build_model
from maskrcnn.visualize import draw_instances, random_colors
from maskrcnn.weights import save_checkpoint
from tests.engine.evaluation.helpers import Landmarks, Rectangles
from tests.engine.prediction_helpers import random_image, read_video, save_image, write_video
from tests.modeling.helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = KeypointSpec(("head", "hand", "foot"), skeleton=((0, 1), (1, 2)))
# One object in every 48 x 64 image: its box, and keypoints (x, y) with their scores; the foot's score
# is below 0, so it is not drawn (nor the hand-foot line), but it is in the results.
BOX = [2.0, 2.0, 60.0, 46.0]
POINTS = [(10.504, 30.5), (40.5, 30.5), (40.5, 44.5)]
POINT_SCORES = [1.234567, 0.5, -1.0]
RED = (255, 0, 0)  # random_colors(1)[0]: the colour of the only detection


class KeypointModel(nn.Module):
    """A keypoint-only model (no mask head) that finds :data:`BOX` with :data:`POINTS` in every image."""

    def __init__(self):
        super().__init__()
        self.roi_heads = SimpleNamespace(has_masks=False, num_keypoints=len(POINTS))

    def forward(self, images):
        return [
            {
                "boxes": torch.tensor([BOX]),
                "labels": torch.tensor([1]),
                "scores": torch.tensor([0.9]),
                "keypoints": torch.tensor([[(x, y, 1.0) for x, y in POINTS]]),
                "keypoints_scores": torch.tensor([POINT_SCORES]),
            }
            for _ in images
        ]


def keypoint_config(mask_head: bool):
    cfg = tiny_config()
    heads = dataclasses.replace(
        cfg.roi_heads, mask_head=mask_head, num_keypoints=3, keypoint_head_channels=(16,)
    )
    return dataclasses.replace(cfg, roi_heads=heads)


def is_red(pixel) -> bool:
    return tuple(int(v) for v in pixel) == RED


# ----------------------------------------------------------------------------------------------------
# The Predictor


def test_detections_of_a_keypoint_model():
    predictor = Predictor(KeypointModel(), ["person"], keypoint_spec=SPEC)
    assert not predictor.has_masks
    found = predictor(random_image(0))
    assert len(found) == 1
    assert found.mask_crops is None
    assert found.masks is None
    assert found.keypoints.shape == (1, 3, 3)
    torch.testing.assert_close(found.keypoints[0, :, :2], torch.tensor(POINTS))
    torch.testing.assert_close(found.keypoints_scores[0], torch.tensor(POINT_SCORES))
    assert predictor.keypoint_spec is SPEC
    # Named kp0.. when nothing names them; a spec of another size is refused.
    assert Predictor(KeypointModel(), ["person"]).keypoint_spec == KeypointSpec.default(3)
    with pytest.raises(ValueError, match="keypoint_spec names 2 keypoints; the model gives 3"):
        Predictor(KeypointModel(), ["person"], keypoint_spec=KeypointSpec(("a", "b")))
    with pytest.raises(ValueError, match="keep_probabilities: this model gives no masks"):
        Predictor(KeypointModel(), ["person"], keep_probabilities=True)
    with pytest.raises(ValueError, match="tile=32: tiled inference joins the tiles' detections"):
        Predictor(KeypointModel(), ["person"], tile=32)


def test_a_real_keypoint_model_through_the_predictor(tmp_path: Path):
    """The tiny model without masks, from a checkpoint that names its keypoints."""
    torch.manual_seed(0)
    cfg = keypoint_config(mask_head=False)
    model = build_model(cfg)
    path = save_checkpoint(
        model,
        tmp_path / "kp.safetensors",
        config=cfg,
        class_names=["a", "b", "c"],
        extra={"keypoints": SPEC.to_dict()},
    )
    predictor = Predictor.from_checkpoint(path, score_threshold=0.0)
    assert predictor.keypoint_spec == SPEC
    assert not predictor.has_masks
    found = predictor(random_image(3))
    assert len(found) == 10
    assert found.masks is None
    assert found.keypoints.shape == (10, 3, 3)
    assert found.keypoints_scores.shape == (10, 3)
    # Inside the image, and the results carry them.
    assert (found.keypoints[..., 0] >= 0).all()
    assert (found.keypoints[..., 0] <= 64).all()
    results = detections_to_coco(found, image_id=1)
    assert all("segmentation" not in r and len(r["keypoints"]) == 9 for r in results)
    # A caller's spec wins over the checkpoint's.
    other = KeypointSpec(("x", "y", "z"))
    assert Predictor.from_checkpoint(path, keypoint_spec=other).keypoint_spec is other
    with pytest.raises(ValueError, match=re.escape(NO_MASKS_FOR_TILES)):
        Predictor.from_checkpoint(path, tile=32)


def test_a_model_with_masks_and_keypoints_gives_both():
    torch.manual_seed(0)
    predictor = Predictor(build_model(keypoint_config(mask_head=True)), ["a", "b", "c"], score_threshold=0.0)
    assert predictor.has_masks
    assert predictor.keypoint_spec == KeypointSpec.default(3)
    found = predictor(random_image(4))
    assert found.masks.shape == (10, 48, 64)
    assert found.keypoints.shape == (10, 3, 3)
    results = detections_to_coco(found, image_id=1)
    assert all({"segmentation", "keypoints"} <= set(r) for r in results)


# ----------------------------------------------------------------------------------------------------
# results.json and the pictures


def test_predict_writes_keypoints_and_draws_them(tmp_path: Path):
    (tmp_path / "in").mkdir()
    save_image(tmp_path / "in", "a.png")
    out = tmp_path / "out"
    predictor = Predictor(KeypointModel(), ["person"], keypoint_spec=SPEC)
    writer = write_predictions(predictor, list(iter_sources(tmp_path / "in")), out, mode="predict")
    assert writer.detections == 1
    (result,) = json.loads((out / "results.json").read_text())
    assert set(result) == {"file_name", "image_id", "category_id", "bbox", "score", "keypoints", "category"}
    # x, y rounded to 0.01 px, scores to 1e-5, as boxes and scores are.
    assert result["keypoints"] == [10.5, 30.5, 1.23457, 40.5, 30.5, 0.5, 40.5, 44.5, -1.0]
    assert result["bbox"] == [2.0, 2.0, 58.0, 44.0]
    with Image.open(out / "a.png") as picture:
        pixels = np.asarray(picture.convert("RGB"))
    before = np.asarray(Image.open(tmp_path / "in" / "a.png").convert("RGB"))
    # Keypoints at (10.5, 30.5) and (40.5, 30.5) lie in pixels (row 30, columns 10 and 40): dots there,
    # and the head-hand line along row 30 between them.
    for x in (10, 11, 9, 40, 41, 39):
        assert is_red(pixels[30, x]), x
    assert all(is_red(pixels[30, x]) for x in range(10, 41))
    assert not is_red(pixels[27, 25])  # the line is one pixel wide
    assert not is_red(pixels[33, 25])
    # The foot (score -1) is not drawn, nor the hand-foot line: those pixels are the image's own.
    np.testing.assert_array_equal(pixels[44, 40], before[44, 40])
    np.testing.assert_array_equal(pixels[37, 40], before[37, 40])


def test_downscaled_overlays_move_the_keypoints(tmp_path: Path):
    (tmp_path / "in").mkdir()
    save_image(tmp_path / "in", "a.png")
    out = tmp_path / "out"
    predictor = Predictor(KeypointModel(), ["person"], keypoint_spec=SPEC)
    write_predictions(predictor, list(iter_sources(tmp_path / "in")), out, mode="predict", overlay_size=32)
    with Image.open(out / "a.png") as picture:
        pixels = np.asarray(picture.convert("RGB"))
    assert pixels.shape == (24, 32, 3)
    # Half size: the head at (5.25, 15.25) lies in pixel (row 15, column 5); the line along row 15.
    assert is_red(pixels[15, 5])
    assert all(is_red(pixels[15, x]) for x in range(5, 21))
    # results.json keeps the image's own pixels.
    assert json.loads((out / "results.json").read_text())[0]["keypoints"][:2] == [10.5, 30.5]


def test_splash_and_saved_masks_need_masks(tmp_path: Path):
    (tmp_path / "in").mkdir()
    save_image(tmp_path / "in", "a.png")
    files = list(iter_sources(tmp_path / "in"))
    predictor = Predictor(KeypointModel(), ["person"])
    with pytest.raises(ValueError, match="the color splash keeps the colours inside the masks"):
        write_predictions(predictor, files, tmp_path / "splash", mode="splash")
    with pytest.raises(ValueError, match="save_masks writes each detection's mask"):
        write_predictions(predictor, files, tmp_path / "masks", mode="predict", save_masks=True)
    others = {
        "maps": {"semantic": True},
        "save_as": {"save_as": "labelme"},
        "given": {"given": GivenBoxes(tmp_path / "boxes.json", {}, [])},
    }
    for what, options in others.items():
        with pytest.raises(ValueError, match=re.escape(NEEDS_MASKS[what])):
            write_predictions(predictor, files, tmp_path / what, mode="predict", **options)
        assert not (tmp_path / what).exists()
    assert not (tmp_path / "splash").exists()  # refused before anything was read or written
    assert not (tmp_path / "masks").exists()
    assert set(NEEDS_MASKS) == {"splash", "save_masks", *others}
    # A model that says nothing of its masks and gives none fails as clearly at the first image.
    unknown = KeypointModel()
    del unknown.roi_heads
    with pytest.raises(ValueError, match="the color splash keeps the colours inside the masks"):
        write_predictions(Predictor(unknown, ["person"]), files, tmp_path / "late", mode="splash")


def test_videos_draw_keypoints(tmp_path: Path):
    frames = [np.zeros((48, 64, 3), np.uint8)] * 2
    video = write_video(tmp_path / "clip.mp4", frames)
    out = tmp_path / "out"
    predictor = Predictor(KeypointModel(), ["person"], keypoint_spec=SPEC)
    writer = write_predictions(predictor, list(iter_sources(video)), out, mode="predict")
    assert writer.frames_done == 2
    results = json.loads((out / "results.json").read_text())
    assert [(r["frame"], r["keypoints"][:3]) for r in results] == [
        (0, [10.5, 30.5, 1.23457]),
        (1, [10.5, 30.5, 1.23457]),
    ]
    decoded, _ = read_video(out / "clip_predictions.mp4")
    # Lossy: the dot is reddish where the frame was black.
    r, g, b = (int(v) for v in decoded[0][30, 10])
    assert r > 150, (r, g, b)
    assert max(g, b) < 100, (r, g, b)


# ----------------------------------------------------------------------------------------------------
# Tiles


class TileCorners(nn.Module):
    """In every tile, one square at the tile's pixels 2..6 with a keypoint in its middle (tile
    coordinates, as a model sees a tile)."""

    roi_heads = SimpleNamespace(has_masks=True, num_keypoints=1)

    def forward(self, images):
        out = []
        for image in images:
            masks = torch.zeros(1, 1, *image.shape[-2:])
            masks[..., 2:6, 2:6] = 0.9
            out.append(
                {
                    "boxes": torch.tensor([[2.0, 2.0, 6.0, 6.0]]),
                    "labels": torch.tensor([1]),
                    "scores": torch.tensor([0.9]),
                    "masks": masks,
                    "keypoints": torch.tensor([[[4.0, 4.5, 1.0]]]),
                    "keypoints_scores": torch.tensor([[2.0]]),
                }
            )
        return out


def test_tiled_keypoints_are_in_image_pixels():
    found = Predictor(TileCorners(), ["thing"], tile=32, tile_overlap=8)(random_image(0))
    windows = tile_windows(48, 64, size=32, overlap=8)
    assert len(found) == len(windows) == 6
    got = sorted(tuple(p) for p in found.keypoints[:, 0, :2].tolist())
    assert got == sorted((w.left + 4.0, w.top + 4.5) for w in windows)
    assert found.keypoints_scores.tolist() == [[2.0]] * 6
    assert (found.keypoints[..., 2] == 1).all()


# ----------------------------------------------------------------------------------------------------
# draw_instances


def test_draw_instances_draws_labelled_keypoints_and_their_skeleton():
    black = torch.zeros(3, 40, 40)
    green = (0, 255, 0)
    # Ground truth: (x, y, visibility); the third keypoint is not labelled.
    keypoints = torch.tensor([[[10.5, 10.5, 2.0], [30.5, 10.5, 1.0], [30.5, 30.5, 0.0]]])
    picture = draw_instances(black, keypoints=keypoints, skeleton=((0, 1), (1, 2)), colors=[green])
    pixels = np.asarray(picture)
    drawn = {(y, x) for y, x in zip(*np.nonzero(pixels.any(axis=2)), strict=True)}
    assert all(tuple(pixels[y, x]) == green for y, x in drawn)
    line = {(10, x) for x in range(10, 31)}
    assert line <= drawn
    # Dots of radius 2 around pixels (10, 10) and (10, 30): nothing beyond them, nothing of the third.
    dots = {(y, x) for y in range(8, 13) for x in (*range(8, 13), *range(28, 33))}
    assert drawn - line <= dots
    assert {(9, 10), (11, 10), (10, 8), (10, 12), (9, 30), (11, 30)} <= drawn
    assert not any(y > 12 for y, _ in drawn)
    # Detections: a score at or below the threshold hides a keypoint and its lines.
    scores = torch.tensor([[1.0, 0.0, 3.0]])
    detected = keypoints.clone()
    detected[..., 2] = 1.0
    picture = draw_instances(
        black, keypoints=detected, keypoints_scores=scores, skeleton=((0, 1), (1, 2)), colors=[green]
    )
    pixels = np.asarray(picture)
    assert tuple(pixels[10, 10]) == tuple(pixels[30, 30]) == green
    assert not pixels[10, 20].any()  # the first line: its second end is not drawn
    assert not pixels[10, 30].any()
    assert not pixels[20, 30].any()  # the second line
    assert not np.asarray(draw_instances(black, keypoints=detected[:0])).any()


def test_keypoints_take_each_instances_colour():
    image = torch.zeros(3, 40, 40)
    keypoints = torch.tensor([[[5.5, 5.5, 1.0]], [[30.5, 30.5, 1.0]]])
    pixels = np.asarray(draw_instances(image, keypoints=keypoints))
    first, second = random_colors(2)
    assert tuple(pixels[5, 5]) == first
    assert tuple(pixels[30, 30]) == second


# ----------------------------------------------------------------------------------------------------
# inspect


def test_the_ground_truth_grid_draws_labelled_keypoints():
    scene = [[(1, (5, 25, 5, 25))]]

    class Unlabelled(Landmarks):
        """The first keypoint not labelled."""

        def load_keypoints(self, index):
            points = super().load_keypoints(index)
            points[:, 0] = 0.0
            return points

    with_points, _ = ground_truth_grid(Landmarks(scene), count=1, columns=1)
    without, _ = ground_truth_grid(Rectangles(scene), count=1, columns=1)
    partly, _ = ground_truth_grid(Unlabelled(scene), count=1, columns=1)
    a, b, c = (np.asarray(p).astype(int) for p in (with_points, without, partly))

    # The 50 x 40 image in a 256-px cell: scaled by 5.12 below a 14-px title, centred (25 px down).
    def at(x, y):
        return round(y * 5.12) + 14 + 25, round(x * 5.12)

    corner, centre, far = at(7.5, 7.5), at(15.5, 15.5), at(23.5, 23.5)
    for y, x in (corner, centre, far):
        assert np.abs(a[y, x] - b[y, x]).sum() > 100  # a dot of the instance's colour
    assert np.abs(c[corner] - b[corner]).sum() == 0  # not labelled: not drawn
    assert np.abs(c[far] - b[far]).sum() > 100
