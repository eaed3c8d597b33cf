"""The pycocotools side of evaluation: ground truth, results, and the COCO scores.

The numbers are pycocotools' own (``COCOeval`` run for ``bbox``, ``segm`` and ``keypoints``), so they
compare with published COCO results. Ground truth is built in memory from the dataset's items by the
builder that ``maskrcnn convert`` writes with (:class:`~maskrcnn.data.formats.export.CocoBuilder`):
masks as RLE, boxes and areas from the masks, crowd regions kept with ``iscrowd=1`` (COCOeval ignores
detections on them), keypoints as COCO's flat lists. Results carry the annotation file's own category
ids (``dataset.coco_category_ids()``), so ``results.json`` can be evaluated against the original file
too.

Mask results follow the official COCO ``segm`` format: the ``segm`` evaluation sees no ``bbox`` in the
results, so a detection's area (used for the small / medium / large ranges) is its mask's area, as on the
COCO evaluation server and in Detectron2; the ``bbox`` evaluation uses the box's area. Keypoint results
follow the official ``keypoints`` format too (no box, no mask): pycocotools then takes a detection's area
from its keypoints' extent, as the COCO server does.

Keypoint AP is pycocotools' OKS AP: a detection matches a ground-truth object by their object keypoint
similarity, ``OKS = mean over the labelled keypoints of exp(-d^2 / (2 * area * (2 * sigma)^2))`` (``d``
the distance in pixels, ``area`` the object's mask area, ``sigma`` the keypoint's
:meth:`~maskrcnn.data.keypoints.KeypointSpec.oks_sigmas`), in place of the IoU; objects without a
labelled keypoint (``num_keypoints`` 0) are ignored, as crowds are. Its summary has ten numbers
(:data:`KEYPOINT_METRIC_NAMES`: no small objects, at most 20 detections per image).

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
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.ops import MASK_THRESHOLD, binarize_masks, rle_encode
from maskrcnn.structures import CroppedMasks

__all__ = [
    "IOU_TYPES",
    "KEYPOINT_METRIC_NAMES",
    "MASK_THRESHOLD",
    "METRIC_NAMES",
    "CocoScores",
    "binarize_masks",
    "coco_from_builder",
    "coco_ground_truth",
    "coco_metrics",
    "coco_scores",
    "detections_to_results",
    "ground_truth_sigmas",
    "instances_to_results",
    "metric_names",
]

# pycocotools' ``stats`` in its order: AP over IoU 0.50:0.95, at 0.50, at 0.75, for small / medium / large
# objects, then AR with at most 1 / 10 / 100 detections per image and AR for small / medium / large.
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# pycocotools' keypoint ``stats`` in its order: AP over OKS 0.50:0.95, at 0.50, at 0.75, for medium / large
# objects, then AR (at most 20 detections per image) over OKS 0.50:0.95, at 0.50, at 0.75, medium, large.
KEYPOINT_METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm", "keypoints")
"""What can be scored, in the order of ``metrics.json``: boxes, masks, keypoints."""
# The IoU thresholds of the precision-recall curves kept (indices into COCOeval's 0.50:0.05:0.95).
_CURVE_IOUS = {"0.50": 0, "0.75": 5}

Metrics = dict[str, dict[str, float | None]]
Result = dict[str, Any]


def metric_names(iou_type: str) -> tuple[str, ...]:
    """The names of the metrics of an :data:`IOU_TYPES` entry, in pycocotools' order."""
    if iou_type not in IOU_TYPES:
        raise ValueError(f"unknown evaluation type {iou_type!r}; expected one of {', '.join(IOU_TYPES)}")
    return KEYPOINT_METRIC_NAMES if iou_type == "keypoints" else METRIC_NAMES


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
    *,
    keypoints: Tensor | None = None,
    keypoints_scores: Tensor | None = None,
    **fields: Any,
) -> list[Result]:
    """One image's detections as COCO results (JSON-ready).

    Args:
        image_id: the COCO image id.
        boxes: ``[D, 4]`` xyxy pixels.
        labels: ``[D]`` in 1..K.
        scores: ``[D]``.
        masks: bool ``[D, H, W]`` (see :func:`binarize_masks`) or their crops, or ``None`` for results
            without masks (box-only, or a keypoint model without a mask head).
        category_ids: the category id of each label (index 0 for label 1): the ids written out.
        keypoints: ``[D, K, 3]`` ``(x, y, _)`` pixels (the model's), or ``None``.
        keypoints_scores: ``[D, K]``, each keypoint's score (the model's heatmap logit); ``None``: the
            third column of ``keypoints``.
        fields: put first in every result (e.g. ``file_name``).

    Returns:
        one dict per detection: ``fields``, ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``,
        ``score``, with masks ``segmentation`` (compressed RLE, ``counts`` a str) and with keypoints
        ``keypoints``: COCO's flat ``[x1, y1, s1, x2, ...]``, ``s`` the keypoint's score (pycocotools
        reads only ``x, y``; the detection's own score is ``score``).

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
    points: list[list[float] | None] = [None] * len(label_list)
    if keypoints is not None:
        flat = keypoints.detach().to("cpu", torch.float64).clone()
        if keypoints_scores is not None:
            flat[..., 2] = keypoints_scores.detach().to("cpu", torch.float64)
        points = flat.flatten(1).tolist()
    results: list[Result] = []
    boxes = boxes.detach().to("cpu", torch.float64)
    for box, label, score, rle, point in zip(
        boxes.tolist(), label_list, scores.tolist(), rles, points, strict=True
    ):
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
        if point is not None:
            result["keypoints"] = point
        results.append(result)
    return results


def detections_to_results(
    detections: Sequence[Mapping[str, Any]],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    *,
    mask_threshold: float = MASK_THRESHOLD,
) -> list[Result]:
    """The model's detections as COCO results (JSON-ready): :func:`instances_to_results` per image.

    Args:
        detections: per image, ``boxes`` float ``[D, 4]`` (xyxy pixels), ``labels`` int64 ``[D]`` (1..K),
            ``scores`` ``[D]``, optionally ``masks`` ``[D, 1, H, W]`` (or ``[D, H, W]``)
            probabilities, or bool ``[D, H, W]`` masks or :class:`~maskrcnn.structures.CroppedMasks`
            taken as they are, and optionally ``keypoints`` ``[D, K, 3]`` with ``keypoints_scores``
            ``[D, K]``.
        image_ids: the COCO image id of each entry of ``detections``.
        category_ids: the category id of each label (index 0 for label 1): the ids written out.
        mask_threshold: a pixel is inside the mask when its probability is above this.

    Returns:
        one dict per detection: ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``score``,
        with masks ``segmentation`` (compressed RLE of ``mask > mask_threshold``, ``counts`` a str),
        with keypoints ``keypoints`` (see :func:`instances_to_results`).
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"{len(detections)} detections for {len(image_ids)} image ids")
    results: list[Result] = []
    for det, image_id in zip(detections, image_ids, strict=True):
        masks = det.get("masks")
        if isinstance(masks, Tensor) and masks.dtype != torch.bool:  # probabilities (bool masks are binary)
            masks = binarize_masks(masks[:, 0] if masks.dim() == 4 else masks, mask_threshold)
        results.extend(
            instances_to_results(
                image_id,
                det["boxes"],
                det["labels"],
                det["scores"],
                masks,
                category_ids,
                keypoints=det.get("keypoints"),
                keypoints_scores=det.get("keypoints_scores"),
            )
        )
    return results


# ----------------------------------------------------------------------------------------------------
# COCO metrics


@dataclass
class CocoScores:
    """Everything taken from pycocotools' ``COCOeval`` runs.

    Attributes:
        metrics: ``{"bbox": {name: value}, "segm": {...}, "keypoints": {...}}``, the types scored, each
            with its :func:`metric_names` (0..1; ``None`` where pycocotools says -1: nothing to measure,
            e.g. no small objects).
        per_class: ``{"bbox": {category_id: {"AP": .., "AP50": ..}}, "segm": ...}`` (``None`` for a class
            without ground truth).
        pr_curves: ``{"recall": [101 recall levels], "bbox": {"0.50": [101 precisions], "0.75": [...]},
            "segm": {...}}``: interpolated precision averaged over the classes that have ground truth,
            at most 100 detections per image (20 for keypoints), all areas (``None`` when no class has
            ground truth); the thresholds are IoU for boxes and masks, OKS for keypoints.
    """

    metrics: Metrics
    per_class: dict[str, dict[int, dict[str, float | None]]]
    pr_curves: dict[str, Any]


def _mean_valid(values: np.ndarray) -> float | None:
    """Mean of the entries pycocotools did not mark -1 (absent), or ``None`` if all are."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


# What each type evaluates: the result's field pycocotools reads, and the fields it must not see (the
# official result formats: it takes a result's area from the first of bbox / segmentation / keypoints).
_RESULT_FIELD = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}
_DROPPED = {
    "bbox": ("segmentation", "keypoints"),
    "segm": ("bbox", "keypoints"),
    "keypoints": ("bbox", "segmentation"),
}
_WHAT = {"bbox": "boxes", "segm": "masks", "keypoints": "keypoints"}


def _results_coco(gt: COCO, results: Sequence[Result], iou_type: str) -> COCO:
    """The results as a COCO object for ``iou_type``, without touching the caller's dicts."""
    if not results:
        # loadRes cannot take an empty list; an empty result set is still a valid (all-miss) evaluation.
        return _coco_from_dict(
            {"images": list(gt.dataset["images"]), "categories": gt.dataset["categories"], "annotations": []}
        )
    needed = _RESULT_FIELD[iou_type]
    missing = sum(needed not in r for r in results)
    if missing:
        raise ValueError(
            f"{missing} of {len(results)} results have no {needed} to evaluate {_WHAT[iou_type]}"
        )
    unknown = {r["image_id"] for r in results} - set(gt.getImgIds())
    if unknown:
        raise ValueError(f"results for image ids not in the ground truth: {sorted(unknown)[:10]}")
    # Shallow copies: loadRes adds id / area / iscrowd keys to the dicts it is given.
    copies = [{k: v for k, v in r.items() if k not in _DROPPED[iou_type]} for r in results]
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


def ground_truth_sigmas(gt: COCO) -> list[float]:
    """The OKS sigmas of a ground truth's keypoints: those :class:`~maskrcnn.data.keypoints.KeypointSpec`
    gives the keypoint names of its categories (COCO's for COCO's person keypoints).

    Raises:
        ValueError: no category names keypoints, or two categories name different ones.
    """
    names = {tuple(c["keypoints"]) for c in gt.dataset["categories"] if c.get("keypoints")}
    if len(names) != 1:
        found = "no category names its keypoints" if not names else "categories name different keypoints"
        raise ValueError(f"cannot tell the keypoints' OKS sigmas: {found}; pass oks_sigmas")
    return KeypointSpec(tuple(str(n) for n in names.pop())).oks_sigmas()


def _check_keypoints(gt: COCO, results: Sequence[Result], count: int, category_ids: Sequence[int]) -> None:
    """What pycocotools takes for granted: every annotation of a scored category has ``keypoints`` and
    ``num_keypoints``, and every keypoint list (annotations' and results') has ``3 * count`` values (it
    compares them elementwise with the sigmas)."""
    scored = set(category_ids)
    annotations = [a for a in gt.dataset["annotations"] if a["category_id"] in scored]
    for what, items in (("ground-truth annotation", annotations), ("result", results)):
        for item in items:
            values = item.get("keypoints")
            problem = ""
            if values is None or (what != "result" and "num_keypoints" not in item):
                problem = "has no keypoints" if values is None else "has no num_keypoints"
            elif len(values) != 3 * count:
                k = count
                problem = (
                    f"has {len(values)} keypoint values; expected {3 * k} ({k} keypoints, one OKS sigma each)"
                )
            if problem:
                which = f"{what} {item['id']}" if "id" in item else what
                raise ValueError(
                    f"{which} of image {item['image_id']} (category {item['category_id']}) {problem}"
                )


def coco_scores(
    gt: COCO,
    results: Sequence[Result],
    *,
    category_ids: Sequence[int] | None = None,
    iou_types: Sequence[str] = ("bbox", "segm"),
    oks_sigmas: Sequence[float] | None = None,
) -> CocoScores:
    """Run pycocotools' ``COCOeval`` for each of ``iou_types`` (see :class:`CocoScores` for what is kept).

    Args:
        gt: the ground truth (:func:`coco_ground_truth`, or a ``COCO`` read from a file).
        results: COCO results (:func:`detections_to_results`); may be empty (everything missed).
        category_ids: score only these categories (``None``: all of ``gt``'s), e.g. the classes a model
            knows when it is evaluated on a dataset with others.
        iou_types: some of :data:`IOU_TYPES`: ``bbox`` (boxes), ``segm`` (masks), ``keypoints`` (OKS; the
            ground truth's annotations need ``keypoints`` and ``num_keypoints``).
        oks_sigmas: the per-keypoint OKS sigmas (``KeypointSpec.oks_sigmas()``); ``None``: from the
            ground truth's keypoint names (:func:`ground_truth_sigmas`).

    Raises:
        ValueError: an unknown type; results without the field a type evaluates; keypoint lists of
            another length than the sigmas.
    """
    for iou_type in iou_types:
        metric_names(iou_type)  # an unknown type is said before anything runs
    metrics: Metrics = {}
    per_class: dict[str, dict[int, dict[str, float | None]]] = {}
    curves: dict[str, Any] = {}
    for iou_type in iou_types:
        coco_eval = COCOeval(gt, _results_coco(gt, results, iou_type), iou_type)
        if category_ids is not None:
            coco_eval.params.catIds = sorted(int(c) for c in category_ids)
        if iou_type == "keypoints":
            sigmas = list(oks_sigmas) if oks_sigmas is not None else ground_truth_sigmas(gt)
            _check_keypoints(gt, results, len(sigmas), coco_eval.params.catIds)
            coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        with _quiet():
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        metrics[iou_type] = {
            name: (float(v) if v > -1 else None)
            for name, v in zip(metric_names(iou_type), coco_eval.stats, strict=True)
        }
        params = coco_eval.params
        curves.setdefault("recall", [float(r) for r in params.recThrs])
        # [T IoU thresholds, R recall levels, K classes, A areas, M max detections]; area 0 is "all" and
        # the last max-detections setting (100; 20 for keypoints) is the one COCO's AP uses.
        precision = coco_eval.eval["precision"][:, :, :, 0, -1]
        per_class[iou_type] = {
            int(cat): {"AP": _mean_valid(precision[:, :, k]), "AP50": _mean_valid(precision[0, :, k])}
            for k, cat in enumerate(params.catIds)
        }
        curves[iou_type] = _curves(precision)
    return CocoScores(metrics, per_class, curves)


def coco_metrics(
    gt: COCO,
    results: Sequence[Result],
    *,
    iou_types: Sequence[str] = ("bbox", "segm"),
    oks_sigmas: Sequence[float] | None = None,
) -> Metrics:
    """``{"bbox": {...}, "segm": {...}}`` (the ``iou_types``), each with its :func:`metric_names` of
    pycocotools' summary (floats in 0..1, ``None`` where pycocotools says -1). Empty ``results`` give
    zeros. See :func:`coco_scores`."""
    return coco_scores(gt, results, iou_types=iou_types, oks_sigmas=oks_sigmas).metrics
