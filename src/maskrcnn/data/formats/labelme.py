"""LabelMe JSON files (one per image): ``--format labelme``.

Each file is ``{"version", "flags", "shapes": [...], "imagePath", "imageData", "imageHeight",
"imageWidth"}``; a shape is ``{"label", "points": [[x, y], ...], "group_id", "shape_type", "flags"}``
(plus ``"mask"``, a base64 PNG, for LabelMe 5's mask shapes), with coordinates in image pixels. ``point``
shapes are keypoints of the instance whose shape has their ``group_id``, named by their ``label``.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from maskrcnn.data.dataset import (
    AnnotatedDataset,
    Annotation,
    DataError,
    ImageRecord,
    Problem,
    ProblemLog,
    Segmentation,
    Transform,
    check_annotation,
)
from maskrcnn.data.formats.coco import is_int, is_number, read_json
from maskrcnn.data.formats.keypoint_values import (
    box_polygon,
    checked_keypoints,
    keypoint_spec,
    skeleton_pairs,
    with_sigmas,
)
from maskrcnn.data.formats.via import ellipse_polygon
from maskrcnn.data.image_io import ImageError, read_image_bytes
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.ops import polygons_to_mask, rle_decode, rle_encode

__all__ = ["LabelMeDataset"]

_EXPECTED = "a LabelMe JSON object with 'shapes' and 'imagePath'"
_NO_AREA = ("point", "points", "line", "linestrip")


class LabelMeDataset(AnnotatedDataset):
    """A folder of LabelMe JSON files (searched recursively) and the images they name.

    Each ``*.json`` with a ``shapes`` list is one image: ``imagePath`` relative to the JSON (Windows
    back-slashes accepted), ``imageHeight`` / ``imageWidth`` its declared size. When the image file is
    missing, the embedded base64 ``imageData`` is used instead (and only then). Other JSON files in the
    folder are skipped with a warning. ``ImageRecord.image_id`` is the file's position in sorted path order
    (0-based), ``extra["json"]`` its path.

    Shapes: ``polygon``, ``rectangle`` (two corner points), ``circle`` (the centre and a point on the circle,
    made a polygon by :func:`~maskrcnn.data.formats.via.ellipse_polygon`), ``oriented_rectangle`` (four
    points) and ``mask`` (a base64 PNG of the box between its two corner points, LabelMe 5). ``point``,
    ``line`` and ``linestrip`` have no area: errors naming the shape. Shapes sharing a non-null
    ``group_id`` are one instance, the union of their parts; their labels must agree (an error for the
    whole group otherwise), and a bad part is reported and left out of the union.

    Classes: shapes labelled one of ``ignore_labels`` are dropped without a message (LabelMe's conventional
    "ignore" and "background" labels); the classes are ``class_names`` when given (other labels are
    errors), else every label found, sorted.

    Keypoints: a ``point`` shape with a ``group_id`` is a keypoint of the instance its group's other
    shapes make (a rectangle or polygon around a person and a point per joint, all with one
    ``group_id``); its ``label`` is the keypoint's name (not a class), and it is visible (``v = 2``:
    LabelMe has no "hidden"). The dataset has keypoints (a :attr:`keypoint_spec`) when ``keypoints`` is
    given or any point has a group: the names are ``keypoints`` in their order, else every grouped point's
    label, sorted; mirror pairs come from the names (``left_*`` <-> ``right_*``), the skeleton from
    ``skeleton``. A keypoint an instance has no point for is unlabelled (``v = 0``). Errors: a point
    without ``group_id`` (it has no instance), a group with points but no shape with an area, two points
    of one name in a group (the instance is left out: which one is right is not known). Warnings: a point
    named otherwise than ``keypoints`` (ignored), a point outside the image (left out, see
    :func:`~maskrcnn.data.formats.keypoint_values.checked_keypoints`).

    Args:
        path: the folder (or a single LabelMe JSON file).
        strict: raise :class:`DataError` at the first error instead of skipping what it concerns.
        transforms: ``(image, target) -> (image, target)`` augmentation.
        ignore_labels: labels dropped silently.
        class_names: the classes and their order (labels 1..K).
        keypoints: the keypoint names and their order (``-o keypoints=nose,left_eye,right_eye``).
        skeleton: the pairs of keypoints joined in pictures: ``a-b`` texts of names or 0-based indices
            (``-o skeleton=nose-left_eye,nose-right_eye`` or ``0-1,0-2``), or index pairs ``[[0, 1]]``.
        keypoint_sigmas: the OKS sigma of each keypoint, for the keypoint AP (``-o
            keypoint_sigmas=0.025,0.05,...``; default: COCO's for COCO's person keypoints, else 0.05 each).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = False,
        transforms: Transform | None = None,
        ignore_labels: Sequence[str] = ("__ignore__", "_background_"),
        class_names: Sequence[str] | None = None,
        keypoints: Sequence[str] | None = None,
        skeleton: Sequence[str] | Sequence[Sequence[int]] | None = None,
        keypoint_sigmas: Sequence[float] | None = None,
    ) -> None:
        path = Path(path)
        if path.is_dir():
            files = sorted(path.rglob("*.json"), key=lambda p: p.relative_to(path).as_posix())
            if not files:
                raise DataError(f"{path}: no *.json files in this folder or below; expected LabelMe files")
        elif path.is_file():
            files = [path]
        else:
            raise DataError(f"{path}: no such folder; expected a folder of LabelMe JSON files")
        ignored = set(ignore_labels)
        fixed = list(class_names) if class_names is not None else None

        wanted = list(keypoints) if keypoints is not None else None
        logs: list[ProblemLog] = []  # one per file; gathered at the end (keypoints are checked last)
        found: set[str] = set()
        point_names: set[str] = set()
        pending: list[_Pending] = []  # labels and keypoints are set once every name is known
        records: list[ImageRecord] = []
        for index, file in enumerate(files):
            log = ProblemLog(str(file), strict=strict)  # each file is its problems' source
            logs.append(log)
            data = read_json(file, _EXPECTED)
            if not (isinstance(data, dict) and isinstance(data.get("shapes"), list)):
                if len(files) == 1 and file == path:
                    raise DataError(f"{file}: no 'shapes' list; expected {_EXPECTED}")
                log.report("warning", f"not a LabelMe file (no 'shapes' list); skipped: {_keys(data)}")
                continue
            shapes = [s if isinstance(s, dict) else {} for s in data["shapes"]]
            labels = [
                _keypoint_label(shape) if _is_point(shape) else _label_of(shape, fixed) for shape in shapes
            ]
            # Classes come from every shape of every file, so a missing image does not change them; so do
            # the keypoint names.
            for shape, (name, problem) in zip(shapes, labels, strict=True):
                if problem or name in ignored:
                    continue
                if not _is_point(shape):
                    found.add(name)
                elif shape.get("group_id") is not None:
                    point_names.add(name)
            record = _record(file, index, data, log)
            if record is not None and log.check_image(record):
                records.append(record)
                pending += _read_shapes(record, shapes, labels, ignored, wanted, log)

        names = fixed if fixed is not None else sorted(found)
        label_of = {name: k + 1 for k, name in enumerate(names)}
        spec = self._keypoint_spec(path, wanted, sorted(point_names), skeleton)
        for item in pending:
            item.annotation.label = label_of[item.name]
            if spec is not None:
                item.annotation.keypoints = _keypoint_list(item, spec)
                if item.annotation.keypoints is None:  # an error was reported (a NaN point): as COCO, drop it
                    item.record.annotations.remove(item.annotation)
        folder_log = ProblemLog(str(path), strict=strict)
        folder_log.report_empty_classes(records, names)
        problems: list[Problem] = [p for log in logs for p in log.problems]
        super().__init__(
            records,
            names,
            problems=problems + folder_log.problems,
            source=str(path),
            keypoint_spec=with_sigmas(spec, keypoint_sigmas, str(path)),
            transforms=transforms,
        )

    @staticmethod
    def _keypoint_spec(
        path: Path,
        wanted: list[str] | None,
        found: list[str],
        skeleton: Sequence[str] | Sequence[Sequence[int]] | None,
    ) -> KeypointSpec | None:
        """The keypoints: ``wanted`` (the option), else the grouped points' names; ``None`` without
        either."""
        names = wanted if wanted is not None else found
        if not names:
            if skeleton:
                raise DataError(
                    f"--format labelme: option skeleton={list(skeleton)!r}, but {path} has no keypoints (no "
                    "point shape with a group_id, and no option keypoints)"
                )
            return None
        where = "--format labelme: option skeleton"
        edges = skeleton_pairs(skeleton, names, where=where) if skeleton else []
        return keypoint_spec(names, edges, where=f"--format labelme: keypoints {names}")


@dataclass
class _Pending:
    """An instance read, waiting for its class label and keypoints until every file is read."""

    annotation: Annotation
    name: str  # its class
    points: dict[str, tuple[float, float]]  # keypoint name -> (x, y)
    record: ImageRecord
    log: ProblemLog


def _keypoint_list(item: _Pending, spec: KeypointSpec) -> list[float] | None:
    """The instance's points as COCO's flat list in the spec's order (visible, ``v = 2``; a name without a
    point unlabelled), checked against the image (see
    :func:`~maskrcnn.data.formats.keypoint_values.checked_keypoints`)."""
    flat: list[float] = []
    for name in spec.names:
        x, y = item.points.get(name, (0.0, 0.0))
        flat += [x, y, 2.0 if name in item.points else 0.0]
    record = item.record
    # None (an error reported) only for a non-finite point: JSON's NaN passes the number check of reading.
    return checked_keypoints(
        flat, spec, record.height, record.width, item.log, image=record.ref, annotation=item.annotation.ref
    )


def _keys(data: Any) -> str:
    return f"keys {sorted(data)[:8]}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"


def _is_point(shape: dict[str, Any]) -> bool:
    return shape.get("shape_type") == "point"


def _keypoint_label(shape: dict[str, Any]) -> tuple[str, str]:
    """A point's keypoint name ``(name, "")``, or ``("", problem)``."""
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        return "", f"label {label!r} is not a keypoint name"
    return label, ""


def _label_of(shape: dict[str, Any], fixed: list[str] | None) -> tuple[str, str]:
    """``(label, "")``, or ``("", problem)`` when the shape's label cannot be used."""
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        return "", f"label {label!r} is not a class name"
    if fixed is not None and label not in fixed:
        return label, f"label {label!r} is not one of class_names {fixed}"
    return label, ""


def _record(file: Path, index: int, data: dict[str, Any], log: ProblemLog) -> ImageRecord | None:
    """The file's image, with the embedded image data when (and only when) the file is missing."""
    image_path = data.get("imagePath")
    # LabelMe on Windows writes back-slashes; they are never part of a real file name there.
    relative = image_path.replace("\\", "/") if isinstance(image_path, str) and image_path else None
    ref = relative or file.name
    height, width = data.get("imageHeight"), data.get("imageWidth")
    if not (is_int(height) and is_int(width) and height > 0 and width > 0):
        height = width = None
    record = ImageRecord(
        image_id=index,
        path=file.parent / relative if relative else None,
        height=height,
        width=width,
        ref=ref,
        extra={"json": str(file)},
    )
    embedded = data.get("imageData")
    if (record.path is None or not record.path.is_file()) and isinstance(embedded, str) and embedded:
        try:
            record.image_data = base64.b64decode(embedded)
            # Decoded in full (the fallback is rare): checks the data and gives the size after EXIF.
            h, w = read_image_bytes(record.image_data, f"{ref} (embedded imageData)").shape[-2:]
        except (ValueError, ImageError) as e:  # binascii.Error, or text that is not ASCII
            log.report(
                "error", f"image file not found: {record.path}, and imageData is unusable ({e})", image=ref
            )
            return None
        if (record.height, record.width) not in ((None, None), (h, w)):
            log.report(
                "error",
                f"embedded imageData is {w}x{h} but imageWidth and imageHeight say "
                f"{record.width}x{record.height}",
                image=ref,
            )
            return None
        record.height, record.width = int(h), int(w)
    elif record.path is None:
        log.report("error", "no imagePath and no imageData", image=ref)
        return None
    return record


def _points(shape: dict[str, Any]) -> list[tuple[float, float]] | None:
    points = shape.get("points")
    if not isinstance(points, list) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(is_number(v) for v in p) for p in points
    ):
        return None
    return [(float(x), float(y)) for x, y in points]


def _geometry(shape: dict[str, Any], height: int, width: int) -> tuple[Segmentation | None, str]:
    """A shape as polygons (one part) or a full-image RLE, or ``(None, problem)``."""
    kind = shape.get("shape_type") or "polygon"  # LabelMe 3 wrote no shape_type: polygons
    points = _points(shape)
    if points is None:
        return None, f"points {shape.get('points')!r:.60} are not a list of [x, y] pairs"
    if kind in ("polygon", "oriented_rectangle"):
        return [[v for point in points for v in point]], ""
    if kind == "rectangle":
        if len(points) != 2:
            return None, f"rectangle has {len(points)} points; expected two corners"
        (x1, y1), (x2, y2) = points
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        return box_polygon(x1, y1, x2, y2), ""
    if kind == "circle":
        if len(points) != 2:
            return None, f"circle has {len(points)} points; expected the centre and a point on the circle"
        (cx, cy), (px, py) = points
        r = math.hypot(px - cx, py - cy)
        if r == 0:
            return None, "circle of radius 0 has no area"
        if not math.isfinite(r):  # finite points can still be 1e308 apart
            return None, f"circle through {points[1]} around {points[0]} has no finite radius"
        return [ellipse_polygon(cx, cy, r, r)], ""
    if kind == "mask":
        return _mask_shape(shape, points, height, width)
    if kind == "point":
        return None, "a point has no area; as a keypoint it needs the group_id of its instance's shape"
    if kind in _NO_AREA:
        return None, f"a {kind} has no area; instance segmentation needs a polygon, rectangle, circle or mask"
    return None, f"unknown shape_type {kind!r}"


def _mask_shape(
    shape: dict[str, Any], points: list[tuple[float, float]], height: int, width: int
) -> tuple[Segmentation | None, str]:
    """LabelMe 5's mask shape: a PNG for the pixel box ``x1..x2, y1..y2`` of its two (integer) corners,
    as a full-image RLE (clipped to the image, as LabelMe's own export does)."""
    if len(points) != 2:
        return None, f"mask has {len(points)} points; expected the two corners of its box"
    (x1, y1), (x2, y2) = ((int(x), int(y)) for x, y in points)  # as LabelMe places it: truncated
    encoded = shape.get("mask")
    if not isinstance(encoded, str):
        return None, "mask shape without 'mask' data"
    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as img:
            patch = np.asarray(img.convert("L")) != 0
    except (OSError, ValueError) as e:  # ValueError: binascii.Error, text not ASCII
        return None, f"'mask' is not a base64 image ({e})"
    if patch.shape != (y2 - y1 + 1, x2 - x1 + 1):
        return None, (
            f"mask image is {patch.shape[1]}x{patch.shape[0]} but its box ({x1}, {y1})-({x2}, {y2}) is "
            f"{x2 - x1 + 1}x{y2 - y1 + 1}"
        )
    full = np.zeros((height, width), dtype=bool)
    ys, xs = slice(max(y1, 0), min(y2 + 1, height)), slice(max(x1, 0), min(x2 + 1, width))
    if ys.start < ys.stop and xs.start < xs.stop:
        full[ys, xs] = patch[ys.start - y1 : ys.stop - y1, xs.start - x1 : xs.stop - x1]
    if not patch.any():
        return None, "zero-area instance (empty mask)"
    if not full.any():
        return None, f"mask lies outside the {width}x{height} image"
    return rle_encode(torch.from_numpy(full))[0], ""


def _read_shapes(
    record: ImageRecord,
    shapes: list[dict[str, Any]],
    labels: list[tuple[str, str]],
    ignored: set[str],
    keypoints: list[str] | None,
    log: ProblemLog,
) -> list[_Pending]:
    """Add the image's usable instances to ``record``; returns them with their class names and points
    (``keypoints``: the names asked for, ``None``: any)."""
    if record.height is None or record.width is None:
        raise RuntimeError(f"{record.ref}: image size unknown after check_image")  # check_image sets it
    height, width = record.height, record.width
    # Instances in order of their first shape; a group is the list of its shapes' indices.
    order: list[int | tuple[str, Any]] = []
    groups: dict[Any, list[int]] = {}
    for k, (shape, (name, _)) in enumerate(zip(shapes, labels, strict=True)):
        if name in ignored:
            continue  # before any check: ignored labels need not be among class_names
        group = shape.get("group_id")
        if group is None:
            order.append(k)
        else:
            key = ("group", group if isinstance(group, (int, str)) else repr(group))
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(k)

    def ref(k: int) -> str:
        return f"shape {k} ({shapes[k].get('label')!r})"

    out: list[_Pending] = []
    for item in order:
        if isinstance(item, int):
            name, problem = labels[item]
            segmentation, problem = (None, problem) if problem else _geometry(shapes[item], height, width)
            if segmentation is None:
                log.report("error", problem, image=record.ref, annotation=ref(item))
                continue
            annotation = Annotation(label=0, segmentation=segmentation, ref=ref(item))
            if log.add_annotation(record, annotation):
                out.append(_Pending(annotation, name, {}, record, log))
            continue
        members = groups[item]
        group_ref = f"group {item[1]} (shapes {', '.join(map(str, members))})"
        points = [k for k in members if _is_point(shapes[k])]
        members = [k for k in members if not _is_point(shapes[k])]
        names = {labels[k][0] for k in members if labels[k][0]}
        if len(names) > 1:
            found = ", ".join(f"{shapes[k].get('label')!r} (shape {k})" for k in members)
            log.report(
                "error",
                f"one instance with different labels: {found}",
                image=record.ref,
                annotation=group_ref,
            )
            continue
        if points and not members:
            log.report(
                "error",
                "keypoints without an instance: no polygon, rectangle, circle or mask has their group_id",
                image=record.ref,
                annotation=group_ref,
            )
            continue
        located = _group_points(shapes, labels, points, keypoints, record.ref, group_ref, log)
        if located is None:
            continue
        parts: list[Segmentation] = []
        for k in members:
            problem = labels[k][1]
            segmentation, problem = (None, problem) if problem else _geometry(shapes[k], height, width)
            checks = (
                [("error", problem)]
                if segmentation is None
                else check_annotation(segmentation, height, width)
            )
            for severity, message in checks:
                log.report(severity, message, image=record.ref, annotation=ref(k))
            if segmentation is not None and all(severity != "error" for severity, _ in checks):
                parts.append(segmentation)
        if not parts:
            continue  # every part was reported
        annotation = Annotation(label=0, segmentation=_union(parts, height, width), ref=group_ref)
        # The parts were checked one by one; their union is valid, so it goes in without a second report.
        record.annotations.append(annotation)
        out.append(_Pending(annotation, names.pop(), located, record, log))
    return out


def _group_points(
    shapes: list[dict[str, Any]],
    labels: list[tuple[str, str]],
    points: list[int],
    keypoints: list[str] | None,
    image: str,
    group_ref: str,
    log: ProblemLog,
) -> dict[str, tuple[float, float]] | None:
    """A group's point shapes as ``{keypoint name: (x, y)}``; ``None`` (an error reported) when two name
    the same keypoint. A malformed point is an error of its own (and left out), a point not among
    ``keypoints`` a warning (ignored)."""
    located: dict[str, tuple[float, float]] = {}
    first: dict[str, int] = {}
    for k in points:
        where = f"shape {k} ({shapes[k].get('label')!r})"
        name, problem = labels[k]
        xy = _points(shapes[k])
        if not problem and (xy is None or len(xy) != 1):
            problem = f"a point has points {shapes[k].get('points')!r:.60}; expected one [x, y]"
        if problem:
            log.report("error", problem, image=image, annotation=where)
            continue
        if keypoints is not None and name not in keypoints:
            log.report(
                "warning",
                f"point {name!r} is not one of keypoints {keypoints}; ignored",
                image=image,
                annotation=where,
            )
            continue
        if name in located:
            log.report(
                "error",
                f"two points named {name!r} (shapes {first[name]} and {k}) in one instance",
                image=image,
                annotation=group_ref,
            )
            return None
        located[name], first[name] = xy[0], k  # type: ignore[index]  # one point: checked above
    return located


def _union(parts: list[Segmentation], height: int, width: int) -> Segmentation:
    """One instance of several shapes: their polygon parts together, or an RLE if any part is a mask."""
    polygons = [polygon for p in parts if isinstance(p, list) for polygon in p]
    rles = [p for p in parts if isinstance(p, dict)]
    if not rles:
        return polygons
    mask = polygons_to_mask(polygons, height, width)
    for rle in rles:
        mask |= rle_decode(rle)
    return rle_encode(mask)[0]
