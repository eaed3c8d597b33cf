"""Boxes found by another detector (YOLO, a tracker) or drawn by a person, for ``maskrcnn predict --boxes``.

:func:`read_given_boxes` reads them for the files of a source; the predictor then makes a mask for each
box (:meth:`~maskrcnn.engine.predictor.Predictor.masks_for_boxes`). Three forms are read:

* COCO results JSON, a list of ``{"image_id" or "file_name", "bbox": [x, y, w, h], "category_id",
  "score"}`` in pixels (what ``maskrcnn predict`` writes; ``category`` names the class when present);
* a COCO instances file (``images``, ``annotations``, ``categories``): a person's boxes, or ground truth;
  classes by their category names;
* a folder of YOLO detections, one ``<stem>.txt`` per image (``yolo predict save_txt=True``): lines
  ``class cx cy w h [confidence]``, normalised to 0..1 by the image's width and height.

An entry names its image by ``file_name`` (the path as given to predict, a path ending in it, or a file
name that is unique in the source), or by ``image_id``: through a COCO file's ``images``, else the
number of an image named by it (COCO's own ``000000397133.jpg`` is image 397133).

Classes: a box's class is the model's class of the same name (exactly, else ignoring case) when the
entry names it; otherwise its id read as the model's label (``category_id`` ``1..K``, as predict
writes them; YOLO's 0-based class ``c`` is label ``c + 1``). YOLO's txt files hold no names: give
``yolo_names`` (the detector's classes, e.g. from its data YAML) to name its classes, and YOLO's class
``c`` is then the model's class named ``yolo_names[c]``. A class that is not one of the model's
(or every class, with ``classes="model"``) is left to the model: its most probable class for the box.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from maskrcnn.data.dataset import DataError
from maskrcnn.data.formats.coco import read_json
from maskrcnn.engine.sources import MediaFile

__all__ = ["BoxClasses", "GivenBoxes", "ImageBoxes", "read_given_boxes"]

BoxClasses = Literal["given", "model"]


@dataclass
class ImageBoxes:
    """The boxes given for one image, as read.

    Attributes:
        boxes: per box ``[x0, y0, x1, y1]``: pixels, or with ``normalised`` fractions of the width and
            height (YOLO).
        class_ids: per box the source's class id (``category_id``; YOLO's 0-based class plus one), or
            ``None``.
        class_names: per box the source's class name, or ``None``.
        scores: per box its score, or ``None`` (a person's box); all or none.
        normalised: coordinates in 0..1 (YOLO).
    """

    boxes: list[list[float]] = field(default_factory=list)
    class_ids: list[int | None] = field(default_factory=list)
    class_names: list[str | None] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    normalised: bool = False

    def add(self, box: list[float], class_id: int | None, name: str | None, score: float | None) -> None:
        self.boxes.append(box)
        self.class_ids.append(class_id)
        self.class_names.append(name)
        self.scores.append(score)


@dataclass
class GivenBoxes:
    """The given boxes of the files of a source.

    Attributes:
        source: the file or folder read.
        by_file: the boxes of each file that has some.
        unmatched: entries that name no file of the source (``"file_name x.jpg"``...), one per image.
        classes: ``"given"`` (the boxes' classes where they are the model's) or ``"model"`` (always the
            model's most probable class).
    """

    source: Path
    by_file: dict[Path, ImageBoxes]
    unmatched: list[str]
    classes: BoxClasses = "given"

    @property
    def count(self) -> int:
        """Boxes given for files of the source."""
        return sum(len(b.boxes) for b in self.by_file.values())

    def arguments(
        self, file: MediaFile, size: tuple[int, int], class_names: Sequence[str]
    ) -> dict[str, Tensor | None]:
        """The keyword arguments of :meth:`Predictor.masks_for_boxes` for ``file`` (an image of ``size``
        ``(H, W)``) and a model of ``class_names``: ``boxes [B, 4]`` xyxy pixels, ``labels [B]`` (0: the
        model's choice) and ``scores [B]`` (``None`` unless every box has one)."""
        given = self.by_file.get(file.path, ImageBoxes())
        boxes = torch.tensor(given.boxes, dtype=torch.float32).reshape(-1, 4)
        if given.normalised:
            height, width = size
            boxes = boxes * torch.tensor([width, height, width, height], dtype=torch.float32)
        labels = [
            self._label(class_id, name, class_names)
            for class_id, name in zip(given.class_ids, given.class_names, strict=True)
        ]
        scores = given.scores
        has_scores = bool(scores) and all(s is not None for s in scores)
        return {
            "boxes": boxes,
            "labels": torch.tensor(labels, dtype=torch.int64),
            "scores": torch.tensor(scores, dtype=torch.float32) if has_scores else None,
        }

    def _label(self, class_id: int | None, name: str | None, class_names: Sequence[str]) -> int:
        if self.classes == "model":
            return 0
        if name is not None:
            if name in class_names:
                return list(class_names).index(name) + 1
            folded = [n.casefold() for n in class_names]
            return folded.index(name.casefold()) + 1 if name.casefold() in folded else 0
        if class_id is not None and 1 <= class_id <= len(class_names):
            return class_id
        return 0


def read_given_boxes(
    path: str | os.PathLike[str],
    files: Sequence[MediaFile],
    *,
    classes: BoxClasses = "given",
    yolo_names: Sequence[str] | None = None,
) -> GivenBoxes:
    """The boxes of ``path`` (COCO results or instances JSON, or a folder of YOLO txt files) for
    ``files``; ``yolo_names``: the names of YOLO's classes ``0..``, in order (see the module docstring).

    Raises:
        DataError: a missing or unreadable file, or an entry that is not a box (naming the file, the
            entry and the value).
    """
    source = Path(path)
    if source.is_dir():
        by_file, unmatched = _read_yolo(source, files, yolo_names)
    elif source.is_file():
        by_file, unmatched = _read_coco(source, files)
    else:
        raise DataError(f"--boxes {source}: no such file or folder")
    return GivenBoxes(source, by_file, unmatched, classes)


class _FileIndex:
    """The files of a source, found by the names detections give them: the path as given to predict, the
    same file by its absolute path, or the last components of its path when no other file's path ends
    with them (``photos/a.jpg`` or ``a.jpg`` for the source's ``data/photos/a.jpg``)."""

    def __init__(self, files: Sequence[MediaFile]) -> None:
        self.by_text = {f.path.as_posix(): f.path for f in files}
        self.by_absolute = {os.path.abspath(f.path): f.path for f in files}
        endings: dict[str, list[Path]] = defaultdict(list)  # a few entries per file: paths are short
        numbers: dict[int, list[Path]] = defaultdict(list)
        for f in files:
            parts = Path(os.path.abspath(f.path)).parts
            for k in range(1, len(parts)):
                endings["/".join(parts[-k:])].append(f.path)
            if f.path.stem.isdigit():
                numbers[int(f.path.stem)].append(f.path)
        self.by_ending = {ending: paths[0] for ending, paths in endings.items() if len(paths) == 1}
        self.by_number = {number: paths[0] for number, paths in numbers.items() if len(paths) == 1}

    def find(self, file_name: str) -> Path | None:
        text = file_name.replace("\\", "/")
        if text in self.by_text:
            return self.by_text[text]
        absolute = os.path.abspath(text)
        if absolute in self.by_absolute:
            return self.by_absolute[absolute]
        return self.by_ending.get("/".join(part for part in text.split("/") if part not in ("", ".")))


def _read_coco(path: Path, files: Sequence[MediaFile]) -> tuple[dict[Path, ImageBoxes], list[str]]:
    data = read_json(path, "COCO results (a list of detections) or a COCO instances file")
    index = _FileIndex(files)
    image_files: dict[int, str] = {}
    category_names: dict[int, str] = {}
    if isinstance(data, dict):
        if not isinstance(data.get("annotations"), list) or not isinstance(data.get("images"), list):
            raise DataError(f"{path}: a COCO file needs 'images' and 'annotations' lists")
        for image in data["images"]:
            if isinstance(image, dict) and "id" in image and isinstance(image.get("file_name"), str):
                image_files[image["id"]] = image["file_name"]
        for category in data.get("categories") or []:
            if isinstance(category, dict) and "id" in category and isinstance(category.get("name"), str):
                category_names[category["id"]] = category["name"]
        entries = data["annotations"]
    elif isinstance(data, list):
        entries = data
    else:
        raise DataError(f"{path}: expected a list of detections or a COCO file, got {type(data).__name__}")
    by_file: dict[Path, ImageBoxes] = {}
    unmatched: dict[str, None] = {}
    for k, entry in enumerate(entries):
        where = f"{path}: entry {k}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object, got {entry!r:.60}")
        box = _coco_box(entry.get("bbox"), where)
        image = _image_of(entry, image_files, index, where)
        if isinstance(image, str):
            unmatched[image] = None
            continue
        category = entry.get("category_id")
        if category is not None and (not isinstance(category, int) or isinstance(category, bool)):
            raise DataError(f"{where}: category_id must be an integer, got {category!r}")
        name = entry.get("category")
        name = (
            name if isinstance(name, str) else category_names.get(category) if category is not None else None
        )
        by_file.setdefault(image, ImageBoxes()).add(box, category, name, _score(entry.get("score"), where))
    return by_file, list(unmatched)


def _image_of(
    entry: dict[str, Any], image_files: dict[int, str], index: _FileIndex, where: str
) -> Path | str:
    """The source's file an entry names, or how it names one the source lacks."""
    file_name = entry.get("file_name")
    if isinstance(file_name, str):
        return index.find(file_name) or f"file_name {file_name}"
    image_id = entry.get("image_id")
    if image_id is None:
        raise DataError(f"{where}: names no image (give 'file_name' or 'image_id')")
    if image_id in image_files:
        return index.find(image_files[image_id]) or f"file_name {image_files[image_id]}"
    if isinstance(image_id, int) and image_id in index.by_number:
        return index.by_number[image_id]
    return f"image_id {image_id}"


def _coco_box(value: Any, where: str) -> list[float]:
    """``[x, y, w, h]`` pixels -> ``[x0, y0, x1, y1]``."""
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise DataError(f"{where}: bbox must be [x, y, width, height] (4 finite numbers), got {value!r:.80}")
    x, y, w, h = (float(v) for v in value)
    if w < 0 or h < 0:
        raise DataError(f"{where}: bbox {value} has a negative width or height")
    return [x, y, x + w, y + h]


def _score(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise DataError(f"{where}: score must be a number, got {value!r}")
    return float(value)


def _read_yolo(
    folder: Path, files: Sequence[MediaFile], names: Sequence[str] | None
) -> tuple[dict[Path, ImageBoxes], list[str]]:
    """``<name>.txt`` (the file's output name: subfolders kept) or ``<stem>.txt`` per image."""
    texts = sorted(folder.rglob("*.txt"))
    if not texts:
        raise DataError(f"--boxes {folder}: no .txt files (YOLO detections, one <image stem>.txt per image)")
    by_relative = {t.relative_to(folder).with_suffix("").as_posix(): t for t in texts}
    stems: dict[str, list[Path]] = defaultdict(list)
    for t in texts:
        stems[t.stem].append(t)
    by_file: dict[Path, ImageBoxes] = {}
    used: set[Path] = set()
    for file in files:
        text = by_relative.get(file.name)  # sub/a.txt for the source's sub/a.jpg
        if text is None and len(stems.get(file.path.stem, [])) == 1:
            text = stems[file.path.stem][0]
        if text is None:
            continue
        used.add(text)
        by_file[file.path] = _yolo_boxes(text, names)
    unmatched = [f"{t.relative_to(folder)}" for t in texts if t not in used]
    return by_file, unmatched


def _yolo_boxes(path: Path, names: Sequence[str] | None) -> ImageBoxes:
    boxes = ImageBoxes(normalised=True)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}: line {number}"
        if len(fields) not in (5, 6):
            raise DataError(
                f"{where}: expected 'class cx cy w h [confidence]' (5 or 6 numbers), got {len(fields)}: "
                f"{line.strip()!r:.80}"
            )
        try:
            class_index = int(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise DataError(f"{where}: not numbers: {line.strip()!r:.80}") from None
        if class_index < 0 or not all(math.isfinite(v) for v in values):
            raise DataError(f"{where}: a negative class or a non-finite number: {line.strip()!r:.80}")
        cx, cy, w, h = values[:4]
        if w < 0 or h < 0:
            raise DataError(f"{where}: negative width or height: {line.strip()!r:.80}")
        if names is not None and class_index >= len(names):
            raise DataError(
                f"{where}: class {class_index}, and the {len(names)} names given end at {len(names) - 1}"
            )
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        name = names[class_index] if names is not None else None
        boxes.add(box, class_index + 1, name, values[4] if len(values) == 5 else None)
    return boxes
