"""COCO evaluation: box and mask AP with pycocotools, per-class AP, precision-recall curves, a mask
confusion matrix, the report files, and the ``maskrcnn evaluate`` command.

The numbers are pycocotools' own (``COCOeval`` run for ``bbox`` and for ``segm``), so they compare with
published COCO results. Ground truth is built in memory from the dataset's items, the way ``maskrcnn
convert`` writes it: masks as RLE, boxes and areas from the masks, crowd regions kept with ``iscrowd=1``
(COCOeval ignores detections on them). Results carry the annotation file's own category ids
(``dataset.category_ids``), so ``results.json`` can be evaluated against the original file too.

Mask results follow the official COCO ``segm`` format: the ``segm`` evaluation sees no ``bbox`` in the
results, so a detection's area (used for the small / medium / large ranges) is its mask's area, as on the
COCO evaluation server and in Detectron2; the ``bbox`` evaluation uses the box's area.

:func:`evaluate` is what ``maskrcnn evaluate`` runs and what training calls for validation each epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn
from torch.utils.data import Subset

from maskrcnn.data.dataset import DataError, base_dataset, stored_items, without_transforms
from maskrcnn.data.image_io import ImageError
from maskrcnn.engine.device import resolve_device
from maskrcnn.ops import rle_encode

__all__ = [
    "IOU_TYPES",
    "METRIC_NAMES",
    "CocoScores",
    "Evaluation",
    "add_evaluate_arguments",
    "coco_ground_truth",
    "coco_metrics",
    "coco_scores",
    "confusion_matrix",
    "detections_to_results",
    "evaluate",
    "format_metrics",
    "run_evaluate",
    "write_report",
]

log = logging.getLogger(__name__)

# pycocotools' ``stats`` in its order: AP over IoU 0.50:0.95, at 0.50, at 0.75, for small / medium / large
# objects, then AR with at most 1 / 10 / 100 detections per image and AR for small / medium / large.
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")
# The IoU thresholds of the precision-recall curves kept (indices into COCOeval's 0.50:0.05:0.95).
_CURVE_IOUS = {"0.50": 0, "0.75": 5}

Metrics = dict[str, dict[str, float | None]]
Result = dict[str, Any]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pycocotools prints progress and the summary table on stdout: keep it off the command's output."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _category_ids(dataset: Any) -> list[int]:
    """The annotation file's category id of each label (index 0 for label 1); the labels by default."""
    base = base_dataset(dataset)
    names = list(base.class_names)
    ids = list(getattr(base, "category_ids", None) or range(1, len(names) + 1))
    if len(ids) != len(names):
        raise DataError(f"{len(ids)} category ids for {len(names)} classes")
    return [int(c) for c in ids]


# ----------------------------------------------------------------------------------------------------
# Ground truth and results


class _GroundTruth:
    """Collects images and their targets into a COCO ground-truth object, one item at a time."""

    def __init__(self, class_names: Sequence[str], category_ids: Sequence[int]) -> None:
        self.category_ids = [int(c) for c in category_ids]
        self.categories = [
            {"id": c, "name": str(n)} for c, n in zip(self.category_ids, class_names, strict=True)
        ]
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.seen: dict[int, str] = {}

    def add(self, image_id: int, height: int, width: int, target: Mapping[str, Tensor], ref: str) -> None:
        """Add one image (``height`` x ``width``) and its target (``masks`` uint8 ``[N, H, W]``, ``boxes``
        xyxy ``[N, 4]``, ``labels`` ``[N]`` in 1..K, ``iscrowd`` ``[N]``)."""
        if image_id in self.seen:
            which = f"{ref} and {self.seen[image_id]}" if ref else "two images"
            raise DataError(f"{which} share image_id {image_id}; COCO evaluation needs distinct ids")
        self.seen[image_id] = ref
        self.images.append(
            {"id": image_id, "height": height, "width": width, "file_name": ref or f"image {image_id}"}
        )
        masks = target["masks"]
        if not len(masks):
            return
        crowd = target.get("iscrowd", torch.zeros(len(masks), dtype=torch.int64))
        for rle, area, box, label, iscrowd in zip(
            rle_encode(masks),
            masks.flatten(1).sum(1).tolist(),
            target["boxes"].tolist(),
            target["labels"].tolist(),
            crowd.tolist(),
            strict=True,
        ):
            x0, y0, x1, y1 = box
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,  # COCOeval needs ids; 0 would be taken for "none"
                    "image_id": image_id,
                    "category_id": self.category_ids[int(label) - 1],
                    "segmentation": rle,
                    "area": float(area),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": int(iscrowd),
                }
            )

    def extend(self, images: Sequence[dict[str, Any]], annotations: Sequence[dict[str, Any]]) -> None:
        """Add another builder's images and annotations (renumbering the annotations)."""
        for image in images:
            if image["id"] in self.seen:
                raise DataError(
                    f"two images share image_id {image['id']}; COCO evaluation needs distinct ids"
                )
            self.seen[image["id"]] = image["file_name"]
            self.images.append(image)
        for ann in annotations:
            self.annotations.append({**ann, "id": len(self.annotations) + 1})

    def build(self) -> COCO:
        return _coco_from_dict(
            {
                "info": {"description": "maskrcnn evaluation ground truth"},
                "images": self.images,
                "categories": self.categories,
                "annotations": self.annotations,
            }
        )


def _coco_from_dict(data: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = data
    with _quiet():
        coco.createIndex()
    return coco


def coco_ground_truth(dataset: Any, *, skipped: list[str] | None = None) -> COCO:
    """The dataset's annotations as an in-memory ``pycocotools.coco.COCO`` ground truth.

    Every item is read once, without augmentation (``dataset.transforms`` is set aside meanwhile).
    Images have ``id`` = the target's ``image_id``, ``height``, ``width``; annotations have the RLE of
    the mask, ``bbox`` ``[x, y, w, h]`` from the target's box, ``area`` = mask pixels, ``iscrowd`` and
    ``category_id`` = ``dataset.category_ids[label - 1]`` (the label itself by default); categories
    carry the class names.

    Args:
        dataset: an ``InstanceDataset`` (or a ``Subset`` of one).
        skipped: when given, items that cannot be read (``DataError`` / ``ImageError``) are left out and
            their messages appended here; otherwise the error propagates.

    Raises:
        DataError: two items share an ``image_id``.
    """
    base = base_dataset(dataset)
    builder = _GroundTruth(base.class_names, _category_ids(dataset))
    for index, image, target in stored_items(dataset, skipped=skipped):
        h, w = (int(v) for v in image.shape[-2:])
        builder.add(int(target["image_id"]), h, w, target, _reference(dataset, index))
    return builder.build()


def _reference(dataset: Any, index: int) -> str:
    while isinstance(dataset, Subset):
        dataset, index = dataset.dataset, int(dataset.indices[index])
    if hasattr(dataset, "image_reference"):
        return str(dataset.image_reference(index))
    return f"item {index}"


def detections_to_results(
    detections: Sequence[Mapping[str, Tensor]],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    *,
    mask_threshold: float = 0.5,
) -> list[Result]:
    """The model's detections as COCO results (JSON-ready).

    Args:
        detections: per image, ``boxes`` float ``[D, 4]`` (xyxy pixels), ``labels`` int64 ``[D]`` (1..K),
            ``scores`` ``[D]`` and optionally ``masks`` ``[D, 1, H, W]`` (or ``[D, H, W]``)
            probabilities.
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
        boxes = det["boxes"].detach().to("cpu", torch.float64)
        if not len(boxes):
            continue
        labels = det["labels"].tolist()
        bad = [v for v in labels if not 1 <= v <= len(category_ids)]
        if bad:
            raise ValueError(
                f"image {image_id}: detection labels {sorted(set(bad))} outside 1..{len(category_ids)}; does "
                "the model have as many classes as the dataset?"
            )
        masks = det.get("masks")
        rles: list[dict[str, Any] | None] = [None] * len(labels)
        if masks is not None:
            masks = masks[:, 0] if masks.dim() == 4 else masks
            # Threshold where the masks are (the GPU), so that only booleans travel to the CPU.
            rles = list(rle_encode(masks > mask_threshold))
        for box, label, score, rle in zip(boxes.tolist(), labels, det["scores"].tolist(), rles, strict=True):
            x0, y0, x1, y1 = box
            result: Result = {
                "image_id": int(image_id),
                "category_id": int(category_ids[label - 1]),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": float(score),
            }
            if rle is not None:
                result["segmentation"] = rle
            results.append(result)
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


def coco_scores(gt: COCO, results: Sequence[Result]) -> CocoScores:
    """Run pycocotools' ``COCOeval`` for boxes and masks (see :class:`CocoScores` for what is kept).

    Args:
        gt: the ground truth (:func:`coco_ground_truth`, or a ``COCO`` read from a file).
        results: COCO results (:func:`detections_to_results`); may be empty (everything missed).
    """
    metrics: Metrics = {}
    per_class: dict[str, dict[int, dict[str, float | None]]] = {}
    curves: dict[str, Any] = {}
    for iou_type in IOU_TYPES:
        coco_eval = COCOeval(gt, _results_coco(gt, results, iou_type), iou_type)
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
        curves[iou_type] = {}
        for name, t in _CURVE_IOUS.items():
            at_iou = precision[t]  # [R, K]
            with_gt = (at_iou > -1).all(axis=0)  # a class without ground truth is -1 throughout
            curves[iou_type][name] = (
                [float(p) for p in at_iou[:, with_gt].mean(axis=1)] if with_gt.any() else None
            )
    return CocoScores(metrics, per_class, curves)


def coco_metrics(gt: COCO, results: Sequence[Result]) -> Metrics:
    """``{"bbox": {...}, "segm": {...}}``, each with the twelve :data:`METRIC_NAMES` of pycocotools'
    summary (floats in 0..1, ``None`` where pycocotools reports -1). Empty ``results`` give zeros."""
    return coco_scores(gt, results).metrics


def confusion_matrix(
    gt: COCO,
    results: Sequence[Result],
    category_ids: Sequence[int],
    *,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Mask confusion counts, ``int64 [K + 1, K + 1]``: rows are ground-truth classes, columns predicted
    classes, index = label (0 = background).

    Per image, the detections scoring at least ``score_threshold`` and the (non-crowd) ground-truth
    instances are matched one to one, class-agnostically, greedily by decreasing mask IoU, pairs below
    ``iou_threshold`` never matching: a matched pair counts at ``[gt label, predicted label]`` (off the
    diagonal: a confusion), an unmatched instance at ``[label, 0]`` (missed), an unmatched detection at
    ``[0, label]`` (false positive) unless it lies on a crowd region (intersection over its own area
    ``>= iou_threshold``, COCO's crowd rule), where it is not counted.
    """
    label_of = {int(c): k + 1 for k, c in enumerate(category_ids)}
    matrix = np.zeros((len(category_ids) + 1, len(category_ids) + 1), dtype=np.int64)
    by_image: dict[int, list[Result]] = defaultdict(list)
    for r in results:
        if r["score"] >= score_threshold:
            by_image[int(r["image_id"])].append(r)
    for image_id in gt.getImgIds():
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
        objects = [a for a in anns if not a.get("iscrowd", 0)]
        crowds = [a for a in anns if a.get("iscrowd", 0)]
        dets = sorted(by_image.get(image_id, []), key=lambda r: -r["score"])
        gt_done = np.zeros(len(objects), dtype=bool)
        det_done = np.zeros(len(dets), dtype=bool)
        if objects and dets:
            ious = np.asarray(
                mask_utils.iou(
                    [d["segmentation"] for d in dets], [gt.annToRLE(a) for a in objects], [0] * len(objects)
                )
            ).reshape(len(dets), len(objects))
            pairs = np.argwhere(ious >= iou_threshold)
            # Highest IoU first; ties go to the higher-scoring detection (dets are sorted by score).
            order = np.argsort(-ious[pairs[:, 0], pairs[:, 1]], kind="stable")
            for d, g in pairs[order]:
                if det_done[d] or gt_done[g]:
                    continue
                det_done[d] = gt_done[g] = True
                matrix[label_of[objects[g]["category_id"]], label_of[dets[d]["category_id"]]] += 1
        for g in np.flatnonzero(~gt_done):
            matrix[label_of[objects[g]["category_id"]], 0] += 1
        left = np.flatnonzero(~det_done)
        on_crowd = np.zeros(len(left), dtype=bool)
        if crowds and len(left):
            crowd_iou = np.asarray(
                mask_utils.iou(
                    [dets[d]["segmentation"] for d in left],
                    [gt.annToRLE(a) for a in crowds],
                    [1] * len(crowds),
                )
            ).reshape(len(left), len(crowds))
            on_crowd = crowd_iou.max(axis=1) >= iou_threshold
        for d, ignored in zip(left, on_crowd, strict=True):
            if not ignored:
                matrix[0, label_of[dets[d]["category_id"]]] += 1
    return matrix


# ----------------------------------------------------------------------------------------------------
# Evaluating a model


@dataclass
class Evaluation:
    """What :func:`evaluate` measured.

    Attributes:
        metrics: ``{"bbox": {...}, "segm": {...}}`` (see :func:`coco_metrics`).
        per_class: one row per class: ``class``, ``category_id``, ``instances`` (non-crowd ground truth),
            ``box_AP``, ``box_AP50``, ``mask_AP``, ``mask_AP50`` (``None`` without ground truth).
        results: the COCO results (``results.json``), with the dataset's own category ids.
        confusion: ``int64 [K + 1, K + 1]`` mask confusion counts (see :func:`confusion_matrix`).
        pr_curves: precision-recall curves (see :class:`CocoScores`).
        class_names: names of labels 1..K.
        num_images: images evaluated.
        skipped: messages of the images that could not be read (left out of the evaluation).
        score_threshold: detection score from which the confusion matrix counts a detection.
        seconds: wall time of the whole evaluation.
    """

    metrics: Metrics
    per_class: list[dict[str, Any]]
    results: list[Result]
    confusion: np.ndarray
    pr_curves: dict[str, Any]
    class_names: list[str]
    num_images: int
    skipped: list[str] = field(default_factory=list)
    score_threshold: float = 0.5
    seconds: float = 0.0

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        """One line: box and mask AP, AP50, AP75 (e.g. for the training log)."""
        return "; ".join(
            f"{title} AP {_fmt(self.metrics[t]['AP'])} AP50 {_fmt(self.metrics[t]['AP50'])} "
            f"AP75 {_fmt(self.metrics[t]['AP75'])}"
            for title, t in (("box", "bbox"), ("mask", "segm"))
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def evaluate(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 2,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = True,
    score_threshold_for_confusion: float = 0.5,
) -> Evaluation:
    """COCO box and mask AP of ``model`` on ``dataset``, with per-class AP, curves and confusion.

    The model runs in evaluation mode under ``torch.inference_mode()`` (its train / eval mode is restored
    afterwards); images go to ``device`` (where the model must already be). The dataset is read once,
    in order and without augmentation; images that cannot be read are left out and listed in
    ``skipped``.

    In a process group (``torchrun``), every process must call this: each runs the model on its
    contiguous share of the dataset, rank 0 gathers the ground truth and the detections in dataset
    order and scores them (the same numbers as one process), and the others receive the evaluation
    without its ``results`` (which can be large).

    Args:
        model: a Mask R-CNN (``model(images)`` -> per image ``boxes``, ``labels``, ``scores``, ``masks``).
        dataset: an ``InstanceDataset`` (or a ``Subset`` of one) with ``class_names`` and optionally
            ``category_ids``.
        batch_size: images per forward pass.
        device: where the images go.
        num_workers: data-loading processes.
        progress: show a progress bar (stderr).
        score_threshold_for_confusion: detections scoring below this are left out of the confusion
            matrix (COCO AP uses every detection).
    """
    from tqdm import tqdm

    from maskrcnn.data import make_data_loader
    from maskrcnn.engine import distributed

    start = time.perf_counter()
    base = base_dataset(dataset)
    class_names = list(base.class_names)
    category_ids = _category_ids(dataset)
    ground_truth = _GroundTruth(class_names, category_ids)
    results: list[Result] = []
    skipped: list[str] = []
    several = distributed.world_size() > 1
    part = Subset(dataset, distributed.shard(len(dataset))) if several else dataset
    was_training = model.training
    model.eval()
    try:
        with without_transforms(dataset), torch.inference_mode():
            loader = make_data_loader(
                part,
                batch_size=batch_size,
                shuffle=False,
                num_workers=num_workers,
                aspect_ratio_grouping=False,
            )
            bar = tqdm(
                total=len(part),
                desc="evaluating" + (f" (rank 0's share of {len(dataset)})" if several else ""),
                unit="img",
                leave=False,
                file=sys.stderr,
                disable=not progress or distributed.rank() != 0,
            )
            with bar:
                for batch in loader:
                    skipped.extend(batch.skipped)
                    if batch.images:
                        images = [image.to(device, non_blocking=True) for image in batch.images]
                        detections = model(images)
                        image_ids = [int(t["image_id"]) for t in batch.targets]
                        for image, target, image_id in zip(
                            batch.images, batch.targets, image_ids, strict=True
                        ):
                            h, w = (int(v) for v in image.shape[-2:])
                            ground_truth.add(image_id, h, w, target, "")
                        results.extend(detections_to_results(detections, image_ids, category_ids))
                    bar.update(len(batch.images) + len(batch.skipped))
            del loader  # persistent workers end here, not at the next garbage collection
    finally:
        model.train(was_training)
    if several:
        shares = distributed.gather_objects(
            (ground_truth.images, ground_truth.annotations, results, skipped), "gathering detections"
        )
        if shares is None:  # not rank 0: wait for the scores (or rank 0's error)
            shared = distributed.broadcast_object(None, "sharing the evaluation")
            if isinstance(shared, Exception):
                raise shared
            return shared  # type: ignore[no-any-return]
        try:
            # The shares in rank order are the dataset in order (contiguous shards).
            ground_truth, results, skipped = _GroundTruth(class_names, category_ids), [], []
            for images, anns, part_results, part_skipped in shares:
                ground_truth.extend(images, anns)
                results.extend(part_results)
                skipped.extend(part_skipped)
            evaluation = _score(ground_truth, results, skipped, score_threshold_for_confusion, start)
        except Exception as e:
            distributed.broadcast_object(e, "sharing the evaluation")  # the others stop with it too
            raise
        distributed.broadcast_object(dataclasses.replace(evaluation, results=[]), "sharing the evaluation")
        return evaluation
    return _score(ground_truth, results, skipped, score_threshold_for_confusion, start)


def _score(
    ground_truth: _GroundTruth,
    results: list[Result],
    skipped: list[str],
    score_threshold_for_confusion: float,
    start: float,
) -> Evaluation:
    """The COCO scores, per-class table and confusion matrix of ``results`` against ``ground_truth``."""
    class_names = [c["name"] for c in ground_truth.categories]
    category_ids = ground_truth.category_ids
    for message in skipped[:5]:
        log.warning("evaluation: left out unreadable image: %s", message)
    if len(skipped) > 5:
        log.warning("evaluation: %d more unreadable images left out", len(skipped) - 5)

    gt = ground_truth.build()
    scores = coco_scores(gt, results)
    instances = defaultdict(int)
    for ann in ground_truth.annotations:
        if not ann["iscrowd"]:
            instances[ann["category_id"]] += 1
    per_class = [
        {
            "class": name,
            "category_id": cat,
            "instances": instances[cat],
            "box_AP": scores.per_class["bbox"][cat]["AP"],
            "box_AP50": scores.per_class["bbox"][cat]["AP50"],
            "mask_AP": scores.per_class["segm"][cat]["AP"],
            "mask_AP50": scores.per_class["segm"][cat]["AP50"],
        }
        for name, cat in zip(class_names, category_ids, strict=True)
    ]
    confusion = confusion_matrix(gt, results, category_ids, score_threshold=score_threshold_for_confusion)
    return Evaluation(
        metrics=scores.metrics,
        per_class=per_class,
        results=results,
        confusion=confusion,
        pr_curves=scores.pr_curves,
        class_names=class_names,
        num_images=len(ground_truth.images),
        skipped=skipped,
        score_threshold=score_threshold_for_confusion,
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------------------------------
# The report


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, renamed over ``path``: never half a file."""
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, data: Any) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))


def format_metrics(metrics: Metrics) -> str:
    """A small table of box and mask AP, AP50, AP75 (and APs / APm / APl)."""
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    lines = [f"{'':6}" + "".join(f"{k:>8}" for k in keys)]
    for title, iou_type in (("box", "bbox"), ("mask", "segm")):
        lines.append(f"{title:6}" + "".join(f"{_fmt(metrics[iou_type][k]):>8}" for k in keys))
    return "\n".join(lines)


def _per_class_table(evaluation: Evaluation, class_names: Sequence[str]) -> str:
    width = max([len("class"), len("all"), *(len(n) for n in class_names)])
    header = (
        f"{'class':<{width}}  {'instances':>9}  {'box AP':>7}  {'box AP50':>8}  {'mask AP':>7}  "
        f"{'mask AP50':>9}"
    )
    rows = [header, "-" * len(header)]

    def row(name: str, count: int, values: Sequence[float | None]) -> str:
        a, b, c, d = (_fmt(v) for v in values)
        return f"{name:<{width}}  {count:>9}  {a:>7}  {b:>8}  {c:>7}  {d:>9}"

    for name, r in zip(class_names, evaluation.per_class, strict=True):
        rows.append(row(name, r["instances"], (r["box_AP"], r["box_AP50"], r["mask_AP"], r["mask_AP50"])))
    m = evaluation.metrics
    total = sum(r["instances"] for r in evaluation.per_class)
    rows.append("-" * len(header))
    rows.append(row("all", total, (m["bbox"]["AP"], m["bbox"]["AP50"], m["segm"]["AP"], m["segm"]["AP50"])))
    return "\n".join(rows) + "\n"


def _pr_figure(evaluation: Evaluation) -> Any:
    # The object-oriented API without pyplot: no global backend or figure registry is touched, and the
    # PNG is rendered by Agg whatever backend the user's session has.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    recall = evaluation.pr_curves["recall"]
    for ax, (title, iou_type) in zip(axes, (("box", "bbox"), ("mask", "segm")), strict=True):
        for iou, style in (("0.50", "-"), ("0.75", "--")):
            curve = evaluation.pr_curves[iou_type][iou]
            if curve is None:
                continue
            ap = float(np.mean(curve))
            ax.plot(recall, curve, style, label=f"IoU {iou} (AP {ap:.3f})")
        ax.set_title(f"{title}: AP {_fmt(evaluation.metrics[iou_type]['AP'])} (IoU 0.50:0.95)")
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left")
    axes[0].set_ylabel("precision (all classes)")
    return figure


def _confusion_figure(evaluation: Evaluation, class_names: Sequence[str]) -> Any:
    from matplotlib.figure import Figure

    names = ["background", *class_names]
    matrix = evaluation.confusion
    size = 2.5 + 0.55 * len(names)
    figure = Figure(figsize=(size, size), layout="constrained")
    ax = figure.subplots()
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(f"masks: IoU >= 0.5, score >= {evaluation.score_threshold:g}")
    threshold = matrix.max() / 2 if matrix.size else 0
    if len(names) <= 40:  # beyond that, the numbers would not be legible anyway
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if count > threshold else "black",
            )
    return figure


def _save_figure(figure: Any, path: Path) -> None:
    _atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))


def write_report(
    evaluation: Evaluation, out_dir: str | os.PathLike[str], class_names: Sequence[str] | None = None
) -> dict[str, Path]:
    """Write the evaluation's files into ``out_dir`` (created), each atomically.

    * ``metrics.json``: exactly ``{"bbox": {...}, "segm": {...}}`` with the :data:`METRIC_NAMES`;
    * ``per_class.json`` (the rows of :attr:`Evaluation.per_class`) and ``per_class.txt`` (a table);
    * ``results.json``: the COCO results (original category ids);
    * ``confusion_matrix.json`` and ``confusion_matrix.png``; ``pr_curves.json`` and ``pr_curve.png``;
    * ``evaluation.json``: images evaluated, unreadable images left out, time.

    Args:
        class_names: names of labels 1..K (default: the evaluation's).

    Returns:
        name -> path of each file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(class_names if class_names is not None else evaluation.class_names)
    if len(names) != len(evaluation.per_class):
        raise ValueError(f"{len(names)} class names for {len(evaluation.per_class)} classes evaluated")
    paths = {
        name: out / name
        for name in (
            "metrics.json",
            "per_class.json",
            "per_class.txt",
            "results.json",
            "confusion_matrix.json",
            "confusion_matrix.png",
            "pr_curves.json",
            "pr_curve.png",
            "evaluation.json",
        )
    }
    metrics = {t: {k: evaluation.metrics[t][k] for k in METRIC_NAMES} for t in IOU_TYPES}
    _write_json(paths["metrics.json"], metrics)
    _write_json(paths["per_class.json"], evaluation.per_class)
    _atomic_write(paths["per_class.txt"], lambda tmp: tmp.write_text(_per_class_table(evaluation, names)))
    # results.json can be large: compact.
    _atomic_write(paths["results.json"], lambda tmp: tmp.write_text(json.dumps(evaluation.results)))
    _write_json(
        paths["confusion_matrix.json"],
        {
            "labels": ["background", *names],
            "rows": "ground truth",
            "columns": "predicted",
            "iou_threshold": 0.5,
            "score_threshold": evaluation.score_threshold,
            "matrix": evaluation.confusion.tolist(),
        },
    )
    _write_json(paths["pr_curves.json"], evaluation.pr_curves)
    _write_json(
        paths["evaluation.json"],
        {
            "images": evaluation.num_images,
            "skipped_images": evaluation.num_skipped,
            "skipped": evaluation.skipped,
            "detections": len(evaluation.results),
            "seconds": round(evaluation.seconds, 3),
        },
    )
    _save_figure(_pr_figure(evaluation), paths["pr_curve.png"])
    _save_figure(_confusion_figure(evaluation, names), paths["confusion_matrix.png"])
    return paths


# ----------------------------------------------------------------------------------------------------
# The command


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``maskrcnn evaluate`` options (and ``func=run_evaluate`` as the parser's default)."""
    from maskrcnn.cli.common import add_data_arguments as _add_data_arguments

    parser.add_argument("--weights", required=True, help="a checkpoint saved by training (.safetensors)")
    _add_data_arguments(parser)  # --format and -o, as for check-data and inspect
    parser.add_argument(
        "--data", help="what the format reads (JSON file, folder, data YAML); none for --format shapes"
    )
    parser.add_argument("--out", required=True, help="folder for metrics.json and the other report files")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, mps (default auto)"
    )
    parser.add_argument("--batch-size", type=int, default=2, help="images per forward pass (default 2)")
    parser.add_argument("--num-workers", type=int, default=0, help="data-loading processes (default 0)")
    parser.add_argument(
        "--confusion-score",
        type=float,
        default=0.5,
        help="lowest detection score counted in the confusion matrix (default 0.5)",
    )
    parser.set_defaults(func=run_evaluate)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def run_evaluate(args: argparse.Namespace) -> int:
    """``maskrcnn evaluate``: COCO AP of a checkpoint on a dataset, report files in ``--out``.

    Returns:
        the exit code: 0 done, 1 a checkpoint, data or argument problem (said on stderr).
    """
    from maskrcnn.engine.distributed import DistributedError, launched_with_several_processes, process_group

    if args.batch_size < 1 or args.num_workers < 0:
        return _error(
            f"--batch-size must be >= 1 and --num-workers >= 0, got {args.batch_size}, {args.num_workers}"
        )
    if not launched_with_several_processes():
        try:
            resolve_device(args.device)
        except ValueError as e:
            return _error(f"--device: {e}")
    try:
        # Under torchrun, each process evaluates its share of the images and rank 0 reports.
        with process_group(args.device) as group:
            return _run_evaluate(args, group.device, main=group.is_main)
    except DistributedError as e:
        return _error(str(e))


def _run_evaluate(args: argparse.Namespace, device: torch.device, *, main: bool) -> int:
    """``maskrcnn evaluate`` in one process of the run (``main``: the one that writes and prints)."""
    from maskrcnn.cli.common import reader_options
    from maskrcnn.data import load_dataset
    from maskrcnn.weights import load_checkpoint

    if not Path(args.weights).is_file():  # before reading the data, which may take a while
        return _error(f"--weights {args.weights}: no such file")
    options = reader_options(args.option)
    try:
        dataset = load_dataset(args.format, args.data, **options)
    except TypeError as e:  # an option the reader does not take
        return _error(f"--format {args.format}: {e}")
    except (OSError, ValueError) as e:  # DataError and ImageError are ValueErrors
        return _error(str(e))
    try:
        checkpoint = load_checkpoint(args.weights, device=device)
    except (OSError, ValueError, KeyError) as e:
        return _error(f"cannot load --weights {args.weights}: {e}")
    if list(dataset.class_names) != list(checkpoint.class_names):
        return _error(
            f"the dataset's classes {list(dataset.class_names)} differ from the checkpoint's "
            f"{list(checkpoint.class_names)} (same names in the same order are needed: label k is "
            "class_names[k - 1] for both)"
        )
    if len(dataset) == 0:
        return _error(f"the dataset ({args.data or args.format}) has no images")
    errors = [p for p in getattr(dataset, "problems", []) if getattr(p, "severity", "") == "error"]
    if errors:
        print(
            f"warning: {len(errors)} annotation problems left out of the evaluation (maskrcnn check-data "
            "lists them)",
            file=sys.stderr,
        )
    try:
        evaluation = evaluate(
            checkpoint.model,
            dataset,
            batch_size=args.batch_size,
            device=device,
            num_workers=args.num_workers,
            score_threshold_for_confusion=args.confusion_score,
        )
    except (DataError, ImageError) as e:
        return _error(str(e))
    if not main:
        return 0
    for message in evaluation.skipped:
        print(f"  error: {message}", file=sys.stderr)
    if evaluation.num_images == 0:
        return _error("no image of the dataset could be read (listed above)")
    paths = write_report(evaluation, args.out, checkpoint.class_names)
    skipped = f", {evaluation.num_skipped} unreadable images left out" if evaluation.skipped else ""
    print(
        f"evaluated {evaluation.num_images} images{skipped} in {evaluation.seconds:.1f} s: "
        f"{len(evaluation.results)} detections"
    )
    print(format_metrics(evaluation.metrics))
    print(f"wrote {paths['metrics.json']} and per_class, results, pr_curve, confusion_matrix in {args.out}")
    return 0
