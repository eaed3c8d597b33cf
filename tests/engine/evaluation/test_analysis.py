"""The error report's parts beside the error kinds: visibility, sizes, the classes a class is taken for,
the worst images, and the printed lines."""

from __future__ import annotations

import pytest

from maskrcnn.engine.evaluation.analysis import error_report, format_errors, write_error_report
from tests.engine.evaluation.test_errors import _box_rle, _ground_truth, _results


def _scene() -> dict:
    """Two images: the error scene of test_errors, and one where X and Y overlap by half their boxes."""
    ground_truth = _ground_truth()
    ground_truth["images"].append({"id": 2, "height": 200, "width": 200, "file_name": "pair.png"})
    for k, box in enumerate(([0, 0, 20, 20], [10, 0, 20, 20]), start=len(ground_truth["annotations"]) + 1):
        ground_truth["annotations"].append(
            {
                "id": k,
                "image_id": 2,
                "category_id": 1,
                "bbox": box,
                "area": 400,
                "segmentation": _box_rle(box),
                "iscrowd": 0,
            }
        )
    return ground_truth


def test_the_report_of_a_scene(tmp_path):
    ground_truth = _scene()
    results = [
        *_results(),
        {**_results()[0], "image_id": 2, "bbox": [0, 0, 20, 20], "segmentation": _box_rle([0, 0, 20, 20])},
    ]
    metrics = {"segm": {"APs": 0.25, "APm": 0.5, "APl": None}}
    per_class = [
        {"class": "one", "instances": 4, "mask_AP": 0.3, "mask_AP50": 0.6},
        {"class": "two", "instances": 3, "mask_AP": 0.1, "mask_AP50": 0.2},
    ]
    confusion = [[0, 1, 2], [0, 3, 0], [1, 1, 1]]  # background, one, two
    report = error_report(ground_truth, results, metrics, per_class, confusion, ["one", "two"])
    assert list(report) == ["segm", "per_class"]  # no box metrics given: no box section
    segm = report["segm"]
    # Sizes: every object is 20x20 (400 px, small) or 30x30 .. 40x40 (900 .. 1600 px).
    assert segm["sizes"] == {
        "small": {"objects": 3, "AP": 0.25},  # E (30x30 = 900 < 1024), X and Y
        "medium": {"objects": 4, "AP": 0.5},
        "large": {"objects": 0, "AP": None},
    }
    # X and Y cover half of each other's box (visible 0.5); the scene's objects do not touch.
    assert segm["visibility"]["partly covered"] == {"objects": 2, "found": 1, "recall": 0.5}  # X found
    assert segm["visibility"]["mostly covered"] == {"objects": 0, "found": 0, "recall": None}
    assert segm["visibility"]["free"] == {"objects": 5, "found": 3, "recall": pytest.approx(0.6)}
    worst = segm["worst_images"]
    assert [row["file_name"] for row in worst] == ["scene.png", "pair.png"]
    assert worst[1]["missed"] == 1
    assert [row["image_id"] for row in segm["per_image"]] == [1, 2]
    assert report["per_class"][1] == {
        "class": "two",
        "objects": 3,
        "AP": 0.1,
        "AP50": 0.2,
        "taken_for": [{"class": "background", "objects": 1}, {"class": "one", "objects": 1}],
    }
    assert report["per_class"][0]["taken_for"] == []
    (line,) = format_errors(report)
    assert line.startswith(
        f"mask AP50 {100 * segm['errors']['AP50']:.1f}; AP50 lost to (count): classification "
    )
    assert "missed " in line
    paths = write_error_report(report, tmp_path)
    assert paths["errors.png"].stat().st_size > 1000
    assert paths["errors.json"].is_file()
