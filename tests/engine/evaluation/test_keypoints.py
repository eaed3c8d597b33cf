"""Keypoint AP: OKS goldens computed by hand, COCO keypoint results, and evaluation without masks.

The ground truth here is written by hand as COCO keypoint annotations; the expected AP follows from the
object keypoint similarity of the paper and COCO's definition,
``OKS = mean over labelled keypoints of exp(-d^2 / (2 * area * (2 * sigma)^2))``, computed below
without pycocotools, and the ten OKS thresholds 0.50:0.05:0.95 it passes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from maskrcnn.data.keypoints import COCO_KEYPOINT_NAMES, COCO_SIGMAS, DEFAULT_SIGMA, KeypointSpec
from maskrcnn.engine.evaluation import (
    KEYPOINT_METRIC_NAMES,
    METRIC_NAMES,
    coco_ground_truth,
    coco_scores,
    confusion_matrix,
    detections_to_results,
    evaluate,
    format_metrics,
    ground_truth_sigmas,
    instances_to_results,
    metric_names,
    write_report,
)
from maskrcnn.engine.hooks import metric_value
from maskrcnn.modeling import build_model
from tests.engine.evaluation.helpers import (
    KEYPOINT_SPEC,
    SCENE,
    Landmarks,
    Oracle,
    Rectangles,
    detection,
    keypoint_detection,
    perfect,
    scene_keypoints,
    small_config,
    with_keypoints,
    without_masks,
)

# One object with labelled keypoints in image 0 (a 40 x 40 mask: area 1600, a "medium" object); keypoint
# 1 is not labelled. Image 1's object has no labelled keypoint (COCO ignores it, as it ignores crowds).
AREA = 1600
GT_POINTS = [(20.0, 20.0, 2), (0.0, 0.0, 0), (40.0, 30.0, 1)]
THRESHOLDS = np.linspace(0.5, 0.95, 10)


def flat(points):
    return [float(v) for point in points for v in point]


def ground_truth(tmp_path, names=("tip", "joint", "base")):
    images = [{"id": i, "height": 100, "width": 100, "file_name": f"{i}.png"} for i in (0, 1)]
    annotations = [
        {
            "id": 1,
            "image_id": 0,
            "category_id": 1,
            "bbox": [10, 10, 40, 40],
            "area": AREA,
            "iscrowd": 0,
            "keypoints": flat(GT_POINTS),
            "num_keypoints": 2,
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 1,
            "bbox": [50, 50, 30, 30],
            "area": 900,
            "iscrowd": 0,
            "keypoints": [0.0] * 9,
            "num_keypoints": 0,
        },
    ]
    categories = [{"id": 1, "name": "thing", "keypoints": list(names), "skeleton": [[1, 2], [2, 3]]}]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return COCO(str(path))


def result(points, score=0.9, image_id=0):
    return {
        "image_id": image_id,
        "category_id": 1,
        "bbox": [10, 10, 40, 40],
        "score": score,
        "keypoints": flat(points),
    }


def oks(gt_points, dt_points, sigmas, area):
    """The object keypoint similarity, from its definition."""
    terms = [
        math.exp(-((xd - xg) ** 2 + (yd - yg) ** 2) / (2 * area * (2 * sigma) ** 2))
        for (xg, yg, v), (xd, yd, _), sigma in zip(gt_points, dt_points, sigmas, strict=True)
        if v > 0
    ]
    return sum(terms) / len(terms)


def keypoint_metrics(tmp_path, results, **kwargs):
    scores = coco_scores(ground_truth(tmp_path), results, iou_types=("keypoints",), **kwargs)
    assert list(scores.metrics) == ["keypoints"]
    assert list(scores.metrics["keypoints"]) == list(KEYPOINT_METRIC_NAMES)
    return scores


def test_perfect_keypoints_score_one(tmp_path):
    # Keypoint 1 is not labelled: where the detection puts it does not count.
    points = [(20.0, 20.0, 1.0), (77.0, 3.0, -2.0), (40.0, 30.0, 5.0)]
    scores = keypoint_metrics(tmp_path, [result(points)])
    metrics = scores.metrics["keypoints"]
    for name in ("AP", "AP50", "AP75", "APm", "AR", "AR50", "AR75", "ARm"):
        assert metrics[name] == pytest.approx(1.0), name
    assert metrics["APl"] is None  # no large object
    assert metrics["ARl"] is None
    assert scores.per_class["keypoints"][1] == {"AP": pytest.approx(1.0), "AP50": pytest.approx(1.0)}
    assert scores.pr_curves["keypoints"]["0.75"] == pytest.approx([1.0] * 101)


@pytest.mark.parametrize(
    ("sigmas", "expected_oks", "expected_ap"),
    [
        # The default sigma 0.05 (the names are not COCO's): keypoint 0 four pixels off is
        # exp(-16 / (2 * 1600 * 0.1^2)) = exp(-1/2); the mean with keypoint 2's 1 is 0.803: it passes
        # the thresholds 0.50 .. 0.80, seven of ten.
        (None, (math.exp(-0.5) + 1) / 2, 0.7),
        # A sharper keypoint 0 (sigma 0.025): exp(-2), mean 0.568, passing 0.50 and 0.55 only.
        ((0.025, 0.05, 0.05), (math.exp(-2) + 1) / 2, 0.2),
    ],
)
def test_shifted_keypoints_score_the_thresholds_their_oks_passes(tmp_path, sigmas, expected_oks, expected_ap):
    points = [(24.0, 20.0, 1.0), (0.0, 0.0, 1.0), (40.0, 30.0, 1.0)]
    used = sigmas if sigmas is not None else (DEFAULT_SIGMA,) * 3
    similarity = oks(GT_POINTS, points, used, AREA)
    assert similarity == pytest.approx(expected_oks)
    assert expected_ap == pytest.approx(np.mean(similarity >= THRESHOLDS))
    metrics = keypoint_metrics(tmp_path, [result(points)], oks_sigmas=sigmas).metrics["keypoints"]
    assert metrics["AP"] == pytest.approx(expected_ap)
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(1.0 if similarity >= 0.75 else 0.0)
    assert metrics["APm"] == pytest.approx(expected_ap)  # the one object is medium
    assert metrics["AR"] == pytest.approx(expected_ap)  # one object: recall 1 at each threshold passed


def test_objects_without_labelled_keypoints_are_ignored(tmp_path):
    true = result([(20.0, 20.0, 1.0), (0.0, 0.0, 1.0), (40.0, 30.0, 1.0)], score=0.5)
    # On image 1's object (keypoints inside its box doubled): matched to an ignored object, no false
    # positive, even ranked first.
    on_ignored = result([(60.0, 60.0, 1.0)] * 3, score=0.9, image_id=1)
    assert keypoint_metrics(tmp_path, [true, on_ignored]).metrics["keypoints"]["AP"] == pytest.approx(1.0)
    # Far from it: a false positive ranked first, precision 1/2 at every recall.
    far = result([(99.0, 0.0, 1.0)] * 3, score=0.9, image_id=1)
    assert keypoint_metrics(tmp_path, [true, far]).metrics["keypoints"]["AP"] == pytest.approx(0.5)
    # Nothing at all: zeros.
    assert keypoint_metrics(tmp_path, []).metrics["keypoints"]["AP"] == 0.0


def test_sigmas_from_the_keypoint_names(tmp_path):
    assert ground_truth_sigmas(ground_truth(tmp_path)) == [DEFAULT_SIGMA] * 3
    coco = ground_truth(tmp_path, names=COCO_KEYPOINT_NAMES)
    assert ground_truth_sigmas(coco) == list(COCO_SIGMAS)
    coco.dataset["categories"][0].pop("keypoints")
    with pytest.raises(ValueError, match="no category names its keypoints; pass oks_sigmas"):
        ground_truth_sigmas(coco)


def test_keypoint_evaluation_says_what_is_missing(tmp_path):
    gt = ground_truth(tmp_path)
    box_only = {k: v for k, v in result(GT_POINTS).items() if k != "keypoints"}
    with pytest.raises(ValueError, match="1 of 1 results have no keypoints to evaluate keypoints"):
        coco_scores(gt, [box_only], iou_types=("keypoints",))
    with pytest.raises(
        ValueError, match=r"result of image 0 \(category 1\) has 6 keypoint values; expected 9"
    ):
        coco_scores(gt, [result(GT_POINTS[:2])], iou_types=("keypoints",))
    with pytest.raises(
        ValueError, match=r"has 9 keypoint values; expected 6 \(2 keypoints, one OKS sigma each\)"
    ):
        coco_scores(gt, [result(GT_POINTS)], iou_types=("keypoints",), oks_sigmas=(0.1, 0.1))
    del gt.dataset["annotations"][1]["num_keypoints"]
    with pytest.raises(
        ValueError, match=r"ground-truth annotation 2 of image 1 \(category 1\) has no num_keypoints"
    ):
        coco_scores(gt, [result(GT_POINTS)], iou_types=("keypoints",))
    with pytest.raises(ValueError, match="unknown evaluation type 'kpts'"):
        coco_scores(gt, [], iou_types=("kpts",))
    assert metric_names("keypoints") == KEYPOINT_METRIC_NAMES
    assert metric_names("segm") == METRIC_NAMES


def test_keypoint_results_carry_each_keypoints_score():
    keypoints = torch.tensor([[[1.5, 2.25, 1.0], [3.0, 4.0, 1.0]], [[5.0, 6.0, 1.0], [7.0, 8.5, 1.0]]])
    scores = torch.tensor([[0.5, -1.25], [2.0, 3.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 2.0, 5.0, 9.0]])
    out = instances_to_results(
        4, boxes, torch.tensor([1, 2]), torch.tensor([0.75, 0.5]), None, [7, 3],
        keypoints=keypoints, keypoints_scores=scores,
    )  # fmt: skip
    assert out == [
        {"image_id": 4, "category_id": 7, "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.75,
         "keypoints": [1.5, 2.25, 0.5, 3.0, 4.0, -1.25]},
        {"image_id": 4, "category_id": 3, "bbox": [1.0, 2.0, 4.0, 7.0], "score": 0.5,
         "keypoints": [5.0, 6.0, 2.0, 7.0, 8.5, 3.0]},
    ]  # fmt: skip
    # Without scores, the keypoints' own third column.
    unscored = instances_to_results(4, boxes, torch.tensor([1, 2]), torch.tensor([0.75, 0.5]), None, [7, 3],
                                    keypoints=keypoints)  # fmt: skip
    assert [r["keypoints"][2::3] for r in unscored] == [[1.0, 1.0], [1.0, 1.0]]
    # A keypoint-only model's detections: boxes and keypoints, no segmentation.
    (only,) = detections_to_results([keypoint_detection([(5, 25, 5, 25)], [1], [0.9])], [0], [1, 2])
    assert set(only) == {"image_id", "category_id", "bbox", "score", "keypoints"}
    assert len(only["keypoints"]) == 3 * KEYPOINT_SPEC.num_keypoints


def test_a_model_without_masks_is_scored_on_its_boxes(tmp_path):
    oracle = Oracle()
    oracle.dets = [without_masks(d) for d in with_keypoints(perfect())]
    evaluation = evaluate(oracle, Rectangles(), progress=False)
    assert list(evaluation.metrics) == ["bbox"]  # no masks, and the dataset has no keypoints to score
    assert evaluation.metrics["bbox"]["AP"] == pytest.approx(1.0)
    assert evaluation.confusion_type == "bbox"
    assert evaluation.confusion.tolist() == [[0, 0, 0], [0, 2, 0], [0, 0, 1]]
    assert set(evaluation.per_class[0]) == {"class", "category_id", "instances", "box_AP", "box_AP50"}
    assert all("segmentation" not in r and "keypoints" in r for r in evaluation.results)
    assert evaluation.summary() == "box AP 1.000 AP50 1.000 AP75 1.000"
    paths = write_report(evaluation, tmp_path / "report")
    assert list(json.loads(paths["metrics.json"].read_text())) == ["bbox"]
    assert "mask" not in paths["per_class.txt"].read_text()
    assert json.loads(paths["confusion_matrix.json"].read_text())["iou"] == "box"


def test_the_box_confusion_matrix():
    gt = coco_ground_truth(Rectangles())
    dets = perfect()
    dets[0] = detection([SCENE[0][0][1], SCENE[0][1][1]], [2, 2], [0.9, 0.8])  # a taken for b
    dets[2] = detection([(0, 10, 0, 10)], [2], [0.6])  # nothing there: a false positive
    by_mask = confusion_matrix(gt, detections_to_results(dets, [0, 1, 2], [1, 2]), [1, 2])
    boxes_only = detections_to_results([without_masks(d) for d in dets], [0, 1, 2], [1, 2])
    by_box = confusion_matrix(gt, boxes_only, [1, 2], iou_type="bbox")
    assert by_box.tolist() == by_mask.tolist() == [[0, 0, 1], [0, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="iou_type 'keypoints'"):
        confusion_matrix(gt, boxes_only, [1, 2], iou_type="keypoints")


def test_evaluate_scores_keypoints_and_writes_them(tmp_path):
    """A model with masks and keypoints on a dataset with keypoints: ``keypoints`` next to ``bbox`` and
    ``segm`` in the metrics, the per-class table and metrics.json."""
    oracle = Oracle()
    oracle.dets = with_keypoints(perfect())
    evaluation = evaluate(oracle, Landmarks(), progress=False)
    assert list(evaluation.metrics) == ["bbox", "segm", "keypoints"]
    assert list(evaluation.metrics["keypoints"]) == list(KEYPOINT_METRIC_NAMES)
    assert evaluation.metrics["keypoints"]["AP"] == pytest.approx(1.0)
    assert evaluation.metrics["segm"]["AP"] == pytest.approx(1.0)
    assert [r["keypoint_AP"] for r in evaluation.per_class] == [pytest.approx(1.0)] * 2
    assert all(len(r["keypoints"]) == 3 * KEYPOINT_SPEC.num_keypoints for r in evaluation.results)
    paths = write_report(evaluation, tmp_path / "report")
    metrics = json.loads(paths["metrics.json"].read_text())
    assert list(metrics) == ["bbox", "segm", "keypoints"]
    assert metrics["keypoints"] == evaluation.metrics["keypoints"]
    assert "keypoint AP50" in paths["per_class.txt"].read_text()
    assert format_metrics(evaluation.metrics).splitlines()[3].startswith("keypoint    1.000")
    assert evaluation.summary().endswith("; keypoint AP 1.000 AP50 1.000 AP75 1.000")
    # What train.best_metric reads: "keypoints.AP" is there to pick the best checkpoint by.
    assert metric_value({"metrics": evaluation.metrics}, "keypoints.AP") == pytest.approx(1.0)
    # The same model on a dataset without keypoints: boxes and masks only.
    assert list(evaluate(oracle, Rectangles(), progress=False).metrics) == ["bbox", "segm"]


@pytest.mark.parametrize(
    ("sigma", "expected_ap"),
    [
        # Each keypoint 4 px off on a 40 x 40 object: OKS exp(-16 / (2 * 1600 * (2 * 0.05)^2)) =
        # exp(-1/2) = 0.607 passes 0.50, 0.55, 0.60.
        (None, 0.3),
        # With the spec's sigma 0.1: exp(-1/8) = 0.882 passes 0.50 .. 0.85.
        (0.1, 0.8),
    ],
)
def test_evaluate_uses_the_datasets_sigmas(sigma, expected_ap):
    scene = [[(1, (0, 40, 5, 45))]]
    sigmas = None if sigma is None else (sigma,) * 3
    spec = KeypointSpec(KEYPOINT_SPEC.names, KEYPOINT_SPEC.skeleton, sigmas=sigmas)
    gt_points = scene_keypoints(scene[0])[0].tolist()
    moved = [(x + 4.0, y, 1.0) for x, y, _ in gt_points]
    assert np.mean(oks(gt_points, moved, spec.oks_sigmas(), 1600) >= THRESHOLDS) == pytest.approx(expected_ap)
    oracle = Oracle(scene)
    oracle.dets = with_keypoints(perfect(scene), scene, shift=4.0)
    evaluation = evaluate(oracle, Landmarks(scene, spec=spec), progress=False)
    assert evaluation.metrics["keypoints"]["AP"] == pytest.approx(expected_ap)
    assert evaluation.metrics["bbox"]["AP"] == pytest.approx(1.0)


def test_a_model_without_masks_is_not_evaluated_on_tiles():
    oracle = Oracle()
    oracle.dets = [without_masks(d) for d in with_keypoints(perfect())]
    # Said before anything runs when the model says it has no masks, else at its first detections.
    oracle.roi_heads = SimpleNamespace(has_masks=False, num_keypoints=3)
    with pytest.raises(ValueError, match="tile=32: tiled inference joins the tiles' detections"):
        evaluate(oracle, Landmarks(), progress=False, tile=32)
    assert oracle.calls == []
    del oracle.roi_heads
    with pytest.raises(ValueError, match="by their masks, and this model gives none"):
        evaluate(oracle, Landmarks(), progress=False, tile=32)


def test_evaluate_a_real_keypoint_only_model(one_thread):
    """The tiny model without a mask head, untrained: boxes and keypoints scored, in range."""
    torch.manual_seed(0)
    cfg = small_config()
    heads = dataclasses.replace(cfg.roi_heads, mask_head=False, num_keypoints=3, keypoint_head_channels=(16,))
    model = build_model(dataclasses.replace(cfg, num_classes=3, roi_heads=heads))
    evaluation = evaluate(model, Landmarks(), progress=False)
    assert list(evaluation.metrics) == ["bbox", "keypoints"]
    for values in evaluation.metrics.values():
        assert all(v is None or 0.0 <= v <= 1.0 for v in values.values())
    assert evaluation.results
    assert all(len(r["keypoints"]) == 9 and "segmentation" not in r for r in evaluation.results)
    assert evaluation.confusion_type == "bbox"
