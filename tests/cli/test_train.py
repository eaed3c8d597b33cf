"""``train`` and ``demo`` from the command line (tiny configs, a few steps)."""

import json

import pytest
import torch

from maskrcnn.cli import main
from tests.engine.test_train import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def _state(run_dir):
    return torch.load(run_dir / "last.state.pt", weights_only=True)


def test_cli_train_resume_and_refusal(tmp_path, capsys):
    out = tmp_path / "run"
    sets = [f"{k}={json.dumps(v)}" for k, v in {**TINY, "train.max_steps": 2}.items()]
    args = ["train", "--preset", "shapes", "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    assert "max_steps: 2 steps" in capsys.readouterr().out
    assert main(args) == 1  # the run directory holds a run: not overwritten
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--weights", "last", "--set", "train.max_steps=3"]) == 0
    assert _state(out)["step"] == 3
    assert (
        main(["train", "--preset", "shapes", "--out", str(tmp_path / "x"), "--set", "train.optimizer=adam"])
        == 1
    )
    assert "train.optimizer='adam'" in capsys.readouterr().err


def test_demo_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path / "demo")]
    small = {
        **TINY,
        "data.val_options": {"count": 2, "seed": 1, "image_size": 96, "buffer": 16, "max_size": 24},
        "train.max_steps": 2,
    }
    for k, v in small.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "held-out shapes (2 images): mask AP" in out
    for name in ("last.safetensors", "metrics.json", "loss_curve.png", "predictions.png"):
        assert (tmp_path / "demo" / name).is_file(), name
