"""The dataset contract: what every reader produces and what a user's own dataset subclasses.

An item is ``(image, target)``: ``image`` float ``[3, H, W]`` RGB in 0..1 and ``target`` a dict with
``boxes`` float ``[N, 4]`` (xyxy pixels, derived from the masks), ``labels`` int64 ``[N]`` (1..K; 0 is the
background), ``masks`` uint8 ``[N, H, W]``, ``iscrowd`` int64 ``[N]``, ``area`` float ``[N]`` (mask
pixels) and ``image_id`` int64 ``[]``. ``N`` may be 0: images without objects train as negatives. A dataset
with keypoints (its ``keypoint_spec`` set) adds ``keypoints`` float32 ``[N, K, 3]`` ``(x, y, v)`` (see
:mod:`maskrcnn.data.keypoints`); the labelled ones (``v > 0``) always lie in the image, the others are
``(0, 0, 0)``.

Two ways in:

* :class:`InstanceDataset`, the friendly base class in the spirit of the classic Mask R-CNN samples: call
  :meth:`~InstanceDataset.add_class` and :meth:`~InstanceDataset.add_image` in ``__init__`` and implement
  :meth:`~InstanceDataset.load_masks` (see ``samples/custom_dataset.py``);
* :class:`AnnotatedDataset`, built from :class:`ImageRecord` lists: what the format readers
  (``maskrcnn.data.formats``) produce after parsing and validating their files.

Problems found while reading are :class:`Problem` records naming the file, the image and the annotation.
Errors make an instance (or an image) unusable: it is skipped and counted, or, with ``strict=True``, the
reader raises :class:`DataError` instead. Warnings (e.g. a polygon reaching past the border, clipped)
leave the data usable.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Subset

from maskrcnn.data.image_io import ImageError, image_size, read_image, read_image_bytes
from maskrcnn.data.keypoints import KeypointSpec, check_keypoint_list
from maskrcnn.ops import masks_to_boxes, polygons_to_mask, rle_area, rle_decode

__all__ = [
    "AnnotatedDataset",
    "Annotation",
    "DataError",
    "ImageRecord",
    "InstanceDataset",
    "MaskFile",
    "Problem",
    "ProblemLog",
    "Segmentation",
    "Target",
    "base_dataset",
    "build_target",
    "check_annotation",
    "clean_keypoints",
    "polygon_area",
    "problem_lines",
    "rasterize",
    "read_mask_file",
    "resolve_index",
    "rle_counts_problem",
    "rle_problem",
    "stored_items",
    "without_transforms",
]

log = logging.getLogger(__name__)

Target = dict[str, Tensor]
Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]


class DataError(ValueError):
    """Data that cannot be used, with a message naming the file, the image and the value."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset.

    Attributes:
        severity: ``"error"`` (the instance, or the image if ``annotation`` is empty, cannot be used) or
            ``"warning"`` (usable, but probably not what was meant).
        source: the annotation file (or folder) it was found in.
        image: the image it concerns (file name, or id), empty for file-level problems.
        annotation: the annotation it concerns (``"annotation 17"``, ``"region 2"``...), empty for an
            image-level problem.
        message: what is wrong, with the offending value.
    """

    severity: str
    source: str
    image: str
    annotation: str
    message: str

    def __str__(self) -> str:
        where = ", ".join(
            p for p in (self.source, f"image {self.image}" if self.image else "", self.annotation) if p
        )
        return f"{self.severity}: {where}: {self.message}"


def problem_lines(
    problems: Sequence[Problem], *, shown: int = 20, hint: str = " (maskrcnn check-data lists them all)"
) -> list[str]:
    """The first ``shown`` problems, one indented line each, then how many more there are (and ``hint``):
    what commands print of a dataset's problems."""
    lines = [f"  {p}" for p in problems[:shown]]
    if len(problems) > shown:
        lines.append(f"  ... and {len(problems) - shown} more{hint}")
    return lines


# ----------------------------------------------------------------------------------------------------
# Segmentations and records


@dataclass(frozen=True)
class MaskFile:
    """An instance stored in an image file: one binary mask per file (nonzero pixels, ``value=None``), or
    the pixels equal to ``value`` in a label image where each instance has its own id (Penn-Fudan)."""

    path: Path
    value: int | None = None


Polygons = list[list[float]]
RLE = dict[str, Any]
Segmentation = Union[Polygons, RLE, MaskFile]  # noqa: UP007 (a runtime alias: keep Python 3.10 happy)


@dataclass
class Annotation:
    """One object of an image, as read from the annotation file.

    Attributes:
        label: class, 1..K (contiguous; readers map their own category ids to these).
        segmentation: polygons (a list of flat ``[x1, y1, x2, y2, ...]`` parts in pixels), a COCO RLE
            dict, or a :class:`MaskFile`.
        iscrowd: a crowd region (COCO): kept in the target with ``iscrowd=1`` so that training can leave
            it out and evaluation can ignore detections on it.
        ref: how to name it in messages (``"annotation 17"``).
        keypoints: the object's keypoints as COCO stores them, a flat ``[x1, y1, v1, ...]`` of
            ``3 * K`` numbers in pixels (see :mod:`maskrcnn.data.keypoints`), or ``None`` (none labelled).
    """

    label: int
    segmentation: Segmentation
    iscrowd: bool = False
    ref: str = ""
    keypoints: list[float] | None = None


@dataclass
class ImageRecord:
    """One image and its annotations, as read from the annotation file.

    Attributes:
        image_id: integer id (the file's own id where it has one, else the position).
        path: the image file (``None`` when only embedded data exists).
        height: height declared by the annotation file (checked against the image), or ``None``.
        width: width declared by the annotation file, or ``None``.
        annotations: the usable annotations (problems already filtered out).
        ref: how to name the image in messages (usually its file name).
        image_data: encoded image bytes to use when ``path`` is missing (LabelMe's ``imageData``).
        extra: format-specific information kept for writing results back (e.g. COCO's file name).
    """

    image_id: int
    path: Path | None
    height: int | None
    width: int | None
    annotations: list[Annotation] = field(default_factory=list)
    ref: str = ""
    image_data: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def polygon_area(part: Sequence[float]) -> float:
    """The area enclosed by one flat ``[x1, y1, x2, y2, ...]`` polygon part (shoelace formula)."""
    xs, ys = np.asarray(part[0::2], dtype=np.float64), np.asarray(part[1::2], dtype=np.float64)
    # In units of the largest coordinate, so that products of coordinates near the float limit (a
    # broken file's 1e200) cannot overflow into NaN; an area beyond the limit comes out as inf.
    unit = float(max(np.abs(xs).max(initial=0.0), np.abs(ys).max(initial=0.0))) or 1.0
    xs, ys = xs / unit, ys / unit
    area = 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))
    with np.errstate(over="ignore"):
        return float(np.float64(area) * unit * unit)


def _compressed_counts(counts: str) -> list[int] | None:
    """The run lengths of a compressed COCO RLE string, or ``None`` if it is not one.

    The decoding of pycocotools' ``rleFrString``: 5 bits per character (offset 48), 0x20 says another
    character follows, 0x10 on the last one is the sign, and from the fourth run on a value is the
    difference to the run two before. pycocotools itself reads a corrupt string as garbage runs (or past
    its end), which is why the string is checked here before it ever gets there.
    """
    runs: list[int] = []
    value = shift = 0
    for char in counts:
        c = ord(char) - 48
        if not 0 <= c < 64:
            return None
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:
            continue
        if c & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value = shift = 0
    return runs if shift == 0 else None  # a value left unfinished: the string was cut


def rle_counts_problem(counts: str | bytes | list[Any], height: int, width: int) -> str:
    """What is wrong with an RLE's ``counts`` for a ``height`` x ``width`` mask, or ``""``.

    Runs (of a list, or decoded from a compressed string) must be non-negative integers that add up to
    ``height * width``: anything else is what pycocotools rejects as "Invalid RLE mask representation"
    when decoding, or silently decodes into a wrong mask.
    """
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            return f"RLE counts {counts!r:.40} are not ASCII"
    if isinstance(counts, str):
        runs = _compressed_counts(counts)
        if runs is None:
            return f"RLE counts {counts!r:.40} are not a compressed COCO RLE string"
        shown = repr(counts)
    else:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            return f"RLE counts {counts!r:.60} are not all integers"
        runs, shown = counts, f"{counts!r:.60}"
    if any(v < 0 for v in runs):
        return f"RLE counts {shown:.60} hold a negative run"
    if sum(runs) != height * width:
        return (
            f"RLE counts {shown:.60} cover {sum(runs)} pixels; its size [{height}, {width}] has "
            f"{height * width}"
        )
    return ""


def rle_problem(rle: RLE, height: int | None, width: int | None) -> str:
    """What makes a COCO RLE dict unusable for a ``height`` x ``width`` image (``None``: not known), or
    ``""``: its keys, its size, its counts (see :func:`rle_counts_problem`)."""
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2) or not isinstance(counts, (str, bytes, list)):
        return f"malformed RLE (needs 'size' [h, w] and 'counts'), got keys {sorted(rle)}"
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        return f"RLE size {list(size)!r:.60} is not two positive integers [h, w]"
    if height is not None and width is not None and [size[0], size[1]] != [height, width]:
        return f"RLE size {list(size)} differs from the image size [{height}, {width}]"
    return rle_counts_problem(counts, size[0], size[1])


def check_annotation(
    segmentation: Segmentation, height: int | None, width: int | None
) -> list[tuple[str, str]]:
    """Validate one segmentation against its image size before anything is rasterised.

    Returns:
        ``(severity, message)`` pairs; an ``"error"`` means the instance cannot be used.
    """
    if isinstance(segmentation, MaskFile):
        return []  # checked when read: its readers look at the pixels
    if isinstance(segmentation, dict):
        problem = rle_problem(segmentation, height, width)
        if problem:
            return [("error", problem)]
        return [("error", "zero-area instance (empty RLE)")] if rle_area(segmentation) == 0 else []
    if not isinstance(segmentation, list) or not segmentation:
        return [("error", f"no polygon (segmentation is {segmentation!r:.60})")]
    problems: list[tuple[str, str]] = []
    total = 0.0
    for k, part in enumerate(segmentation):
        if not isinstance(part, (list, tuple)) or not all(isinstance(v, (int, float)) for v in part):
            return [("error", f"polygon part {k} is not a list of numbers")]
        if len(part) % 2 or len(part) < 6:
            return [
                ("error", f"polygon part {k} has {len(part) / 2:g} points; it needs at least 3 (x, y) pairs")
            ]
        if not all(math.isfinite(v) for v in part):
            return [("error", f"polygon part {k} has a non-finite coordinate")]
        total += polygon_area(part)
    if total == 0.0:
        return [("error", "zero-area instance (its polygon encloses no area)")]
    if height is not None and width is not None:
        xs = [v for part in segmentation for v in part[0::2]]
        ys = [v for part in segmentation for v in part[1::2]]
        if max(xs) <= 0 or min(xs) >= width or max(ys) <= 0 or min(ys) >= height:
            return [("error", f"polygon lies outside the {width}x{height} image")]
        # A pixel of slack: annotation tools let points sit on the border's outer edge.
        if min(xs) < -1 or min(ys) < -1 or max(xs) > width + 1 or max(ys) > height + 1:
            problems.append(
                (
                    "warning",
                    f"coordinates outside the {width}x{height} image (x {min(xs):.1f}..{max(xs):.1f}, "
                    f"y {min(ys):.1f}..{max(ys):.1f}); clipped",
                )
            )
    return problems


def rasterize(
    segmentation: Segmentation, height: int, width: int, cache: dict[Path, np.ndarray] | None = None
) -> Tensor:
    """One instance as a ``uint8 [height, width]`` 0/1 mask.

    Args:
        cache: decoded mask files by path, shared by the instances of one image (a label image holds
            them all).
    """
    if isinstance(segmentation, MaskFile):
        if cache is None or segmentation.path not in cache:
            array = read_mask_file(segmentation.path)
            if cache is not None:
                cache[segmentation.path] = array
        else:
            array = cache[segmentation.path]
        if array.shape != (height, width):
            raise DataError(
                f"{segmentation.path}: mask is {array.shape[1]}x{array.shape[0]}, the image {width}x{height}"
            )
        selected = array != 0 if segmentation.value is None else array == segmentation.value
        return torch.from_numpy(selected.astype(np.uint8))
    if isinstance(segmentation, dict):
        # Checked again here: a reader with check_images=False, or a user's dataset, may not have known
        # the image size, and pycocotools decodes a wrong RLE into a wrong mask or a bare ValueError.
        problem = rle_problem(segmentation, height, width)
        if problem:
            raise DataError(problem)
        return rle_decode(segmentation)
    return polygons_to_mask(segmentation, height, width)


def read_mask_file(path: Path) -> np.ndarray:
    """A mask image's pixel values as an integer ``[H, W]`` array (colour masks: any channel nonzero)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGB", "RGBA"):
                array = np.asarray(img.convert("RGB")).astype(np.int64)
                return (array[..., 0] << 16) | (array[..., 1] << 8) | array[..., 2]
            if img.mode == "P":
                return np.asarray(img).astype(np.int64)  # palette indices are the instance ids
            return np.asarray(img.convert("I") if img.mode not in ("L", "I", "I;16") else img).astype(
                np.int64
            )
    except FileNotFoundError:
        raise ImageError(f"{path}: mask file not found") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read mask ({e})") from None


def _labelled_in_image(keypoints: Tensor, height: int, width: int) -> Tensor:
    """``bool [N, K]``: labelled (``v > 0``) and inside the image, border included."""
    x, y, v = keypoints.unbind(-1)
    return (v > 0) & (x >= 0) & (x <= width) & (y >= 0) & (y <= height)


def clean_keypoints(keypoints: Tensor, height: int, width: int) -> Tensor:
    """``float32 [N, K, 3]`` keypoints with those not labelled (``v = 0``) or outside the
    ``height x width`` image (``0 <= x <= width``, ``0 <= y <= height``: the border belongs to the image,
    so that a mirror maps the labelled set onto itself) set to ``(0, 0, 0)``: the contract's form, which
    every target and every transform keeps."""
    labelled = _labelled_in_image(keypoints, height, width)
    if bool(labelled.all()) and keypoints.dtype == torch.float32:
        return keypoints
    return torch.where(labelled[..., None], keypoints, 0.0).to(torch.float32)


def build_target(
    masks: Tensor,
    labels: Tensor,
    image_id: int,
    iscrowd: Tensor | None = None,
    keypoints: Tensor | None = None,
) -> Target:
    """A target in the contract's form from ``uint8 [N, H, W]`` masks and ``int64 [N]`` labels.

    Boxes come from the masks (pixel-edge coordinates: a mask on columns 3..7 has ``x1 = 3, x2 = 8``), so
    they always agree with them, whatever the annotation file said.

    Args:
        iscrowd: ``[N]`` crowd flags (default: none is).
        keypoints: ``[N, K, 3]`` ``(x, y, v)``, or ``None`` (the target then has no ``keypoints``);
            passed through :func:`clean_keypoints`.
    """
    masks = masks.to(torch.uint8)
    n = masks.shape[0]
    target = {
        "boxes": masks_to_boxes(masks),
        "labels": labels.to(torch.int64).reshape(n),
        "masks": masks,
        "iscrowd": (iscrowd if iscrowd is not None else torch.zeros(n)).to(torch.int64).reshape(n),
        "area": masks.flatten(1).sum(1).to(torch.float32) if n else torch.zeros(0),
        "image_id": torch.tensor(image_id, dtype=torch.int64),
    }
    if keypoints is not None:
        height, width = masks.shape[-2:]
        target["keypoints"] = clean_keypoints(keypoints.to(torch.float32), int(height), int(width))
    return target


# ----------------------------------------------------------------------------------------------------
# The base class


class InstanceDataset(Dataset[tuple[Tensor, Target]]):
    """Base class of every dataset: subclass it for your own data in a few lines.

    In ``__init__``, call :meth:`add_class` once per class and :meth:`add_image` once per image; then
    implement :meth:`load_masks`. :meth:`load_image` reads the image's ``path`` (override it for other
    sources) and :meth:`image_reference` names the image in messages. Indexing returns ``(image,
    target)`` (see the module docstring), with ``transforms`` (augmentation) applied.

    Args:
        transforms: ``(image, target) -> (image, target)``, e.g. from ``maskrcnn.data.transforms``.

    Attributes:
        class_names: names of labels 1..K.
        image_info: per image, ``path``, ``image_id`` and what :meth:`add_image` was given.
        problems: what a reader found wrong (:class:`Problem` s); empty for a dataset that checks nothing.
        source: the file or folder read, for messages (``""``: none).
        category_ids: the annotation file's own category id of each label (index 0 for label 1), written
            into COCO results and exports; ``None`` means the labels themselves (see
            :meth:`coco_category_ids`).
        keypoint_spec: the dataset's keypoints (:class:`~maskrcnn.data.keypoints.KeypointSpec`), or
            ``None``: no keypoints (targets then have no ``keypoints``).
    """

    def __init__(self, *, transforms: Transform | None = None) -> None:
        self.class_names: list[str] = []
        self.image_info: list[dict[str, Any]] = []
        self.transforms = transforms
        self.problems: list[Problem] = []
        self.source: str = ""
        self.category_ids: list[int] | None = None
        self.keypoint_spec: KeypointSpec | None = None

    # -- building ---------------------------------------------------------------------------------

    def add_class(self, name: str) -> int:
        """Register a class (once per name) and return its label, 1 for the first."""
        if name not in self.class_names:
            self.class_names.append(name)
        return self.class_names.index(name) + 1

    def add_image(
        self, path: str | os.PathLike[str] | None = None, *, image_id: int | None = None, **info: Any
    ) -> int:
        """Register an image; ``info`` is kept in ``image_info[index]`` for :meth:`load_masks`.

        Returns:
            the image's index.
        """
        index = len(self.image_info)
        self.image_info.append(
            {
                "path": Path(path) if path is not None else None,
                "image_id": index if image_id is None else image_id,
                **info,
            }
        )
        return index

    @property
    def num_classes(self) -> int:
        """Classes including the background: the model's ``num_classes``."""
        return len(self.class_names) + 1

    # -- what subclasses implement ----------------------------------------------------------------

    def load_image(self, index: int) -> Tensor:
        """Float ``[3, H, W]`` RGB in 0..1 (default: the registered ``path``)."""
        path = self.image_info[index]["path"]
        if path is None:
            raise DataError(f"{self.image_reference(index)}: no path registered; override load_image")
        return read_image(path)

    def load_masks(self, index: int) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
        """The instances of image ``index``.

        Returns:
            ``(masks, labels)`` or ``(masks, labels, iscrowd)``: ``[N, H, W]`` binary masks (any dtype),
            ``int64 [N]`` labels in 1..K, optional ``[N]`` crowd flags.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement load_masks(index)")

    def load_keypoints(self, index: int) -> Tensor:
        """The keypoints of image ``index``'s instances, in the order of :meth:`load_masks`: float
        ``[N, K, 3]`` ``(x, y, v)`` in pixels (see :mod:`maskrcnn.data.keypoints`). Called only when
        :attr:`keypoint_spec` is set; a subclass with keypoints overrides it."""
        raise NotImplementedError(
            f"{type(self).__name__} sets keypoint_spec and must implement load_keypoints(index)"
        )

    def image_reference(self, index: int) -> str:
        """How messages name image ``index`` (its path, by default)."""
        path = self.image_info[index].get("path")
        return str(path) if path is not None else f"image {index}"

    def image_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` without decoding the pixels (for aspect-ratio batching)."""
        info = self.image_info[index]
        if info.get("height") and info.get("width"):
            return int(info["height"]), int(info["width"])
        if info.get("path") is not None:
            return image_size(info["path"])
        h, w = self.load_image(index).shape[-2:]
        return int(h), int(w)

    def instance_labels(self, index: int) -> list[int]:
        """Labels of image ``index``'s instances (for class-balanced sampling); decodes the masks unless
        a subclass knows them from its annotations."""
        return [int(v) for v in self.load_masks(index)[1]]

    def coco_category_ids(self) -> list[int]:
        """The category id of each label (index 0 for label 1): :attr:`category_ids`, else 1..K.

        Raises:
            DataError: as many ids as classes are not given.
        """
        ids = [int(c) for c in self.category_ids] if self.category_ids is not None else []
        if self.category_ids is None:
            ids = list(range(1, len(self.class_names) + 1))
        if len(ids) != len(self.class_names):
            raise DataError(f"{len(ids)} category ids for {len(self.class_names)} classes")
        return ids

    def summary(self) -> str:
        """One line for logs: the images and classes (readers also count instances and problems)."""
        return f"{len(self)} images, {len(self.class_names)} classes ({', '.join(self.class_names)})"

    # -- the Dataset protocol ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.image_info)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image = self.load_image(index)
        loaded = self.load_masks(index)
        masks, labels = loaded[0], loaded[1]
        iscrowd = loaded[2] if len(loaded) > 2 else None  # type: ignore[misc]
        ref = self.image_reference(index)
        h, w = image.shape[-2:]
        if masks.dim() != 3 or masks.shape[1:] != (h, w) or labels.shape != masks.shape[:1]:
            raise DataError(
                f"{ref}: load_masks returned masks {list(masks.shape)} and labels {list(labels.shape)} for a "
                f"{w}x{h} image; expected [N, {h}, {w}] and [N]"
            )
        if labels.numel() and (labels.min() < 1 or labels.max() > len(self.class_names)):
            raise DataError(f"{ref}: labels {labels.tolist()} outside 1..{len(self.class_names)}")
        keypoints = (
            self._checked_keypoints(index, ref, len(labels), h, w) if self.keypoint_spec is not None else None
        )
        masks = (masks != 0).to(torch.uint8)
        empty = masks.flatten(1).sum(1) == 0
        if bool(empty.any()):
            # Cropping, resizing or occlusion can empty a mask; an empty instance has no box to learn.
            log.warning("%s: dropped %d empty instance mask(s)", ref, int(empty.sum()))
            keep = ~empty
            masks, labels = masks[keep], labels[keep]
            iscrowd = iscrowd[keep] if iscrowd is not None else None
            keypoints = keypoints[keep] if keypoints is not None else None
        target = build_target(masks, labels, int(self.image_info[index]["image_id"]), iscrowd, keypoints)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _checked_keypoints(self, index: int, ref: str, n: int, height: int, width: int) -> Tensor:
        """:meth:`load_keypoints` checked: ``[n, K, 3]``, finite, visibilities 0..2 (float32)."""
        assert self.keypoint_spec is not None
        k = self.keypoint_spec.num_keypoints
        keypoints = torch.as_tensor(self.load_keypoints(index))
        if keypoints.shape != (n, k, 3):
            raise DataError(
                f"{ref}: load_keypoints returned keypoints {list(keypoints.shape)}; expected [{n}, {k}, 3] "
                f"({n} instances from load_masks, {k} keypoints in keypoint_spec, (x, y, v) each)"
            )
        keypoints = keypoints.to(torch.float32)
        if not bool(torch.isfinite(keypoints).all()):
            bad = (~torch.isfinite(keypoints)).nonzero()[0].tolist()
            raise DataError(
                f"{ref}: instance {bad[0]} keypoint {bad[1]} ({self.keypoint_spec.names[bad[1]]}) is "
                f"{keypoints[bad[0], bad[1]].tolist()}: not finite"
            )
        v = keypoints[..., 2]
        if not bool(((v == 0) | (v == 1) | (v == 2)).all()):
            i, j = ((v != 0) & (v != 1) & (v != 2)).nonzero()[0].tolist()
            raise DataError(
                f"{ref}: instance {i} keypoint {j} ({self.keypoint_spec.names[j]}) has visibility "
                f"{float(v[i, j]):g}; expected 0 (not labelled), 1 (hidden) or 2 (visible)"
            )
        outside = (v > 0) & ~_labelled_in_image(keypoints, height, width)
        if bool(outside.any()):
            # Not trainable where no pixel is (and a flip would treat them unlike the rest): not labelled.
            log.warning(
                "%s: %d labelled keypoint(s) outside the %dx%d image set to not labelled",
                ref,
                int(outside.sum()),
                width,
                height,
            )
        return keypoints


def _inner(dataset: Any) -> Any | None:
    """The dataset that a ``Subset`` or an index-keeping wrapper (``SkipBadItems``) holds; ``None`` for
    a dataset of its own (an :class:`InstanceDataset`, or any dataset without a ``dataset`` inside)."""
    if isinstance(dataset, InstanceDataset):
        return None
    if isinstance(dataset, Subset):
        return dataset.dataset
    return vars(dataset).get("dataset")


def resolve_index(dataset: Any, index: int) -> tuple[Any, int]:
    """The dataset under ``Subset`` s and wrappers, and item ``index``'s index there."""
    while (inner := _inner(dataset)) is not None:
        if isinstance(dataset, Subset):
            index = int(dataset.indices[index])
        dataset = inner
    return dataset, index


def base_dataset(dataset: Any) -> Any:
    """The dataset under ``Subset`` s and wrappers (``SkipBadItems``): the one with ``class_names``."""
    while (inner := _inner(dataset)) is not None:
        dataset = inner
    return dataset


@contextlib.contextmanager
def without_transforms(dataset: Any) -> Iterator[None]:
    """Read items as stored meanwhile: evaluation and export must not see augmentation (restored after)."""
    base = base_dataset(dataset)
    if not hasattr(base, "transforms"):
        yield
        return
    transforms, base.transforms = base.transforms, None
    try:
        yield
    finally:
        base.transforms = transforms


def stored_items(dataset: Any, *, skipped: list[str] | None = None) -> Iterator[tuple[int, Tensor, Target]]:
    """``(index, image, target)`` for every item, read once and without augmentation.

    Args:
        dataset: an ``InstanceDataset`` (or a ``Subset`` / wrapper of one).
        skipped: when given, items that cannot be read (``DataError`` / ``ImageError``) are left out and
            their messages appended here; otherwise the error propagates.
    """
    with without_transforms(dataset):
        for index in range(len(dataset)):
            try:
                image, target = dataset[index]
            except (DataError, ImageError) as e:
                if skipped is None:
                    raise
                skipped.append(str(e))  # an item that cannot be read: left out, and said
                continue
            yield index, image, target


class AnnotatedDataset(InstanceDataset):
    """A dataset of parsed, validated :class:`ImageRecord` s: the base of every format reader.

    Args:
        records: the usable images (problem instances already left out).
        class_names: names of labels 1..K.
        problems: what the reader found wrong (kept in ``problems``).
        source: the annotation file or folder (for messages).
        category_ids: the file's own category id of each label (index 0 for label 1), for writing
            results back with the original ids; defaults to the labels themselves.
        keypoint_spec: the keypoints the annotations carry (``Annotation.keypoints``), or ``None``.
        transforms: augmentation.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        *,
        problems: Sequence[Problem] = (),
        source: str = "",
        category_ids: Sequence[int] | None = None,
        keypoint_spec: KeypointSpec | None = None,
        transforms: Transform | None = None,
    ) -> None:
        super().__init__(transforms=transforms)
        self.keypoint_spec = keypoint_spec
        self.class_names = list(class_names)
        self.records = list(records)
        self.problems = list(problems)
        self.source = source
        self.category_ids = (
            list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1))
        )
        for r in self.records:
            self.image_info.append(
                {"path": r.path, "image_id": r.image_id, "height": r.height, "width": r.width, "ref": r.ref}
            )

    def image_reference(self, index: int) -> str:
        record = self.records[index]
        return record.ref or (str(record.path) if record.path else f"image {record.image_id}")

    def load_image(self, index: int) -> Tensor:
        record = self.records[index]
        if record.path is not None and (record.image_data is None or record.path.is_file()):
            image = read_image(record.path)
        elif record.image_data is not None:
            image = read_image_bytes(
                record.image_data, f"{self.image_reference(index)} (embedded image data)"
            )
        else:
            raise ImageError(f"{self.image_reference(index)}: no image file")
        h, w = image.shape[-2:]
        if (record.height, record.width) not in ((None, None), (h, w)):
            raise DataError(
                f"{self.source}: image {self.image_reference(index)} is {w}x{h} but the annotations say "
                f"{record.width}x{record.height}"
            )
        return image

    def load_masks(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        record = self.records[index]
        height, width = self.image_size(index)
        cache: dict[Path, np.ndarray] = {}
        anns = record.annotations
        if not anns:
            return (
                torch.zeros((0, height, width), dtype=torch.uint8),
                torch.zeros(0, dtype=torch.int64),
                torch.zeros(0, dtype=torch.int64),
            )
        masks = torch.stack([self._rasterize(index, a, height, width, cache) for a in anns])
        labels = torch.tensor([a.label for a in anns], dtype=torch.int64)
        iscrowd = torch.tensor([int(a.iscrowd) for a in anns], dtype=torch.int64)
        return masks, labels, iscrowd

    def load_keypoints(self, index: int) -> Tensor:
        """Each annotation's ``keypoints`` as ``[N, K, 3]`` (zeros, i.e. not labelled, where it has none)."""
        assert self.keypoint_spec is not None
        k = self.keypoint_spec.num_keypoints
        anns = self.records[index].annotations
        rows = []
        for a in anns:
            if a.keypoints is None:
                rows.append([0.0] * (3 * k))
                continue
            problem = check_keypoint_list(a.keypoints, k)
            if problem:  # the readers check this; a record built by hand may not have been
                where = ", ".join(
                    p for p in (self.source, f"image {self.image_reference(index)}", a.ref) if p
                )
                raise DataError(f"{where}: {problem}")
            rows.append(a.keypoints)
        return torch.tensor(rows, dtype=torch.float32).reshape(len(anns), k, 3)

    def _rasterize(
        self, index: int, annotation: Annotation, height: int, width: int, cache: dict[Path, np.ndarray]
    ) -> Tensor:
        """:func:`rasterize`, its errors named with the file, the image and the annotation."""
        try:
            return rasterize(annotation.segmentation, height, width, cache)
        except DataError as e:
            where = ", ".join(
                p for p in (self.source, f"image {self.image_reference(index)}", annotation.ref) if p
            )
            raise DataError(f"{where}: {e}") from None

    def image_size(self, index: int) -> tuple[int, int]:
        record = self.records[index]
        if record.height is not None and record.width is not None:
            return record.height, record.width
        if record.path is not None and record.path.is_file():
            return image_size(record.path)
        h, w = self.load_image(index).shape[-2:]
        return int(h), int(w)

    def instance_labels(self, index: int) -> list[int]:
        return [a.label for a in self.records[index].annotations if not a.iscrowd]

    def summary(self) -> str:
        """One line: images, instances per class, negatives, skipped instances and images."""
        counts = {name: 0 for name in self.class_names}
        negatives = 0
        for r in self.records:
            labels = [a.label for a in r.annotations if not a.iscrowd]
            negatives += not labels
            for label in labels:
                counts[self.class_names[label - 1]] += 1
        errors = [p for p in self.problems if p.severity == "error"]
        skipped_images = sum(1 for p in errors if not p.annotation)
        per_class = ", ".join(f"{k} {v}" for k, v in counts.items())
        return (
            f"{len(self.records)} images ({negatives} without objects), instances: {per_class}; "
            f"skipped {len(errors) - skipped_images} instances and {skipped_images} images with errors"
        )


class ProblemLog:
    """What a format reader uses while parsing: records problems, enforces ``strict``, validates.

    Args:
        source: the annotation file or folder being read.
        strict: raise :class:`DataError` at the first error instead of skipping what it concerns.
    """

    def __init__(self, source: str, *, strict: bool = False) -> None:
        self.source = source
        self.strict = strict
        self.problems: list[Problem] = []

    def report(self, severity: str, message: str, *, image: str = "", annotation: str = "") -> None:
        problem = Problem(severity, self.source, image, annotation, message)
        if self.strict and severity == "error":
            raise DataError(str(problem))
        self.problems.append(problem)

    def report_many(self, severity: str, message: str, items: Sequence[str], *, shown: int = 5) -> None:
        """One problem for many items of one kind (``message`` says what they share), with their count and
        the first ``shown`` named: a thousand negatives are one line, not a thousand."""
        if items:
            names = ", ".join(items[:shown]) + (" ..." if len(items) > shown else "")
            self.report(severity, f"{len(items)} {message}: {names}")

    def report_empty_classes(
        self,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        category_ids: Sequence[int] | None = None,
    ) -> None:
        """A warning for each class no usable instance has (a placeholder category, as Roboflow's COCO
        exports carry, or a typo in ``class_names``): it cannot be learnt and shows as AP 0 or -1."""
        used = {a.label for r in records for a in r.annotations}
        for label, name in enumerate(class_names, start=1):
            if label not in used:
                cid = f" (category id {category_ids[label - 1]})" if category_ids is not None else ""
                self.report("warning", f"class {name!r}{cid} has no instances")

    def add_annotation(self, record: ImageRecord, annotation: Annotation) -> bool:
        """Validate ``annotation`` against the record's image size; keep it unless it has an error."""
        ok = True
        for severity, message in check_annotation(annotation.segmentation, record.height, record.width):
            self.report(severity, message, image=record.ref, annotation=annotation.ref)
            ok = ok and severity != "error"
        if ok:
            record.annotations.append(annotation)
        return ok

    def check_image(self, record: ImageRecord) -> bool:
        """Whether the image can be opened and has the size the annotations declare (header only).

        Fills in a missing height / width from the file. Reports an image-level error otherwise.
        """
        if record.path is None or not record.path.is_file():
            if record.image_data is not None:
                return True
            self.report("error", f"image file not found: {record.path}", image=record.ref)
            return False
        try:
            height, width = image_size(record.path)
        except ImageError as e:
            self.report("error", str(e), image=record.ref)
            return False
        if record.height is None or record.width is None:
            record.height, record.width = height, width
        elif (record.height, record.width) != (height, width):
            self.report(
                "error",
                f"image is {width}x{height} but the annotations say {record.width}x{record.height}",
                image=record.ref,
            )
            return False
        return True
