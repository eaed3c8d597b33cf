"""The confusion matrix: which class each ground-truth instance was detected as, if any (matched by
mask IoU, or by box IoU for a model without masks)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

__all__ = ["confusion_matrix"]


def _ious(
    dets: Sequence[dict[str, Any]], anns: Sequence[dict[str, Any]], gt: COCO, crowd: bool, iou_type: str
) -> np.ndarray:
    """pycocotools' mask (``segm``) or box (``bbox``) IoU ``[len(dets), len(anns)]`` (with ``crowd``:
    intersection over the detection's own area, COCO's crowd rule)."""
    if iou_type == "segm":
        ious = mask_utils.iou(
            [d["segmentation"] for d in dets], [gt.annToRLE(a) for a in anns], [int(crowd)] * len(anns)
        )
    else:
        ious = mask_utils.iou(
            np.array([d["bbox"] for d in dets], dtype=np.float64).reshape(-1, 4),
            np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4),
            [int(crowd)] * len(anns),
        )
    return np.asarray(ious).reshape(len(dets), len(anns))


def confusion_matrix(
    gt: COCO,
    results: Sequence[dict[str, Any]],
    category_ids: Sequence[int],
    *,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    iou_type: str = "segm",
) -> np.ndarray:
    """Confusion counts, ``int64 [K + 1, K + 1]``: rows are ground-truth classes, columns predicted
    classes, index = label (0 = background).

    Per image, the detections scoring at least ``score_threshold`` and the (non-crowd) ground-truth
    instances are matched one to one, class-agnostically, greedily by decreasing IoU of their masks
    (``iou_type`` ``segm``; results need ``segmentation``) or boxes (``bbox``), pairs below
    ``iou_threshold`` never matching: a matched pair counts at ``[gt label, predicted label]`` (off the
    diagonal: a confusion), an unmatched instance at ``[label, 0]`` (missed), an unmatched detection at
    ``[0, label]`` (false positive) unless it lies on a crowd region (intersection over its own area
    ``>= iou_threshold``, COCO's crowd rule), where it is not counted.
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"confusion_matrix: iou_type {iou_type!r}; expected 'segm' or 'bbox'")
    label_of = {int(c): k + 1 for k, c in enumerate(category_ids)}
    matrix = np.zeros((len(category_ids) + 1, len(category_ids) + 1), dtype=np.int64)
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
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
            ious = _ious(dets, objects, gt, False, iou_type)
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
        left = [dets[d] for d in np.flatnonzero(~det_done)]
        on_crowd = np.zeros(len(left), dtype=bool)
        if crowds and left:
            on_crowd = _ious(left, crowds, gt, True, iou_type).max(axis=1) >= iou_threshold
        for det, ignored in zip(left, on_crowd, strict=True):
            if not ignored:
                matrix[0, label_of[det["category_id"]]] += 1
    return matrix
