"""Readers for the annotation formats people use, each a dataset class and a ``--format`` name.

``load_dataset(format, path, **options)`` is the one entry point; see :data:`FORMATS` for the names and
each reader's docstring for its options. ``format`` may be ``None`` or ``"auto"``: the format is then told
from the path (:func:`~maskrcnn.data.formats.detect.detect_format`, through :func:`resolve_format`).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from maskrcnn.data.dataset import DataError, InstanceDataset
from maskrcnn.data.formats.options import checked_options

__all__ = ["AUTO", "FORMATS", "load_dataset", "reader_class", "resolve_format"]

# --format name -> (module, class). Imported on use, so that one reader's optional needs never slow or
# break the others.
FORMATS: dict[str, tuple[str, str]] = {
    "coco": ("maskrcnn.data.formats.coco", "CocoDataset"),
    "via": ("maskrcnn.data.formats.via", "ViaDataset"),
    "labelme": ("maskrcnn.data.formats.labelme", "LabelMeDataset"),
    "instance-png": ("maskrcnn.data.formats.masks", "InstancePngDataset"),
    "mask-dirs": ("maskrcnn.data.formats.masks", "MaskDirsDataset"),
    "yolo": ("maskrcnn.data.formats.yolo", "YoloDataset"),
    "openimages": ("maskrcnn.data.formats.openimages", "OpenImagesDataset"),
    "shapes": ("maskrcnn.data.shapes", "ShapesDataset"),
}


AUTO = "auto"  # the format name that means "detect it from the path"


def resolve_format(format: str | None, path: Any = None) -> str:
    """``format`` itself, or for ``None`` / ``"auto"`` the format detected from ``path``.

    Raises:
        DataError: detection finds no format, or several (the message says what it saw).
    """
    if format is not None and format != AUTO:
        return format
    from maskrcnn.data.formats.detect import detect_format

    return detect_format(path)


def reader_class(format: str) -> type[InstanceDataset]:
    """The dataset class of a format name."""
    if format not in FORMATS:
        raise ValueError(f"unknown dataset format {format!r}; choose from {', '.join(FORMATS)}")
    module, name = FORMATS[format]
    return getattr(importlib.import_module(module), name)


def load_dataset(format: str | None, path: Any = None, **options: Any) -> InstanceDataset:
    """Read a dataset: ``load_dataset("via", "balloon/train/via_region_data.json")``.

    Args:
        format: one of :data:`FORMATS`, or ``None`` / ``"auto"`` to detect it from ``path``.
        path: what the format reads (a JSON file, a folder, a data YAML; ``None`` for ``shapes``).
        **options: the reader's options (e.g. ``image_dir=`` for COCO, ``keypoints=`` / ``skeleton=`` for
            LabelMe, ``strict=True`` for all).

    Returns:
        a dataset of ``(image, target)`` items with ``class_names`` (and a ``keypoint_spec`` when its
        annotations have keypoints: COCO keypoints, LabelMe points, YOLO pose).

    Raises:
        DataError: an option the reader does not take (named with the ones it takes), or the data's own
            problems (see the reader).
    """
    format = resolve_format(format, path)
    cls = reader_class(format)
    args = (path,) if path is not None else ()
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as e:  # checked before reading: a bug inside a reader stays a bug
        known = [p for p in inspect.signature(cls).parameters if p not in ("path", "transforms")]
        raise DataError(f"--format {format}: {e}; its options: {', '.join(known)}") from None
    return cls(*args, **checked_options(format, cls, options))
