"""What predict and splash write: COCO results, overlays, masks, permissions, the summary."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.engine.evaluation.coco import instances_to_results
from maskrcnn.engine.prediction_writer import detections_to_coco, write_predictions
from maskrcnn.engine.predictor import Predictor
from maskrcnn.engine.sources import iter_sources
from maskrcnn.ops.masks import rle_decode
from tests.engine.prediction_helpers import (
    LeftHalfModel,
    random_image,
    save_image,
    tiny_checkpoint,
    untrained_predictor,
    write_text,
)

pytestmark = pytest.mark.usefixtures("one_thread")
checkpoint = pytest.fixture(scope="module")(tiny_checkpoint)
predictor = pytest.fixture(scope="module")(untrained_predictor)


def test_detections_to_coco(predictor: Predictor):
    found = predictor(random_image(7))
    results = detections_to_coco(found, file_name="x.png", image_id=3)
    assert len(results) == len(found)
    first = results[0]
    assert list(first)[:2] == ["file_name", "image_id"]
    assert first["category"] == found.class_names[0]
    assert first["category_id"] == int(found.labels[0])
    x1, y1, x2, y2 = found.boxes[0].tolist()
    assert first["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.01)
    assert isinstance(first["segmentation"]["counts"], str)
    assert torch.equal(rle_decode(first["segmentation"]).bool(), found.masks[0])
    json.dumps(results)  # JSON-ready


def test_detections_to_coco_is_evaluations_conversion_rounded(predictor: Predictor):
    found = predictor(random_image(7))
    shared = instances_to_results(
        5, found.boxes, found.labels, found.scores, found.masks, [1, 2, 3], file_name="x.png", frame=2
    )
    ours = detections_to_coco(found, image_id=5, file_name="x.png", frame=2)
    assert len(ours) == len(shared) == len(found)
    for mine, theirs, name in zip(ours, shared, found.class_names, strict=True):
        assert mine["category"] == name
        assert mine["bbox"] == [round(v, 2) for v in theirs["bbox"]]
        assert mine["score"] == round(theirs["score"], 5)
        assert {k: v for k, v in mine.items() if k not in ("bbox", "score", "category")} == {
            k: v for k, v in theirs.items() if k not in ("bbox", "score")
        }
    assert (
        detections_to_coco(
            Predictor(LeftHalfModel(), ["x"], score_threshold=0.95)(random_image(0)), image_id=1
        )
        == []
    )


def test_predict_writes_with_the_usual_permissions(tmp_path: Path):
    (tmp_path / "in").mkdir()
    save_image(tmp_path / "in", "photo.png")
    files = list(iter_sources(tmp_path / "in"))
    out = tmp_path / "out"
    before = os.umask(0o022)
    try:
        writer = write_predictions(
            Predictor(LeftHalfModel(), ["thing"]), files, out, mode="predict", save_masks=True
        )
    finally:
        os.umask(before)
    assert writer.processed == 1
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["masks/photo_0_thing.png", "photo.png", "results.json"]  # no temporary files left
    for name in written:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    (result,) = json.loads((out / "results.json").read_text())
    assert result["file_name"] == files[0].path.as_posix()
    assert (result["image_id"], result["category_id"], result["category"]) == (1, 1, "thing")
    assert result["bbox"] == [0.0, 0.0, 32.0, 48.0]
    assert result["score"] == 0.9
    with Image.open(out / "masks" / "photo_0_thing.png") as mask:
        pixels = np.asarray(mask)
    assert (pixels[:, :32] == 255).all()
    assert (pixels[:, 32:] == 0).all()


def test_splash_writes_no_results_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "in").mkdir()
    for seed, name in enumerate(("a.png", "b.png")):
        save_image(tmp_path / "in", name, seed)
    write_text(tmp_path / "in" / "c.png")
    files = list(iter_sources(tmp_path / "in"))
    out = tmp_path / "out"
    writer = write_predictions(
        Predictor(LeftHalfModel(), ["thing"], precision="fp32"), files, out, mode="splash"
    )
    assert sorted(p.name for p in out.iterdir()) == ["a_splash.png", "b_splash.png"]
    assert (writer.images_done, writer.frames_done, writer.detections) == (2, 0, 2)
    assert len(writer.skipped) == 1
    assert "c.png" in capsys.readouterr().err
    assert writer.summary() == [
        "splash: 2 images on cpu, fp32: 2 detections",
        f"wrote a_splash.png, b_splash.png into {out}",
    ]


def test_summary_of_a_predict_run(tmp_path: Path):
    (tmp_path / "in").mkdir()
    for seed in range(4):
        save_image(tmp_path / "in", f"{seed}.png", seed)
    out = tmp_path / "out"
    writer = write_predictions(
        Predictor(LeftHalfModel(), ["thing"], batch_size=3, precision="fp32"),
        list(iter_sources(tmp_path / "in")),
        out,
        mode="predict",
        save_masks=True,
    )
    assert writer.summary() == [
        "predict: 4 images on cpu, fp32: 4 detections",
        f"wrote 0.png, 1.png, 2.png and 1 more into {out}",
        f"wrote {out / 'results.json'} (4 detections)",
        f"wrote 4 masks into {out / 'masks'}",
    ]
