"""Semantic-segmentation figures of an instance model: per-class IoU, mean IoU and pixel accuracy of the
class maps its detections make, against the class maps of the ground truth.

Per image, both maps give each pixel one class (0 background):

* predicted: the detections scoring at least ``score_threshold`` painted by
  :func:`maskrcnn.engine.semantic.semantic_map` (overlaps: the highest score wins). Evaluation runs the
  model with its low AP threshold; the detections at or above the threshold are the ones ``maskrcnn
  predict --score-threshold T`` keeps, so the map is the one ``predict --semantic`` writes.
* ground truth: each non-crowd instance's pixels are its class, the pixels no instance covers are
  background. Pixels neither right nor wrong for any answer are *ignored* (left out of every count):
  those of crowd regions (``iscrowd``: many objects under one outline; as COCO's AP does not count
  detections there) that no non-crowd instance covers, those where instances of two different classes
  overlap (the annotation says both), and those of the classes the model cannot predict (the dataset
  classes ``scored`` leaves out, see :func:`~maskrcnn.engine.evaluation.match_classes`) that no scored
  instance covers. Instances of one class that overlap are simply that class.

The pixels counted are accumulated over the images into a ``(K + 1) x (K + 1)`` confusion matrix (rows
ground truth, columns predicted). A class's IoU is ``TP / (TP + FP + FN)`` in pixels; the mean IoU is
the mean over the foreground classes that occur in the ground truth or in the predictions (a class that
occurs in neither has no IoU: ``None``); the background's IoU is reported beside it, not in the mean (it
covers most pixels of most images and would lift every model's mean alike). Pixel accuracy is the share
of counted pixels, background included, given their right class.

The maps are made from the COCO results (RLE masks) and the ground truth's builder, the same records
the COCO metrics are computed from: under ``torchrun``, rank 0 computes them from the gathered records,
exactly as one process would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maskrcnn.data.formats.export import CocoBuilder
from maskrcnn.engine.semantic import semantic_map
from maskrcnn.ops.masks import rle_to_crops

__all__ = [
    "IGNORED",
    "SemanticScores",
    "ground_truth_class_map",
    "pixel_confusion",
    "predicted_class_map",
    "semantic_scores",
]

IGNORED = -1
"""The value of ignored pixels in a ground-truth class map."""

Result = dict[str, Any]


@dataclass
class SemanticScores:
    """The pixel counts of the class maps, and the figures made from them.

    Attributes:
        confusion: int64 ``[K + 1, K + 1]`` pixels: rows ground-truth class, columns predicted class
            (index = label, 0 background); ignored pixels are not in it.
        class_names: names of labels 1..K.
        score_threshold: the lowest score of a detection in the predicted maps.
        ignored_pixels: the pixels left out (crowds, overlaps of classes, classes not scored).
    """

    confusion: np.ndarray
    class_names: list[str]
    score_threshold: float
    ignored_pixels: int = 0

    @property
    def iou(self) -> list[float | None]:
        """Per label ``0..K`` (0 background): ``TP / (TP + FP + FN)`` pixels; ``None`` for a class
        neither in the ground truth nor in the predictions."""
        tp = np.diag(self.confusion)
        union = self.confusion.sum(axis=0) + self.confusion.sum(axis=1) - tp
        return [float(t / u) if u else None for t, u in zip(tp.tolist(), union.tolist(), strict=True)]

    @property
    def mean_iou(self) -> float | None:
        """The mean IoU of the foreground classes that have one (``None``: no pixel of any class, in the
        ground truth or the predictions)."""
        values = [v for v in self.iou[1:] if v is not None]
        return float(np.mean(values)) if values else None

    @property
    def pixel_accuracy(self) -> float | None:
        """Counted pixels given their right class, over the counted pixels (``None``: none counted)."""
        total = int(self.confusion.sum())
        return float(np.trace(self.confusion) / total) if total else None

    def to_dict(self) -> dict[str, Any]:
        """The ``semantic`` block of ``metrics.json``: ``mIoU``, ``pixel_accuracy``, ``background_IoU``,
        ``IoU`` (by class name), ``score_threshold``, ``ignored_pixels``."""
        iou = self.iou
        return {
            "mIoU": self.mean_iou,
            "pixel_accuracy": self.pixel_accuracy,
            "background_IoU": iou[0],
            "IoU": dict(zip(self.class_names, iou[1:], strict=True)),
            "score_threshold": self.score_threshold,
            "ignored_pixels": self.ignored_pixels,
        }


def ground_truth_class_map(
    annotations: Sequence[Mapping[str, Any]], size: tuple[int, int], label_of: Mapping[int, int]
) -> Tensor:
    """The ground truth's class map of one image (see the module's notes for the rules).

    Args:
        annotations: the image's COCO annotations (``segmentation`` RLE, ``category_id``, ``iscrowd``).
        size: ``(H, W)``.
        label_of: category id -> label of the classes scored (a category not in it is not scored).

    Returns:
        int64 ``[H, W]``: labels, 0 background, :data:`IGNORED` where ignored.
    """
    classes = torch.zeros(size, dtype=torch.int64)
    mixed = torch.zeros(size, dtype=torch.bool)  # instances of two classes
    unsure = torch.zeros(size, dtype=torch.bool)  # crowds and classes not scored
    masks = rle_to_crops([a["segmentation"] for a in annotations], size)
    for ann, (crop, (y, x)) in zip(annotations, masks, strict=True):
        rows, cols = slice(y, y + crop.shape[0]), slice(x, x + crop.shape[1])
        label = label_of.get(int(ann["category_id"]), 0)
        if ann.get("iscrowd", 0) or not label:
            unsure[rows, cols] |= crop
            continue
        region = classes[rows, cols]
        mixed[rows, cols] |= crop & (region > 0) & (region != label)
        region.masked_fill_(crop, label)
    classes[mixed | (unsure & (classes == 0))] = IGNORED
    return classes


def predicted_class_map(
    results: Sequence[Mapping[str, Any]], size: tuple[int, int], label_of: Mapping[int, int], threshold: float
) -> Tensor:
    """The class map of one image's COCO results (``segmentation`` RLE) scoring at least ``threshold``
    (:func:`~maskrcnn.engine.semantic.semantic_map`: overlaps go to the highest score, equal scores to
    the earlier result). ``label_of``: category id -> label. Returns int64 ``[H, W]``, 0 background."""
    kept = [r for r in results if r["score"] >= threshold]
    labels = torch.tensor([label_of[int(r["category_id"])] for r in kept], dtype=torch.int64)
    scores = torch.tensor([float(r["score"]) for r in kept], dtype=torch.float64)
    return semantic_map(rle_to_crops([r["segmentation"] for r in kept], size), labels, scores)


def pixel_confusion(ground_truth: Tensor, predicted: Tensor, num_classes: int) -> np.ndarray:
    """int64 ``[K + 1, K + 1]`` pixel counts of two ``[H, W]`` class maps (rows ``ground_truth``, columns
    ``predicted``); the pixels :data:`IGNORED` in ``ground_truth`` are not counted."""
    n = num_classes + 1
    # Ignored pixels fall into a row of their own (-1 + 1 = 0), then dropped: no masked copy of the maps.
    # On a 2048 x 1365 map this and numpy's bincount take 8 ms, a masked copy and torch's bincount 90.
    pairs = (ground_truth.numpy() + 1) * n + predicted.numpy()
    return np.bincount(pairs.ravel(), minlength=(n + 1) * n)[n:].reshape(n, n).astype(np.int64)


def semantic_scores(
    ground_truth: CocoBuilder,
    results: Sequence[Result],
    *,
    score_threshold: float = 0.5,
    scored: Sequence[int] | None = None,
) -> SemanticScores:
    """The pixel confusion and IoU of the class maps of ``results`` against ``ground_truth``.

    Args:
        ground_truth: the images and annotations (evaluation's builder).
        results: COCO results with ``segmentation`` (the builder's category ids).
        score_threshold: the lowest score of a detection painted into the predicted maps.
        scored: the dataset labels the model can predict (``None``: all); the ground truth of the others
            is ignored.
    """
    label_of = {cat: k for k, cat in enumerate(ground_truth.category_ids, start=1)}
    kept = None if scored is None else set(scored)
    scored_of = label_of if kept is None else {c: k for c, k in label_of.items() if k in kept}
    annotations: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for ann in ground_truth.annotations:
        annotations[int(ann["image_id"])].append(ann)
    found: dict[int, list[Result]] = defaultdict(list)
    for r in results:
        found[int(r["image_id"])].append(r)
    k = len(ground_truth.category_ids)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    ignored = 0
    for image in ground_truth.images:
        size = (int(image["height"]), int(image["width"]))
        truth = ground_truth_class_map(annotations[int(image["id"])], size, scored_of)
        predicted = predicted_class_map(found[int(image["id"])], size, label_of, score_threshold)
        matrix += pixel_confusion(truth, predicted, k)
        ignored += int((truth == IGNORED).sum())
    return SemanticScores(matrix, list(ground_truth.class_names), float(score_threshold), ignored)
