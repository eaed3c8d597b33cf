"""The mask confusion matrix (crowds and empty results: see ``test_coco``)."""

import numpy as np

from maskrcnn.engine.evaluation import coco_ground_truth, confusion_matrix, detections_to_results
from tests.engine.evaluation.helpers import SCENE, Rectangles, detection, perfect


def test_confusion_matrix_counts_matches_confusions_misses_and_false_positives():
    dets = perfect()
    dets[0] = detection([SCENE[0][0][1], SCENE[0][1][1]], [2, 2], [0.9, 0.8])  # a taken for b
    dets[1] = detection([SCENE[1][0][1]], [1], [0.3])  # below the score threshold: a miss
    dets[2] = detection([(0, 10, 0, 10)], [2], [0.6])  # nothing there: a false positive
    gt = coco_ground_truth(Rectangles())
    matrix = confusion_matrix(gt, detections_to_results(dets, [0, 1, 2], [1, 2]), [1, 2])
    # rows: ground truth background, a, b; columns: predicted background, a, b
    assert matrix.tolist() == [[0, 0, 1], [1, 0, 1], [0, 0, 1]]
    assert matrix.dtype == np.int64


def test_confusion_matrix_score_threshold_and_one_to_one_matching():
    rect = SCENE[1][0][1]
    gt = coco_ground_truth(Rectangles())
    # Two detections of the one object of image 1: the higher-scoring one matches, the other is a false
    # positive; image 0's two objects are missed.
    dets = [detection([], [], []), detection([rect, rect], [1, 2], [0.9, 0.8]), detection([], [], [])]
    results = detections_to_results(dets, [0, 1, 2], [1, 2])
    assert confusion_matrix(gt, results, [1, 2]).tolist() == [[0, 0, 1], [1, 1, 0], [1, 0, 0]]
    # Below score_threshold, neither counts.
    assert confusion_matrix(gt, results, [1, 2], score_threshold=0.95).tolist() == [
        [0, 0, 0],
        [2, 0, 0],
        [1, 0, 0],
    ]
