"""The error analysis on a scene built with one error of each kind: each detection lands in its kind,
and the AP50 each oracle gains is what pycocotools scores on the results (or ground truth) fixed by
hand as the oracle says, minus what it scores on them as they are. The AP50 itself is pycocotools'."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn.engine.evaluation.errors import ERROR_KINDS, analyze_errors, average_precision

SIZE = 200

# Objects: A and B of class 1; C, D and E of class 2 (xywh).
OBJECTS = {
    "A": (1, [10, 10, 40, 40]),
    "B": (1, [100, 100, 40, 40]),
    "C": (2, [10, 100, 40, 40]),
    "D": (2, [100, 10, 40, 40]),
    "E": (2, [150, 150, 30, 30]),
}
# Detections, best score first: (name, class, box, what it is).
DETECTIONS = [
    ("d1", 1, [10, 10, 40, 40], "tp"),  # A
    ("d2", 1, [14, 12, 40, 40], "duplicate"),  # A again (IoU 0.75)
    ("d3", 1, [12, 102, 40, 40], "classification"),  # on C, which is class 2
    ("d4", 1, [120, 120, 40, 40], "localisation"),  # B at IoU 0.14
    ("d5", 2, [60, 160, 20, 20], "background"),
    ("d6", 2, [30, 30, 40, 40], "both"),  # only A (class 1) near it, IoU 0.14
    ("d7", 1, [100, 100, 40, 40], "tp"),  # B
    ("d8", 2, [100, 10, 40, 40], "tp"),  # D; E is missed
]
SCORES = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.55]


def _box_rle(box: list[float]) -> dict:
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8, order="F")
    x, y, w, h = box
    mask[y : y + h, x : x + w] = 1
    rle = mask_utils.encode(mask)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _ground_truth(names=tuple(OBJECTS)) -> dict:
    annotations = [
        {
            "id": k + 1,
            "image_id": 1,
            "category_id": OBJECTS[name][0],
            "bbox": OBJECTS[name][1],
            "area": OBJECTS[name][1][2] * OBJECTS[name][1][3],
            "segmentation": _box_rle(OBJECTS[name][1]),
            "iscrowd": 0,
        }
        for k, name in enumerate(names)
    ]
    return {
        "images": [{"id": 1, "height": SIZE, "width": SIZE, "file_name": "scene.png"}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}],
    }


def _results(drop=(), change=None) -> list[dict]:
    results = []
    for (name, category, box, _), score in zip(DETECTIONS, SCORES, strict=True):
        if name in drop:
            continue
        if change and name in change:
            category = change[name]
        results.append(
            {
                "image_id": 1,
                "category_id": category,
                "bbox": box,
                "segmentation": _box_rle(box),
                "score": score,
            }
        )
    return results


def _coco_ap50(ground_truth: dict, results: list[dict], iou_type: str = "bbox") -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(ground_truth)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[1])


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_each_error_lands_in_its_kind_and_its_oracle_gains_what_pycocotools_scores(iou_type):
    ground_truth, results = _ground_truth(), _results()
    analysis = analyze_errors(ground_truth, results, iou_type=iou_type)
    assert analysis.detection_kinds == [kind for *_, kind in DETECTIONS]
    assert analysis.counts == {kind: 1 for kind in ERROR_KINDS}
    assert analysis.missed == [5]  # E; B and C are the objects of the localisation and class errors
    base = _coco_ap50(ground_truth, results, iou_type)
    assert analysis.ap50 == pytest.approx(base, abs=1e-12)
    fixed = {
        # d3 takes C's class: C is not found yet, so it is a true positive.
        "classification": _coco_ap50(ground_truth, _results(change={"d3": 2}), iou_type),
        # d4's object B is found (by d7): moved onto B it would be a duplicate, so it is removed.
        "localisation": _coco_ap50(ground_truth, _results(drop={"d4"}), iou_type),
        "both": _coco_ap50(ground_truth, _results(drop={"d6"}), iou_type),
        "duplicate": _coco_ap50(ground_truth, _results(drop={"d2"}), iou_type),
        "background": _coco_ap50(ground_truth, _results(drop={"d5"}), iou_type),
        "missed": _coco_ap50(_ground_truth(names=("A", "B", "C", "D")), results, iou_type),
    }
    for kind in ERROR_KINDS:
        assert analysis.gains[kind] == pytest.approx(fixed[kind] - base, abs=1e-12), kind
        assert analysis.gains[kind] > 0, kind  # every error here costs AP
    row = analysis.per_image[1]
    assert (row["detections"], row["objects"]) == (8, 5)
    assert [row[kind] for kind in ERROR_KINDS] == [1] * 6
    assert row["AP50"] == pytest.approx(base)  # one image: its AP is the dataset's


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_each_detection_and_object_has_the_iou_its_kind_was_decided_by(iou_type):
    ground_truth, results = _ground_truth(), _results()
    analysis = analyze_errors(ground_truth, results, iou_type=iou_type)
    names = list(OBJECTS)
    boxes = [OBJECTS[name][1] for name in names]
    # pycocotools' IoU of every detection (rows) with every object (columns), in box terms (the masks
    # are the boxes filled, so both types give the same numbers).
    table = mask_utils.iou([d[2] for d in DETECTIONS], boxes, [0] * len(boxes))
    # The object each detection's kind is about: d1 and d2 A, d3 C, d4 B, d7 B, d8 D; d5 and d6 the best.
    about = {0: "A", 1: "A", 2: "C", 3: "B", 6: "B", 7: "D"}
    for row, value in enumerate(analysis.detection_ious):
        expected = table[row, names.index(about[row])] if row in about else table[row].max()
        assert value == pytest.approx(expected, abs=1e-9), DETECTIONS[row][0]
    assert analysis.detection_ious[5] == pytest.approx(table[5, names.index("A")])  # "both": A, 0.14
    assert 0.1 <= analysis.detection_ious[5] < 0.5
    assert analysis.detection_ious[4] < 0.1
    # Found objects: the IoU of the true positive; the others: the best any detection has with them.
    found_by = {"A": 0, "B": 6, "D": 7}
    for k, name in enumerate(names):
        expected = table[found_by[name], k] if name in found_by else table[:, k].max()
        assert analysis.object_ious[k + 1] == pytest.approx(expected, abs=1e-9), name
    assert 0 < analysis.object_ious[5] < 0.1  # E, missed: only the corner of d4 (B's loc error) on it


def test_a_localisation_error_on_an_object_not_found_becomes_a_true_positive():
    ground_truth = _ground_truth(names=("A", "B"))
    results = [r for r in _results() if r["category_id"] == 1 and r["bbox"] != [100, 100, 40, 40]]
    analysis = analyze_errors(ground_truth, results, iou_type="bbox")
    assert analysis.detection_kinds == ["tp", "duplicate", "background", "localisation"]
    assert analysis.missed == []
    moved = [dict(r) for r in results]
    moved[3]["bbox"] = OBJECTS["B"][1]  # the oracle: d4 on B's box
    expected = _coco_ap50(ground_truth, moved) - _coco_ap50(ground_truth, results)
    assert analysis.gains["localisation"] == pytest.approx(expected, abs=1e-12)


def test_crowd_regions_are_neither_found_nor_missed():
    ground_truth = _ground_truth(names=("A", "B"))
    ground_truth["annotations"][1]["iscrowd"] = 1  # B is a crowd region
    results = [*_results()[:1], dict(_results()[6])]  # d1 on A, d7 on the crowd B
    analysis = analyze_errors(ground_truth, results, iou_type="bbox")
    assert analysis.detection_kinds == ["tp", "ignored"]
    assert analysis.missed == []
    assert analysis.ap50 == pytest.approx(_coco_ap50(ground_truth, results)) == pytest.approx(1.0)


def test_the_ap_is_pycocotools_on_random_scenes():
    rng = np.random.default_rng(0)
    images, annotations, results = [], [], []
    for image_id in range(1, 16):
        images.append({"id": image_id, "height": SIZE, "width": SIZE})
        for _ in range(rng.integers(0, 6)):
            x, y = (int(v) for v in rng.integers(0, 150, 2))
            w, h = (int(v) for v in rng.integers(5, 50, 2))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 4)),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(rng.random() < 0.05),
                }
            )
            for _ in range(rng.integers(0, 3)):  # detections near the object, of any class
                dx, dy = (int(v) for v in rng.integers(-10, 11, 2))
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": int(rng.integers(1, 4)),
                        "bbox": [x + dx, y + dy, w, h],
                        "score": float(rng.random()),
                    }
                )
    ground_truth = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": str(c)} for c in (1, 2, 3)],
    }
    analysis = analyze_errors(ground_truth, results, iou_type="bbox")
    assert analysis.ap50 == pytest.approx(_coco_ap50(ground_truth, results), abs=1e-12)
    assert sum(analysis.counts[k] for k in ERROR_KINDS if k != "missed") + analysis.detection_kinds.count(
        "tp"
    ) + analysis.detection_kinds.count("ignored") == len(results)


def test_average_precision_edges():
    assert average_precision([], [], 0) is None
    assert average_precision([], [], 3) == 0.0
    assert average_precision([0.9, 0.8], [True, True], 2) == pytest.approx(1.0)
    # One hit of two objects, after a false positive: precision 1/2 up to recall 1/2.
    assert average_precision([0.9, 0.8], [False, True], 2) == pytest.approx(51 * 0.5 / 101)
