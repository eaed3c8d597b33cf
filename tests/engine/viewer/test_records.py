"""What the viewer is given of each image: objects with their outcome, detections with their error kind
and IoU, masks as the RLE text pycocotools decodes to the right pixels."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from maskrcnn.engine.evaluation.errors import ERROR_KINDS, analyze_errors
from maskrcnn.engine.viewer.records import evaluation_records, rle_text
from tests.engine.evaluation.helpers import SCENE, H, W, rect_mask
from tests.engine.viewer.helpers import errors_evaluation


def _decode(text: str, height: int, width: int) -> np.ndarray:
    return mask_utils.decode({"size": [height, width], "counts": text.encode("ascii")})


@pytest.fixture(scope="module")
def records():
    evaluation = errors_evaluation()
    analysis = analyze_errors(evaluation.ground_truth, evaluation.results, iou_type="segm")
    return evaluation_records(evaluation.ground_truth, evaluation.results, analysis)


def test_one_record_per_image_with_its_objects_and_their_masks(records):
    assert [(r.height, r.width) for r in records] == [(H, W)] * 3
    assert [r.name for r in records] == [f"image_{k}.png" for k in (0, 1, 2)]  # no files: COCO's names
    for record, objects in zip(records, SCENE, strict=True):
        assert [o["c"] for o in record.objects] == [label - 1 for label, _ in objects]
        for item, (_, rect) in zip(record.objects, objects, strict=True):
            np.testing.assert_array_equal(_decode(item["m"], H, W), rect_mask(rect))
            y0, y1, x0, x1 = rect
            assert item["b"] == [x0, y0, x1 - x0, y1 - y0]
            assert item["crowd"] is False


def test_each_object_says_whether_it_was_found_and_each_detection_its_kind(records):
    first, second, empty = records
    assert [(o["found"], o["iou"]) for o in first.objects] == [(True, 1.0), (True, 1.0)]
    assert [d["k"] for d in first.detections] == ["tp", "tp"]
    # Image 1: the right mask with the wrong class: a classification error at IoU 1, its object not found.
    assert [(d["k"], d["iou"], d["c"]) for d in second.detections] == [("classification", 1.0, 1)]
    assert second.objects[0]["found"] is False
    assert second.objects[0]["iou"] == 1.0
    assert [(d["k"], d["iou"]) for d in empty.detections] == [("background", 0.0)]
    assert second.summary["AP50"] == 0.0
    assert second.summary["classification"] == 1
    assert empty.summary["AP50"] is None
    assert empty.summary["background"] == 1
    assert set(first.summary) == {"AP50", *ERROR_KINDS}


def test_detections_are_best_first_and_the_index_holds_no_masks(records):
    scores = [d["s"] for d in records[0].detections]
    assert scores == sorted(scores, reverse=True)
    entry = records[0].index_entry()
    assert entry["gt"] == [0, 1]
    assert entry["dt"] == [[d["c"], d["s"]] for d in records[0].detections]
    assert set(entry) == {"name", "w", "h", "gt", "dt", "summary"}  # no masks: those load per image
    assert records[0].details()["objects"][0]["m"] == records[0].objects[0]["m"]


def test_rle_text_of_polygons_uncompressed_and_compressed_runs():
    polygon = [[2.0, 2.0, 30.0, 2.0, 30.0, 20.0, 2.0, 20.0]]
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygon, H, W)))
    np.testing.assert_array_equal(_decode(rle_text(polygon, H, W), H, W), expected)
    mask = np.asfortranarray(rect_mask((3, 9, 4, 20)))
    compressed = mask_utils.encode(mask)
    assert rle_text(compressed, H, W) == compressed["counts"].decode("ascii")
    uncompressed = {"size": [H, W], "counts": _column_runs(mask)}
    np.testing.assert_array_equal(_decode(rle_text(uncompressed, H, W), H, W), mask)
    assert rle_text(None, H, W) is None
    assert rle_text([], H, W) is None


def _column_runs(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths over the pixels in column order, starting with zeros."""
    flat = mask.flatten(order="F")
    runs, value, count = [], 0, 0
    for pixel in flat:
        if pixel == value:
            count += 1
        else:
            runs.append(count)
            value, count = pixel, 1
    runs.append(count)
    return runs
