"""What the report's viewer shows of each image: its objects and detections, as plain records.

An :class:`ImageRecord` holds everything drawn and listed for one image: the ground truth (class, box,
mask, whether a detection found it and at what IoU) and the detections (class, score, box, mask, error
kind, IoU), plus the figures the grid sorts by (the image's AP50 and its count of each error kind) and
the check-data problems of the image. Masks stay COCO's compressed RLE text, exactly as
``ground_truth.json`` and ``results.json`` hold them: the page decodes them where it draws.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pycocotools import mask as mask_utils

from maskrcnn.engine.evaluation.errors import ERROR_KINDS, ErrorAnalysis

__all__ = ["ImageRecord", "evaluation_records", "rle_text"]


@dataclass
class ImageRecord:
    """One image of the viewer.

    Attributes:
        image_id: the image's id in the ground truth (what its pixels are found by in a dataset).
        name: its file name or reference, as shown.
        height, width: its size in pixels (the masks' size).
        objects: per object ``{"c": class index (0-based), "b": [x, y, w, h], "m": RLE text or None,
            "crowd": bool}``, with ``"found"`` (bool) and ``"iou"`` in an evaluation.
        detections: per detection ``{"c", "b", "m", "s": score, "k": kind ("tp", "ignored", an error
            kind, or "" beyond the image's 100 best), "iou": float or None}``, best score first.
        summary: ``AP50`` (None without objects) and each error kind's count (evaluations only).
        problems: the check-data lines about this image.
    """

    image_id: int
    name: str
    height: int
    width: int
    objects: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def index_entry(self) -> dict[str, Any]:
        """What the page's index holds of the image (without masks): enough to filter, count and sort
        the whole grid without loading any image's details."""
        return {
            "name": self.name,
            "w": self.width,
            "h": self.height,
            "gt": [o["c"] for o in self.objects if not o["crowd"]],
            "dt": [[d["c"], d["s"]] for d in self.detections],
            **({"summary": self.summary} if self.summary else {}),
            **({"problems": self.problems} if self.problems else {}),
        }

    def details(self) -> dict[str, Any]:
        """What the page loads to draw the image: its objects and detections with their masks."""
        return {"objects": self.objects, "detections": self.detections}


def rle_text(segmentation: Any, height: int, width: int) -> str | None:
    """A COCO segmentation (compressed or uncompressed RLE, or polygons) as compressed RLE text; None
    for none."""
    if not segmentation:
        return None
    if isinstance(segmentation, Mapping) and isinstance(segmentation.get("counts"), str):
        return str(segmentation["counts"])
    if isinstance(segmentation, Mapping) and isinstance(segmentation.get("counts"), bytes):
        return segmentation["counts"].decode("ascii")
    rle = mask_utils.frPyObjects(segmentation, height, width)
    if isinstance(rle, list):  # polygons: one RLE per part, joined
        rle = mask_utils.merge(rle)
    return rle["counts"].decode("ascii")


def _box(bbox: Sequence[float]) -> list[float]:
    return [round(float(v), 1) for v in bbox]


def evaluation_records(
    ground_truth: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    analysis: ErrorAnalysis | None,
) -> list[ImageRecord]:
    """The records of an evaluation's images, in the ground truth's order.

    Args:
        ground_truth: the COCO ground truth (``ground_truth.json``).
        results: the COCO results scored against it (``results.json``).
        analysis: the error analysis of ``results`` (by mask where the model has masks): kinds and IoUs.
            ``None``: a dataset alone (no ``found``/``iou``, detections must be empty).
    """
    classes = {c["id"]: k for k, c in enumerate(ground_truth["categories"])}
    records: dict[int, ImageRecord] = {}
    for image in ground_truth["images"]:
        records[image["id"]] = ImageRecord(
            image_id=image["id"],
            name=str(image.get("file_name", image["id"])),
            height=int(image["height"]),
            width=int(image["width"]),
        )
    found = set(analysis.found) if analysis is not None else set()
    for ann in ground_truth["annotations"]:
        record = records[ann["image_id"]]
        crowd = bool(ann.get("iscrowd", 0))
        item: dict[str, Any] = {
            "c": classes[ann["category_id"]],
            "b": _box(ann["bbox"]),
            "m": rle_text(ann.get("segmentation"), record.height, record.width),
            "crowd": crowd,
        }
        if analysis is not None and not crowd:
            item["found"] = ann["id"] in found
            item["iou"] = round(analysis.object_ious.get(ann["id"], 0.0), 3)
        record.objects.append(item)
    by_image: dict[int, list[int]] = defaultdict(list)
    for k, result in enumerate(results):
        by_image[result["image_id"]].append(k)
    for image_id, indices in by_image.items():
        record = records[image_id]
        for k in sorted(indices, key=lambda k: -results[k]["score"]):
            result = results[k]
            iou = analysis.detection_ious[k] if analysis is not None else None
            record.detections.append(
                {
                    "c": classes[result["category_id"]],
                    "b": _box(result["bbox"]),
                    "m": rle_text(result.get("segmentation"), record.height, record.width),
                    "s": round(float(result["score"]), 4),
                    "k": analysis.detection_kinds[k] if analysis is not None else "",
                    "iou": None if iou is None else round(iou, 3),
                }
            )
    if analysis is not None:
        for image_id, row in analysis.per_image.items():
            records[image_id].summary = {"AP50": row["AP50"], **{kind: row[kind] for kind in ERROR_KINDS}}
    return list(records.values())
