"""VGG Image Annotator (VIA) JSON: ``--format via`` (the classic balloon example's format).

Two layouts are read:

* the 1.x / 2.x annotation export: an object keyed by ``filename + size`` (VIA's image key), each value
  ``{"filename", "size", "regions", "file_attributes"}``;
* the 2.x project file: ``{"_via_settings", "_via_img_metadata": {the same}, "_via_attributes"}``.

``regions`` is an object keyed ``"0"``, ``"1"``... (VIA 1.x) or a list (VIA 2.x); each region is
``{"shape_attributes": {"name": ..., geometry}, "region_attributes": {...}}`` with coordinates in image
pixels. VIA 3 projects (``project`` / ``file`` / ``metadata``) and CSV exports are not read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maskrcnn.data.dataset import AnnotatedDataset, Annotation, DataError, ImageRecord, ProblemLog, Transform
from maskrcnn.data.formats.coco import is_number, read_json
from maskrcnn.data.formats.locate import locate_images

__all__ = ["ViaDataset", "ellipse_polygon"]

_EXPECTED = (
    "a VIA 1.x/2.x JSON export (an object of {filename, size, regions} entries) or a VIA 2.x project "
    "(with '_via_img_metadata')"
)


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, theta: float = 0.0) -> list[float]:
    """A polygon for an ellipse (a circle when ``rx == ry``), as one flat ``[x1, y1, ...]`` part.

    The ellipse's axes are ``rx`` along the direction ``theta`` (radians, from +x towards +y, i.e.
    clockwise on screen as image y points down) and ``ry`` across it. There are at least 64 vertices, more
    for large ellipses so that a chord never strays more than ~0.1 px from the curve; the vertices sit on
    a slightly larger ellipse so that the polygon's area is exactly ``pi * rx * ry`` (an inscribed polygon
    would always fall short).
    """
    # Sagitta of a chord spanning 2*pi/n on radius r: r * (1 - cos(pi / n)) ~ r * pi^2 / (2 n^2) <= 0.1.
    # (The radius is capped first: past ~1e6 px n is 4096 anyway, and 5 * 1e308 would overflow.)
    n = min(4096, max(64, math.ceil(math.pi * math.sqrt(5.0 * min(max(rx, ry), 1e6)))))
    step = 2.0 * math.pi / n
    scale = math.sqrt(step / math.sin(step))  # area of the inscribed n-gon is pi r^2 * sin(step) / step
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    points: list[float] = []
    for k in range(n):
        u, v = rx * scale * math.cos(k * step), ry * scale * math.sin(k * step)
        points += [cx + u * cos_t - v * sin_t, cy + u * sin_t + v * cos_t]
    return points


class ViaDataset(AnnotatedDataset):
    """A VIA JSON (see the module docstring) and its images.

    Shapes: ``polygon`` (``all_points_x``, ``all_points_y``), ``polyline`` (the same, closed into a
    polygon), ``rect`` (``x``, ``y``, ``width``, ``height``: the pixels ``x .. x + width - 1``), ``circle``
    (``cx``, ``cy``, ``r``) and ``ellipse`` (``cx``, ``cy``, ``rx``, ``ry``, optional ``theta`` in radians),
    the last two as polygons of :func:`ellipse_polygon`. A ``point`` has no area: an error.

    Classes: with ``class_attribute`` set, a region's class is its value of that region attribute, either
    text (VIA's text, dropdown or radio attributes) or checkbox options (``{"balloon": true}``, exactly one
    true); a region without it, or with an empty value, is an error. The classes are ``class_names`` when
    given (other values are errors), else every value found in the file, sorted (found in all regions, so
    that a missing image does not change the class list). Without ``class_attribute`` nor ``class_name``,
    a file with a sole region attribute uses it (with a warning saying so): the one attribute a 2.x project
    defines in ``_via_attributes["region"]``, or, in any file, the one key every region's
    ``region_attributes`` has. Otherwise every region is one class, ``class_name`` (``"object"``).

    Images listed without regions are negatives. ``ImageRecord.image_id`` is the entry's position in the
    file (0-based) and ``extra["via_key"]`` its VIA key. Problems (see
    :class:`~maskrcnn.data.dataset.ProblemLog`): a bad or unknown shape, a missing or unusable class value,
    a degenerate polygon, a file name listed twice (the later entry), a missing or unreadable image.

    Args:
        path: the JSON file.
        strict: raise :class:`DataError` at the first error instead of skipping what it concerns.
        transforms: ``(image, target) -> (image, target)`` augmentation.
        image_dir: folder of the images; by default the JSON's folder, or where
            :func:`~maskrcnn.data.formats.locate.locate_images` finds them (``images/`` beside it,
            ``../images/``, and last a 2.x project's ``_via_settings.core.default_filepath``, the folder VIA
            loads its images from, relative to the JSON's folder when not absolute: a warning says
            which). When no image is found anywhere, :class:`DataError` names the folders looked in.
        class_attribute: the region attribute holding the class, or ``None`` for a single class.
        class_name: the single class's name when ``class_attribute`` is ``None`` (``"object"``); giving it
            keeps a file's sole region attribute from being read as the class.
        class_names: the classes and their order (labels 1..K); needs ``class_attribute``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = False,
        transforms: Transform | None = None,
        image_dir: str | os.PathLike[str] | None = None,
        class_attribute: str | None = None,
        class_name: str | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        path = Path(path)
        data = read_json(path, _EXPECTED)
        entries = _image_entries(path, data)
        log = ProblemLog(str(path), strict=strict)
        if class_attribute is None and class_name is None:
            class_attribute = _sole_attribute(data, entries)
            if class_attribute is not None:
                log.report(
                    "warning",
                    f"classes read from the region attribute {class_attribute!r}, the only one; pass "
                    "class_attribute= or class_name= (one class) to choose",
                )
        if class_names is not None and class_attribute is None:
            raise DataError(
                f"{path}: class_names needs class_attribute= (the region attribute that holds the class); "
                "the regions have no single attribute to take it from"
            )
        class_name = class_name if class_name is not None else "object"
        root = locate_images(
            path,
            [entry["filename"] for _, entry in entries],
            log,
            image_dir=Path(image_dir) if image_dir is not None else None,
            named=_default_filepath(path, data),
        )

        fixed = list(class_names) if class_names is not None else None
        found: set[str] = set()
        pending: list[tuple[Annotation, str]] = []  # labels are set once every class is known
        records: list[ImageRecord] = []
        first_entry: dict[str, str] = {}
        no_regions: list[str] = []
        for index, (key, entry) in enumerate(entries):
            filename = entry["filename"]
            if filename in first_entry:
                log.report(
                    "error", f"listed twice (entries {first_entry[filename]!r} and {key!r})", image=filename
                )
                continue
            first_entry[filename] = key
            regions = _regions(entry.get("regions", []))
            if regions is None:
                log.report(
                    "error",
                    f"'regions' is {type(entry.get('regions')).__name__}; expected an object or a list",
                    image=filename,
                )
                continue
            classes = [self._class_of(region, class_attribute, class_name, fixed) for _, region in regions]
            found.update(name for name, problem in classes if not problem)
            record = ImageRecord(
                image_id=index,
                path=root / filename,
                height=None,
                width=None,
                ref=filename,
                extra={"filename": filename, "via_key": key},
            )
            if not log.check_image(record):
                continue
            records.append(record)
            if not regions:
                no_regions.append(filename)
            for (ref, region), (name, problem) in zip(regions, classes, strict=True):
                if problem:
                    log.report("error", problem, image=filename, annotation=ref)
                    continue
                polygon, problem = _region_polygon(region.get("shape_attributes"))
                if polygon is None:
                    log.report("error", problem, image=filename, annotation=ref)
                    continue
                annotation = Annotation(label=0, segmentation=polygon, ref=ref)
                if log.add_annotation(record, annotation):
                    pending.append((annotation, name))

        if fixed is not None:
            names = fixed
        elif class_attribute is None:
            names = [class_name]
        else:
            names = sorted(found)
        label_of = {name: k + 1 for k, name in enumerate(names)}
        for annotation, name in pending:
            annotation.label = label_of[name]
        # Unusual in VIA, where people export the images they annotated: more often regions lost on the way
        # (a project saved before the regions were drawn). Negatives all the same, but said.
        log.report_many("warning", "images have no regions (read as images without objects)", no_regions)
        log.report_empty_classes(records, names)
        super().__init__(records, names, problems=log.problems, source=str(path), transforms=transforms)

    @staticmethod
    def _class_of(
        region: dict[str, Any], attribute: str | None, default: str, fixed: list[str] | None
    ) -> tuple[str, str]:
        """``(class name, "")``, or ``("", problem)`` when the region's class cannot be used."""
        if attribute is None:
            return default, ""
        attributes = region.get("region_attributes")
        value = attributes.get(attribute) if isinstance(attributes, dict) else None
        if value is None:
            return "", f"no {attribute!r} region attribute (region_attributes: {attributes!r:.80})"
        if isinstance(value, dict):
            # Checkbox attributes: the options ticked. One class per region, so exactly one.
            ticked = [option for option, on in value.items() if on is True]
            if len(ticked) != 1:
                return "", f"{attribute!r} has {len(ticked)} options ticked ({value!r:.80}); expected one"
            value = ticked[0]
        if not isinstance(value, str):
            return "", f"{attribute!r} is {value!r:.40}; expected text or checkbox options"
        name = value.strip()
        if not name:
            return "", f"empty {attribute!r} region attribute"
        if fixed is not None and name not in fixed:
            return "", f"class {name!r} is not one of class_names {fixed}"
        return name, ""


def _image_entries(path: Path, data: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(VIA key, entry)`` of every image, in file order; raises :class:`DataError` if not VIA."""
    if isinstance(data, dict) and "_via_img_metadata" in data:
        data = data["_via_img_metadata"]
    elif isinstance(data, dict) and {"project", "file", "metadata"} <= data.keys():
        raise DataError(f"{path}: a VIA 3 project, which is not read; export it from VIA 2, or as COCO")
    if not isinstance(data, dict):
        raise DataError(f"{path}: got a JSON {type(data).__name__}; expected {_EXPECTED}")
    entries = []
    for key, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise DataError(f"{path}: entry {key!r} has no 'filename'; expected {_EXPECTED}")
        entries.append((key, entry))
    return entries


def _default_filepath(path: Path, data: Any) -> Path | None:
    """A 2.x project's ``_via_settings.core.default_filepath`` as a local folder (relative to the JSON's
    folder when not absolute); ``None`` when it is not set or is a URL."""
    settings = data.get("_via_settings") if isinstance(data, dict) else None
    core = settings.get("core") if isinstance(settings, dict) else None
    value = core.get("default_filepath") if isinstance(core, dict) else None
    if not isinstance(value, str) or not value.strip() or "://" in value:
        return None
    folder = Path(value.strip())
    return folder if folder.is_absolute() else path.parent / folder


def _sole_attribute(data: Any, entries: list[tuple[str, dict[str, Any]]]) -> str | None:
    """The region attribute that can only be the class: the one a VIA 2.x project defines, else the one
    key of every region's ``region_attributes``; ``None`` when there is no such single attribute."""
    attributes = data.get("_via_attributes") if isinstance(data, dict) else None
    defined = attributes.get("region") if isinstance(attributes, dict) else None
    if isinstance(defined, dict) and len(defined) == 1:
        return str(next(iter(defined)))
    keys: set[str] = set()
    for _, entry in entries:
        for _, region in _regions(entry.get("regions", [])) or []:
            values = region.get("region_attributes")
            if not isinstance(values, dict) or len(values) != 1:
                return None
            keys.update(values)
            if len(keys) > 1:
                return None
    return keys.pop() if keys else None


def _regions(regions: Any) -> list[tuple[str, dict[str, Any]]] | None:
    """``(ref, region)`` pairs of an entry's regions (1.x object or 2.x list), ``None`` if malformed."""
    if isinstance(regions, dict):
        items = list(regions.items())
    elif isinstance(regions, list):
        items = list(enumerate(regions))
    else:
        return None
    # A region that is not an object gets an empty one: its missing shape is then reported by name.
    return [(f"region {k}", region if isinstance(region, dict) else {}) for k, region in items]


def _numbers(shape: dict[str, Any], *keys: str) -> list[float] | None:
    values = [shape.get(k) for k in keys]
    return [float(v) for v in values] if all(is_number(v) for v in values) else None


def _not_finite(shape: dict[str, Any], *keys: str) -> str:
    """The problem with the first of ``keys`` that is NaN or infinite (JSON readers accept both), or ""."""
    for key in keys:
        value = shape.get(key)
        if is_number(value) and not math.isfinite(value):
            return f"{shape['name']} has {key} {value!r}, not a finite number"
    return ""


def _region_polygon(shape: Any) -> tuple[list[list[float]] | None, str]:
    """A region's ``shape_attributes`` as polygons (one part), or ``(None, problem)``."""
    if not isinstance(shape, dict) or "name" not in shape:
        return None, f"no shape (shape_attributes is {shape!r:.60})"
    name = shape["name"]
    if name in ("polygon", "polyline"):
        xs, ys = shape.get("all_points_x"), shape.get("all_points_y")
        if not (isinstance(xs, list) and isinstance(ys, list) and all(is_number(v) for v in xs + ys)):
            return None, f"{name} needs all_points_x and all_points_y lists of numbers"
        if len(xs) != len(ys):
            return None, f"{name} has {len(xs)} x and {len(ys)} y coordinates"
        # A polyline is drawn around the object without closing it; the polygon closes it.
        return [[float(v) for xy in zip(xs, ys, strict=True) for v in xy]], ""
    if name == "rect":
        values = _numbers(shape, "x", "y", "width", "height")
        if values is None:
            return None, "rect needs numbers x, y, width, height"
        if problem := _not_finite(shape, "x", "y", "width", "height"):
            return None, problem
        x, y, w, h = values
        if w <= 0 or h <= 0:
            return None, f"rect of width {w:g} and height {h:g} has no area"
        return [[x, y, x + w, y, x + w, y + h, x, y + h]], ""
    if name == "circle":
        values = _numbers(shape, "cx", "cy", "r")
        if values is None:
            return None, "circle needs numbers cx, cy, r"
        if problem := _not_finite(shape, "cx", "cy", "r"):
            return None, problem
        cx, cy, r = values
        if r <= 0:
            return None, f"circle of radius {r:g} has no area"
        return [ellipse_polygon(cx, cy, r, r)], ""
    if name == "ellipse":
        values = _numbers(shape, "cx", "cy", "rx", "ry")
        theta = shape.get("theta", 0.0)
        if values is None or not is_number(theta):
            return None, "ellipse needs numbers cx, cy, rx, ry (and theta, if given)"
        if problem := _not_finite(shape, "cx", "cy", "rx", "ry", "theta"):
            return None, problem
        cx, cy, rx, ry = values
        if rx <= 0 or ry <= 0:
            return None, f"ellipse of radii {rx:g}, {ry:g} has no area"
        return [ellipse_polygon(cx, cy, rx, ry, float(theta))], ""
    if name == "point":
        return None, (
            f"a point ({shape.get('cx')!r}, {shape.get('cy')!r}) has no area; instance segmentation needs "
            "a polygon, rect, circle or ellipse"
        )
    return None, f"unknown shape {name!r}"
