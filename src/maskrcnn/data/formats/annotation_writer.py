"""Instances written in the formats people annotate with: the way back from a model or a dataset to an
annotation tool (predict, correct the polygons in LabelMe or VIA, train again) and ``maskrcnn convert``.

:func:`annotation_writer` makes the writer of a format in :data:`SAVE_FORMATS`; each image's instances go in
through :meth:`AnnotationWriter.add` and :meth:`AnnotationWriter.close` writes what is written at the end.
:func:`write_dataset` does this for every item of a dataset. The layouts (OUT is what ``out`` names):

* ``coco`` (:class:`~maskrcnn.data.formats.export.CocoWriter`): OUT is a JSON file of COCO instances, masks
  as compressed RLE (exact); predictions add ``"score"`` to their annotations.
* ``labelme`` (:class:`~maskrcnn.data.formats.labelme_writer.LabelMeWriter`): OUT is a folder of
  ``<stem>.json`` files, one per image (``labelme IMAGES --output OUT`` opens them).
* ``via`` (:class:`~maskrcnn.data.formats.via_writer.ViaWriter`): OUT is a folder holding
  ``via_region_data.json``, a VIA 2 project (Project > Load).
* ``yolo`` (:class:`~maskrcnn.data.formats.yolo_writer.YoloWriter`): OUT is an Ultralytics dataset folder
  (``data.yaml``, ``images/train/``, ``labels/train/``).

:meth:`~AnnotationWriter.close` returns what to open: the COCO JSON, the LabelMe folder, the VIA project
file, YOLO's ``data.yaml``. Each writer's class docstring gives its layout in full.

The polygon formats trace each mask's outline (:mod:`maskrcnn.data.formats.polygons`), simplified by
``tolerance`` pixels (:data:`DEFAULT_TOLERANCE`; 0 keeps every traced vertex, and the masks read back
exactly). Every file is written whole or not at all (:mod:`maskrcnn.io`). Images without a file (a
synthetic dataset's) are written into the output as PNGs; two images of one name from different folders
get different names (``x``, ``x_2``). Instances with an empty mask are left out (they have no outline), and
so are crowd regions in the formats without them (all but COCO), with a warning saying how many.
"""

from __future__ import annotations

import abc
import importlib
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from maskrcnn.data.dataset import DataError, base_dataset, resolve_index, stored_items
from maskrcnn.data.formats.polygons import DEFAULT_TOLERANCE, cropped_polygons
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.io import atomic_write
from maskrcnn.structures import CroppedMasks

__all__ = [
    "DEFAULT_TOLERANCE",
    "SAVE_FORMATS",
    "AnnotationWriter",
    "ImageInstances",
    "annotation_writer",
    "write_dataset",
]

log = logging.getLogger(__name__)

# Format name -> (module, class), imported on use (the COCO writer lives with CocoBuilder).
_WRITERS: dict[str, tuple[str, str]] = {
    "coco": ("maskrcnn.data.formats.export", "CocoWriter"),
    "labelme": ("maskrcnn.data.formats.labelme_writer", "LabelMeWriter"),
    "via": ("maskrcnn.data.formats.via_writer", "ViaWriter"),
    "yolo": ("maskrcnn.data.formats.yolo_writer", "YoloWriter"),
}

SAVE_FORMATS = tuple(_WRITERS)
"""The formats :func:`annotation_writer` writes: ``("coco", "labelme", "via", "yolo")``."""


@dataclass
class ImageInstances:
    """One image's instances as :meth:`AnnotationWriter.add` hands them to a format, checked.

    Attributes:
        image_path: the image's file (absolute), or ``None``: ``image`` is to be written.
        height, width: the image's size.
        masks: the instances' masks (an empty mask is never among them).
        labels: per instance its label, 1..K.
        scores: per instance the model's score, or ``None`` (annotations, not predictions).
        keypoints: ``[N][K][3]`` ``(x, y, v)`` pixels when the writer has a keypoint spec, else ``None``.
        iscrowd: per instance whether it is a crowd region (only the COCO writer receives any).
        image: float ``[3, H, W]`` 0..1 when ``image_path`` is ``None``.
        stem: the image's name in the output, distinct from every other image's (the PNG's stem).
        image_id: the image's id (COCO's).
    """

    image_path: Path | None
    height: int
    width: int
    masks: CroppedMasks
    labels: list[int]
    scores: list[float] | None
    keypoints: list[list[list[float]]] | None
    iscrowd: list[bool]
    image: Tensor | None
    stem: str
    image_id: int


class AnnotationWriter(abc.ABC):
    """Writes instances, image by image, in one annotation format (see the module docstring).

    Args:
        out: the output (a file or a folder, as the format says).
        class_names: names of labels 1..K.
        keypoint_spec: the keypoints of the instances (``None``: none).
        tolerance: polygon simplification in pixels (the polygon formats; 0: exact).

    Subclasses implement :meth:`_write` (one image) and :meth:`_finish` (the end), and say whether they
    keep crowd regions (:attr:`keeps_crowds`).
    """

    keeps_crowds = False

    def __init__(
        self,
        out: Path,
        *,
        class_names: Sequence[str],
        keypoint_spec: KeypointSpec | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        if tolerance < 0:
            raise ValueError(f"tolerance {tolerance} px: must be 0 or more")
        self.out = Path(out)
        self.class_names = [str(n) for n in class_names]
        self.keypoint_spec = keypoint_spec
        self.tolerance = float(tolerance)
        self.images = 0
        self._stems: set[str] = set()
        self._left_out: Counter[str] = Counter()
        self._closed = False

    def add(
        self,
        *,
        image_path: Path | None,
        height: int,
        width: int,
        masks: CroppedMasks | Tensor,
        labels: Tensor,
        scores: Tensor | None = None,
        keypoints: Tensor | None = None,
        image: Tensor | None = None,
        name: str | None = None,
        image_id: int | None = None,
        iscrowd: Tensor | None = None,
    ) -> None:
        """One image's instances.

        Args:
            image_path: the image's file; ``None`` for an image without one (then ``image`` is written).
            height, width: the image's size.
            masks: :class:`~maskrcnn.structures.CroppedMasks` or ``[N, H, W]`` (nonzero inside).
            labels: int64 ``[N]`` 1..K.
            scores: ``[N]`` (predictions; ``None`` for a dataset).
            keypoints: float ``[N, K, 3]`` ``(x, y, v)`` pixels; needs the writer's ``keypoint_spec``
                (``None`` with a spec: every keypoint unlabelled).
            image: float ``[3, H, W]`` 0..1, written as a PNG into the output when ``image_path`` is
                ``None`` (synthetic data).
            name: that PNG's stem (default ``image_<id>``).
            image_id: the image's id (default: the number of images added before it).
            iscrowd: ``[N]`` crowd flags (kept by COCO; left out of the other formats).

        Raises:
            DataError: the arguments disagree (counts, sizes, labels, keypoints), or the writer is closed.
        """
        image_id = self.images if image_id is None else int(image_id)
        where = str(image_path) if image_path is not None else f"image {name or image_id}"
        if self._closed:
            raise DataError(f"{where}: the {type(self).__name__} of {self.out} is closed")
        if image_path is None and image is None:
            raise DataError(f"{where}: no image_path and no image to write")
        crops = masks if isinstance(masks, CroppedMasks) else CroppedMasks.from_dense(masks)
        n = len(crops)
        if tuple(crops.image_size) != (int(height), int(width)):
            raise DataError(f"{where}: masks of a {crops.image_size} image for a {(height, width)} image")
        label_list = [int(v) for v in labels.reshape(-1).tolist()]
        if len(label_list) != n or any(not 1 <= v <= len(self.class_names) for v in label_list):
            raise DataError(
                f"{where}: labels {label_list[:20]} for {n} masks; expected {n} labels in "
                f"1..{len(self.class_names)}"
            )
        score_list = self._per_instance(scores, n, "scores", where)
        crowd = [bool(v) for v in self._per_instance(iscrowd, n, "iscrowd", where) or [False] * n]
        keypoint_list = self._keypoints(keypoints, n, where)
        drawn = [bool(crop.any()) for crop in crops.crops]
        keep = [k for k in range(n) if drawn[k] and (self.keeps_crowds or not crowd[k])]
        self._left_out["empty masks"] += n - sum(drawn)
        self._left_out["crowd regions"] += sum(drawn) - len(keep)
        stem = Path(image_path).stem if image_path is not None else name or f"image_{image_id}"
        stem = self._unique_stem(stem)
        self._write(
            ImageInstances(
                image_path=Path(os.path.abspath(image_path)) if image_path is not None else None,
                height=int(height),
                width=int(width),
                masks=crops[keep],
                labels=[label_list[k] for k in keep],
                scores=[score_list[k] for k in keep] if score_list is not None else None,
                keypoints=[keypoint_list[k] for k in keep] if keypoint_list is not None else None,
                iscrowd=[crowd[k] for k in keep],
                image=image if image_path is None else None,
                stem=stem,
                image_id=image_id,
            )
        )
        self.images += 1

    def close(self) -> Path:
        """Write what is written at the end (the VIA project, ``data.yaml``, the COCO JSON); returns the
        output to tell the user (a folder or a file). Instances left out are counted in a warning."""
        if self._closed:
            raise DataError(f"the {type(self).__name__} of {self.out} is closed already")
        out = self._finish()
        self._closed = True
        for what, count in self._left_out.items():
            if count:
                log.warning("%s: %d %s left out (%s)", out, count, what, self._why(what))
        return out

    @abc.abstractmethod
    def _write(self, item: ImageInstances) -> None:
        """Write (or keep, for the end) one image's instances."""

    @abc.abstractmethod
    def _finish(self) -> Path:
        """Write what is written at the end; returns the main output."""

    # -- what the formats share ---------------------------------------------------------------------

    def polygons(self, item: ImageInstances) -> list[list[list[float]]]:
        """Per instance its parts' polygons (flat ``[x1, y1, ...]``, holes joined in), simplified by the
        writer's tolerance: see :func:`~maskrcnn.data.formats.polygons.cropped_polygons`."""
        return cropped_polygons(item.masks, tolerance=self.tolerance)

    def image_file(self, item: ImageInstances, folder: Path) -> Path:
        """The image's file: its own, or for an image without one its pixels written as
        ``folder/<stem>.png`` (8-bit RGB: a dataset's 8-bit pixels come back the same)."""
        if item.image_path is not None:
            return item.image_path
        assert item.image is not None  # add() checked it
        pixels = item.image.detach().to("cpu", torch.float32).clamp(0, 1).mul(255).round().to(torch.uint8)
        picture = Image.fromarray(np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()), mode="RGB")
        return Path(os.path.abspath(atomic_write(folder / f"{item.stem}.png", picture.save)))

    def _unique_stem(self, stem: str) -> str:
        """``stem``, or ``stem_2``, ``stem_3``... when another image has it (compared without case: two
        files that differ only in case are one file on Windows and macOS)."""
        candidate, k = stem, 1
        while candidate.casefold() in self._stems:
            k += 1
            candidate = f"{stem}_{k}"
        self._stems.add(candidate.casefold())
        return candidate

    def _why(self, what: str) -> str:
        if what == "crowd regions":
            return f"{type(self).__name__} writes no crowd regions"
        return "no outline to draw"

    @staticmethod
    def _per_instance(values: Tensor | None, n: int, what: str, where: str) -> list[float] | None:
        if values is None:
            return None
        flat = [float(v) for v in values.reshape(-1).tolist()]
        if len(flat) != n:
            raise DataError(f"{where}: {len(flat)} {what} for {n} masks")
        return flat

    def _keypoints(self, keypoints: Tensor | None, n: int, where: str) -> list[list[list[float]]] | None:
        spec = self.keypoint_spec
        if spec is None:
            if keypoints is not None and keypoints.numel():
                raise DataError(f"{where}: keypoints given, but the writer has no keypoint_spec to name them")
            return None
        if keypoints is None:
            return [[[0.0, 0.0, 0.0]] * spec.num_keypoints for _ in range(n)]
        if tuple(keypoints.shape) != (n, spec.num_keypoints, 3):
            raise DataError(
                f"{where}: keypoints {list(keypoints.shape)}; expected [{n}, {spec.num_keypoints}, 3]"
            )
        return keypoints.detach().cpu().to(torch.float64).tolist()


def annotation_writer(format: str, out: str | os.PathLike[str], **kwargs: Any) -> AnnotationWriter:
    """The writer of ``format`` (one of :data:`SAVE_FORMATS`) into ``out``; ``kwargs`` are its arguments
    (``class_names``, ``keypoint_spec``, ``tolerance``; for COCO also ``category_ids``, ``image_root``).

    Raises:
        ValueError: an unknown format.
    """
    if format not in _WRITERS:
        raise ValueError(f"unknown annotation format {format!r}; choose from {', '.join(SAVE_FORMATS)}")
    module, name = _WRITERS[format]
    cls = getattr(importlib.import_module(module), name)
    return cls(Path(out), **kwargs)


def write_dataset(
    dataset: Any,
    format: str,
    out: str | os.PathLike[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    image_root: str | os.PathLike[str] | None = None,
    skipped: list[str] | None = None,
) -> Path:
    """Write every item of ``dataset`` (read once, without augmentation) in ``format`` into ``out``: what
    ``maskrcnn convert --to FORMAT OUT`` does.

    Args:
        dataset: an ``InstanceDataset`` (or a ``Subset`` of one): its classes, keypoint spec, and for COCO
            its category ids.
        format: one of :data:`SAVE_FORMATS`.
        tolerance: polygon simplification in pixels (not used by COCO, whose RLE masks are exact).
        image_root: COCO only: write file names relative to this folder (default: absolute).
        skipped: when given, items that cannot be read are left out and their messages appended here;
            otherwise the error propagates.

    Returns:
        the output (:meth:`AnnotationWriter.close`).
    """
    base = base_dataset(dataset)
    options: dict[str, Any] = {}
    if format == "coco":
        options = {"category_ids": base.coco_category_ids(), "image_root": image_root}
        options["description"] = f"converted by maskrcnn from {base.source or type(base).__name__}"
    elif image_root is not None:
        raise ValueError(f"image_root is for COCO; {format} writes image paths relative to its files")
    writer = annotation_writer(
        format,
        out,
        class_names=base.class_names,
        keypoint_spec=getattr(base, "keypoint_spec", None),
        tolerance=tolerance,
        **options,
    )
    for index, image, target in stored_items(dataset, skipped=skipped):
        inner, i = resolve_index(dataset, index)
        path = inner.image_info[i].get("path")
        height, width = (int(v) for v in image.shape[-2:])
        writer.add(
            image_path=path,
            height=height,
            width=width,
            masks=target["masks"],
            labels=target["labels"],
            keypoints=target.get("keypoints"),
            image=image if path is None else None,
            image_id=int(target["image_id"]),
            iscrowd=target.get("iscrowd"),
        )
    return writer.close()
