"""The report files and the one rendering of metrics."""

import json
import os
import stat

import pytest
from PIL import Image

from maskrcnn.engine.evaluation import (
    METRIC_NAMES,
    REPORT_FILES,
    evaluate,
    format_metrics,
    metrics_summary,
    write_report,
)
from tests.engine.evaluation.helpers import SCENE, Oracle, Rectangles, detection, with_false_positive


@pytest.fixture
def evaluation():
    dets = with_false_positive()
    dets[1] = detection([SCENE[1][0][1]], [2], [0.7])  # a confusion, for the matrix
    oracle = Oracle()
    oracle.dets = dets
    return evaluate(oracle, Rectangles(), progress=False)


def test_write_report(tmp_path, evaluation):
    out = tmp_path / "report"
    paths = write_report(evaluation, out, ["alpha", "beta"])
    assert tuple(paths) == REPORT_FILES
    for name in ("metrics.json", "per_class.json", "per_class.txt", "results.json"):
        assert (out / name).is_file()
    for name in ("pr_curve.png", "confusion_matrix.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            assert image.width > 100
    assert sorted(p.name for p in out.iterdir()) == sorted(paths)  # no temporary file left behind
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["bbox", "segm"]
    for values in metrics.values():
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(values)
        assert list(values) == list(METRIC_NAMES)
    assert metrics == evaluation.metrics
    assert json.loads((out / "results.json").read_text()) == evaluation.results
    rows = json.loads((out / "per_class.json").read_text())
    assert [r["category_id"] for r in rows] == [1, 2]
    table = (out / "per_class.txt").read_text()
    assert "alpha" in table
    assert "beta" in table
    assert "mask AP50" in table
    confusion = json.loads((out / "confusion_matrix.json").read_text())
    assert confusion["labels"] == ["background", "alpha", "beta"]
    assert confusion["matrix"] == evaluation.confusion.tolist()
    assert json.loads((out / "pr_curves.json").read_text()) == evaluation.pr_curves
    summary = json.loads((out / "evaluation.json").read_text())
    assert {k: summary[k] for k in ("images", "skipped_images", "skipped", "detections")} == {
        "images": 3,
        "skipped_images": 0,
        "skipped": [],
        "detections": len(evaluation.results),
    }


def test_report_files_are_readable_by_others(tmp_path, evaluation):
    """Written atomically, yet with a plain ``open``'s permissions (not ``mkstemp``'s private 0600)."""
    before = os.umask(0o022)
    try:
        paths = write_report(evaluation, tmp_path / "report")
    finally:
        os.umask(before)
    assert {name: stat.S_IMODE(path.stat().st_mode) for name, path in paths.items()} == dict.fromkeys(
        REPORT_FILES, 0o644
    )


def test_write_report_needs_a_name_per_class(tmp_path, evaluation):
    with pytest.raises(ValueError, match="1 class names for 2 classes evaluated"):
        write_report(evaluation, tmp_path, ["alpha"])


METRICS = {
    "bbox": {"AP": 0.8484, "AP50": 0.98651, "AP75": 0.9, "APs": None, "APm": 0.5, "APl": 1.0},
    "segm": {"AP": 0.864, "AP50": 0.984, "AP75": 0.91, "APs": 0.1, "APm": None, "APl": 0.0},
}


def test_format_metrics_is_the_evaluate_table():
    assert format_metrics(METRICS).splitlines() == [
        "            AP    AP50    AP75     APs     APm     APl",
        "box      0.848   0.987   0.900       -   0.500   1.000",
        "mask     0.864   0.984   0.910   0.100       -   0.000",
    ]
    assert format_metrics(METRICS, keys=("AP", "AP50", "AP75")).splitlines() == [
        "            AP    AP50    AP75",
        "box      0.848   0.987   0.900",
        "mask     0.864   0.984   0.910",
    ]


def test_metrics_summary_is_one_line():
    assert metrics_summary(METRICS) == "box AP 0.848 AP50 0.987; mask AP 0.864 AP50 0.984"
    assert metrics_summary(METRICS, keys=("APs", "APm"), sections=("segm", "bbox")) == (
        "mask APs 0.100 APm -; box APs - APm 0.500"
    )
    assert metrics_summary(METRICS, keys=("AP",), sections=("segm",)) == "mask AP 0.864"
