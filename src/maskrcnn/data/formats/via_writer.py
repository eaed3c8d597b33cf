"""A VGG Image Annotator (VIA 2) project: ``--to via`` and ``predict --save-as via``.

VIA opens it with Project > Load, and finds the images through the project's default path; ``--format
via`` reads it back (:class:`~maskrcnn.data.formats.via.ViaDataset`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from maskrcnn.data.formats.annotation_writer import AnnotationWriter, ImageInstances
from maskrcnn.data.formats.polygons import join_polygons
from maskrcnn.io import write_json

__all__ = ["CLASS_ATTRIBUTE", "PROJECT_FILE", "ViaWriter"]

log = logging.getLogger(__name__)

PROJECT_FILE = "via_region_data.json"
"""The project's name in the output folder (the balloon example's)."""

CLASS_ATTRIBUTE = "class"
"""The region attribute holding each region's class: a dropdown of the class names."""

# The version of VIA 2's project files (VIA 2.0.8 onwards write it; it reads older and newer alike).
_FORMAT_VERSION = "2.0.10"


class ViaWriter(AnnotationWriter):
    """``OUT/via_region_data.json``: a VIA 2 project of every image added, written at :meth:`close` (which
    returns its path).

    ``_via_settings.core.default_filepath`` is the images' common folder (absolute, ending in ``/``), each
    image's ``filename`` its path from there, its key ``filename + size`` (the file's size in bytes, as VIA
    makes keys); ``_via_attributes.region.class`` is a dropdown of the class names. Each object is one
    ``polygon`` region (VIA has neither holes nor objects of several parts: they are joined by zero-width
    cuts), its class in ``region_attributes.class``. Images without a file are written into OUT as PNGs.

    VIA has no keypoints and no scores: they are left out (keypoints with a warning, once).
    """

    def __init__(self, out: Path, **kwargs: Any) -> None:
        super().__init__(out, **kwargs)
        self._images: list[tuple[Path, list[dict[str, Any]]]] = []
        if self.keypoint_spec is not None:
            log.warning(
                "%s: VIA has no keypoints; the %d keypoints are left out", out, len(self.keypoint_spec.names)
            )

    def _write(self, item: ImageInstances) -> None:
        image = self.image_file(item, self.out)
        regions = []
        for label, parts in zip(item.labels, self.polygons(item), strict=True):
            polygon = join_polygons(parts)
            shape = {"name": "polygon", "all_points_x": polygon[0::2], "all_points_y": polygon[1::2]}
            regions.append(
                {
                    "shape_attributes": shape,
                    "region_attributes": {CLASS_ATTRIBUTE: self.class_names[label - 1]},
                }
            )
        self._images.append((image, regions))

    def _finish(self) -> Path:
        folders = [str(image.parent) for image, _ in self._images]
        try:
            root = Path(os.path.commonpath(folders)) if folders else self.out.resolve()
        except ValueError:  # images on several drives (Windows): no common folder
            root = None
        metadata: dict[str, Any] = {}
        for image, regions in self._images:
            filename = Path(os.path.relpath(image, root)).as_posix() if root is not None else image.as_posix()
            key = f"{filename}{image.stat().st_size}"
            metadata[key] = {
                "filename": filename,
                "size": image.stat().st_size,
                "regions": regions,
                "file_attributes": {},
            }
        project = {
            "_via_settings": {
                "core": {
                    "buffer_size": 18,
                    "filepath": {},
                    "default_filepath": f"{root.as_posix().rstrip('/')}/" if root is not None else "",
                },
                "project": {"name": self.out.name or "via_project"},
            },
            "_via_img_metadata": metadata,
            "_via_attributes": {
                "region": {
                    CLASS_ATTRIBUTE: {
                        "type": "dropdown",
                        "description": "",
                        "options": {name: "" for name in self.class_names},
                        "default_options": {},
                    }
                },
                "file": {},
            },
            "_via_data_format_version": _FORMAT_VERSION,
            "_via_image_id_list": list(metadata),
        }
        return write_json(self.out / PROJECT_FILE, project, indent=None)
