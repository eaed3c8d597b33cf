"""``maskrcnn evaluate`` writes the error report and ``maskrcnn analyze`` rebuilds it from the folder;
its refusals are one ``error:`` line."""

from __future__ import annotations

import json

import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.engine.evaluation.errors import ERROR_KINDS, analyze_errors
from maskrcnn.modeling import build_model
from maskrcnn.weights import save_checkpoint
from tests.engine.evaluation.helpers import small_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """An evaluation folder of an untrained model on three shapes images, at score threshold 0."""
    root = tmp_path_factory.mktemp("analyze")
    torch.manual_seed(0)
    cfg = small_config()
    weights = save_checkpoint(
        build_model(cfg), root / "m.safetensors", config=cfg, class_names=["square", "circle", "triangle"]
    )
    argv = [
        "evaluate",
        "--weights",
        str(weights),
        "--format",
        "shapes",
        "-o",
        "count=3",
        "-o",
        "image_size=64",
    ]
    assert main([*argv, "--out", str(root / "eval"), "--device", "cpu"]) == 0
    return root / "eval"


def test_evaluate_writes_the_error_report_of_its_results(evaluation):
    ground_truth = json.loads((evaluation / "ground_truth.json").read_text())
    results = json.loads((evaluation / "results.json").read_text())
    report = json.loads((evaluation / "errors.json").read_text())
    assert len(ground_truth["images"]) == 3
    for iou_type in ("bbox", "segm"):
        expected = analyze_errors(ground_truth, results, iou_type=iou_type)
        assert report[iou_type]["errors"]["counts"] == expected.counts
        assert report[iou_type]["errors"]["AP50"] == pytest.approx(expected.ap50)
        assert len(report[iou_type]["per_image"]) == 3
        # Every detection and every object is counted once, in one kind (or as found / ignored).
        counts = report[iou_type]["errors"]["counts"]
        kinds = expected.detection_kinds
        assert sum(counts[k] for k in ERROR_KINDS if k != "missed") + kinds.count("tp") + kinds.count(
            "ignored"
        ) == sum(1 for k in kinds if k)
        objects = sum(1 for a in ground_truth["annotations"] if not a["iscrowd"])
        assert counts["missed"] + len(expected.found) <= objects
    assert (evaluation / "errors.png").stat().st_size > 1000


def test_analyze_rebuilds_the_report_and_follows_edited_results(evaluation, tmp_path, capsys):
    out = tmp_path / "again"
    assert main(["analyze", str(evaluation), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert json.loads((out / "errors.json").read_text()) == json.loads(
        (evaluation / "errors.json").read_text()
    )
    assert "mask AP50 " in printed
    assert "worst images by AP50: " in printed
    assert f"wrote {out / 'errors.json'} and {out / 'errors.png'}" in printed
    # With no results, every object is missed.
    edited = tmp_path / "edited"
    edited.mkdir()
    for path in evaluation.iterdir():
        (edited / path.name).write_bytes(path.read_bytes())
    (edited / "results.json").write_text("[]")
    assert main(["analyze", str(edited)]) == 0
    capsys.readouterr()
    report = json.loads((edited / "errors.json").read_text())
    objects = sum(
        1 for a in json.loads((edited / "ground_truth.json").read_text())["annotations"] if not a["iscrowd"]
    )
    assert report["segm"]["errors"]["counts"] == {**dict.fromkeys(ERROR_KINDS, 0), "missed": objects}


def test_analyze_refuses_what_is_no_evaluation(evaluation, tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nothing")]) == 1
    assert "not a folder (give the --out folder of maskrcnn evaluate)" in capsys.readouterr().err
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "results.json").write_text("[]")
    assert main(["analyze", str(partial)]) == 1
    assert f"error: {partial}: no ground_truth.json, metrics.json, per_class.json" in capsys.readouterr().err
    strays = tmp_path / "strays"
    strays.mkdir()
    for path in evaluation.iterdir():
        (strays / path.name).write_bytes(path.read_bytes())
    (strays / "results.json").write_text(
        json.dumps([{"image_id": 999, "category_id": 1, "bbox": [0, 0, 1, 1]}])
    )
    assert main(["analyze", str(strays)]) == 1
    assert "results.json: image ids not in ground_truth.json: [999]" in capsys.readouterr().err


def test_the_report_names_the_images_by_their_files(evaluation, tmp_path, capsys):
    """A dataset of files: the ground truth and the worst images name each image by its path."""
    data = tmp_path / "shapes.json"
    assert (
        main(
            ["convert", "--from", "shapes", "-o", "count=2", "-o", "image_size=64", "--to", "coco", str(data)]
        )
        == 0
    )
    weights = evaluation.parent / "m.safetensors"
    out = tmp_path / "eval"
    assert (
        main(
            ["evaluate", "--weights", str(weights), "--data", str(data), "--out", str(out), "--device", "cpu"]
        )
        == 0
    )
    capsys.readouterr()
    files = sorted(str(p) for p in (tmp_path / "shapes_images").iterdir())
    ground_truth = json.loads((out / "ground_truth.json").read_text())
    assert sorted(image["file_name"] for image in ground_truth["images"]) == files
    worst = json.loads((out / "errors.json").read_text())["segm"]["worst_images"]
    assert sorted(row["file_name"] for row in worst) == files  # both images have objects: both ranked
