"""The two reports end to end: an evaluation folder with its pictures from the dataset, a dataset with
check-data's problems, and the refusals of folders that are not evaluations."""

from __future__ import annotations

import json

import pytest

from maskrcnn.data.check import check_dataset
from maskrcnn.engine.evaluation.errors import ERROR_KINDS
from maskrcnn.engine.viewer import dataset_report, evaluation_report, read_evaluation, read_log
from tests.engine.evaluation.helpers import Rectangles
from tests.engine.viewer.helpers import evaluation_folder
from tests.engine.viewer.test_site import read_details, read_index


def test_an_evaluation_report_holds_every_image_its_kinds_and_the_summary(tmp_path):
    folder = evaluation_folder(tmp_path / "eval")
    files = read_evaluation(folder)
    index = evaluation_report(files, tmp_path / "report", dataset=Rectangles(), title="rects")
    data = read_index(index.parent)
    assert data["mode"] == "evaluation"
    assert data["classes"] == ["a", "b"]
    assert [e["name"] for e in data["images"]] == ["image_0.png", "image_1.png", "image_2.png"]
    for number, entry in enumerate(data["images"], start=1):
        assert (index.parent / entry["thumb"]).is_file()
        assert (index.parent / entry["view"]).is_file()
        assert set(entry["summary"]) == {"AP50", *ERROR_KINDS}
        assert len(read_details(index.parent, number)["detections"]) == len(entry["dt"])
    assert [d["k"] for d in read_details(index.parent, 2)["detections"]] == ["classification"]
    page = index.read_text(encoding="utf-8")
    for heading in ("Metrics", "Why the AP is what it is", "Per class", "By object size"):
        assert heading in page, heading
    for figure in ("pr_curve.png", "confusion_matrix.png", "errors.png"):
        assert (index.parent / "figures" / figure).is_file(), figure
    assert "Training" not in page  # not a run: no history given


def test_a_run_report_shows_the_losses_and_the_validation_history(tmp_path):
    folder = evaluation_folder(tmp_path / "eval")
    history = [
        {"kind": "train", "step": s, "loss": 2.0 / s, "loss_mask": 1.0 / s, "lr": 0.01} for s in (1, 2, 3)
    ]
    history.append(
        {
            "kind": "validation",
            "step": 3,
            "epoch": 1.0,
            "val_loss": 0.5,
            "metrics": {"bbox": {"AP": 0.25, "AP50": 0.5}, "segm": {"AP": 0.3, "AP50": 0.55}},
        }
    )
    index = evaluation_report(
        read_evaluation(folder), tmp_path / "report", dataset=Rectangles(), history=history, title="run"
    )
    page = index.read_text(encoding="utf-8")
    assert "<h2>Training</h2>" in page
    assert "3 logged steps" in page
    assert "<td>0.250</td><td>0.500</td><td>0.300</td><td>0.550</td>" in page  # the validation's row
    for figure in ("loss_curve.png", "validation_history.png"):
        assert (index.parent / "figures" / figure).stat().st_size > 1000, figure


def test_folders_that_are_not_evaluations_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"no ground_truth\.json, results\.json, metrics\.json"):
        read_evaluation(tmp_path)
    folder = evaluation_folder(tmp_path / "eval")
    results = json.loads((folder / "results.json").read_text())
    results[0]["image_id"] = 999
    (folder / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="result 0 \\(image_id 999"):
        read_evaluation(folder)
    del results[0]["score"]
    (folder / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="result 0 has no score or bbox"):
        read_evaluation(folder)
    (folder / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"metrics\.json: not valid JSON"):
        read_evaluation(folder)


def test_a_dataset_report_outlines_the_images_with_problems(tmp_path):
    dataset = Rectangles(bad={1})
    check = check_dataset(dataset, source="rects")
    index = dataset_report(dataset, tmp_path / "report", check=check, title="rects")
    data = read_index(index.parent)
    assert data["mode"] == "dataset"
    first, broken, empty = data["images"]
    assert first["gt"] == [0, 1]
    assert first["dt"] == []
    assert "problems" not in first
    assert "thumb" not in broken
    assert broken["problems"] == ["error: image 1: broken on purpose"]
    assert empty["gt"] == []
    assert (index.parent / empty["thumb"]).is_file()
    page = index.read_text(encoding="utf-8")
    assert "1 errors, 0 warnings" in page
    assert "broken on purpose" in page
    assert "<td>a</td><td>1</td>" in page
    assert "<td>b</td><td>1</td>" in page


def test_the_log_is_read_past_a_line_cut_short(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"kind": "train", "step": 1}\n{"kind": "train", "step": 2}\n{"kind": "tr')
    assert [r["step"] for r in read_log(log)] == [1, 2]
