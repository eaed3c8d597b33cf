"""COCO evaluation: box, mask and keypoint (OKS) AP with pycocotools, per-class AP, precision-recall
curves, a confusion matrix, the semantic (pixel) IoU of the class maps and the report files.

* :mod:`~maskrcnn.engine.evaluation.coco`: ground truth, the conversion of detections to COCO results,
  pycocotools' scores;
* :mod:`~maskrcnn.engine.evaluation.confusion`: the confusion matrix;
* :mod:`~maskrcnn.engine.evaluation.semantic`: the pixel IoU of the class maps the detections make;
* :mod:`~maskrcnn.engine.evaluation.evaluator`: :func:`evaluate` (a model on a dataset, also under
  torchrun) and its :class:`Evaluation`;
* :mod:`~maskrcnn.engine.evaluation.report`: the report files and the rendering of metrics.
"""

from maskrcnn.engine.evaluation.coco import (
    IOU_TYPES,
    KEYPOINT_METRIC_NAMES,
    MASK_THRESHOLD,
    METRIC_NAMES,
    CocoScores,
    binarize_masks,
    coco_ground_truth,
    coco_metrics,
    coco_scores,
    detections_to_results,
    ground_truth_sigmas,
    instances_to_results,
    metric_names,
)
from maskrcnn.engine.evaluation.confusion import confusion_matrix
from maskrcnn.engine.evaluation.evaluator import Evaluation, evaluate, match_classes
from maskrcnn.engine.evaluation.report import (
    REPORT_FILES,
    SECTION_TITLES,
    format_metrics,
    format_semantic,
    metrics_summary,
    write_report,
)
from maskrcnn.engine.evaluation.semantic import SemanticScores, semantic_scores

__all__ = [
    "IOU_TYPES",
    "KEYPOINT_METRIC_NAMES",
    "MASK_THRESHOLD",
    "METRIC_NAMES",
    "REPORT_FILES",
    "SECTION_TITLES",
    "CocoScores",
    "Evaluation",
    "SemanticScores",
    "binarize_masks",
    "coco_ground_truth",
    "coco_metrics",
    "coco_scores",
    "confusion_matrix",
    "detections_to_results",
    "evaluate",
    "format_metrics",
    "format_semantic",
    "ground_truth_sigmas",
    "instances_to_results",
    "match_classes",
    "metric_names",
    "metrics_summary",
    "semantic_scores",
    "write_report",
]
