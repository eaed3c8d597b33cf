"""``--tile`` on the command line: predict, splash and evaluate on scenes larger than the model's
input, the pixel limit, downscaled overlays, and ``train --tile``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from maskrcnn.cli import main
from maskrcnn.config import load_config
from maskrcnn.data.shapes import draw_large_scene, random_scene, write_shapes_coco
from tests.engine.test_tiling_model import FIXTURE
from tests.engine.test_train import TINY

pytestmark = pytest.mark.usefixtures("one_thread")

SCENE = {"min_shapes": 40, "max_shapes": 40, "min_size": 20, "max_size": 32, "buffer": 0}


@pytest.fixture(scope="module")
def big_png(tmp_path_factory):
    """A 384 x 448 scene of about 35 shapes, as a PNG."""
    layout = random_scene(np.random.default_rng(4), height=384, width=448, **SCENE)
    picture, masks, _ = draw_large_scene(layout, height=384, width=448)
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    picture.save(path)
    return path, len(masks)


def test_predict_tiles_as_the_model_was_trained_and_writes_full_resolution_results(big_png, tmp_path, capsys):
    path, objects = big_png
    out = tmp_path / "out"
    assert (
        main(["predict", str(path), "--weights", str(FIXTURE), "--out", str(out), "--batch-size", "8"]) == 0
    )
    captured = capsys.readouterr()
    assert "tiles: 128 px, overlap 32 px (as the model was trained" in captured.err
    assert Image.open(out / "scene.png").size == (448, 384)
    results = json.loads((out / "results.json").read_text())
    assert 0.8 * objects <= len(results) <= 1.3 * objects
    for result in results:
        assert result["segmentation"]["size"] == [384, 448]
        rle = {"size": [384, 448], "counts": result["segmentation"]["counts"].encode()}
        x, y, w, h = coco_mask.toBbox(rle).tolist()
        assert x >= 0
        assert x + w <= 448
        assert y >= 0
        assert y + h <= 384
    # Whole images: the shapes are lost at the model's 128 pixels.
    assert (
        main(["predict", str(path), "--weights", str(FIXTURE), "--out", str(tmp_path / "w"), "--tile", "0"])
        == 0
    )
    assert len(json.loads((tmp_path / "w" / "results.json").read_text())) < 0.2 * objects


def test_downscaled_overlays_and_splashes(big_png, tmp_path):
    path, _ = big_png
    common = ["--weights", str(FIXTURE), "--tile", "128", "--tile-overlap", "40", "--overlay-size", "224"]
    assert main(["predict", str(path), *common, "--out", str(tmp_path / "p")]) == 0
    assert Image.open(tmp_path / "p" / "scene.png").size == (224, 192)
    results = json.loads((tmp_path / "p" / "results.json").read_text())
    assert results[0]["segmentation"]["size"] == [384, 448]  # the results stay at full resolution
    assert main(["splash", str(path), *common, "--out", str(tmp_path / "s")]) == 0
    splash = np.asarray(Image.open(tmp_path / "s" / "scene_splash.png"))
    assert splash.shape == (192, 224, 3)
    grey = (splash[..., 0] == splash[..., 1]) & (splash[..., 1] == splash[..., 2])
    assert 0.05 < (~grey).mean() < 0.95  # colour kept inside the masks only


def test_the_pixel_limit_refuses_large_images_unless_raised(big_png, tmp_path, capsys):
    path, _ = big_png  # 172,032 pixels
    args = ["predict", str(path), "--weights", str(FIXTURE), "--out", str(tmp_path / "o")]
    assert main([*args, "--max-pixels", "100000"]) == 1
    err = capsys.readouterr().err
    assert "scene.png: refused as a possible decompression bomb" in err
    assert "--max-pixels" in err
    assert main([*args, "--max-pixels", "2e5"]) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tile", "16"], "tiles must be at least 32 pixels"),
        (["--tile", "128", "--tile-overlap", "100"], "at most half the tile"),
        (["--tile", "off", "--tile-overlap", "8"], "--tile-overlap without tiles"),
    ],
)
def test_tile_flags_are_checked(big_png, tmp_path, capsys, flags, message):
    path, _ = big_png
    try:
        code = main(["predict", str(path), "--weights", str(FIXTURE), "--out", str(tmp_path / "o"), *flags])
    except SystemExit as e:  # argparse's own refusal of a flag's value
        code = e.code
    assert code != 0
    assert message in capsys.readouterr().err


def test_evaluate_on_large_images_tiles_like_training(tmp_path, capsys):
    data = write_shapes_coco(tmp_path / "data", count=2, seed=7, image_size=320, **SCENE)
    common = [
        "evaluate",
        "--weights",
        str(FIXTURE),
        "--format",
        "coco",
        "--data",
        str(data),
        "--batch-size",
        "8",
    ]
    assert main([*common, "--out", str(tmp_path / "tiled")]) == 0
    assert "tiles: 128 px" in capsys.readouterr().err
    tiled = json.loads((tmp_path / "tiled" / "metrics.json").read_text())
    assert main([*common, "--out", str(tmp_path / "whole"), "--tile", "0"]) == 0
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert tiled["segm"]["AP50"] > 0.7
    assert whole["segm"]["AP50"] < 0.2


def test_train_tile_crops_and_records_the_tiles(tmp_path):
    out = tmp_path / "run"
    options = {**TINY, "data.train_options": {"count": 4, "seed": 0, "image_size": 160, **SCENE}}
    options["data.val_options"] = {"count": 1, "seed": 1, "image_size": 160, **SCENE}
    args = ["train", "--preset", "shapes", "--out", str(out), "--tile", "64", "--tile-overlap", "16"]
    for key, value in {**options, "train.max_steps": 1}.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    assert main(args) == 0
    cfg = load_config(out / "config.yaml")
    assert (cfg.data.augment.crop_size, cfg.eval.tile, cfg.eval.tile_overlap) == (64, 64, 16)
    assert json.loads((out / "last.json").read_text())["extra"]["tile"] == {"size": 64, "overlap": 16}
    assert main(["train", "--out", str(out), "--resume", "--tile", "96"]) == 1
