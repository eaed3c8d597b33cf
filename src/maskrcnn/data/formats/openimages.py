"""Google's Open Images instance masks (V5, V6, V7): ``--format openimages``.

The download, as Google publishes it (``storage.googleapis.com/openimages/v5/``) and as FiftyOne's and
Datumaro's Open Images readers take it:

* ``<split>-annotations-object-segmentation.csv`` (``split`` ``train``, ``validation`` or ``test``), one
  row per mask: ``MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,PredictedIoU,Clicks``.
  ``LabelName`` is a class MID (``/m/05zsy``), the box is normalised to 0..1, ``PredictedIoU`` is the
  annotation model's estimate of the mask's quality and ``Clicks`` the annotators' clicks (not read);
* the masks: ``<split>-masks-0.zip`` .. ``<split>-masks-f.zip``, one per first hex digit of the ImageID,
  each holding its PNGs flat (``88e582a7b14e34f4_m04yx4_9a7e0c1e.png``: ImageID, MID, BoxID). A mask
  is a binary PNG of the whole image at the mask's own resolution, which is not the image's;
* the images, ``<ImageID>.jpg`` (CVDF's ``aws s3 sync s3://open-images-dataset/<split> <split>/``, or
  its ``<split>_0`` .. ``<split>_f`` tar files, or Google's ``downloader.py``);
* the class names: ``class-descriptions-boxable.csv`` (V5, the 600 boxable classes, no header:
  ``/m/05zsy,Pumpkin``) or ``oidv7-class-descriptions.csv`` / ``oidv6-class-descriptions.csv`` (all
  classes, with the header ``LabelName,DisplayName``).

The reader takes the segmentation CSV and finds the rest (see :class:`OpenImagesDataset`).
"""

from __future__ import annotations

import csv
import difflib
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from maskrcnn.data.dataset import (
    AnnotatedDataset,
    Annotation,
    DataError,
    ImageRecord,
    MaskFile,
    ProblemLog,
    Transform,
    read_mask_file,
)
from maskrcnn.data.image_io import ImageError

__all__ = [
    "CLASS_CSV_NAMES",
    "COLUMNS",
    "SEGMENTATION_SUFFIX",
    "OpenImagesDataset",
    "is_segmentation_header",
    "read_class_descriptions",
]

log = logging.getLogger(__name__)

SEGMENTATION_SUFFIX = "-annotations-object-segmentation.csv"
COLUMNS = (
    "MaskPath",
    "ImageID",
    "LabelName",
    "BoxID",
    "BoxXMin",
    "BoxXMax",
    "BoxYMin",
    "BoxYMax",
    "PredictedIoU",
    "Clicks",
)
_REQUIRED = ("MaskPath", "ImageID", "LabelName")
_BOX = ("BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax")
# Looked for beside the CSV, in this order: the boxable list first (every class with masks is boxable,
# and its 600 names make better "close names" than the 20,000 of the full list), FiftyOne's copy last.
CLASS_CSV_NAMES = (
    "class-descriptions-boxable.csv",
    "oidv7-class-descriptions-boxable.csv",
    "oidv7-class-descriptions.csv",
    "oidv6-class-descriptions.csv",
    "class-descriptions.csv",
    "metadata/classes.csv",
)
_SAMPLE = 20  # names tried in each candidate folder to tell the right one
_FALLBACK = 1000  # names tried in each when none of the first _SAMPLE is anywhere
_SHOWN = 3


def is_segmentation_header(columns: Sequence[str]) -> bool:
    """Whether a CSV header is an Open Images segmentation CSV's (it has the columns the reader needs)."""
    return set(_REQUIRED) <= {c.strip() for c in columns}


def read_class_descriptions(path: Path) -> dict[str, str]:
    """``{MID: display name}`` of a class descriptions CSV, with or without the ``LabelName,DisplayName``
    header (V5's files have none, V6's and V7's have it).

    Raises:
        DataError: the file cannot be read, or a row is not ``MID,name``.
    """
    names: dict[str, str] = {}
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                if not row or (
                    reader.line_num == 1 and [c.strip() for c in row] == ["LabelName", "DisplayName"]
                ):
                    continue
                if len(row) < 2 or not row[0].strip():
                    raise DataError(
                        f"{path}: line {reader.line_num} is {','.join(row)!r:.80}; a class descriptions CSV "
                        "has rows MID,DisplayName (/m/05zsy,Pumpkin)"
                    )
                names[row[0].strip()] = row[1].strip()
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read the class descriptions ({e})") from None
    return names


@dataclass(frozen=True, slots=True)  # slots: the train CSV has 2.7 million rows
class _Row:
    """One kept row of the segmentation CSV."""

    line: int
    image_id: str
    mask: str
    mid: str


class _Sharded:
    """A folder of files named after an ImageID, held in it or in sub-folders named after the ID's first
    hex digit (``patterns`` such as ``train-masks-{c}``, ``{C}``: what unpacking the per-digit zips or
    tars into folders of their own gives)."""

    def __init__(self, folder: Path, patterns: Sequence[str]) -> None:
        self.folder = folder
        self.patterns = tuple(patterns)
        self._dirs: dict[str, list[Path]] = {}

    def dirs(self, image_id: str) -> list[Path]:
        """The folders a file of ``image_id`` may be in: its digit's sub-folders that exist, then the
        folder itself (looked up once per digit: a few stats, not one per file)."""
        c = image_id[:1].lower()
        if c not in self._dirs:
            subs = [self.folder / p.format(c=c, C=c.upper()) for p in self.patterns] if c else []
            self._dirs[c] = [*dict.fromkeys(d for d in subs if d.is_dir()), self.folder]
        return self._dirs[c]

    def find(self, name: str, image_id: str) -> Path | None:
        return next((d / name for d in self.dirs(image_id) if (d / name).is_file()), None)

    def describe(self) -> str:
        shards = ", ".join(p.format(c="0", C="0") + " .. " + p.format(c="f", C="F") for p in self.patterns)
        return f"{self.folder}/" + (f" (and sub-folders {shards})" if shards else "")


def _split_of(path: Path) -> str | None:
    """``train`` of ``train-annotations-object-segmentation.csv``; ``None`` for another name."""
    return path.name[: -len(SEGMENTATION_SUFFIX)] if path.name.endswith(SEGMENTATION_SUFFIX) else None


def _roots(path: Path) -> list[Path]:
    """The folders the download may sit in: the CSV's, and the one above an ``annotations/`` (Datumaro,
    CVAT) or ``labels/`` (FiftyOne) folder."""
    here = path.parent
    return [here, here.parent] if here.name in ("annotations", "labels") else [here]


def _locate(
    candidates: list[_Sharded],
    sample: list[tuple[str, str]],
    source: Path,
    what: str,
    option: str,
    given: bool,
    extra: str = "",
) -> _Sharded:
    """The candidate holding the most of the first ``(file name, ImageID)`` pairs of ``sample`` (the
    earliest on a tie).

    Args:
        given: the candidate is the folder the user named (``option``), not one of the usual places.
        extra: more advice for the error.

    Raises:
        DataError: none of the sample is in any candidate; the message names them all.
    """
    if not sample:
        return candidates[0]
    hits = [sum(c.find(name, iid) is not None for name, iid in sample[:_SAMPLE]) for c in candidates]
    best = max(range(len(candidates)), key=lambda k: (hits[k], -k))
    if hits[best]:
        return candidates[best]
    # The first names may be the few missing ones: look for any before calling every folder wrong (in
    # the first thousand: a folder holding none of them is not the one).
    for c in candidates:
        if any(c.find(name, iid) is not None for name, iid in sample[:_FALLBACK]):
            return c
    names = ", ".join(name for name, _ in sample[:_SHOWN]) + (
        f" ... ({len(sample)} in all)" if len(sample) > _SHOWN else ""
    )
    looked = "; ".join(c.describe() for c in candidates)
    hint = ("check the folder given" if given else f"pass {option}= (-o {option}=FOLDER)") + extra
    raise DataError(f"{source}: none of the {what} it lists were found ({names}); looked in {looked}; {hint}")


def _folder_option(value: str | os.PathLike[str], option: str) -> Path:
    folder = Path(value)
    if not folder.is_dir():
        raise DataError(f"--format openimages: option {option}={str(value)!r} is not a folder")
    return folder


class OpenImagesDataset(AnnotatedDataset):
    """The masks of an Open Images segmentation CSV (see the module docstring), for training.

    ``path`` is the segmentation CSV (``train-annotations-object-segmentation.csv``). Beside it (or, for
    a CSV in ``annotations/`` or ``labels/``, beside that folder) the reader finds:

    * the masks in ``masks/``, ``masks/<split>/``, ``<split>-masks/`` or the CSV's own folder, each
      flat (``unzip <split>-masks-0.zip -d masks``) or in sub-folders ``<split>-masks-0`` ..
      ``<split>-masks-f`` (a zip unpacked into a folder of its name) or ``0`` .. ``f`` / ``0`` .. ``F``
      (FiftyOne);
    * the images ``<ImageID>.jpg`` in ``<split>/``, ``images/<split>/``, ``images/``, ``data/``
      (FiftyOne) or the CSV's own folder, each flat or in sub-folders ``<split>_0`` .. ``<split>_f``;
    * the class names in the first of :data:`CLASS_CSV_NAMES` there.

    The folder chosen is the one holding most of the first masks (images) the CSV lists; when none is
    anywhere, :class:`DataError` names every folder looked in. ``image_dir=``, ``mask_dir=`` and
    ``class_csv=`` say where instead.

    Classes are display names (``Pumpkin``). With ``classes`` only the rows of those classes are read,
    labelled in the order given; the images of other classes are not part of the dataset. Without it
    every class the CSV has is a class, sorted by name. MIDs sharing a display name are one class (a
    warning says so). ``min_iou`` keeps the masks whose ``PredictedIoU`` reaches it.

    The dataset is the images with at least one usable mask, in the order the CSV first lists them
    (``image_id`` = that position among all the CSV's images, so that ids do not move with ``classes``
    or ``min_iou``): Open Images lists only images that have masks, so there are no images without
    objects, and an image whose masks are all left out (below ``min_iou``, or with errors) is left out
    rather than trained as background, which its unlabelled objects are not.

    Masks are decoded when an item is read (:meth:`load_masks`), nonzero pixels the object, and resized
    to the image's size by nearest neighbour (the pixel under each output pixel's centre). A mask with no
    pixel left (an object a few mask pixels wide, downscaled) is left out of the item with a warning in
    the log.

    Problems (see :class:`~maskrcnn.data.dataset.ProblemLog`), each naming the CSV line: a row with too
    few fields, an unknown ``LabelName`` (not in the class CSV), a ``PredictedIoU`` that is not a number
    (with ``min_iou``), a missing mask file (errors: the mask is left out); a missing or unreadable
    image (an error: the image is left out); a box that is not four numbers in 0..1 with min <= max (a
    warning: the box is not used, boxes come from the masks, but a broken box says the row may be).
    An unreadable mask is a :class:`DataError` naming the file when the item is read.

    Args:
        path: the segmentation CSV.
        strict: raise :class:`DataError` at the first error instead of skipping what it concerns.
        transforms: ``(image, target) -> (image, target)`` augmentation.
        image_dir: the images' folder (flat, or in ``<split>_<digit>`` sub-folders).
        mask_dir: the masks' folder (flat, or in per-digit sub-folders as above).
        class_csv: the class descriptions CSV.
        classes: display names of the classes to read (``-o classes=Pumpkin,Apple``), in label order;
            a name the class CSV lacks is a :class:`DataError` listing the close ones.
        min_iou: the lowest ``PredictedIoU`` kept (0..1), or ``None`` for every mask.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = False,
        transforms: Transform | None = None,
        image_dir: str | os.PathLike[str] | None = None,
        mask_dir: str | os.PathLike[str] | None = None,
        class_csv: str | os.PathLike[str] | None = None,
        classes: Sequence[str] | None = None,
        min_iou: float | None = None,
    ) -> None:
        path = Path(path)
        if path.is_dir():
            found = sorted(
                p.name for d in (path, path / "annotations") for p in d.glob(f"*{SEGMENTATION_SUFFIX}")
            )
            raise DataError(
                f"{path}: a folder; pass the segmentation CSV itself"
                + (f" (found {', '.join(found[:3])})" if found else f" (<split>{SEGMENTATION_SUFFIX})")
            )
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        if min_iou is not None and not (math.isfinite(min_iou) and 0 <= min_iou <= 1):
            raise DataError(f"--format openimages: option min_iou={min_iou!r} is not a number in 0..1")
        log = ProblemLog(str(path), strict=strict)
        split = _split_of(path)
        roots = _roots(path)
        class_file = Path(class_csv) if class_csv is not None else _find_class_csv(path, roots)
        descriptions = read_class_descriptions(class_file)
        names, wanted = _wanted(classes, descriptions, class_file)
        reading = _Reading(path, log, descriptions, class_file, wanted, min_iou)
        rows = reading.rows()
        if wanted is None:
            names = sorted({descriptions[mid] for mid in reading.seen})
        for name in names:
            mids = sorted(m for m in reading.seen if descriptions[m] == name)
            if len(mids) > 1:
                log.report(
                    "warning", f"LabelNames {', '.join(mids)} share the display name {name!r}: one class"
                )
        label_of = {mid: names.index(descriptions[mid]) + 1 for mid in reading.seen}

        masks = _locate(
            self._mask_folders(roots, split, mask_dir),
            [(r.mask, r.image_id) for r in rows],
            path,
            "masks",
            "mask_dir",
            mask_dir is not None,
            ""
            if classes is not None
            else "; or pass classes= (-o classes=Pumpkin) to read only the classes whose masks are there",
        )
        images = _locate(
            self._image_folders(roots, split, image_dir),
            [(f"{iid}.jpg", iid) for iid in dict.fromkeys(r.image_id for r in rows)],
            path,
            "images",
            "image_dir",
            image_dir is not None,
        )
        records = self._records(rows, reading.order, label_of, masks, images, log, split)
        self.below_min_iou = reading.below
        self.min_iou = min_iou
        log.report_empty_classes(records, names)
        super().__init__(records, names, problems=log.problems, source=str(path), transforms=transforms)

    @staticmethod
    def _mask_folders(
        roots: list[Path], split: str | None, mask_dir: str | os.PathLike[str] | None
    ) -> list[_Sharded]:
        patterns = ([f"{split}-masks-{{c}}"] if split else []) + ["{c}", "{C}"]
        if mask_dir is not None:
            return [_Sharded(_folder_option(mask_dir, "mask_dir"), patterns)]
        folders = []
        for root in roots:
            folders += [
                root / "masks",
                *([root / "masks" / split, root / f"{split}-masks"] if split else []),
                root,
            ]
        return [_Sharded(f, patterns) for f in dict.fromkeys(folders)]

    @staticmethod
    def _image_folders(
        roots: list[Path], split: str | None, image_dir: str | os.PathLike[str] | None
    ) -> list[_Sharded]:
        patterns = [f"{split}_{{c}}"] if split else []
        if image_dir is not None:
            return [_Sharded(_folder_option(image_dir, "image_dir"), patterns)]
        folders = []
        for root in roots:
            folders += [
                *([root / split, root / "images" / split] if split else []),
                root / "images",
                root / "data",
                root,
            ]
        return [_Sharded(f, patterns) for f in dict.fromkeys(folders)]

    @staticmethod
    def _records(
        rows: list[_Row],
        order: dict[str, int],
        label_of: dict[str, int],
        masks: _Sharded,
        images: _Sharded,
        log: ProblemLog,
        split: str | None,
    ) -> list[ImageRecord]:
        """One record per image with a usable mask; the missing images and mask files reported."""
        by_image: dict[str, list[_Row]] = {}
        for row in rows:
            by_image.setdefault(row.image_id, []).append(row)
        records = []
        found, missing = Counter[str](), Counter[str]()
        for iid, image_rows in by_image.items():
            ref = f"{iid}.jpg"
            image = images.find(ref, iid)
            if image is None:
                looked = ", ".join(f"{d}/" for d in images.dirs(iid))
                log.report("error", f"image file not found (looked in {looked})", image=ref)
                continue
            record = ImageRecord(
                image_id=order[iid],
                path=image,
                height=None,
                width=None,
                ref=ref,
                extra={"open_images_id": iid},
            )
            if not log.check_image(record):
                continue
            for row in image_rows:
                mask = masks.find(row.mask, iid)
                digit = iid[:1].lower()
                if mask is None:
                    missing[digit] += 1
                    looked = ", ".join(f"{d}/" for d in masks.dirs(iid))
                    log.report(
                        "error",
                        f"mask file not found: {row.mask} (looked in {looked})",
                        image=ref,
                        annotation=f"line {row.line}",
                    )
                    continue
                found[digit] += 1
                log.add_annotation(
                    record, Annotation(label_of[row.mid], MaskFile(mask), ref=f"line {row.line}")
                )
            if record.annotations:
                records.append(record)
        absent = sorted(d for d in missing if not found[d])
        if absent and found:
            # All of a digit's masks missing: that digit's zip was not unpacked (or not downloaded).
            zips = ", ".join(f"{split or '<split>'}-masks-{d}.zip" for d in absent)
            log.report(
                "warning",
                f"no mask file at all of the ImageIDs starting with {', '.join(absent)}: unpack {zips} into "
                f"{masks.folder}/ (flat, or each into a folder of its name)",
            )
        return records

    def load_masks(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        """The image's masks, resized to it (nearest neighbour), those left empty by the resize left out."""
        record = self.records[index]
        height, width = self.image_size(index)
        kept = [
            (m, a.label) for a in record.annotations if (m := self._mask(index, a, height, width)) is not None
        ]
        masks = (
            torch.stack([m for m, _ in kept]) if kept else torch.zeros((0, height, width), dtype=torch.uint8)
        )
        labels = torch.tensor([label for _, label in kept], dtype=torch.int64)
        return masks, labels, torch.zeros(len(kept), dtype=torch.int64)

    def _mask(self, index: int, annotation: Annotation, height: int, width: int) -> Tensor | None:
        """One annotation's ``uint8 [height, width]`` mask, or ``None`` (logged) when nothing is left."""
        assert isinstance(annotation.segmentation, MaskFile)
        path = annotation.segmentation.path
        where = f"{self.source}, image {self.image_reference(index)}, {annotation.ref}"
        try:
            array = read_mask_file(path)
        except ImageError as e:
            raise DataError(f"{where}: {e}") from None
        mask = torch.from_numpy((array != 0).astype(np.uint8))
        h, w = mask.shape
        if (h, w) != (height, width):
            # "nearest-exact" takes the mask pixel under each image pixel's centre (transforms resize masks
            # the same way); plain "nearest" would shift the mask by up to half a mask pixel.
            mask = F.interpolate(mask[None, None], size=(height, width), mode="nearest-exact")[0, 0]
        if not bool(mask.any()):
            log.warning(
                "%s: mask %s (%dx%d) has no pixel at the image's %dx%d; left out",
                where,
                path.name,
                w,
                h,
                width,
                height,
            )
            return None
        return mask

    def summary(self) -> str:
        below = (
            f"; {self.below_min_iou} masks below min_iou={self.min_iou:g} left out"
            if self.below_min_iou
            else ""
        )
        return super().summary() + below


def _find_class_csv(path: Path, roots: list[Path]) -> Path:
    """The first of :data:`CLASS_CSV_NAMES` in ``roots``; :class:`DataError` naming all of them if none."""
    for root in roots:
        for name in CLASS_CSV_NAMES:
            if (root / name).is_file():
                return root / name
    looked = ", ".join(f"{r}/" for r in roots)
    raise DataError(
        f"{path}: no class descriptions CSV ({', '.join(CLASS_CSV_NAMES)}) in {looked}; download "
        "class-descriptions-boxable.csv or oidv7-class-descriptions.csv beside it, or pass class_csv= "
        "(-o class_csv=FILE)"
    )


def _wanted(
    classes: Sequence[str] | None, descriptions: dict[str, str], class_file: Path
) -> tuple[list[str], dict[str, str] | None]:
    """The ``classes`` asked for as a list, and ``{MID: display name}`` of them; ``([], None)`` for all.

    Raises:
        DataError: a name the class CSV lacks (with the close ones), or one given twice.
    """
    if classes is None:
        return [], None
    names = [classes] if isinstance(classes, str) else list(classes)
    if not names:
        raise DataError("--format openimages: option classes is empty; name at least one class (Pumpkin)")
    known = set(descriptions.values())
    for name in names:
        if names.count(name) > 1:
            raise DataError(f"--format openimages: option classes names {name!r} twice")
        if name not in known:
            folded = {n.casefold(): n for n in known}
            close = difflib.get_close_matches(name.casefold(), folded, n=5, cutoff=0.6)
            hint = f"close names: {', '.join(folded[c] for c in close)}" if close else "no close name"
            raise DataError(f"{class_file}: no class {name!r} among its {len(known)} ({hint})")
    chosen = set(names)
    return names, {mid: name for mid, name in descriptions.items() if name in chosen}


class _Reading:
    """One pass over the segmentation CSV: the rows kept, the problems, and what was seen.

    Attributes (after :meth:`rows`):
        order: each ImageID's position among the CSV's images (all of them, kept or not).
        seen: the MIDs of the rows read (known, and of the classes asked for), whatever their masks.
        below: masks left out by ``min_iou``.
    """

    def __init__(
        self,
        path: Path,
        log: ProblemLog,
        descriptions: dict[str, str],
        class_file: Path,
        wanted: dict[str, str] | None,
        min_iou: float | None,
    ) -> None:
        self.path, self.log, self.descriptions, self.class_file = path, log, descriptions, class_file
        self.wanted, self.min_iou = wanted, min_iou
        self.order: dict[str, int] = {}
        self.seen: set[str] = set()
        self.below = 0

    def rows(self) -> list[_Row]:
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as f:
                return list(self._rows(csv.reader(f)))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{self.path}: cannot read the CSV ({e})") from None

    def _rows(self, reader: Iterator[list[str]]) -> Iterator[_Row]:
        header = [c.strip() for c in next(reader, [])]
        if not is_segmentation_header(header):
            raise DataError(
                f"{self.path}: the header is {','.join(header)!r:.120}; an Open Images segmentation CSV "
                f"starts {','.join(COLUMNS)}"
            )
        if self.min_iou is not None and "PredictedIoU" not in header:
            raise DataError(f"{self.path}: min_iou needs the PredictedIoU column; the header has {header}")
        column = {name: k for k, name in enumerate(header)}
        mask_at, image_at, label_at = (column[c] for c in _REQUIRED)
        for values in reader:
            line = reader.line_num  # type: ignore[attr-defined]
            if not values:
                continue
            if len(values) <= max(mask_at, image_at, label_at):
                self.log.report(
                    "error", f"{len(values)} fields; the header has {len(header)}", annotation=f"line {line}"
                )
                continue
            image_id, mask = values[image_at].strip(), values[mask_at].strip()
            if not image_id or not mask:
                empty = "ImageID" if not image_id else "MaskPath"
                self.log.report("error", f"{empty} is empty", annotation=f"line {line}")
                continue
            self.order.setdefault(image_id, len(self.order))
            mid = values[label_at].strip()
            if self.wanted is not None and mid not in self.wanted:
                continue  # another class's: not part of the dataset (unknown MIDs included)
            ref, where = f"{image_id}.jpg", f"line {line}"
            if mid not in self.descriptions:
                self.log.report(
                    "error",
                    f"LabelName {mid!r} is not in {self.class_file.name}",
                    image=ref,
                    annotation=where,
                )
                continue
            self.seen.add(mid)
            if self.min_iou is not None:
                iou = _number(values, column["PredictedIoU"])
                if iou is None:
                    self.log.report(
                        "error",
                        f"PredictedIoU {_field(values, column['PredictedIoU'])!r} is not a number",
                        image=ref,
                        annotation=where,
                    )
                    continue
                if iou < self.min_iou:
                    self.below += 1
                    continue
            self._check_box(values, column, ref, where)
            yield _Row(line, image_id, mask, mid)

    def _check_box(self, values: list[str], column: dict[str, int], ref: str, where: str) -> None:
        """A warning for a box that is not four numbers in 0..1 with min <= max (the box is not used)."""
        if not all(c in column for c in _BOX):
            return
        box = [_number(values, column[c]) for c in _BOX]
        bad = next((c for c, v in zip(_BOX, box, strict=True) if v is None or not 0 <= v <= 1), None)
        if bad is not None:
            problem = f"{bad} {_field(values, column[bad])!r} is not a number in 0..1"
        elif box[0] > box[1] or box[2] > box[3]:  # type: ignore[operator]
            problem = f"the box is inverted (x {box[0]:g}..{box[1]:g}, y {box[2]:g}..{box[3]:g})"
        else:
            return
        self.log.report(
            "warning",
            f"{problem}; the box is not used (boxes come from the mask)",
            image=ref,
            annotation=where,
        )


def _field(values: list[str], k: int) -> str:
    return values[k].strip() if k < len(values) else ""


def _number(values: list[str], k: int) -> float | None:
    """Field ``k`` as a finite number, or ``None``."""
    try:
        value = float(_field(values, k))
    except ValueError:
        return None
    return value if math.isfinite(value) else None
