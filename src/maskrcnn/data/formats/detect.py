"""Which reader a path needs, told from what is there: ``--format`` made optional (``auto``).

A file is recognised by its content (JSON keys, YAML keys), a folder by its layout; anything that fits
no format, or more than one, raises :class:`~maskrcnn.data.dataset.DataError` saying what was seen, so
that the user can pass ``--format``. Detection only looks: the reader then validates everything.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import yaml

from maskrcnn.data.dataset import DataError
from maskrcnn.data.formats.coco import read_json
from maskrcnn.data.formats.openimages import COLUMNS, SEGMENTATION_SUFFIX, is_segmentation_header
from maskrcnn.data.image_io import is_image_file

__all__ = ["detect_format"]

# Files this large are recognised from their first bytes rather than parsed twice (here and by the
# reader): COCO's train2017 instances are 450 MB, ~20 s of json.loads.
_PARSE_LIMIT = 64 << 20
_SNIFF_BYTES = 1 << 20
_SAMPLE = 5  # JSON files or sample folders looked at in a folder


def detect_format(path: str | os.PathLike[str] | None) -> str:
    """The ``--format`` name of the dataset at ``path``.

    Recognises a COCO instances JSON (an object with ``images`` and ``categories``/``annotations``), a
    VIA JSON (1.x/2.x entries with ``filename`` and ``regions``, or a 2.x project with
    ``_via_img_metadata``), a single LabelMe JSON (``shapes`` and ``imagePath``) or a folder of them, a
    YOLO data YAML (``names`` or ``nc``, and ``train`` or ``val``), an Open Images segmentation CSV
    (a header with ``MaskPath``, ``ImageID`` and ``LabelName``: ``openimages``), a Penn-Fudan-style folder
    (``PNGImages/`` and ``PedMasks/``: ``instance-png``) and a nucleus-style folder of samples
    (``<id>/images/`` and ``<id>/masks/``: ``mask-dirs``).

    Raises:
        DataError: nothing there, no format fits, or several do; the message says what was seen.
    """
    if path is None:
        raise DataError("no dataset path to detect the format from; pass --format (e.g. --format shapes)")
    path = Path(path)
    if path.is_dir():
        found, seen = _folder_formats(path)
    elif path.is_file():
        found, seen = _file_formats(path)
    else:
        raise DataError(f"{path}: no such file or folder (cannot detect its format)")
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(f"{path}: could be {' or '.join(found)} ({seen}); pass --format to choose")
    raise DataError(f"{path}: not a dataset format that can be detected ({seen}); pass --format")


def _file_formats(path: Path) -> tuple[list[str], str]:
    """The formats a file fits, and what was seen in it."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            return [], f"a YAML file that cannot be read ({e})"
        if (
            isinstance(data, dict)
            and ("names" in data or "nc" in data)
            and ("train" in data or "val" in data)
        ):
            return ["yolo"], "a YOLO data YAML"
        return [], f"a YAML file with {_keys(data)}; a YOLO data YAML has 'names' and 'train'/'val'"
    if suffix == ".csv":
        return _csv_formats(path)
    if suffix != ".json":
        return [], (
            f"a {suffix or 'suffix-less'} file; COCO, VIA and LabelMe are .json, YOLO a .yaml, Open Images "
            "a .csv"
        )
    if path.stat().st_size > _PARSE_LIMIT:
        return _sniff_json(path)
    return _json_formats(read_json(path, "a COCO, VIA or LabelMe JSON"))


def _json_formats(data: Any) -> tuple[list[str], str]:
    """The formats parsed JSON fits, and what it was."""
    if isinstance(data, list):
        return [], "a JSON list (a COCO results file?); datasets are JSON objects"
    if not isinstance(data, dict):
        return [], f"a JSON {type(data).__name__}"
    found = []
    if isinstance(data.get("images"), list) and ("categories" in data or "annotations" in data):
        found.append("coco")
    if "_via_img_metadata" in data or (
        data and all(_is_via_entry(v) for v in islice(data.values(), _SAMPLE))
    ):
        found.append("via")
    if isinstance(data.get("shapes"), list) and "imagePath" in data:
        found.append("labelme")
    return found, f"a JSON object with {_keys(data)}"


def _csv_formats(path: Path) -> tuple[list[str], str]:
    """The formats a CSV fits (from its header line alone: Open Images' train CSV is 2.7 million rows)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader([f.readline(_SNIFF_BYTES)]), [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        return [], f"a CSV file that cannot be read ({e})"
    if is_segmentation_header(header):
        return ["openimages"], "an Open Images segmentation CSV"
    return [], (
        f"a CSV file whose first line is {','.join(header)!r:.80}; an Open Images segmentation CSV "
        f"(<split>{SEGMENTATION_SUFFIX}) starts {','.join(COLUMNS[:3])}"
    )


def _is_via_entry(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("filename"), str) and "regions" in value


def _sniff_json(path: Path) -> tuple[list[str], str]:
    """The formats a large JSON file fits, from the keys in its first megabyte."""
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES).decode("utf-8", errors="replace")
    keys = {
        k for k in ('"images"', '"annotations"', '"_via_img_metadata"', '"regions"', '"shapes"') if k in head
    }
    if '"_via_img_metadata"' in keys or ('"regions"' in keys and '"images"' not in keys):
        return ["via"], "a large JSON with VIA keys"
    if keys & {'"images"', '"annotations"'}:
        return ["coco"], "a large JSON with COCO keys"
    return [], f"a large JSON without COCO or VIA keys in its first {_SNIFF_BYTES >> 20} MB"


def _folder_formats(path: Path) -> tuple[list[str], str]:
    """The formats a folder fits, and what it holds."""
    found = []
    if (path / "PNGImages").is_dir() and (path / "PedMasks").is_dir():
        found.append("instance-png")
    samples = list(
        islice((p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".")), _SAMPLE)
    )
    if (
        samples
        and all((p / "images").is_dir() for p in samples)
        and any((p / "masks").is_dir() for p in samples)
    ):
        found.append("mask-dirs")
    if any(_is_labelme(f) for f in islice(_json_files(path), _SAMPLE)):
        found.append("labelme")
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    seen = "a folder with " + (
        ", ".join(names[:8]) + (f", ... ({len(names)} entries)" if len(names) > 8 else "") or "nothing"
    )
    hints = [
        p.name
        for p in path.iterdir()
        if p.is_file()
        and (p.suffix.lower() in (".json", ".yaml", ".yml") or p.name.endswith(SEGMENTATION_SUFFIX))
    ]
    if not found and hints:
        seen += "; pass the annotation file itself (e.g. " + ", ".join(sorted(hints)[:3]) + ")"
    elif not found and any(is_image_file(p) for p in path.iterdir()):
        seen += "; images without annotations"
    return found, seen


def _json_files(path: Path) -> Iterator[Path]:
    return (p for p in sorted(path.rglob("*.json")) if not p.name.startswith("."))


def _is_labelme(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("shapes"), list) and "imagePath" in data


def _keys(data: Any) -> str:
    return f"keys {sorted(map(str, data))[:8]}" if isinstance(data, dict) else f"a {type(data).__name__}"
