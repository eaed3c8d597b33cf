"""The semantic figures of evaluation: pixel counts and IoU worked out by hand, overlaps by score,
crowds and other ignored pixels, the score threshold, and ``evaluate`` with its report."""

import json

import numpy as np
import pytest
import torch

from maskrcnn.data.formats.export import CocoBuilder
from maskrcnn.engine.evaluation import (
    SemanticScores,
    evaluate,
    format_semantic,
    instances_to_results,
    semantic_scores,
    write_report,
)
from maskrcnn.engine.evaluation.semantic import IGNORED, ground_truth_class_map
from tests.engine.evaluation.helpers import (
    Oracle,
    Rectangles,
    perfect,
    with_false_positive,
    without_masks,
)

H, W = 8, 10
NAMES = ["cat", "dog"]


def masks_of(rects):
    """uint8 ``[N, H, W]``: one rectangle ``(y0, y1, x0, x1)`` (end exclusive) per mask."""
    masks = torch.zeros(len(rects), H, W, dtype=torch.uint8)
    for k, (y0, y1, x0, x1) in enumerate(rects):
        masks[k, y0:y1, x0:x1] = 1
    return masks


def ground_truth(*images):
    """A builder of ``H x W`` images, each a list of ``(label, rect)`` or ``(label, rect, iscrowd)``."""
    builder = CocoBuilder(NAMES, [1, 2])
    for image_id, objects in enumerate(images):
        masks = masks_of([o[1] for o in objects])
        target = {
            "masks": masks,
            "boxes": torch.zeros(len(objects), 4),  # not read by the semantic maps
            "labels": torch.tensor([o[0] for o in objects], dtype=torch.int64),
            "iscrowd": torch.tensor([o[2] if len(o) > 2 else 0 for o in objects], dtype=torch.int64),
        }
        builder.add(image_id, H, W, target)
    return builder


def results(image_id, *found):
    """COCO results of ``(label, rect, score)`` detections."""
    masks = masks_of([f[1] for f in found]).bool()
    labels = torch.tensor([f[0] for f in found], dtype=torch.int64)
    scores = torch.tensor([f[2] for f in found], dtype=torch.float32)
    return instances_to_results(image_id, torch.zeros(len(found), 4), labels, scores, masks, [1, 2])


CAT, DOG = (0, 4, 0, 4), (4, 8, 5, 10)  # 16 and 20 pixels of the 80


def test_pixel_counts_and_iou_worked_out_by_hand():
    truth = ground_truth([(1, CAT), (2, DOG)])
    # The cat found 8 pixels too wide (rows 0-3, columns 0-5), the dog missing its top row of 5 pixels,
    # and a dog scoring lower than the cat over the cat's pixels: the cat keeps them.
    found = results(0, (1, (0, 4, 0, 6), 0.9), (2, (5, 8, 5, 10), 0.8), (2, (0, 4, 0, 4), 0.6))
    scores = semantic_scores(truth, found)
    # Rows ground truth (background, cat, dog), columns predicted.
    assert scores.confusion.tolist() == [[36, 8, 0], [0, 16, 0], [5, 0, 15]]
    assert scores.confusion.dtype == np.int64
    cat, dog, background = 16 / (16 + 8), 15 / (15 + 5), 36 / (36 + 8 + 5)
    assert scores.iou == pytest.approx([background, cat, dog])
    assert scores.mean_iou == pytest.approx((cat + dog) / 2)  # the background is not in the mean
    assert scores.pixel_accuracy == pytest.approx((36 + 16 + 15) / 80)
    assert scores.to_dict() == {
        "mIoU": pytest.approx((cat + dog) / 2),
        "pixel_accuracy": pytest.approx(67 / 80),
        "background_IoU": pytest.approx(background),
        "IoU": {"cat": pytest.approx(cat), "dog": pytest.approx(dog)},
        "score_threshold": 0.5,
        "ignored_pixels": 0,
    }
    assert format_semantic(scores.to_dict()) == (
        "semantic (score >= 0.5): mIoU 0.708, pixel accuracy 0.838, background IoU 0.735"
    )


def test_images_add_up_and_a_class_nowhere_has_no_iou():
    truth = ground_truth([(1, CAT)], [])
    # Image 1 has nothing, and a cat is found there: 16 false pixels. No dog anywhere.
    scores = semantic_scores(truth, results(0, (1, CAT, 0.9)) + results(1, (1, CAT, 0.7)))
    assert scores.confusion.tolist() == [[160 - 32, 16, 0], [0, 16, 0], [0, 0, 0]]
    assert scores.iou[1:] == [pytest.approx(0.5), None]
    assert scores.mean_iou == pytest.approx(0.5)  # over the cat alone
    assert SemanticScores(np.zeros((3, 3), dtype=np.int64), NAMES, 0.5).to_dict()["mIoU"] is None


def test_overlapping_predictions_go_to_the_higher_score():
    truth = ground_truth([(1, CAT)])
    cat, dog = (1, CAT), (2, (0, 4, 2, 6))  # the dog covers the cat's right half (8 pixels)
    cat_first = semantic_scores(truth, results(0, (*cat, 0.9), (*dog, 0.8))).confusion
    dog_first = semantic_scores(truth, results(0, (*cat, 0.8), (*dog, 0.9))).confusion
    assert cat_first[1].tolist() == [0, 16, 0]
    assert dog_first[1].tolist() == [0, 8, 8]
    # Equal scores: the earlier result, as the predicted maps of ``predict`` have it.
    tied = semantic_scores(truth, results(0, (*dog, 0.9), (*cat, 0.9))).confusion
    assert tied[1].tolist() == [0, 8, 8]


def test_crowds_and_overlaps_of_two_classes_are_ignored():
    crowd = (0, 4, 0, 10)  # rows 0-3, 40 pixels, a third of them under the cat (non-crowd)
    truth = ground_truth([(1, CAT), (2, crowd, 1), (2, (2, 6, 2, 6)), (2, (4, 8, 5, 10))])
    classes = ground_truth_class_map(truth.annotations, (H, W), {1: 1, 2: 2})
    expected = torch.zeros(H, W, dtype=torch.int64)
    expected[4:8, 5:10] = 2
    expected[2:6, 2:6] = 2  # two dogs overlap: a dog still
    expected[0:4, 0:4] = 1
    expected[2:4, 2:4] = IGNORED  # the cat and a dog overlap
    expected[0:4, 4:10] = IGNORED  # the crowd where no instance is...
    expected[2:4, 4:6] = 2  # ...but a dog (non-crowd) is
    assert classes.tolist() == expected.tolist()
    # A cat found over everything: the ignored pixels count nowhere, the others are cat or wrong.
    scores = semantic_scores(truth, results(0, (1, (0, 8, 0, 10), 0.9)))
    ignored = int((expected == IGNORED).sum())
    assert ignored == 4 + 24 - 4
    assert scores.ignored_pixels == ignored
    assert scores.confusion.sum() == H * W - ignored
    assert scores.confusion[:, 1].tolist() == [
        int((expected == 0).sum()),
        int((expected == 1).sum()),
        int((expected == 2).sum()),
    ]


def test_classes_the_model_cannot_predict_are_ignored():
    truth = ground_truth([(1, CAT), (2, DOG)])
    scores = semantic_scores(truth, results(0, (2, DOG, 0.9)), scored=[2])
    assert scores.ignored_pixels == 16  # the cat's
    assert scores.iou[1:] == [None, 1.0]
    assert scores.mean_iou == 1.0


def test_only_detections_at_or_above_the_threshold_are_painted():
    truth = ground_truth([(1, CAT)])
    found = results(0, (1, CAT, 0.5), (2, DOG, 0.4))
    assert semantic_scores(truth, found).confusion.tolist() == [[64, 0, 0], [0, 16, 0], [0, 0, 0]]
    low = semantic_scores(truth, found, score_threshold=0.3)
    assert low.confusion.tolist() == [[44, 0, 20], [0, 16, 0], [0, 0, 0]]
    assert low.score_threshold == 0.3
    assert semantic_scores(truth, found, score_threshold=0.6).iou[1] == 0.0  # the cat all missed


def test_evaluate_reports_the_semantic_figures(tmp_path):
    """The rectangles of ``helpers``: a perfect model, plus a 20 x 20 cat on the empty image."""
    oracle = Oracle()
    oracle.dets = with_false_positive()
    assert evaluate(oracle, Rectangles(), progress=False).semantic is None  # not asked for
    evaluation = evaluate(oracle, Rectangles(), progress=False, semantic_threshold=0.5)
    semantic = evaluation.semantic
    # Class a: 20 x 20 + 28 x 30 pixels, and the 400 false ones; b: 20 x 15, exact. 3 images of 40 x 50.
    a_pixels, b_pixels, total = 400 + 840, 300, 3 * 40 * 50
    background = total - a_pixels - b_pixels - 400
    assert semantic.confusion.tolist() == [[background, 400, 0], [0, a_pixels, 0], [0, 0, b_pixels]]
    assert semantic.iou[1:] == [pytest.approx(a_pixels / (a_pixels + 400)), 1.0]
    assert [r["semantic_IoU"] for r in evaluation.per_class] == semantic.iou[1:]
    assert evaluate(oracle, Rectangles(), progress=False, semantic_threshold=0.96).semantic.iou[1:] == [
        0.0,  # nothing scores 0.96: every pixel of a and b missed
        0.0,
    ]
    paths = write_report(evaluation, tmp_path / "report")
    metrics = json.loads(paths["metrics.json"].read_text())
    assert list(metrics) == ["bbox", "segm", "semantic"]
    assert metrics["semantic"] == json.loads(json.dumps(semantic.to_dict()))
    assert list(metrics["semantic"]["IoU"]) == ["a", "b"]
    table = paths["per_class.txt"].read_text().splitlines()
    assert table[0].endswith("semantic IoU")
    assert table[2].endswith(f"{semantic.iou[1]:.3f}")
    assert table[-1].endswith(f"{semantic.mean_iou:.3f}")  # the "all" row: the mean IoU


def test_a_model_without_masks_has_no_semantic_figures():
    oracle = Oracle()
    oracle.dets = [without_masks(det) for det in perfect()]
    evaluation = evaluate(oracle, Rectangles(), progress=False, semantic_threshold=0.5)
    assert list(evaluation.metrics) == ["bbox"]
    assert evaluation.semantic is None
    assert "semantic_IoU" not in evaluation.per_class[0]
