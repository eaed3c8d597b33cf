"""COCO instance annotations (``instances_*.json``) and person keypoints (``person_keypoints_*.json``):
``--format coco``.

Reads the JSON's ``images`` (``id``, ``file_name``, ``height``, ``width``), ``annotations`` (``id``,
``image_id``, ``category_id``, ``segmentation``, ``iscrowd``, and for keypoints ``keypoints``,
``num_keypoints``) and ``categories`` (``id``, ``name``, and for keypoints ``keypoints``, the names, and
``skeleton``, 1-based pairs). A segmentation is a list of polygons (flat ``[x1, y1, x2, y2, ...]`` parts in
pixels), a compressed RLE (``counts`` a string) or an uncompressed one (``counts`` a list of run lengths,
as crowd regions are usually stored); ``bbox`` and ``area`` are not used, since boxes and areas are derived
from the masks (except for the box-only instances of a keypoint file, see :class:`CocoDataset`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maskrcnn.data.dataset import (
    AnnotatedDataset,
    Annotation,
    DataError,
    ImageRecord,
    ProblemLog,
    Segmentation,
    Transform,
    polygon_area,
)
from maskrcnn.data.formats.keypoint_values import box_polygon, checked_keypoints, keypoint_spec, with_sigmas
from maskrcnn.data.formats.locate import locate_images
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.ops import rle_area

__all__ = ["CocoDataset", "is_id", "read_json"]


def read_json(path: Path, expected: str) -> Any:
    """Parse a JSON file, raising :class:`DataError` naming the file, where it breaks and what ``expected``
    was (``"a COCO instances file"``)."""
    try:
        # utf-8-sig: tools on Windows write a byte-order mark that plain utf-8 would reject.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; expected {expected}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; expected {expected}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); expected {expected}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}); expected {expected}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); expected {expected}"
        ) from None


def is_int(value: Any) -> bool:
    """An integer JSON value (``true`` is a bool, not an id)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_id(value: Any) -> bool:
    """A COCO image or annotation id: an integer, or a non-empty string (some exporters write
    ``"id": "img6"``; they match by equality like integer ids)."""
    return is_int(value) or (isinstance(value, str) and bool(value))


def is_number(value: Any) -> bool:
    """A numeric JSON value (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class CocoDataset(AnnotatedDataset):
    """A COCO instances JSON and its images.

    Category ids (any integers, e.g. 1, 7, 90) become labels 1..K in increasing id order;
    ``category_ids[label - 1]`` gives the id back for writing results, ``class_names`` are the categories'
    names. ``iscrowd: 1`` annotations are kept as crowd instances (the target's ``iscrowd``). Images without
    annotations are kept as negatives. ``ImageRecord.image_id`` is the COCO id and ``extra["file_name"]``
    the file name as written. Image and annotation ids may also be strings (``"id": "img6"``, as some
    exporters write): the targets' ``image_id`` must be an integer, so when any image id is a string every
    image's ``image_id`` is its 1-based position in ``images`` instead, and ``extra["coco_id"]`` keeps the
    file's own id.

    Errors (the instance, or the image, is left out and the problem kept in ``problems``; ``strict=True``
    raises :class:`DataError` instead): a duplicate image id (the later image), a duplicate annotation id
    (the later annotation), an annotation of an unknown image id or category id, an annotation without a
    segmentation (bbox only; but see keypoints below), a degenerate polygon or RLE (see
    :func:`~maskrcnn.data.dataset.check_annotation`), a missing or unreadable image, an image whose size
    differs from the JSON's. A malformed file (not JSON, no ``images`` list, bad ``categories``) raises
    :class:`DataError` whatever ``strict``.

    Keypoints (COCO's person keypoints, or any others): when a category names its ``keypoints``, the
    dataset has a :attr:`keypoint_spec` with those names and the category's ``skeleton`` (COCO's pairs are
    1-based; the spec's 0-based), mirror pairs from the names (``left_*`` <-> ``right_*``; a
    ``flip_index``, 0-based, on the category is read too: it is what :mod:`~maskrcnn.data.formats.export`
    writes when the names do not tell the pairs). Every category that names keypoints must name the same
    ones, in the same order (a :class:`DataError` naming them otherwise; the skeleton is the first's);
    the others' annotations have no keypoints. An annotation's ``keypoints`` are checked by
    :func:`~maskrcnn.data.formats.keypoint_values.checked_keypoints`: a wrong length, a value that is not
    a finite number or a visibility other than 0, 1, 2 is an error for the annotation; a labelled point
    outside the image becomes unlabelled, with a warning. An annotation without ``keypoints`` has none
    labelled (zeros; so do COCO's crowd regions, ``num_keypoints`` 0). A ``num_keypoints`` other than the
    count of labelled points (``v > 0``) is a warning. Keypoint files hold people with a box and no outline:
    in a file with keypoints, an annotation without ``segmentation`` takes its ``bbox`` as its outline
    (its mask is then that rectangle; one warning counts them). Annotations' keypoints in a file where no
    category names its keypoints cannot be read (no names, no count): a warning, and they are left out.

    Args:
        path: the JSON file.
        strict: raise at the first error instead of skipping what it concerns.
        transforms: ``(image, target) -> (image, target)`` augmentation.
        image_dir: folder the ``file_name`` s are relative to (they may contain sub-folders); by default the
            JSON's folder, or where :func:`~maskrcnn.data.formats.locate.locate_images` finds them
            (``images/`` beside it, ``../images/``, COCO's ``../train2017/``...: a warning says which).
            When no image is found anywhere (and ``check_images``), :class:`DataError` names the folders.
        check_images: open every image's header at load, to find missing files and check sizes; ``False``
            skips this for very large datasets (sizes then come from the JSON, problems show when an image
            is loaded).
        keypoint_sigmas: the OKS sigma of each keypoint, for the keypoint AP (``-o
            keypoint_sigmas=0.025,0.05,...``; default: COCO's for COCO's person keypoints, else 0.05 each).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = False,
        transforms: Transform | None = None,
        image_dir: str | os.PathLike[str] | None = None,
        check_images: bool = True,
        keypoint_sigmas: Sequence[float] | None = None,
    ) -> None:
        path = Path(path)
        expected = "a COCO instances JSON object with 'images', 'annotations' and 'categories'"
        data = read_json(path, expected)
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            if isinstance(data, list):
                got = "a list (a results file?)"
            elif isinstance(data, dict):
                got = f"keys {sorted(data)[:8]}"
            else:
                got = type(data).__name__
            raise DataError(f"{path}: not a COCO instances file, got {got}; expected {expected}")
        annotations = data.get("annotations", [])
        if not isinstance(annotations, list):
            raise DataError(f"{path}: 'annotations' is {type(annotations).__name__}; expected a list")
        category_ids, class_names = _read_categories(path, data.get("categories"))
        label_of = {cid: k + 1 for k, cid in enumerate(category_ids)}
        spec, keypoint_categories = _read_keypoint_spec(path, data["categories"])

        log = ProblemLog(str(path), strict=strict)
        names = [
            e["file_name"]
            for e in data["images"]
            if isinstance(e, dict) and isinstance(e.get("file_name"), str)
        ]
        root = locate_images(
            path,
            names,
            log,
            image_dir=Path(image_dir) if image_dir is not None else None,
            required=check_images,
        )
        # Keyed by the file's own id (an int or a string): what annotations' image_id refer to.
        records: dict[int | str, ImageRecord] = {}
        skipped: set[int | str] = set()  # ids of images listed but unusable: their annotations go silently
        numbered = any(isinstance(e, dict) and isinstance(e.get("id"), str) for e in data["images"])
        for index, entry in enumerate(data["images"]):
            record = self._read_image(entry, index, root, log, records, skipped, numbered=numbered)
            if record is None:
                image_id = entry.get("id") if isinstance(entry, dict) else None
                if is_id(image_id) and image_id not in records:
                    skipped.add(image_id)  # reported as malformed; its annotations need no second message
                continue
            key = entry["id"]
            if check_images and not log.check_image(record):
                skipped.add(key)
                continue
            records[key] = record

        seen: set[int | str] = set()
        box_only: list[str] = []  # keypoint instances outlined by their bbox
        unnamed: list[str] = []  # keypoints in a file whose categories name none
        for index, entry in enumerate(annotations):
            if not isinstance(entry, dict):
                log.report(
                    "error",
                    f"annotation entry is {type(entry).__name__}, not an object",
                    annotation=f"annotations[{index}]",
                )
                continue
            ann_id = entry.get("id")
            ref = f"annotation {ann_id}" if is_id(ann_id) else f"annotations[{index}]"
            image_id = entry.get("image_id")
            record = records.get(image_id) if is_id(image_id) else None
            image_ref = record.ref if record is not None else ""
            if not is_id(ann_id):
                log.report(
                    "error",
                    f"annotation id {ann_id!r} is not an integer or a string",
                    image=image_ref,
                    annotation=ref,
                )
                continue
            if ann_id in seen:
                log.report("error", f"duplicate annotation id {ann_id}", image=image_ref, annotation=ref)
                continue
            seen.add(ann_id)
            if record is None:
                if not (is_id(image_id) and image_id in skipped):
                    log.report("error", f"image_id {image_id!r} is not in 'images'", annotation=ref)
                continue
            category_id = entry.get("category_id")
            if not is_int(category_id) or category_id not in label_of:
                log.report(
                    "error",
                    f"unknown category_id {category_id!r} ({_known(category_ids)})",
                    image=image_ref,
                    annotation=ref,
                )
                continue
            outline = entry.get("segmentation")
            from_box = spec is not None and outline in (None, [], {})
            if from_box:
                segmentation = _box_outline(entry.get("bbox"), log, image_ref, ref)
            else:
                segmentation = _segmentation(outline, log, image_ref, ref)
            if segmentation is None:
                continue
            keypoints = None
            if entry.get("keypoints") is not None:
                if spec is None:
                    unnamed.append(ref)
                elif category_id not in keypoint_categories:
                    log.report(
                        "warning",
                        f"category {category_id} names no keypoints; the annotation's keypoints are left out",
                        image=image_ref,
                        annotation=ref,
                    )
                else:
                    keypoints = _keypoints(entry, spec, record, log, ref)
                    if keypoints is None:
                        continue
            annotation = Annotation(
                label=label_of[category_id],
                segmentation=segmentation,
                iscrowd=bool(entry.get("iscrowd", 0)),
                ref=ref,
                keypoints=keypoints,
            )
            if not log.add_annotation(record, annotation):
                continue
            if from_box:
                box_only.append(ref)
                continue  # its box is its outline: nothing to disagree with
            for message in _stored_disagreements(entry, segmentation):
                log.report("warning", message, image=image_ref, annotation=ref)

        log.report_many(
            "warning", "annotations have no segmentation: their boxes are their outlines (masks)", box_only
        )
        log.report_many(
            "warning",
            "annotations have keypoints but no category names its keypoints (categories[].keypoints); "
            "keypoints left out",
            unnamed,
        )
        log.report_empty_classes(list(records.values()), class_names, category_ids)
        super().__init__(
            list(records.values()),
            class_names,
            problems=log.problems,
            source=str(path),
            category_ids=category_ids,
            keypoint_spec=with_sigmas(spec, keypoint_sigmas, str(path)),
            transforms=transforms,
        )

    @staticmethod
    def _read_image(
        entry: Any,
        index: int,
        root: Path,
        log: ProblemLog,
        records: dict[int | str, ImageRecord],
        skipped: set[int | str],
        *,
        numbered: bool,
    ) -> ImageRecord | None:
        """One ``images`` entry as a record, or ``None`` (reported) when it is malformed or a duplicate.

        ``numbered``: the file has string ids, so the record's ``image_id`` is ``index + 1``.
        """
        if not isinstance(entry, dict):
            log.report(
                "error", f"image entry is {type(entry).__name__}, not an object", image=f"images[{index}]"
            )
            return None
        file_name = entry.get("file_name")
        image_id = entry.get("id")
        ref = file_name if isinstance(file_name, str) and file_name else f"images[{index}]"
        if not isinstance(file_name, str) or not file_name:
            log.report("error", f"file_name {file_name!r} is not a file name", image=ref)
            return None
        if not is_id(image_id):
            log.report("error", f"image id {image_id!r} is not an integer or a string", image=ref)
            return None
        if image_id in records or image_id in skipped:
            first = records[image_id].ref if image_id in records else "an unusable image"
            log.report("error", f"duplicate image id {image_id!r} (first used by {first})", image=ref)
            return None
        height, width = entry.get("height"), entry.get("width")
        if (
            height is not None
            and width is not None
            and not (is_int(height) and is_int(width) and height > 0 and width > 0)
        ):
            log.report("error", f"height {height!r} / width {width!r} are not positive integers", image=ref)
            return None
        return ImageRecord(
            image_id=index + 1 if numbered else image_id,
            path=root / file_name,
            height=height if is_int(height) and is_int(width) else None,
            width=width if is_int(height) and is_int(width) else None,
            ref=file_name,
            extra={"file_name": file_name, "coco_id": image_id} if numbered else {"file_name": file_name},
        )


# Stored values this far from the segmentation's are another object's, or a conversion gone wrong; the
# slack (in pixels) keeps tiny objects, where rasterisation alone moves a box by a pixel, quiet.
_AREA_RATIO = 2.0
_BOX_IOU = 0.5
_SLACK = 16.0


def _stored_disagreements(entry: dict[str, Any], segmentation: Segmentation) -> list[str]:
    """What is wrong with an annotation's stored ``area`` and ``bbox`` (not used, as the masks give both,
    but a sign of a broken export): an area off by more than 2x, a box overlapping the segmentation's by
    IoU < 0.5. Polygon areas are the shoelace ones; an RLE has its area checked, not its box."""
    if isinstance(segmentation, dict):
        area, box = float(rle_area(segmentation)), None
    elif isinstance(segmentation, list):
        area = sum(polygon_area(part) for part in segmentation)
        xs = [v for part in segmentation for v in part[0::2]]
        ys = [v for part in segmentation for v in part[1::2]]
        box = (min(xs), min(ys), max(xs), max(ys))
    else:
        return []
    problems = []
    stored = entry.get("area")
    if (
        is_number(stored)
        and abs(stored - area) > _SLACK
        and max(stored, area) > _AREA_RATIO * max(min(stored, area), 1e-9)
    ):
        problems.append(f"stored area {stored:g} is more than 2x off the segmentation's {area:.0f}")
    bbox = entry.get("bbox")
    if box is not None and isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox):
        x, y, w, h = bbox
        iw = max(0.0, min(x + w, box[2]) - max(x, box[0]))
        ih = max(0.0, min(y + h, box[3]) - max(y, box[1]))
        union = w * h + (box[2] - box[0]) * (box[3] - box[1]) - iw * ih
        if union > _SLACK and iw * ih < _BOX_IOU * union:
            mine = [round(box[0], 1), round(box[1], 1), round(box[2] - box[0], 1), round(box[3] - box[1], 1)]
            problems.append(
                f"stored bbox {bbox} overlaps the segmentation's box {mine} with IoU {iw * ih / union:.2f}"
                f" < {_BOX_IOU}"
            )
    return problems


def _known(ids: list[int]) -> str:
    """The category ids for a message: all of a short list, the range of a long one."""
    if len(ids) <= 10:
        return f"categories: {ids}"
    return f"not among the {len(ids)} categories, ids {ids[0]}..{ids[-1]}"


def _read_categories(path: Path, categories: Any) -> tuple[list[int], list[str]]:
    """Category ids sorted increasingly, and their names; a malformed list raises :class:`DataError`."""
    if not isinstance(categories, list):
        raise DataError(
            f"{path}: 'categories' is {type(categories).__name__}; expected a list of {{id, name}}"
        )
    names: dict[int, str] = {}
    for index, category in enumerate(categories):
        cid = category.get("id") if isinstance(category, dict) else None
        name = category.get("name") if isinstance(category, dict) else None
        if not is_int(cid) or not isinstance(name, str):
            raise DataError(
                f"{path}: categories[{index}] is {category!r:.80}; expected {{'id': int, 'name': str}}"
            )
        if cid in names:
            raise DataError(
                f"{path}: categories[{index}]: duplicate category id {cid} ({names[cid]!r}, {name!r})"
            )
        names[cid] = name
    ids = sorted(names)
    return ids, [names[cid] for cid in ids]


def _read_keypoint_spec(path: Path, categories: list[dict[str, Any]]) -> tuple[KeypointSpec | None, set[int]]:
    """The keypoints the categories name (``None``: none does) and the ids of the categories naming them.

    Raises:
        DataError: malformed ``keypoints`` / ``skeleton`` / ``flip_index``, or categories naming different
            keypoints.
    """
    spec: KeypointSpec | None = None
    first = ""
    ids: set[int] = set()
    for index, category in enumerate(categories):
        names = category.get("keypoints")
        if names is None or names == []:
            continue
        where = f"{path}: categories[{index}] ({category['name']!r})"
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise DataError(f"{where}: keypoints {names!r:.80} is not a list of keypoint names")
        skeleton = category.get("skeleton") or []
        if not isinstance(skeleton, list) or not all(
            isinstance(e, list) and len(e) == 2 and all(is_int(v) and 1 <= v <= len(names) for v in e)
            for e in skeleton
        ):
            raise DataError(
                f"{where}: skeleton {skeleton!r:.80} is not a list of 1-based [a, b] pairs of its "
                f"{len(names)} keypoints (1..{len(names)})"
            )
        flip = category.get("flip_index")
        if flip is not None and not (isinstance(flip, list) and all(is_int(v) for v in flip)):
            raise DataError(f"{where}: flip_index {flip!r:.80} is not a list of 0-based keypoint indices")
        found = keypoint_spec(names, [(a - 1, b - 1) for a, b in skeleton], flip, where=where)
        if spec is None:
            spec, first = found, f"categories[{index}] ({category['name']!r})"
        elif found.names != spec.names:
            raise DataError(
                f"{where}: keypoints {list(found.names)} differ from those of {first} {list(spec.names)}; a "
                "dataset has one set of keypoints"
            )
        ids.add(category["id"])
    return spec, ids


def _keypoints(
    entry: dict[str, Any], spec: KeypointSpec, record: ImageRecord, log: ProblemLog, ref: str
) -> list[float] | None:
    """The annotation's checked keypoints (``None``: an error, reported); a warning when its
    ``num_keypoints`` is not the count of labelled points."""
    values = entry["keypoints"]
    if not isinstance(values, list):
        log.report(
            "error",
            f"keypoints {values!r:.60} is not a list [x1, y1, v1, ...]",
            image=record.ref,
            annotation=ref,
        )
        return None
    keypoints = checked_keypoints(
        values, spec, record.height, record.width, log, image=record.ref, annotation=ref
    )
    stated = entry.get("num_keypoints")
    if keypoints is not None and is_int(stated):
        labelled = sum(1 for v in values[2::3] if v > 0)  # the file's own count, before any clean-up
        if stated != labelled:
            log.report(
                "warning",
                f"num_keypoints {stated} but {labelled} keypoints are labelled (v > 0)",
                image=record.ref,
                annotation=ref,
            )
    return keypoints


def _box_outline(bbox: Any, log: ProblemLog, image: str, ref: str) -> Segmentation | None:
    """A box-only annotation's ``bbox`` ``[x, y, w, h]`` as its rectangle polygon, or ``None`` (an error
    reported)."""
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(is_number(v) and math.isfinite(v) for v in bbox)
        and bbox[2] > 0
        and bbox[3] > 0
    ):
        log.report(
            "error",
            f"no segmentation, and its bbox {bbox!r:.60} is not [x, y, w, h] with w, h > 0",
            image=image,
            annotation=ref,
        )
        return None
    x, y, w, h = (float(v) for v in bbox)
    return box_polygon(x, y, x + w, y + h)


def _segmentation(value: Any, log: ProblemLog, image: str, ref: str) -> Segmentation | None:
    """The annotation's polygons or RLE dict, or ``None`` (reported) when there is none.

    Shape checks (point counts, areas, RLE sizes) are :meth:`ProblemLog.add_annotation`'s.
    """
    if value is None or value == [] or value == {}:
        log.report(
            "error",
            "no segmentation (bbox only); instance segmentation needs polygons or RLE",
            image=image,
            annotation=ref,
        )
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        if all(is_number(v) for v in value):
            # A single polygon written without its enclosing list: unambiguous, so read it as one part.
            log.report(
                "warning",
                "segmentation is a flat list of numbers; read as one polygon",
                image=image,
                annotation=ref,
            )
            return [value]
        return value
    log.report(
        "error",
        f"segmentation is {type(value).__name__}; expected polygons or RLE",
        image=image,
        annotation=ref,
    )
    return None
