"""The error report of an evaluation: ``errors.json`` and ``errors.png`` (what ``maskrcnn evaluate``
writes beside the metrics, and ``maskrcnn analyze EVAL_DIR`` writes again from its files).

:func:`error_report` gathers, for boxes and (with masks) masks:

* ``errors``: the AP50 and the AP50 each error kind costs, with the counts behind them
  (:func:`~maskrcnn.engine.evaluation.errors.analyze_errors`: TIDE's oracles);
* ``sizes``: COCO's AP for small (< 32² pixels), medium and large objects, with the number of objects of
  each size;
* ``visibility``: the objects grouped by how much of their box is free of other objects (the rest is
  covered by other objects' masks, or boxes for a model without masks), with the share of each group
  found at IoU 0.5: the cost of crowding and occlusion;
* ``per_image``: each image's AP50 and error counts, and the ``worst_images``;
* ``per_class``: each class's AP and AP50, and the classes its objects are taken for most (from the
  confusion matrix).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from maskrcnn.engine.evaluation.errors import ERROR_KINDS, ErrorAnalysis, analyze_errors
from maskrcnn.io import atomic_write, write_json

__all__ = ["SIZE_RANGES", "VISIBILITY_BINS", "error_report", "format_errors", "write_error_report"]

SIZE_RANGES = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, float("inf"))}
"""COCO's object sizes, by area in pixels."""

VISIBILITY_BINS = {"free": (0.9, 1.01), "partly covered": (0.5, 0.9), "mostly covered": (0.0, 0.5)}
"""Groups by the share of an object's box that no other object covers."""

_WORST = 20
_TITLES = {"bbox": "box", "segm": "mask"}


def _box_region(ann: Mapping[str, Any], height: int, width: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the pixels of the annotation's box, inside the image."""
    x, y, w, h = ann["bbox"]
    x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
    return x0, y0, max(min(int(np.ceil(x + w)), width), x0), max(min(int(np.ceil(y + h)), height), y0)


def _object_crop(ann: Mapping[str, Any], iou_type: str, region: tuple[int, int, int, int]) -> np.ndarray:
    """bool ``[y1 - y0, x1 - x0]``: the annotation's mask (``segm``) or box inside ``region``."""
    x0, y0, x1, y1 = region
    if iou_type != "segm":
        return np.ones((y1 - y0, x1 - x0), dtype=bool)
    counts = ann["segmentation"]["counts"]
    size = ann["segmentation"]["size"]
    rle = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle)[y0:y1, x0:x1].astype(bool)


def _visibility(ground_truth: Mapping[str, Any], iou_type: str) -> dict[int, float]:
    """Per non-crowd annotation id, the share of its box that the other objects of its image do not
    cover (by their masks with ``segm``, else their boxes). The work is the objects' boxes: one count
    of the image's size, each mask decoded once and kept inside its box."""
    sizes = {image["id"]: (image["height"], image["width"]) for image in ground_truth["images"]}
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for ann in ground_truth["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    visible: dict[int, float] = {}
    for image_id, anns in by_image.items():
        height, width = sizes[image_id]
        if len(anns) == 1:
            visible[anns[0]["id"]] = 1.0
            continue
        cover = np.zeros((height, width), dtype=np.int32)
        crops = []
        for ann in anns:
            region = _box_region(ann, height, width)
            crop = _object_crop(ann, iou_type, region)
            x0, y0, x1, y1 = region
            cover[y0:y1, x0:x1] += crop
            crops.append((region, crop))
        for ann, ((x0, y0, x1, y1), crop) in zip(anns, crops, strict=True):
            free = cover[y0:y1, x0:x1] - crop == 0
            visible[ann["id"]] = float(free.mean()) if free.size else 1.0
    return visible


def _sizes(ground_truth: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    areas = [ann["area"] for ann in ground_truth["annotations"] if not ann.get("iscrowd", 0)]
    rows = {}
    for name, (low, high) in SIZE_RANGES.items():
        key = {"small": "APs", "medium": "APm", "large": "APl"}[name]
        rows[name] = {"objects": sum(low <= a < high for a in areas), "AP": metrics.get(key)}
    return rows


def _visibility_rows(visible: Mapping[int, float], analysis: ErrorAnalysis) -> dict[str, Any]:
    found = set(analysis.found)
    rows = {}
    for name, (low, high) in VISIBILITY_BINS.items():
        ids = [i for i, v in visible.items() if low <= v < high]
        rows[name] = {
            "objects": len(ids),
            "found": sum(i in found for i in ids),
            "recall": sum(i in found for i in ids) / len(ids) if ids else None,
        }
    return rows


def _confused_with(confusion: Sequence[Sequence[int]], class_names: Sequence[str], k: int) -> list[Any]:
    """The classes (and "background": missed) the objects of class ``k`` (1-based) are taken for most."""
    row = confusion[k] if k < len(confusion) else []
    names = ["background", *class_names]
    pairs = [(names[j], int(count)) for j, count in enumerate(row) if j != k and count]
    return [{"class": name, "objects": count} for name, count in sorted(pairs, key=lambda p: -p[1])[:3]]


def error_report(
    ground_truth: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Mapping[str, Any]],
    per_class: Sequence[Mapping[str, Any]],
    confusion: Sequence[Sequence[int]],
    class_names: Sequence[str],
) -> dict[str, Any]:
    """The contents of ``errors.json`` (see the module docstring), for each of ``bbox`` / ``segm`` in
    ``metrics``.

    Args:
        ground_truth: the evaluation's COCO ground truth (``ground_truth.json``).
        results: its COCO results (``results.json``), with the ground truth's category ids.
        metrics: its ``metrics.json``; per_class: its ``per_class.json``.
        confusion: the confusion matrix, ``[K + 1, K + 1]`` (row 0 and column 0 background).
        class_names: names of the categories, in the ground truth's order.
    """
    files = {image["id"]: image.get("file_name", str(image["id"])) for image in ground_truth["images"]}
    report: dict[str, Any] = {}
    for iou_type in ("bbox", "segm"):
        if iou_type not in metrics:
            continue
        analysis = analyze_errors(ground_truth, results, iou_type=iou_type)
        per_image = [{"image_id": k, "file_name": files[k], **row} for k, row in analysis.per_image.items()]
        worst = [{"file_name": files[row["image_id"]], **row} for row in analysis.worst_images(_WORST)]
        report[iou_type] = {
            "errors": analysis.to_dict(),
            "sizes": _sizes(ground_truth, metrics[iou_type]),
            "visibility": _visibility_rows(_visibility(ground_truth, iou_type), analysis),
            "worst_images": worst,
            "per_image": per_image,
        }
    prefix = "mask" if "segm" in metrics else "box"
    report["per_class"] = [
        {
            "class": row["class"],
            "objects": row["instances"],
            "AP": row.get(f"{prefix}_AP"),
            "AP50": row.get(f"{prefix}_AP50"),
            "taken_for": _confused_with(confusion, class_names, k),
        }
        for k, row in enumerate(per_class, start=1)
    ]
    return report


def format_errors(report: Mapping[str, Any]) -> list[str]:
    """The lines ``evaluate`` and ``analyze`` print: per type the AP50 and the AP50 each kind costs."""
    lines = []
    for iou_type in ("bbox", "segm"):
        if iou_type not in report:
            continue
        errors = report[iou_type]["errors"]
        ap50 = errors["AP50"]
        costs = ", ".join(
            f"{kind} {100 * errors['ap_gain'][kind]:.1f} ({errors['counts'][kind]})" for kind in ERROR_KINDS
        )
        head = (
            f"{_TITLES[iou_type]} AP50 {100 * ap50:.1f}"
            if ap50 is not None
            else f"{_TITLES[iou_type]} AP50 -"
        )
        lines.append(f"{head}; AP50 lost to (count): {costs}")
    return lines


def _figure(report: Mapping[str, Any]) -> Any:
    from matplotlib.figure import Figure

    types = [t for t in ("bbox", "segm") if t in report]
    figure = Figure(figsize=(4.5 * len(types), 3.4), layout="constrained")
    axes = figure.subplots(1, len(types), squeeze=False)[0]
    for ax, iou_type in zip(axes, types, strict=True):
        errors = report[iou_type]["errors"]
        gains = [100 * errors["ap_gain"][kind] for kind in ERROR_KINDS]
        bars = ax.barh(ERROR_KINDS, gains, color="tab:red")
        ax.bar_label(
            bars, labels=[str(errors["counts"][kind]) for kind in ERROR_KINDS], padding=2, fontsize=8
        )
        ax.invert_yaxis()
        ax.set_xlabel("AP50 gained by fixing (points); bar labels: counts")
        ap50 = errors["AP50"]
        ax.set_title(f"{_TITLES[iou_type]}: AP50 {100 * ap50:.1f}" if ap50 is not None else _TITLES[iou_type])
        ax.set_xlim(0, max([*gains, 1.0]) * 1.25)
    return figure


def write_error_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``errors.json`` and ``errors.png`` (the AP each error kind costs) into ``out_dir``."""
    out = Path(out_dir)
    paths = {"errors.json": out / "errors.json", "errors.png": out / "errors.png"}
    write_json(paths["errors.json"], report)
    figure = _figure(report)
    atomic_write(paths["errors.png"], lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    return paths
