"""``maskrcnn evaluate``: the report, the printed lines, and the refusals (one ``error:`` line, exit 1)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from maskrcnn.cli import build_parser, main
from maskrcnn.cli.evaluate import run_evaluate
from maskrcnn.engine.evaluation import format_semantic
from maskrcnn.modeling import build_model
from maskrcnn.weights import save_checkpoint
from tests.engine.evaluation.helpers import small_config


@pytest.fixture
def checkpoint(tmp_path):
    def save(class_names=("square", "circle", "triangle")):
        torch.manual_seed(0)
        cfg = small_config()
        return save_checkpoint(
            build_model(cfg), tmp_path / "model.safetensors", config=cfg, class_names=list(class_names)
        )

    return save


def test_the_parser_declares_the_options(tmp_path):
    args = build_parser().parse_args(["evaluate", "--weights", "w", "--format", "shapes", "--out", "x"])
    assert args.func is run_evaluate
    assert (args.device, args.batch_size, args.num_workers, args.confusion_score) == ("auto", 2, 0, 0.5)
    assert (args.data, args.option) == (None, [])
    assert args.semantic_threshold == 0.5  # the predict-time --score-threshold


def test_evaluate_writes_the_report(tmp_path, checkpoint, capsys, one_thread):
    weights = checkpoint()
    out = tmp_path / "eval"
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
    assert main([*argv, "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "evaluated 3 images" in printed
    assert "detections" in printed
    assert "mask" in printed
    assert "AP50" in printed
    assert str(out / "metrics.json") in printed
    assert f"and per_class, results, pr_curve, confusion_matrix, errors in {out}" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["bbox", "segm", "semantic"]
    assert list(metrics["semantic"]["IoU"]) == ["square", "circle", "triangle"]
    assert metrics["semantic"]["score_threshold"] == 0.5
    assert format_semantic(metrics["semantic"]) in printed.splitlines()
    assert "semantic IoU" in (out / "per_class.txt").read_text()
    assert (out / "confusion_matrix.png").is_file()


def test_evaluate_scores_the_class_maps_at_the_semantic_threshold(tmp_path, checkpoint, capsys, one_thread):
    """``--semantic-threshold 0``: every detection the (untrained) model gives is painted, so its
    classes occur in the predictions and have an IoU."""
    weights = checkpoint()
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        "--weights",
        str(weights),
        "--format",
        "shapes",
        "-o",
        "count=2",
        "-o",
        "image_size=64",
    ]
    assert main([*argv, "--out", str(out), "--device", "cpu", "--semantic-threshold", "0"]) == 0
    printed = capsys.readouterr().out
    semantic = json.loads((out / "metrics.json").read_text())["semantic"]
    assert "semantic (score >= 0): mIoU " in printed
    assert semantic["score_threshold"] == 0.0
    assert semantic["mIoU"] is not None
    assert 0.0 <= semantic["pixel_accuracy"] <= 1.0
    with pytest.raises(SystemExit):  # argparse's refusal
        main([*argv, "--out", str(out), "--semantic-threshold", "1.5"])
    assert "--semantic-threshold: must be in 0..1, got 1.5" in capsys.readouterr().err


def test_evaluate_refuses_other_classes_and_missing_files(tmp_path, checkpoint, capsys, one_thread):
    weights = checkpoint(class_names=("cat", "dog", "bird"))
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", str(weights), "--format", "shapes", "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(
        "error: the checkpoint's classes and the dataset's share no name: the dataset has square, circle, "
        "triangle, the checkpoint cat, dog, bird"
    )
    assert not out.exists()

    missing = tmp_path / "nothing.safetensors"
    assert main(["evaluate", "--weights", str(missing), "--format", "shapes", "--out", str(out)]) == 1
    assert f"error: weights {missing}: no such file (nor a known name" in capsys.readouterr().err
    argv = ["evaluate", "--weights", str(weights), "--format", "coco", "--data", str(tmp_path / "no.json")]
    assert main([*argv, "--out", "x"]) == 1
    assert "no.json" in capsys.readouterr().err


def test_evaluate_refuses_bad_options(tmp_path, capsys):
    weights = tmp_path / "model.safetensors"
    argv = ["evaluate", "--weights", str(weights), "--format", "shapes", "--out", str(tmp_path)]
    assert main([*argv, "--batch-size", "0"]) == 1
    assert "--batch-size must be >= 1 and --num-workers >= 0, got 0, 0" in capsys.readouterr().err
    assert main([*argv, "--device", "abacus"]) == 1
    assert "error: --device: unknown device 'abacus'" in capsys.readouterr().err
    save_file({"x": torch.zeros(1)}, weights)  # plain tensors: no model at all
    assert main([*argv, "-o", "count=1", "-o", "colour=red"]) == 1
    assert "error: --format shapes:" in capsys.readouterr().err
    assert main([*argv, "-o", "count=1"]) == 1
    assert (
        f"error: cannot load --weights {weights}: {weights}: not a Mask R-CNN or ResNet checkpoint"
        in capsys.readouterr().err
    )
