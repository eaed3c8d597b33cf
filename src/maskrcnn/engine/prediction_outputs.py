"""What ``maskrcnn predict`` writes beside its pictures and ``results.json``: per-image maps and the
predictions as annotations an annotation tool opens.

* :class:`MapWriter` (``--semantic``, ``--instance-png``): per image (or video frame) the class map,
  ``OUT/semantic/<name>.png`` (pixel value = class id, 0 background, a VOC palette), and the instance
  map, ``OUT/instances/<name>.png`` (0 background, ``k`` the ``k``-th detection of ``results.json`` for
  the image, as Penn-Fudan's ``PedMasks``). Overlapping masks give their pixels to the higher score (see
  :mod:`maskrcnn.engine.semantic`).
* :func:`save_predictions_as` (``--save-as FORMAT``): every image's detections, as in ``results.json``,
  written as annotations (:mod:`maskrcnn.data.formats.annotation_writer`) at :func:`annotations_path`:
  ``OUT/coco/instances.json``, ``OUT/labelme/``, ``OUT/via/via_region_data.json``, ``OUT/yolo/data.yaml``.
  Images without detections are written too (with no instances): in model-assisted labelling they are
  the ones to check for missed objects. Predicted keypoints are written as labelled and visible
  (``v = 2``): the person correcting them decides.

Both are made from the detections alone, so a ``torchrun`` run writes the same files as one process: the
maps by each process for its images, the annotations by rank 0 from the gathered results.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from maskrcnn.data.formats.annotation_writer import DEFAULT_TOLERANCE, annotation_writer
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.engine.predictor import Detections
from maskrcnn.engine.semantic import instance_map, semantic_map, write_class_png, write_instance_png
from maskrcnn.engine.sources import MediaFile, map_path
from maskrcnn.ops.masks import rle_to_crops

__all__ = ["ANNOTATION_PATHS", "MapWriter", "annotations_path", "save_predictions_as"]

ANNOTATION_PATHS = {
    "coco": "coco/instances.json",
    "labelme": "labelme",
    "via": "via",
    "yolo": "yolo",
}
"""Per ``--save-as`` format, what its writer is given, relative to the output folder."""


def annotations_path(out: Path, format: str) -> Path:
    """The file or folder the ``format`` annotations of a predict run into ``out`` are written to."""
    return out / ANNOTATION_PATHS[format]


@dataclass
class MapWriter:
    """Writes the class and/or instance map PNG of each prediction.

    Args:
        out: the output folder.
        num_classes: the model's classes (the class PNG's palette and id check).
        semantic: write ``semantic/<name>.png``.
        instances: write ``instances/<name>.png``.
    """

    out: Path
    num_classes: int
    semantic: bool = False
    instances: bool = False

    def write(self, file: MediaFile, detections: Detections, frame: int | None = None) -> int:
        """Write the maps of ``file`` (or of its video ``frame``); returns how many files were written.

        Raises:
            ValueError: detections without masks (a keypoint-only model).
        """
        masks = detections.mask_crops
        if masks is None:
            raise ValueError("the class and instance maps are painted from masks, and this model gives none")
        written = 0
        if self.semantic:
            class_map = semantic_map(masks, detections.labels, detections.scores)
            path = map_path(self.out, file, "semantic", frame)
            write_class_png(path, class_map, num_classes=self.num_classes)
            written += 1
        if self.instances:
            path = map_path(self.out, file, "instances", frame)
            write_instance_png(path, instance_map(masks, detections.scores))
            written += 1
        return written


def save_predictions_as(
    format: str,
    out: Path,
    results: Sequence[dict[str, Any]],
    images: Sequence[tuple[str, int, int]],
    *,
    class_names: Sequence[str],
    keypoint_spec: KeypointSpec | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Path:
    """Write the predictions of a run as ``format`` annotations at :func:`annotations_path`.

    Args:
        format: one of :data:`~maskrcnn.data.formats.annotation_writer.SAVE_FORMATS`.
        out: the run's output folder.
        results: the COCO results of the run (``results.json``'s list: ``file_name``, ``category_id`` the
            model's label, ``score``, ``segmentation`` RLE, ``keypoints`` with a keypoint model).
        images: ``(file_name, height, width)`` of every image predicted on, in order (the ones without
            detections too).
        class_names: the model's classes (labels 1..K).
        keypoint_spec: the model's keypoints, or ``None``.
        tolerance: polygon simplification in pixels (LabelMe, VIA, YOLO).

    Returns:
        what to open: the COCO JSON, the LabelMe folder, the VIA project or YOLO's ``data.yaml``.
    """
    options: dict[str, Any] = {"description": "predictions of maskrcnn"} if format == "coco" else {}
    writer = annotation_writer(
        format,
        annotations_path(out, format),
        class_names=class_names,
        keypoint_spec=keypoint_spec,
        tolerance=tolerance,
        **options,
    )
    by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        by_file[result["file_name"]].append(result)
    for image_id, (file_name, height, width) in enumerate(images, start=1):
        found = by_file.get(file_name, [])
        keypoints = None
        if keypoint_spec is not None and found:
            points = torch.tensor([r["keypoints"] for r in found], dtype=torch.float64).reshape(
                len(found), -1, 3
            )
            points[..., 2] = 2.0  # the score column: every predicted keypoint is labelled and visible
            keypoints = points
        writer.add(
            image_path=Path(file_name),
            height=height,
            width=width,
            masks=rle_to_crops([r["segmentation"] for r in found], (height, width)),
            labels=torch.tensor([r["category_id"] for r in found], dtype=torch.int64),
            scores=torch.tensor([r["score"] for r in found], dtype=torch.float64),
            keypoints=keypoints,
            image_id=image_id,
        )
    return writer.close()
