"""``maskrcnn report`` on an evaluation (pictures from the recorded dataset or from the image files), on a
training run, and ``inspect data --html``; every refusal one ``error:`` line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.modeling import build_model
from maskrcnn.weights import save_checkpoint
from tests.cli.test_data import _via_dataset
from tests.engine.evaluation.helpers import small_config
from tests.engine.test_train import TINY
from tests.engine.viewer.test_site import read_index

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = ["--format", "shapes", "-o", "count=3", "-o", "image_size=64"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    torch.manual_seed(0)
    cfg = small_config()
    return save_checkpoint(
        build_model(cfg), root / "m.safetensors", config=cfg, class_names=["square", "circle", "triangle"]
    )


@pytest.fixture(scope="module")
def evaluation(weights):
    """An untrained model's evaluation on three shapes images (images without files)."""
    out = weights.parent / "eval"
    assert main(["evaluate", "--weights", str(weights), *SHAPES, "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_the_report_of_an_evaluation_of_images_without_files(evaluation, capsys):
    recorded = json.loads((evaluation / "evaluation.json").read_text())["data"]
    assert recorded == {
        "format": "shapes",
        "path": None,
        "options": SHAPES[3::2],
        "run": None,
        "split": "all",
    }
    assert main(["report", str(evaluation)]) == 0
    out = capsys.readouterr().out
    results = json.loads((evaluation / "results.json").read_text())
    assert f"wrote {evaluation / 'report' / 'index.html'} (3 images, {len(results)} detections)" in out
    data = read_index(evaluation / "report")
    assert [e["name"] for e in data["images"]] == ["image_0.png", "image_1.png", "image_2.png"]
    for entry in data["images"]:  # the pictures came from the dataset evaluation.json names
        assert (evaluation / "report" / entry["thumb"]).is_file()
    assert sum(len(e["dt"]) for e in data["images"]) == len(results)


def test_images_found_nowhere_are_named_and_the_dataset_can_be_given(evaluation, tmp_path, capsys):
    folder = tmp_path / "eval"
    shutil.copytree(evaluation, folder, ignore=shutil.ignore_patterns("report"))
    record = json.loads((folder / "evaluation.json").read_text())
    del record["data"]  # as an evaluation of an older version
    (folder / "evaluation.json").write_text(json.dumps(record))
    assert main(["report", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "3 of 3 images have no file (the first: image_0.png)" in err
    assert "--format/--data/-o" in err
    assert main(["report", str(folder), *SHAPES, "--out", str(tmp_path / "r")]) == 0
    assert len(list((tmp_path / "r" / "thumbs").iterdir())) == 3


def test_the_report_of_an_evaluation_of_image_files_copies_them(weights, tmp_path, capsys):
    gt = tmp_path / "gt.json"
    assert main(["convert", "--from", "shapes", *SHAPES[2:], "--to", "coco", str(gt)]) == 0
    out = tmp_path / "eval"
    assert main(["evaluate", "--weights", str(weights), "--data", str(gt), "--out", str(out)]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "r"), "--title", "shapes on disk"]) == 0
    capsys.readouterr()
    data = read_index(tmp_path / "r")
    files = [image["file_name"] for image in json.loads(gt.read_text())["images"]]
    for entry, name in zip(data["images"], files, strict=True):
        assert entry["name"].endswith(name.rsplit("/", 1)[-1])
        assert (tmp_path / "r" / entry["view"]).read_bytes() == (gt.parent / name).read_bytes()
    assert "<h1>shapes on disk</h1>" in (tmp_path / "r" / "index.html").read_text()


def test_refusals(evaluation, tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 1
    assert "no ground_truth.json, results.json, metrics.json" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["report", str(evaluation), "--out", str(mine)]) == 1
    assert "not a report" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"


def test_the_report_of_a_training_run(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--preset", "shapes", "--out", str(run)]
    val = {"count": 2, "seed": 1, "image_size": 96, "buffer": 16, "max_size": 24}
    for k, v in {**TINY, "train.max_steps": 2, "data.val_options": val}.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main([*args, "--device", "cpu"]) == 0
    assert main(["report", str(run)]) == 0
    capsys.readouterr()
    page = (run / "report" / "index.html").read_text()
    assert "<h2>Training</h2>" in page
    assert "<h2>Why the AP is what it is</h2>" in page
    for figure in ("loss_curve.png", "validation_history.png", "pr_curve.png"):
        assert (run / "report" / "figures" / figure).is_file(), figure
    data = read_index(run / "report")
    assert len(data["images"]) == 2  # the validation images, read again from the run's config
    assert all("thumb" in entry for entry in data["images"])
    # A run without its final evaluation is refused with what to do instead.
    (run / "ground_truth.json").unlink()
    assert main(["report", str(run)]) == 1
    assert "the run has no final evaluation" in capsys.readouterr().err


def test_inspect_data_html_outlines_the_images_with_problems(tmp_path, capsys):
    path = _via_dataset(tmp_path / "via")
    out = tmp_path / "html"
    assert (
        main(
            ["inspect", "data", "--format", "via", str(path), "-o", "class_name=balloon", "--html", str(out)]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert f"wrote {out / 'index.html'} (3 images, 1 instances, 2 errors and 0 warnings)" in captured.out
    entries = {e["name"].rsplit("/", 1)[-1]: e for e in read_index(out)["images"]}
    assert set(entries) == {"a.png", "b.png", "c.jpg"}
    assert entries["a.png"]["gt"] == [0]
    assert "problems" not in entries["a.png"]
    assert "polygon part 0 has 2 points" in entries["b.png"]["problems"][0]
    assert "cannot decode" in entries["c.jpg"]["problems"][0]
    assert "thumb" not in entries["c.jpg"]
    page = (out / "index.html").read_text()
    assert "<td>balloon</td><td>1</td>" in page
    assert "2 errors, 0 warnings" in page
    assert main(["inspect", "data", "--format", "shapes", "-o", "count=2"]) == 1
    assert "give --out PICTURE.png, --html DIR, or both" in capsys.readouterr().err
    assert main(["inspect", "data", "--format", "shapes", "--html", str(out), "--anchors"]) == 1
    assert "--anchors draws beside the --out picture" in capsys.readouterr().err
