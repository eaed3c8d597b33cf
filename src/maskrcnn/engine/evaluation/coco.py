"""The pycocotools side of evaluation: ground truth, results, and the COCO scores.

The numbers are pycocotools' own (``COCOeval`` run for ``bbox`` and for ``segm``), so they compare with
published COCO results. Ground truth is built in memory from the dataset's items by the builder that
``maskrcnn convert`` writes with (:class:`~maskrcnn.data.formats.export.CocoBuilder`): masks as RLE,
boxes and areas from the masks, crowd regions kept with ``iscrowd=1`` (COCOeval ignores detections on
them). Results carry the annotation file's own category ids (``dataset.coco_category_ids()``), so
``results.json`` can be evaluated against the original file too.

Mask results follow the official COCO ``segm`` format: the ``segm`` evaluation sees no ``bbox`` in the
results, so a detection's area (used for the small / medium / large ranges) is its mask's area, as on the
COCO evaluation server and in Detectron2; the ``bbox`` evaluation uses the box's area.

:func:`instances_to_results` is the one conversion of detections to COCO results: evaluation and
prediction (``results.json`` of ``maskrcnn predict``) both write through it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from maskrcnn.data.formats.export import CocoBuilder, to_coco
from maskrcnn.ops import MASK_THRESHOLD, binarize_masks, rle_encode
from maskrcnn.structures import CroppedMasks

__all__ = [
    "IOU_TYPES",
    "MASK_THRESHOLD",
    "METRIC_NAMES",
    "CocoScores",
    "binarize_masks",
    "coco_from_builder",
    "coco_ground_truth",
    "coco_metrics",
    "coco_scores",
    "detections_to_results",
    "instances_to_results",
]

# pycocotools' ``stats`` in its order: AP over IoU 0.50:0.95, at 0.50, at 0.75, for small / medium / large
# objects, then AR with at most 1 / 10 / 100 detections per image and AR for small / medium / large.
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")
# A pixel is inside a mask when its probability is above this (torchvision's reference evaluation rule).
# The IoU thresholds of the precision-recall curves kept (indices into COCOeval's 0.50:0.05:0.95).
_CURVE_IOUS = {"0.50": 0, "0.75": 5}

Metrics = dict[str, dict[str, float | None]]
Result = dict[str, Any]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pycocotools prints progress and the summary table on stdout: keep it off the command's output."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# ----------------------------------------------------------------------------------------------------
# Ground truth


def _coco_from_dict(data: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = data
    with _quiet():
        coco.createIndex()
    return coco


def coco_from_builder(builder: CocoBuilder) -> COCO:
    """The builder's images and annotations as an in-memory ``pycocotools.coco.COCO`` ground truth."""
    return _coco_from_dict(builder.to_dict("maskrcnn evaluation ground truth"))


def coco_ground_truth(dataset: Any, *, skipped: list[str] | None = None) -> COCO:
    """The dataset's annotations as an in-memory ``pycocotools.coco.COCO`` ground truth: exactly what
    ``maskrcnn convert`` writes (:func:`~maskrcnn.data.formats.export.to_coco`).

    Every item is read once, without augmentation (``dataset.transforms`` is set aside meanwhile).
    Images have ``id`` = the target's ``image_id``, ``height``, ``width``; annotations have the RLE of
    the mask, ``bbox`` ``[x, y, w, h]`` from the target's box, ``area`` = mask pixels, ``iscrowd`` and
    ``category_id`` = ``dataset.coco_category_ids()[label - 1]``; categories carry the class names.

    Args:
        dataset: an ``InstanceDataset`` (or a ``Subset`` of one).
        skipped: when given, items that cannot be read (``DataError`` / ``ImageError``) are left out and
            their messages appended here; otherwise the error propagates.

    Raises:
        DataError: two items share an ``image_id``.
    """
    return _coco_from_dict(to_coco(dataset, skipped=skipped))


# ----------------------------------------------------------------------------------------------------
# Results


def instances_to_results(
    image_id: int,
    boxes: Tensor,
    labels: Tensor,
    scores: Tensor,
    masks: Tensor | CroppedMasks | None,
    category_ids: Sequence[int],
    **fields: Any,
) -> list[Result]:
    """One image's detections as COCO results (JSON-ready).

    Args:
        image_id: the COCO image id.
        boxes: ``[D, 4]`` xyxy pixels.
        labels: ``[D]`` in 1..K.
        scores: ``[D]``.
        masks: bool ``[D, H, W]`` (see :func:`binarize_masks`) or their crops, or ``None`` for box-only
            results.
        category_ids: the category id of each label (index 0 for label 1): the ids written out.
        fields: put first in every result (e.g. ``file_name``).

    Returns:
        one dict per detection: ``fields``, ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``,
        ``score`` and, with masks, ``segmentation`` (compressed RLE, ``counts`` a str).

    Raises:
        ValueError: a label outside 1..len(category_ids).
    """
    if not len(boxes):
        return []
    label_list = [int(v) for v in labels.tolist()]
    bad = [v for v in label_list if not 1 <= v <= len(category_ids)]
    if bad:
        raise ValueError(
            f"image {image_id}: detection labels {sorted(set(bad))} outside 1..{len(category_ids)}; does "
            "the model have as many classes as the dataset?"
        )
    rles: list[dict[str, Any] | None] = [None] * len(label_list)
    if masks is not None:
        rles = list(masks.rle() if isinstance(masks, CroppedMasks) else rle_encode(masks))
    results: list[Result] = []
    boxes = boxes.detach().to("cpu", torch.float64)
    for box, label, score, rle in zip(boxes.tolist(), label_list, scores.tolist(), rles, strict=True):
        x0, y0, x1, y1 = box
        result: Result = {
            **fields,
            "image_id": int(image_id),
            "category_id": int(category_ids[label - 1]),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "score": float(score),
        }
        if rle is not None:
            result["segmentation"] = rle
        results.append(result)
    return results


def detections_to_results(
    detections: Sequence[Mapping[str, Tensor]],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    *,
    mask_threshold: float = MASK_THRESHOLD,
) -> list[Result]:
    """The model's detections as COCO results (JSON-ready): :func:`instances_to_results` per image.

    Args:
        detections: per image, ``boxes`` float ``[D, 4]`` (xyxy pixels), ``labels`` int64 ``[D]`` (1..K),
            ``scores`` ``[D]`` and optionally ``masks`` ``[D, 1, H, W]`` (or ``[D, H, W]``)
            probabilities, or bool ``[D, H, W]`` masks or :class:`~maskrcnn.structures.CroppedMasks`
            taken as they are.
        image_ids: the COCO image id of each entry of ``detections``.
        category_ids: the category id of each label (index 0 for label 1): the ids written out.
        mask_threshold: a pixel is inside the mask when its probability is above this.

    Returns:
        one dict per detection: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``score`` and,
        with masks, ``segmentation`` (compressed RLE of ``mask > mask_threshold``, ``counts`` a str).
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"{len(detections)} detections for {len(image_ids)} image ids")
    results: list[Result] = []
    for det, image_id in zip(detections, image_ids, strict=True):
        masks = det.get("masks")
        if isinstance(masks, Tensor) and masks.dtype != torch.bool:  # probabilities (bool masks are binary)
            masks = binarize_masks(masks[:, 0] if masks.dim() == 4 else masks, mask_threshold)
        results.extend(
            instances_to_results(image_id, det["boxes"], det["labels"], det["scores"], masks, category_ids)
        )
    return results


# ----------------------------------------------------------------------------------------------------
# COCO metrics


@dataclass
class CocoScores:
    """Everything taken from pycocotools' ``COCOeval`` runs.

    Attributes:
        metrics: ``{"bbox": {name: value}, "segm": {...}}`` with the :data:`METRIC_NAMES` (0..1;
            ``None`` where pycocotools says -1: nothing to measure, e.g. no small objects).
        per_class: ``{"bbox": {category_id: {"AP": .., "AP50": ..}}, "segm": ...}`` (``None`` for a class
            without ground truth).
        pr_curves: ``{"recall": [101 recall levels], "bbox": {"0.50": [101 precisions], "0.75": [...]},
            "segm": {...}}``: interpolated precision averaged over the classes that have ground truth,
            at most 100 detections per image, all areas (``None`` when no class has ground truth).
    """

    metrics: Metrics
    per_class: dict[str, dict[int, dict[str, float | None]]]
    pr_curves: dict[str, Any]


def _mean_valid(values: np.ndarray) -> float | None:
    """Mean of the entries pycocotools did not mark -1 (absent), or ``None`` if all are."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def _results_coco(gt: COCO, results: Sequence[Result], iou_type: str) -> COCO:
    """The results as a COCO object for ``iou_type``, without touching the caller's dicts."""
    if not results:
        # loadRes cannot take an empty list; an empty result set is still a valid (all-miss) evaluation.
        return _coco_from_dict(
            {"images": list(gt.dataset["images"]), "categories": gt.dataset["categories"], "annotations": []}
        )
    drop = "bbox" if iou_type == "segm" else "segmentation"
    if iou_type == "segm":
        missing = sum("segmentation" not in r for r in results)
        if missing:
            raise ValueError(f"{missing} of {len(results)} results have no segmentation to evaluate masks")
    unknown = {r["image_id"] for r in results} - set(gt.getImgIds())
    if unknown:
        raise ValueError(f"results for image ids not in the ground truth: {sorted(unknown)[:10]}")
    # Shallow copies: loadRes adds id / area / iscrowd keys to the dicts it is given.
    copies = [{k: v for k, v in r.items() if k != drop} for r in results]
    with _quiet():
        return gt.loadRes(copies)


def _curves(precision: np.ndarray) -> dict[str, list[float] | None]:
    """The precision-recall curves of :data:`_CURVE_IOUS` from COCOeval's ``precision [T, R, K]``."""
    curves: dict[str, list[float] | None] = {}
    for name, t in _CURVE_IOUS.items():
        at_iou = precision[t]  # [R, K]
        with_gt = (at_iou > -1).all(axis=0)  # a class without ground truth is -1 throughout
        curves[name] = [float(p) for p in at_iou[:, with_gt].mean(axis=1)] if with_gt.any() else None
    return curves


def coco_scores(
    gt: COCO, results: Sequence[Result], *, category_ids: Sequence[int] | None = None
) -> CocoScores:
    """Run pycocotools' ``COCOeval`` for boxes and masks (see :class:`CocoScores` for what is kept).

    Args:
        gt: the ground truth (:func:`coco_ground_truth`, or a ``COCO`` read from a file).
        results: COCO results (:func:`detections_to_results`); may be empty (everything missed).
        category_ids: score only these categories (``None``: all of ``gt``'s), e.g. the classes a model
            knows when it is evaluated on a dataset with others.
    """
    metrics: Metrics = {}
    per_class: dict[str, dict[int, dict[str, float | None]]] = {}
    curves: dict[str, Any] = {}
    for iou_type in IOU_TYPES:
        coco_eval = COCOeval(gt, _results_coco(gt, results, iou_type), iou_type)
        if category_ids is not None:
            coco_eval.params.catIds = sorted(int(c) for c in category_ids)
        with _quiet():
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        metrics[iou_type] = {
            name: (float(v) if v > -1 else None)
            for name, v in zip(METRIC_NAMES, coco_eval.stats, strict=True)
        }
        params = coco_eval.params
        curves.setdefault("recall", [float(r) for r in params.recThrs])
        # [T IoU thresholds, R recall levels, K classes, A areas, M max detections]; area 0 is "all" and
        # the last max-detections setting is 100, the ones COCO's AP uses.
        precision = coco_eval.eval["precision"][:, :, :, 0, -1]
        per_class[iou_type] = {
            int(cat): {"AP": _mean_valid(precision[:, :, k]), "AP50": _mean_valid(precision[0, :, k])}
            for k, cat in enumerate(params.catIds)
        }
        curves[iou_type] = _curves(precision)
    return CocoScores(metrics, per_class, curves)


def coco_metrics(gt: COCO, results: Sequence[Result]) -> Metrics:
    """``{"bbox": {...}, "segm": {...}}``, each with the twelve :data:`METRIC_NAMES` of pycocotools'
    summary (floats in 0..1, ``None`` where pycocotools says -1). Empty ``results`` give zeros."""
    return coco_scores(gt, results).metrics
