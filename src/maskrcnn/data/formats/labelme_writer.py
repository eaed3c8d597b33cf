"""LabelMe JSON files, one per image: ``--to labelme`` and ``predict --save-as labelme``.

``labelme IMAGES --output OUT`` opens the images with these files (LabelMe looks for ``OUT/<stem>.json``),
and ``--format labelme`` reads them back (:class:`~maskrcnn.data.formats.labelme.LabelMeDataset`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from maskrcnn.data.formats.annotation_writer import AnnotationWriter, ImageInstances
from maskrcnn.io import write_json

__all__ = ["LABELME_VERSION", "LabelMeWriter"]

LABELME_VERSION = "5.5.0"
"""The ``version`` the files declare (LabelMe warns, and still opens them, when its major version
differs)."""


class LabelMeWriter(AnnotationWriter):
    """A folder of LabelMe files: ``OUT/<stem>.json`` for each image.

    Each file has ``imagePath`` relative to itself (the original image, or for an image without a file its
    PNG, written into OUT), ``imageData`` null (LabelMe loads the image from ``imagePath``),
    ``imageHeight`` / ``imageWidth``, and one ``polygon`` shape per part of each object, labelled with its
    class; holes are joined to their outer ring by zero-width cuts. An object of several parts, or with
    keypoints, has its shapes share a ``group_id`` (its number in the image, from 1), and its keypoints are
    ``point`` shapes of that group, labelled with the keypoint's name (only those labelled, ``v > 0``:
    LabelMe has no hidden points, and reads every point back as visible). A prediction's score is in its
    shapes' ``description`` (``"score 0.93"``).

    Images with one stem from different folders get ``<stem>_2.json`` and on: LabelMe's ``--output`` finds
    only ``<stem>.json``, the reader finds all.
    """

    def _write(self, item: ImageInstances) -> None:
        image = self.image_file(item, self.out)
        try:
            relative = Path(os.path.relpath(image, os.path.abspath(self.out))).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            relative = Path(image).as_posix()
        shapes: list[dict[str, Any]] = []
        for k, parts in enumerate(self.polygons(item)):
            name = self.class_names[item.labels[k] - 1]
            description = f"score {item.scores[k]:.2f}" if item.scores is not None else ""
            points = self._points(item, k)
            group = k + 1 if len(parts) > 1 or points else None
            shapes += [_shape(name, part, "polygon", group, description) for part in parts]
            shapes += [_shape(label, xy, "point", group, "") for label, xy in points]
        data = {
            "version": LABELME_VERSION,
            "flags": {},
            "shapes": shapes,
            "imagePath": relative,
            "imageData": None,
            "imageHeight": item.height,
            "imageWidth": item.width,
        }
        write_json(self.out / f"{item.stem}.json", data, indent=2)

    def _points(self, item: ImageInstances, k: int) -> list[tuple[str, list[float]]]:
        """Instance ``k``'s labelled keypoints: ``(name, [x, y])``."""
        if item.keypoints is None or self.keypoint_spec is None:
            return []
        names = self.keypoint_spec.names
        return [(names[i], [x, y]) for i, (x, y, v) in enumerate(item.keypoints[k]) if v > 0]

    def _finish(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)  # a run without images still leaves its folder
        return self.out


def _shape(label: str, flat: list[float], kind: str, group: int | None, description: str) -> dict[str, Any]:
    return {
        "label": label,
        "points": [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)],
        "group_id": group,
        "description": description,
        "shape_type": kind,
        "flags": {},
        "mask": None,
    }
