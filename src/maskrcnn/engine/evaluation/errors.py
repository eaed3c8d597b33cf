"""Why the AP is what it is: each detection and missed object put in one error kind, and the AP each
kind costs, computed as TIDE does (Bolya et al., "TIDE: A General Toolbox for Identifying Object
Detection Errors", ECCV 2020): fix the errors of one kind with an oracle, score again, and the AP gained
is that kind's weight.

Everything is at IoU 0.5 (AP50, COCO's 101-point interpolation, at most 100 detections per image, crowd
regions matched as COCO matches them), by box or by mask IoU. Per image and class, detections go in
score order; each is

* a **true positive**: IoU >= 0.5 with an object of its class not matched yet (the best such object);
* **ignored**: it matches a crowd region of its class (COCO does not count it);
* a **duplicate**: IoU >= 0.5 with an object of its class that a higher-scoring detection took;
* a **classification** error: IoU >= 0.5 with an object of another class;
* a **localisation** error: 0.1 <= IoU < 0.5 with an object of its class;
* **both**: 0.1 <= IoU < 0.5 with an object of another class only;
* **background**: IoU < 0.1 with every object.

An object that no true positive matched and that is not the object of a classification or localisation
error is **missed**. The oracle of each kind: a classification error takes the class of its object, and
a localisation error the object's box (or mask), and each becomes a true positive when its object is
not matched yet (else it is a duplicate and removed); duplicates, "both" and background detections are
removed; missed objects are taken out of the count of objects to find. The kinds' AP gains need not add
up to the AP missing (errors interact), as in TIDE.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "BACKGROUND_IOU",
    "ERROR_KINDS",
    "FOREGROUND_IOU",
    "ErrorAnalysis",
    "analyze_errors",
    "average_precision",
]

ERROR_KINDS = ("classification", "localisation", "both", "duplicate", "background", "missed")
"""The error kinds, in TIDE's order."""

FOREGROUND_IOU = 0.5  # a detection finds an object from this IoU
BACKGROUND_IOU = 0.1  # below this IoU with every object, a detection is on background
_MAX_DETECTIONS = 100  # per image, as COCO's AP
_RECALLS = np.linspace(0.0, 1.0, 101)


def average_precision(scores: Sequence[float], true: Sequence[bool], num_objects: int) -> float | None:
    """COCO's 101-point interpolated AP of detections (``scores``, whether each is a true positive) for
    ``num_objects`` objects; ``None`` without objects. Ties in score keep the given order (COCO sorts
    with a stable merge sort)."""
    if num_objects <= 0:
        return None
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    hits = np.asarray(true, dtype=bool)[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    recall = tp / num_objects
    precision = tp / np.maximum(tp + fp, np.spacing(1))
    # The precision envelope: the best precision at any recall at least as high.
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    positions = np.searchsorted(recall, _RECALLS, side="left")
    values = [envelope[p] if p < len(envelope) else 0.0 for p in positions]
    return float(np.mean(values))


@dataclass
class _Detection:
    index: int  # in the results list
    image_id: int
    category_id: int
    score: float
    kind: str = ""  # "tp", "ignored" or an error kind
    target: int | None = None  # the annotation index the error concerns (cls/loc/dup), or the TP's
    iou: float = 0.0  # with the target, or (both, background) the best with any object


@dataclass
class ErrorAnalysis:
    """What :func:`analyze_errors` found.

    Attributes:
        iou_type: ``"bbox"`` or ``"segm"``.
        ap50: AP50 of the results as they are (the mean over the classes with objects).
        gains: per error kind, the AP50 its oracle gains.
        counts: per error kind, how many detections (objects, for ``missed``) it holds.
        per_image: per image id: ``AP50`` (on its own detections, the mean over its classes; ``None``
            without objects or detections), ``detections``, ``objects`` and each kind's count.
        detection_kinds: per result (in the results' order), ``"tp"``, ``"ignored"``, an error kind, or
            ``""`` for one beyond an image's 100 best.
        detection_ious: per result, the IoU its kind was decided by: with the object it found, took
            twice, or was wrong about (``tp``, ``ignored``, ``duplicate``, ``classification``,
            ``localisation``), else (``both``, ``background``) the best with any object; ``None`` for one
            beyond an image's 100 best.
        object_ious: per non-crowd annotation id, the IoU of the true positive that found it, or for an
            object not found the best IoU any detection of its image has with it (0 without one).
        missed: the annotation ids of the missed objects.
        found: the annotation ids of the objects a true positive found.
    """

    iou_type: str
    ap50: float | None
    gains: dict[str, float]
    counts: dict[str, int]
    per_image: dict[int, dict[str, Any]] = field(default_factory=dict)
    detection_kinds: list[str] = field(default_factory=list)
    detection_ious: list[float | None] = field(default_factory=list)
    object_ious: dict[int, float] = field(default_factory=dict)
    missed: list[int] = field(default_factory=list)
    found: list[int] = field(default_factory=list)

    def worst_images(self, count: int = 20) -> list[dict[str, Any]]:
        """The images of lowest AP50 (the most errors first among equals), each row with its
        ``image_id``."""
        rows = [{"image_id": k, **v} for k, v in self.per_image.items() if v["AP50"] is not None]
        errors = lambda row: sum(row[kind] for kind in ERROR_KINDS)  # noqa: E731
        return sorted(rows, key=lambda row: (row["AP50"], -errors(row), row["image_id"]))[:count]

    def to_dict(self) -> dict[str, Any]:
        return {
            "iou_type": self.iou_type,
            "iou_threshold": FOREGROUND_IOU,
            "background_iou": BACKGROUND_IOU,
            "AP50": self.ap50,
            "ap_gain": {kind: round(self.gains[kind], 6) for kind in ERROR_KINDS},
            "counts": dict(self.counts),
        }


def _geometry(item: Mapping[str, Any], iou_type: str) -> Any:
    return item["bbox"] if iou_type == "bbox" else item["segmentation"]


def _ious(dets: list[Any], objects: list[Any], crowd: list[bool], iou_type: str) -> np.ndarray:
    """``[D, G]`` IoUs (IoA with crowd regions, as COCO), by box or RLE mask."""
    if not dets or not objects:
        return np.zeros((len(dets), len(objects)))
    if iou_type == "segm":
        dets = [_compressed(r) for r in dets]
        objects = [_compressed(r) for r in objects]
    return np.asarray(mask_utils.iou(dets, objects, [int(c) for c in crowd])).reshape(len(dets), len(objects))


def _compressed(rle: Mapping[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    height, width = rle["size"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(dict(rle), height, width)
    return {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def analyze_errors(
    ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]], *, iou_type: str = "segm"
) -> ErrorAnalysis:
    """The error kinds of ``results`` against ``ground_truth`` and the AP50 each costs (see the module
    docstring).

    Args:
        ground_truth: a COCO instances dict (``images``, ``annotations`` with ``bbox``, ``segmentation``
            as RLE for ``segm``, ``iscrowd``; ``categories``).
        results: COCO results (``image_id``, ``category_id``, ``score``, ``bbox`` / ``segmentation``).
        iou_type: ``"bbox"`` or ``"segm"``.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    annotations = list(ground_truth["annotations"])
    categories = [c["id"] for c in ground_truth["categories"]]
    by_image_gt: dict[int, list[int]] = defaultdict(list)
    for k, ann in enumerate(annotations):
        by_image_gt[ann["image_id"]].append(k)
    by_image_det: dict[int, list[int]] = defaultdict(list)
    for k, result in enumerate(results):
        by_image_det[result["image_id"]].append(k)

    detections: list[_Detection] = []
    used: set[int] = set()  # annotations matched by a true positive
    best_iou: dict[int, float] = {}  # per annotation index, the best IoU of any of its image's detections
    for image in ground_truth["images"]:
        image_id = image["id"]
        det_ids = sorted(by_image_det.get(image_id, []), key=lambda k: -results[k]["score"])
        det_ids = det_ids[:_MAX_DETECTIONS]
        gt_ids = by_image_gt.get(image_id, [])
        crowd = [bool(annotations[g].get("iscrowd", 0)) for g in gt_ids]
        ious = _ious(
            [_geometry(results[k], iou_type) for k in det_ids],
            [_geometry(annotations[g], iou_type) for g in gt_ids],
            crowd,
            iou_type,
        )
        gt_category = np.array([annotations[g]["category_id"] for g in gt_ids], dtype=np.int64)
        crowd_mask = np.array(crowd, dtype=bool)
        for row, k in enumerate(det_ids):
            det = _Detection(k, image_id, results[k]["category_id"], float(results[k]["score"]))
            detections.append(det)
            _classify(det, ious[row], gt_ids, gt_category, crowd_mask, used)
        for column, g in enumerate(gt_ids):
            best_iou[g] = float(ious[:, column].max(initial=0.0))

    kinds, det_ious, object_ious = _outcomes(detections, annotations, best_iou, len(results))
    targeted = {det.target for det in detections if det.kind in ("classification", "localisation")}
    missed = [
        g
        for g, ann in enumerate(annotations)
        if not ann.get("iscrowd", 0) and g not in used and g not in targeted
    ]
    counts = Counter(det.kind for det in detections if det.kind in ERROR_KINDS)
    counts["missed"] = len(missed)
    base = _map(detections, annotations, categories, used, fix=None, missed=missed)
    gains = {}
    for kind in ERROR_KINDS:
        fixed = _map(detections, annotations, categories, used, fix=kind, missed=missed)
        gains[kind] = (fixed or 0.0) - (base or 0.0)
    analysis = ErrorAnalysis(
        iou_type=iou_type,
        ap50=base,
        gains=gains,
        counts={kind: counts.get(kind, 0) for kind in ERROR_KINDS},
        detection_kinds=kinds,
        detection_ious=det_ious,
        object_ious=object_ious,
        missed=[annotations[g]["id"] for g in missed],
        found=sorted(annotations[g]["id"] for g in used),
    )
    analysis.per_image = _per_image(ground_truth, annotations, detections, categories, missed)
    return analysis


def _outcomes(
    detections: list[_Detection], annotations: list[Mapping[str, Any]], best_iou: dict[int, float], count: int
) -> tuple[list[str], list[float | None], dict[int, float]]:
    """Per result its kind and IoU (``""`` / ``None`` beyond an image's 100 best), and per non-crowd
    annotation id the IoU of its true positive, else the best of any detection."""
    kinds = [""] * count
    det_ious: list[float | None] = [None] * count
    object_ious = {
        annotations[g]["id"]: value for g, value in best_iou.items() if not annotations[g].get("iscrowd", 0)
    }
    for det in detections:
        kinds[det.index] = det.kind
        det_ious[det.index] = det.iou
        if det.kind == "tp":
            assert det.target is not None
            object_ious[annotations[det.target]["id"]] = det.iou
    return kinds, det_ious, object_ious


def _classify(
    det: _Detection,
    ious: np.ndarray,
    gt_ids: list[int],
    gt_category: np.ndarray,
    crowd: np.ndarray,
    used: set[int],
) -> None:
    """Set ``det.kind`` and ``det.target`` (and mark the object a true positive takes in ``used``)."""
    same = gt_category == det.category_id
    free = np.array([g not in used for g in gt_ids], dtype=bool)
    # COCO: the best free object of the class at IoU >= 0.5, objects before crowd regions.
    for candidates in (same & ~crowd & free, same & crowd):
        if candidates.any():
            best = int(np.argmax(np.where(candidates, ious, -1.0)))
            if ious[best] >= FOREGROUND_IOU:
                det.iou = float(ious[best])
                if crowd[best]:
                    det.kind, det.target = "ignored", gt_ids[best]
                else:
                    det.kind, det.target = "tp", gt_ids[best]
                    used.add(gt_ids[best])
                return
    objects = ~crowd
    same_iou = np.where(same & objects, ious, 0.0)
    other_iou = np.where(~same & objects, ious, 0.0)
    best_same, best_other = same_iou.max(initial=0.0), other_iou.max(initial=0.0)  # 0: no object
    if best_same >= FOREGROUND_IOU:
        det.kind, det.target, det.iou = "duplicate", gt_ids[int(np.argmax(same_iou))], float(best_same)
    elif best_other >= FOREGROUND_IOU:
        det.kind, det.target, det.iou = "classification", gt_ids[int(np.argmax(other_iou))], float(best_other)
    elif best_same >= BACKGROUND_IOU:
        det.kind, det.target, det.iou = "localisation", gt_ids[int(np.argmax(same_iou))], float(best_same)
    else:
        det.kind = "both" if best_other >= BACKGROUND_IOU else "background"
        det.iou = float(max(best_same, best_other))


def _map(
    detections: list[_Detection],
    annotations: list[Mapping[str, Any]],
    categories: list[int],
    used: set[int],
    *,
    fix: str | None,
    missed: list[int],
) -> float | None:
    """AP50 over the classes with objects, with the errors of ``fix`` fixed by its oracle."""
    per_class: dict[int, tuple[list[float], list[bool]]] = {c: ([], []) for c in categories}
    claimed = set(used)
    for det in sorted(detections, key=lambda d: -d.score):
        category, true = det.category_id, det.kind == "tp"
        if det.kind == "ignored" or (fix == det.kind and fix in ("duplicate", "both", "background")):
            continue
        if fix == det.kind and fix in ("classification", "localisation"):
            assert det.target is not None
            if det.target in claimed:
                continue  # its object is found already: a duplicate, removed
            claimed.add(det.target)
            category, true = annotations[det.target]["category_id"], True
        scores, flags = per_class.setdefault(category, ([], []))
        scores.append(det.score)
        flags.append(true)
    totals: Counter[int] = Counter(a["category_id"] for a in annotations if not a.get("iscrowd", 0))
    objects = Counter(totals)
    if fix == "missed":
        for g in missed:
            objects[annotations[g]["category_id"]] -= 1
    values = []
    for category in categories:
        if not totals[category]:
            continue  # COCO's mean leaves out the classes without objects
        scores, flags = per_class[category]
        ap = average_precision(scores, flags, objects[category])
        values.append(1.0 if ap is None else ap)  # every object of the class missed and fixed: perfect
    return float(np.mean(values)) if values else None


def _per_image(
    ground_truth: Mapping[str, Any],
    annotations: list[Mapping[str, Any]],
    detections: list[_Detection],
    categories: list[int],
    missed: list[int],
) -> dict[int, dict[str, Any]]:
    """Per image: its own AP50 (mean over the classes it has objects of), and its counts."""
    rows: dict[int, dict[str, Any]] = {}
    dets: dict[int, list[_Detection]] = defaultdict(list)
    for det in detections:
        dets[det.image_id].append(det)
    objects: dict[int, Counter[int]] = defaultdict(Counter)
    for a in annotations:
        if not a.get("iscrowd", 0):
            objects[a["image_id"]][a["category_id"]] += 1
    missed_per_image = Counter(annotations[g]["image_id"] for g in missed)
    for image in ground_truth["images"]:
        image_id = image["id"]
        mine = dets.get(image_id, [])
        values = []
        for category, count in objects[image_id].items():
            kept = [d for d in mine if d.category_id == category and d.kind != "ignored"]
            values.append(average_precision([d.score for d in kept], [d.kind == "tp" for d in kept], count))
        kinds = Counter(d.kind for d in mine)
        row: dict[str, Any] = {
            "AP50": float(np.mean(values)) if values else None,
            "detections": len(mine),
            "objects": sum(objects[image_id].values()),
        }
        for kind in ERROR_KINDS:
            row[kind] = missed_per_image[image_id] if kind == "missed" else kinds.get(kind, 0)
        rows[image_id] = row
    return rows
