"""Fuzzing the readers: valid COCO, VIA, LabelMe and YOLO files, mutated (keys deleted, values of
another type, NaN and infinities, text cut short), read with ``load_dataset`` and checked with
``check_dataset``. Whatever the mutation, only the project's own errors (``DataError`` for the data,
``ImageError`` for an image) may come out: never a ``KeyError``, a ``TypeError`` or a library's error.

CI runs ``FUZZ_EXAMPLES`` (default 40) examples per format, the same ones every time (the ``ci``
profile is derandomised); ``FUZZ_EXAMPLES=2000 pytest tests/data/test_fuzz.py`` searches longer.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from maskrcnn.data import load_dataset
from maskrcnn.data.check import check_dataset
from maskrcnn.data.dataset import DataError
from maskrcnn.data.image_io import ImageError
from tests.mutations import mutated_json

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])


def read_and_check(format: str, path: Path, **options: Any) -> None:
    try:
        dataset = load_dataset(format, path, **options)
        report = check_dataset(dataset)
    except (DataError, ImageError) as e:
        # The project's own: each names the file and the item (the catalogue checks the wording).
        event(f"refused: {type(e).__name__}")
    else:  # --hypothesis-show-statistics shows how the mutations fared
        event("read, with errors" if not report.ok else "read, OK")


def picture(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((48, 64, 3), 120, dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    for name in ("a.png", "b.png"):
        picture(root / name)
    return root


COCO = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.png", "width": 64, "height": 48},
    ],
    "annotations": [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]],
            "bbox": [10, 10, 20, 20],
            "area": 400,
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 2,
            "category_id": 2,
            "segmentation": {"size": [48, 64], "counts": [500, 10, 38, 10, 2514]},
            "bbox": [10, 20, 2, 10],
            "area": 20,
            "iscrowd": 1,
        },
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
}

VIA = {
    "a.png1": {
        "filename": "a.png",
        "size": 1,
        "regions": [
            {
                "shape_attributes": {
                    "name": "polygon",
                    "all_points_x": [10, 30, 30],
                    "all_points_y": [10, 10, 30],
                },
                "region_attributes": {"kind": "cat"},
            },
            {
                "shape_attributes": {"name": "circle", "cx": 40, "cy": 20, "r": 5},
                "region_attributes": {"kind": "dog"},
            },
            {
                "shape_attributes": {"name": "rect", "x": 2, "y": 2, "width": 6, "height": 4},
                "region_attributes": {"kind": "cat"},
            },
        ],
        "file_attributes": {},
    }
}

LABELME = {
    "version": "5.2.1",
    "imagePath": "a.png",
    "imageHeight": 48,
    "imageWidth": 64,
    "imageData": None,
    "shapes": [
        {"label": "cat", "points": [[10, 10], [30, 10], [30, 30]], "shape_type": "polygon", "group_id": None},
        {"label": "dog", "points": [[40, 5], [50, 15]], "shape_type": "rectangle", "group_id": 1},
        {"label": "dog", "points": [[20, 40], [24, 40]], "shape_type": "circle", "group_id": 1},
    ],
}


@FUZZ
@given(st.data())
def test_coco(folder: Path, data: st.DataObject):
    path = folder / "coco.json"
    path.write_text(data.draw(mutated_json(COCO)))
    read_and_check("coco", path)


@FUZZ
@given(st.data())
def test_via(folder: Path, data: st.DataObject):
    path = folder / "via.json"
    path.write_text(data.draw(mutated_json(VIA)))
    read_and_check("via", path, class_attribute="kind")


@FUZZ
@given(st.data())
def test_labelme(folder: Path, data: st.DataObject):
    labelme = folder / "labelme"
    picture(labelme / "a.png")
    (labelme / "a.json").write_text(data.draw(mutated_json(LABELME)))
    read_and_check("labelme", labelme)


YOLO_LABELS = "0 0.2 0.2 0.6 0.2 0.6 0.6\n1 0.5 0.5 0.9 0.5 0.9 0.9 0.5 0.9\n"
# Tokens a broken label file may hold where a number should be.
TOKENS = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "2", "1e309", "", "x", "0x10", "7"]),
    st.floats(-2, 2).map(repr),
    st.integers(-3, 5).map(str),
)


@st.composite
def mutated_labels(draw: st.DrawFn) -> str:
    lines = [line.split() for line in YOLO_LABELS.splitlines()]
    for _ in range(draw(st.integers(1, 4))):
        line = draw(st.integers(0, len(lines) - 1))
        if not lines[line]:
            continue
        kind = draw(st.sampled_from(["replace", "delete", "insert"]))
        at = draw(st.integers(0, len(lines[line]) - 1))
        if kind == "replace":
            lines[line][at] = draw(TOKENS)
        elif kind == "delete":
            del lines[line][at]
        else:
            lines[line].insert(at, draw(TOKENS))
    text = "\n".join(" ".join(tokens) for tokens in lines) + "\n"
    return text[: draw(st.integers(0, len(text)))] if draw(st.integers(0, 5)) == 0 else text


@FUZZ
@given(st.data())
def test_yolo(folder: Path, data: st.DataObject):
    root = folder / "yolo"
    picture(root / "images" / "train" / "a.png")
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "train" / "a.txt").write_text(data.draw(mutated_labels()))
    description = {"path": str(root), "train": "images/train", "val": "images/train", "names": ["cat", "dog"]}
    text = data.draw(mutated_json(description))
    # The YAML: the same mutations as JSON's, written as YAML when they still parse as JSON; cut short,
    # YAML's parser sees the broken JSON text (JSON is YAML).
    with contextlib.suppress(ValueError):
        text = yaml.safe_dump(json.loads(text))
    (root / "data.yaml").write_text(text)
    read_and_check("yolo", root / "data.yaml")
