"""Keypoints end to end: train the ``keypoints`` preset on the synthetic shapes (tiny), evaluate it with
the OKS keypoint AP, predict, and the keypoint demo, all from the command line."""

import json

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.shapes import KEYPOINT_SPEC, ShapesDataset
from tests.engine.test_train import TINY

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = {"image_size": 96, "buffer": 16, "max_size": 24, "keypoints": True}
SMALL = {
    **TINY,
    "model.roi_heads.keypoint_head_channels": [32, 32],
    "data.train_options": {**SHAPES, "count": 16, "seed": 0},
    "data.val_options": {**SHAPES, "count": 4, "seed": 1},
}


def _sets(values: dict) -> list[str]:
    args = []
    for k, v in values.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    return args


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("keypoints") / "run"
    argv = ["train", "--preset", "keypoints", "--out", str(out), "-q"]
    assert main(argv + _sets({**SMALL, "train.max_steps": 40, "train.epochs": 10})) == 0
    return out


def test_training_learns_keypoints_and_keeps_their_spec(run):
    info = json.loads((run / "last.json").read_text())
    assert info["config"]["roi_heads"]["num_keypoints"] == 4  # from the data, not the preset's 0
    assert info["extra"]["keypoints"] == KEYPOINT_SPEC.to_dict()
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [s["loss_keypoint"] for s in steps if s["kind"] == "train"]
    assert len(losses) == 40
    # A softmax over 56 x 56 positions starts at log(3136) = 8.05; forty small steps bring it down.
    assert np.mean(losses[:5]) > 7.5
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 0.4
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"bbox", "segm", "keypoints"}
    assert set(metrics["keypoints"]) == {
        "AP",
        "AP50",
        "AP75",
        "APm",
        "APl",
        "AR",
        "AR50",
        "AR75",
        "ARm",
        "ARl",
    }


def test_evaluate_and_predict_a_keypoint_run(run, tmp_path, capsys):
    argv = ["evaluate", "--weights", str(run / "last.safetensors"), "--format", "shapes"]
    argv += [
        "-o",
        "count=3",
        "-o",
        "seed=7",
        "-o",
        "image_size=96",
        "-o",
        "max_size=24",
        "-o",
        "keypoints=true",
    ]
    assert main([*argv, "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "keypoint" in out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "AP" in metrics["keypoints"]

    image, _ = ShapesDataset(count=1, seed=5, image_size=96, buffer=16, max_size=24)[0]
    path = tmp_path / "shapes.png"
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    argv = ["predict", str(path), "--weights", str(run / "last.safetensors"), "--out", str(tmp_path / "p")]
    assert main([*argv, "--score-threshold", "0"]) == 0
    results = json.loads((tmp_path / "p" / "results.json").read_text())
    assert results
    for r in results:
        assert len(r["keypoints"]) == 3 * 4
        xs, ys = r["keypoints"][0::3], r["keypoints"][1::3]
        x, y, w, h = r["bbox"]
        # each keypoint lies in its detection's box (the heatmap covers the box)
        assert all(x - 0.5 <= v <= x + w + 0.5 for v in xs)
        assert all(y - 0.5 <= v <= y + h + 0.5 for v in ys)
    assert (tmp_path / "p" / "shapes.png").is_file()


def test_the_keypoint_demo_on_a_tiny_budget(tmp_path, capsys):
    small = {**SMALL, "data.val_options": {**SHAPES, "count": 2, "seed": 1}, "train.max_steps": 2}
    assert main(["demo", "--keypoints", "--out", str(tmp_path / "demo"), *_sets(small)]) == 0
    out = capsys.readouterr().out
    assert "held-out shapes (2 images): mask AP" in out
    assert "keypoint AP" in out
    for name in ("last.safetensors", "metrics.json", "loss_curve.png", "predictions.png"):
        assert (tmp_path / "demo" / name).is_file(), name
