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


def _tiny_args(out, **more):
    args = ["train", "--preset", "shapes", "--out", str(out)]
    for k, v in {**TINY, "train.max_steps": 1, **more}.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    return args


def test_reader_options_reach_the_readers_and_quiet_leaves_the_result(tmp_path, capsys, monkeypatch):
    import maskrcnn.engine.data

    real, seen = maskrcnn.engine.data.load_dataset, []

    def spy(format, path, **options):
        seen.append(options)
        return real(format, path, **options)

    monkeypatch.setattr(maskrcnn.engine.data, "load_dataset", spy)
    args = _tiny_args(tmp_path / "run", **{"data.train_options": {"image_size": 96, "max_size": 24}})
    args += ["-o", "count=4", "--option", "buffer=16", "--set", "data.train_options.seed=3"]
    args += ["--val-option", "count=2", "--val-option", "image_size=96", "-q"]
    assert main(args) == 0
    train_options, val_options = seen
    assert train_options == {"count": 4, "buffer": 16, "seed": 3, "image_size": 96, "max_size": 24}
    assert val_options == {"count": 2, "image_size": 96}
    captured = capsys.readouterr()
    assert captured.err == ""  # no bars, no "training data: ..." lines
    assert captured.out.startswith("max_steps: 1 steps, run directory")
    # A resumed run trains on its own data: reader options cannot change it.
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "-o", "count=8"]) == 1
    assert "--resume trains on the run's own data: --option" in capsys.readouterr().err


def test_data_without_a_usable_image_is_named_with_the_reason(tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    missing = tmp_path / "missing.json"
    images = [{"id": i, "file_name": f"gone{i}.png", "width": 8, "height": 8} for i in (1, 2)]
    missing.write_text(
        json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "a"}]})
    )
    for name in ("gone1.png", "gone2.png"):
        (tmp_path / name).write_bytes(b"not a picture")
    for data, reason in ((empty, "it has no images"), (missing, "all 2 images were skipped (the first: ")):
        args = _tiny_args(tmp_path / data.stem, **{"data.train_options": {}})
        assert main([*args, "--format", "coco", "--data", str(data)]) == 1
        err = capsys.readouterr().err.splitlines()[-1]
        assert err.startswith(f"error: cannot train on {data}: {reason}"), err
        if data is missing:
            assert "gone1.png" in err


def test_an_out_that_is_a_file_is_refused_before_the_data_is_read(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")
    assert main(["train", "--preset", "shapes", "--out", str(taken)]) == 1
    assert capsys.readouterr().err == f"error: --out {taken} is a file; give a folder\n"


def test_data_without_format_is_read_as_the_format_it_is(tmp_path, capsys):
    """``train --data via_region_data.json`` on the default preset: the shapes generator reads no files,
    so the path's own format (detected, and said) is trained on, and the run remembers it."""
    import numpy as np
    import yaml
    from PIL import Image

    regions, square = {}, {"name": "polygon", "all_points_x": [8, 40, 40, 8], "all_points_y": [8, 8, 40, 40]}
    for i in range(2):
        pixels = np.full((64, 64, 3), 90, dtype=np.uint8)
        pixels[8:40, 8:40] = 220
        Image.fromarray(pixels).save(tmp_path / f"b{i}.png")
        region = {"shape_attributes": square, "region_attributes": {"object": "balloon"}}
        regions[f"b{i}.png1"] = {
            "filename": f"b{i}.png",
            "size": 1,
            "regions": [region],
            "file_attributes": {},
        }
    data = tmp_path / "via_region_data.json"
    data.write_text(json.dumps(regions))
    out = tmp_path / "run"
    args = _tiny_args(out, **{"data.train_options": {}, "data.val": None, "data.val_options": {}})
    assert main([*args, "--data", str(data)]) == 0
    assert f"data: detected format via ({data})" in capsys.readouterr().err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["format"] == "via"
    assert saved["data"]["train"] == str(data)
