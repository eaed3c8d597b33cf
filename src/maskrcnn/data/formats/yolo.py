"""Reader for YOLO segmentation and pose datasets in the Ultralytics layout (``yolo``).

A data YAML names the root and the splits::

    path: ../datasets/cells      # root, relative to this file's folder (absent: this file's folder)
    train: images/train          # a folder of images, a list of folders, or a .txt list of image paths
    val: images/val
    names: {0: cell, 1: debris}  # or a list: [cell, debris]

For an image ``.../images/<sub>/x.jpg`` the labels are in ``.../labels/<sub>/x.txt`` (the last ``images``
component of the path replaced by ``labels``; an image path without one has its label file beside it). A
label line is ``class x1 y1 x2 y2 ...``: a class index into ``names`` and one polygon, with coordinates
normalised to 0..1 by the image's width and height.

A pose dataset's YAML also says how many keypoints each object has and how a mirror image swaps them::

    kpt_shape: [17, 3]           # keypoints, and 3 numbers each (x y visibility) or 2 (x y)
    flip_idx: [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    kpt_names: {0: [nose, left_eye, ...]}   # optional (Ultralytics 8.3): per class, or one list

and its label lines are ``class cx cy w h x1 y1 v1 x2 y2 v2 ...`` (or ``... x1 y1 x2 y2 ...``): a box
(centre and size) and the keypoints, normalised like the polygons.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from maskrcnn.data.dataset import (
    AnnotatedDataset,
    Annotation,
    DataError,
    ImageRecord,
    ProblemLog,
    Transform,
)
from maskrcnn.data.formats.keypoint_values import (
    box_polygon,
    checked_keypoints,
    keypoint_spec,
    skeleton_pairs,
    with_sigmas,
)
from maskrcnn.data.image_io import is_image_file
from maskrcnn.data.keypoints import KeypointSpec

__all__ = ["YoloDataset", "label_path", "read_class_names"]


def label_path(image: Path) -> Path:
    """The label file of an image: the last ``images`` path component becomes ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):  # never the file name itself
        if parts[k] == "images":
            parts[k] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_class_names(yaml_path: Path) -> list[str]:
    """The class names of a YOLO data YAML, in index order (what YOLO's class ``c`` is called)."""
    return _class_names(YoloDataset._read_yaml(yaml_path), yaml_path)


def _class_names(data: dict[str, Any], source: Path) -> list[str]:
    """``names`` as a list in index order (a list, a dict ``{index: name}``, or only ``nc``)."""
    names = data.get("names")
    if names is None:
        nc = data.get("nc")
        if isinstance(nc, int) and nc > 0:
            return [f"class_{i}" for i in range(nc)]  # what Ultralytics names them
        raise DataError(f"{source}: no 'names' (a list of class names, or a dict {{index: name}})")
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        try:
            by_index = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DataError(f"{source}: 'names' keys must be class indices, got {list(names)}") from None
        if sorted(by_index) != list(range(len(by_index))):
            # Labels are contiguous, and YOLO label files index names by position: a gap is a mistake.
            raise DataError(
                f"{source}: 'names' indices must be 0..{len(by_index) - 1}, got {sorted(by_index)}"
            )
        return [by_index[i] for i in range(len(by_index))]
    raise DataError(f"{source}: 'names' must be a list or a dict, got {type(names).__name__}")


def _pose(data: dict[str, Any], source: Path, skeleton: Any) -> tuple[KeypointSpec, int] | None:
    """A pose dataset's keypoints and the numbers per keypoint of its label lines (2 or 3), from the
    YAML's ``kpt_shape``, ``flip_idx`` and ``kpt_names`` and the ``skeleton`` option; ``None``: the YAML
    has no ``kpt_shape`` (a segmentation dataset)."""
    shape = data.get("kpt_shape")
    if shape is None:
        if skeleton:
            raise DataError(f"--format yolo: option skeleton, but {source} has no kpt_shape (no keypoints)")
        return None
    if not (
        isinstance(shape, list)
        and len(shape) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
        and shape[0] > 0
        and shape[1] in (2, 3)
    ):
        raise DataError(
            f"{source}: kpt_shape {shape!r} is not [K, 2] or [K, 3] (keypoints, and x y or x y visibility)"
        )
    k, dims = shape
    names = _keypoint_names(data.get("kpt_names"), k, source)
    default = KeypointSpec.default(k)  # COCO's person keypoints for 17, else kp0, kp1, ...
    flip = data.get("flip_idx")
    if flip is not None and not (
        isinstance(flip, list) and all(isinstance(v, int) for v in flip) and sorted(flip) == list(range(k))
    ):
        raise DataError(f"{source}: flip_idx {flip!r:.80} is not a permutation of the keypoints 0..{k - 1}")
    names = names if names is not None else list(default.names)
    if skeleton:
        edges = skeleton_pairs(skeleton, names, where="--format yolo: option skeleton")
    else:
        edges = list(default.skeleton) if tuple(names) == default.names else []
    return keypoint_spec(names, edges, flip, where=f"{source}: kpt_names"), dims


def _keypoint_names(value: Any, k: int, source: Path) -> list[str] | None:
    """``kpt_names`` as one list of ``k`` names (``None``: not given). Ultralytics writes a dict ``{class
    index: [names]}``; a list of such lists, or one list for every class, are read too. The dataset has one
    set of keypoints: every class's list must be the same."""
    if value is None:
        return None
    if isinstance(value, dict):
        lists = list(value.values())
    elif isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        lists = value
    else:
        lists = [value]
    for names in lists:
        if not (isinstance(names, list) and len(names) == k and all(isinstance(n, str) and n for n in names)):
            raise DataError(
                f"{source}: kpt_names {value!r:.120} is not {k} keypoint names (kpt_shape says {k})"
            )
    if any(names != lists[0] for names in lists):
        raise DataError(
            f"{source}: kpt_names {value!r:.160} differ between classes; a dataset has one set of keypoints"
        )
    return [str(n) for n in lists[0]]


class YoloDataset(AnnotatedDataset):
    """One split of a YOLO segmentation or pose dataset (Ultralytics layout; see the module docstring).

    The split's entry in the YAML is a folder (every image file below it, recursively, sorted), a list of
    such entries, or a ``.txt`` file with one image path per line (relative paths are relative to the list
    file's folder). Paths in the YAML are relative to the root (a ``../x`` that does not exist there is
    read as ``x``, as Ultralytics does for Roboflow's exports). Image ``k`` of the split's listing gets
    ``image_id = k`` and label ``class index + 1``.

    Problems: an image that cannot be read is an image error. A label line that is not a polygon is an
    instance error naming the label file and line: a box (4 coordinates, detection format, no mask), an
    odd number of coordinates, fewer than 3 points, a non-numeric value, an unknown class index, or a
    polygon that :func:`~maskrcnn.data.dataset.check_annotation` rejects (no area, outside the image).
    An image without a label file, or with an empty one, has no objects (a negative: YOLO's convention).
    A problem of a line of a label file (or of a list file) has that file as its ``source``, the others
    the YAML.

    Pose datasets (a ``kpt_shape`` in the YAML) have a :attr:`keypoint_spec`: the names of ``kpt_names``
    (else COCO's person keypoints for 17, ``kp0, kp1, ...`` for other counts), mirror pairs ``flip_idx``
    (else from the names), the skeleton of the ``skeleton`` option (else COCO's for its keypoints, none
    for others). YOLO pose has no outlines: an object's mask is its box's rectangle. With ``[K, 3]`` the
    visibility is COCO's (0 not labelled, 1 hidden, 2 visible); with ``[K, 2]`` a point at ``(0, 0)`` or
    with a negative coordinate is not labelled (what tools write for a missing point, and Ultralytics'
    reading), the others are visible (``v = 2``). A line of another length than ``5 + K * D`` values, a
    box without width or height, or keypoints that
    :func:`~maskrcnn.data.formats.keypoint_values.checked_keypoints` rejects (a visibility outside 0..2)
    are errors naming the line; a labelled point outside the image is left out with a warning.

    Args:
        path: the data YAML.
        strict: raise :class:`~maskrcnn.data.dataset.DataError` at the first error instead of skipping.
        transforms: augmentation, ``(image, target) -> (image, target)``.
        split: which entry of the YAML to read (``"train"``, ``"val"``, ``"test"``).
        skeleton: a pose dataset's skeleton for pictures: ``a-b`` texts of keypoint names or 0-based
            indices (``-o skeleton=0-1,1-2``), or index pairs ``[[0, 1], [1, 2]]``.
        keypoint_sigmas: the OKS sigma of each keypoint, for the keypoint AP (``-o
            keypoint_sigmas=0.025,0.05,...``; default: COCO's for COCO's person keypoints, else 0.05 each).

    Items are ``(image float [3, H, W], target)`` with one mask per label line.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = False,
        transforms: Transform | None = None,
        split: str = "train",
        skeleton: Sequence[str] | Sequence[Sequence[int]] | None = None,
        keypoint_sigmas: Sequence[float] | None = None,
    ) -> None:
        yaml_path = Path(path)
        data = self._read_yaml(yaml_path)
        class_names = _class_names(data, yaml_path)
        pose = _pose(data, yaml_path, skeleton)
        root = Path(str(data["path"])) if data.get("path") else Path()
        root = root if root.is_absolute() else yaml_path.parent / root
        if data.get(split) is None:
            splits = [k for k in ("train", "val", "test") if data.get(k) is not None]
            raise DataError(f"{yaml_path}: no {split!r} entry (splits given: {', '.join(splits) or 'none'})")

        log = ProblemLog(str(yaml_path), strict=strict)
        if not root.is_dir():
            if not _beside(yaml_path, split, str(data[split])):
                raise DataError(f"{yaml_path}: the root {root} (its 'path') is not a folder")
            # The YAML was written on another machine (a Colab /content/..., a C:\ path): its folder is
            # where the dataset is now.
            log.report(
                "warning", f"the root {data['path']!r} (its 'path') is not a folder; read {yaml_path.parent}/"
            )
            root = yaml_path.parent
        problems = log.problems  # label files get their own logs; everything lands here in order
        images = self._list_images(data[split], root, yaml_path, split, log)
        records: list[ImageRecord] = []
        unlabelled: list[str] = []
        for image_id, image in enumerate(images):
            try:
                ref = image.relative_to(root).as_posix()
            except ValueError:
                ref = image.name
            record = ImageRecord(image_id=image_id, path=image, height=None, width=None, ref=ref)
            if not log.check_image(record):
                continue
            labels = label_path(image)
            if labels.is_file():
                file_log = ProblemLog(str(labels), strict=strict)
                try:
                    self._read_labels(labels, record, len(class_names), file_log, pose)
                finally:
                    problems.extend(file_log.problems)
            else:
                unlabelled.append(ref)
            records.append(record)
        # YOLO's convention for a background image, but as often labels lost on the way (a labels/
        # folder renamed or not copied): said, in one line.
        log.report_many("warning", "images have no label file (read as images without objects)", unlabelled)
        # A label file whose image is gone trains nothing: usually images deleted or renamed by hand.
        wanted = {label_path(image) for image in images}
        folders = {label_path(image).parent for image in images if label_path(image).parent != image.parent}
        orphans = sorted(p for f in folders if f.is_dir() for p in f.glob("*.txt") if p not in wanted)
        log.report_many("warning", "label files have no image (not read)", [str(p) for p in orphans])
        log.report_empty_classes(records, class_names)
        super().__init__(
            records,
            class_names,
            problems=problems,
            source=str(yaml_path),
            category_ids=None,
            keypoint_spec=with_sigmas(pose[0] if pose is not None else None, keypoint_sigmas, str(yaml_path)),
            transforms=transforms,
        )

    @staticmethod
    def _read_yaml(yaml_path: Path) -> dict[str, Any]:
        try:
            text = yaml_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"{yaml_path}: data YAML not found") from None
        except (IsADirectoryError, UnicodeDecodeError, OSError) as e:
            raise DataError(f"{yaml_path}: cannot read the data YAML ({e})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise DataError(f"{yaml_path}: not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise DataError(f"{yaml_path}: expected a mapping with 'train'/'val' and 'names'")
        return data

    @staticmethod
    def _list_images(entry: Any, root: Path, yaml_path: Path, split: str, log: ProblemLog) -> list[Path]:
        """The image paths of a split entry, in order, each once."""
        entries: Sequence[Any] = entry if isinstance(entry, list) else [entry]
        images: list[Path] = []
        for item in entries:
            if not isinstance(item, str):
                raise DataError(f"{yaml_path}: {split!r} entries must be paths, got {item!r}")
            where = Path(item) if Path(item).is_absolute() else root / item
            if not where.exists() and item.startswith("../") and (root / item[3:]).exists():
                # Roboflow's exports say "../train/images" next to train/ (Ultralytics accepts it too).
                where = root / item[3:]
            elif not where.exists() and (found := _beside(yaml_path, split, item)) is not None:
                log.report(
                    "warning", f"{split!r} entry {item!r} does not exist; read {found}/ (beside the YAML)"
                )
                where = found
            if where.is_dir():
                images += sorted(p for p in where.rglob("*") if p.is_file() and is_image_file(p))
            elif where.is_file() and where.suffix.lower() == ".txt":
                images += YoloDataset._read_list(where, log)
            else:
                raise DataError(
                    f"{yaml_path}: {split!r} entry {item!r} ({where}) is not a folder or a .txt list"
                )
        unique = list(dict.fromkeys(images))
        if not unique:
            raise DataError(f"{yaml_path}: split {split!r} has no images ({entry!r})")
        return unique

    @staticmethod
    def _read_list(list_file: Path, log: ProblemLog) -> list[Path]:
        """The image paths of a list file, relative ones taken from the list file's folder."""
        list_log = ProblemLog(str(list_file), strict=log.strict)
        images: list[Path] = []
        try:
            for n, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
                name = line.strip()
                if not name or name.startswith("#"):
                    continue
                if not is_image_file(name):
                    list_log.report("error", f"{name!r} is not an image file name", annotation=f"line {n}")
                    continue
                image = Path(name)
                images.append(image if image.is_absolute() else list_file.parent / image)
        finally:
            log.problems.extend(list_log.problems)
        return images

    @staticmethod
    def _read_labels(
        labels: Path,
        record: ImageRecord,
        num_classes: int,
        log: ProblemLog,
        pose: tuple[KeypointSpec, int] | None = None,
    ) -> None:
        """Parse one label file into ``record.annotations``, reporting bad lines to ``log``; ``pose``: the
        keypoints and numbers per keypoint of a pose dataset's lines."""
        height, width = record.height or 0, record.width or 0
        try:
            text = labels.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            log.report("error", f"cannot read the label file ({e})", image=record.ref)
            return
        for n, line in enumerate(text.splitlines(), start=1):
            tokens = line.split()
            if not tokens:
                continue
            ref = f"line {n}"
            parsed = (
                _parse_line(tokens, num_classes)
                if pose is None
                else _parse_pose_line(tokens, num_classes, *pose)
            )
            if isinstance(parsed, str):
                log.report("error", parsed, image=record.ref, annotation=ref)
                continue
            cls, coords = parsed
            if pose is None:
                polygon = [v * (width if k % 2 == 0 else height) for k, v in enumerate(coords)]
                log.add_annotation(record, Annotation(cls + 1, [polygon], ref=ref))
                continue
            spec, dims = pose
            cx, cy, w, h = coords[0] * width, coords[1] * height, coords[2] * width, coords[3] * height
            flat: list[float] = []
            for x, y, *v in (coords[4 + i : 4 + i + dims] for i in range(0, spec.num_keypoints * dims, dims)):
                # [K, 2]: not labelled at (0, 0) or below zero (see the class docstring), else visible.
                visibility = v[0] if v else (0.0 if x < 0 or y < 0 or (x == 0 and y == 0) else 2.0)
                flat += [x * width, y * height, visibility]
            keypoints = checked_keypoints(flat, spec, height, width, log, image=record.ref, annotation=ref)
            if keypoints is not None:
                outline = box_polygon(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                log.add_annotation(record, Annotation(cls + 1, outline, ref=ref, keypoints=keypoints))


def _beside(yaml_path: Path, split: str, item: str) -> Path | None:
    """The split's image folder in a standard layout beside the YAML, for an entry that does not exist.

    Exports carry the paths of the machine that wrote them (``C:\\Users\\me\\data\\images\\train``,
    ``../train/images``): tried are ``images/<name>`` (Ultralytics) and ``<name>/images`` (Roboflow) for
    the split's name, the entry's last folder name that is not ``images``, and ``valid`` for ``val``
    (Roboflow's name).
    """
    parts = [p for p in item.replace("\\", "/").split("/") if p and p not in (".", "..", "images")]
    names = [split, *parts[-1:], *(["valid"] if split == "val" else [])]
    here = yaml_path.parent
    for name in dict.fromkeys(names):
        for folder in (here / "images" / name, here / name / "images"):
            if folder.is_dir():
                return folder
    return None


def _numbers(tokens: list[str], num_classes: int) -> tuple[int, list[float]] | str:
    """``(class index, the values after it)`` of a label line's tokens, or what is wrong with them."""
    values: list[float] = []
    for token in tokens:
        try:
            values.append(float(token))
        except ValueError:
            return f"non-numeric value {token!r}"
        if not math.isfinite(values[-1]):
            return f"non-finite value {token!r}"
    cls = values[0]
    if cls != int(cls) or not 0 <= cls < num_classes:
        return f"unknown class index {tokens[0]} (names has {num_classes}: 0..{num_classes - 1})"
    return int(cls), values[1:]


def _parse_line(tokens: list[str], num_classes: int) -> tuple[int, list[float]] | str:
    """``(class index, normalised coordinates)`` of a label line's tokens, or what is wrong with them."""
    parsed = _numbers(tokens, num_classes)
    if isinstance(parsed, str):
        return parsed
    cls, coords = parsed
    if len(coords) == 4:
        return "4 coordinates: a box (detection format), no mask; segmentation labels need a polygon"
    if len(coords) % 2:
        return f"odd number of coordinates ({len(coords)}); a polygon needs x y pairs"
    if len(coords) < 6:
        return f"{len(coords) // 2} point(s); a polygon needs at least 3"
    return cls, coords


def _parse_pose_line(
    tokens: list[str], num_classes: int, spec: KeypointSpec, dims: int
) -> tuple[int, list[float]] | str:
    """``(class index, [cx, cy, w, h, then D numbers per keypoint])`` of a pose label line's tokens (all
    normalised), or what is wrong with them."""
    parsed = _numbers(tokens, num_classes)
    if isinstance(parsed, str):
        return parsed
    cls, values = parsed
    k = spec.num_keypoints
    if len(values) != 4 + k * dims:
        each = "x y v" if dims == 3 else "x y"
        return (
            f"{len(tokens)} values; kpt_shape [{k}, {dims}] needs {5 + k * dims}: the class, the box "
            f"(cx cy w h) and {k} x ({each})"
        )
    if values[2] <= 0 or values[3] <= 0:
        return f"box width {tokens[3]} / height {tokens[4]}: both must be positive"
    return cls, values
