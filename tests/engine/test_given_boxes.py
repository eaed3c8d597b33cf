"""Boxes from another detector (``predict --boxes``): COCO results, COCO instances and YOLO txt folders,
matched to the source's files, with their classes mapped onto the model's; bad entries name the file,
the entry and the value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from maskrcnn.data.dataset import DataError
from maskrcnn.engine.given_boxes import read_given_boxes
from maskrcnn.engine.sources import iter_sources

CLASSES = ["square", "disc", "triangle"]


@pytest.fixture
def files(tmp_path: Path):
    """A source folder ``photos/`` with ``a.png``, ``000000000042.png`` and ``sub/a.png``."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "000000000042.png", "sub/a.png"):
        (folder / name).write_bytes(b"")  # read_given_boxes only matches names
    return list(iter_sources(folder, recursive=True))


def _by_name(given, files) -> dict[str, dict]:
    return {f.name: given.arguments(f, (100, 200), CLASSES) for f in files}


def test_coco_results_by_file_name_and_image_id(tmp_path, files):
    path = tmp_path / "dets.json"
    detections = [
        {"file_name": str(files[1].path), "bbox": [10, 20, 30, 40], "category_id": 2, "score": 0.9},
        {"file_name": "sub/a.png", "bbox": [0, 0, 5, 5], "category": "Triangle", "score": 0.8},
        {"image_id": 42, "bbox": [1.5, 2.5, 3, 4], "category_id": 9, "score": 0.7},  # not a model class
        {"file_name": "elsewhere/z.png", "bbox": [0, 0, 1, 1], "category_id": 1, "score": 0.1},
        {"image_id": 5, "bbox": [0, 0, 1, 1], "category_id": 1, "score": 0.1},
    ]
    path.write_text(json.dumps(detections))
    given = read_given_boxes(path, files)
    assert given.count == 3
    assert given.unmatched == ["file_name elsewhere/z.png", "image_id 5"]
    found = _by_name(given, files)
    assert [f.name for f in files] == ["000000000042", "a", "sub/a"]
    assert found["000000000042"]["boxes"].tolist() == [[1.5, 2.5, 4.5, 6.5]]
    assert found["000000000042"]["labels"].tolist() == [0]  # category 9: the model's choice
    assert found["a"]["boxes"].tolist() == [[10, 20, 40, 60]]
    assert found["a"]["labels"].tolist() == [2]
    assert found["a"]["scores"].tolist() == pytest.approx([0.9])
    assert found["sub/a"]["labels"].tolist() == [3]  # by name, ignoring case
    # "a.png" alone would be ambiguous (a.png and sub/a.png): only a path ending names one.
    path.write_text(json.dumps([{"file_name": "a.png", "bbox": [0, 0, 1, 1], "category_id": 1}]))
    assert read_given_boxes(path, files).unmatched == ["file_name a.png"]


def test_coco_instances_use_their_images_and_category_names(tmp_path, files):
    path = tmp_path / "instances.json"
    coco = {
        "images": [{"id": 7, "file_name": "photos/a.png", "height": 100, "width": 200}],
        "annotations": [
            {"id": 1, "image_id": 7, "bbox": [1, 2, 3, 4], "category_id": 11},
            {"id": 2, "image_id": 7, "bbox": [5, 6, 7, 8], "category_id": 12},
        ],
        "categories": [{"id": 11, "name": "disc"}, {"id": 12, "name": "person"}],
    }
    path.write_text(json.dumps(coco))
    given = read_given_boxes(path, files)
    (a,) = [f for f in files if f.name == "a"]
    arguments = given.arguments(a, (100, 200), CLASSES)
    assert arguments["boxes"].tolist() == [[1, 2, 4, 6], [5, 6, 12, 14]]
    assert arguments["labels"].tolist() == [2, 0]  # "person" is not one of the model's classes
    assert arguments["scores"] is None  # a person's boxes: the model's probabilities are reported
    model = read_given_boxes(path, files, classes="model").arguments(a, (100, 200), CLASSES)
    assert model["labels"].tolist() == [0, 0]


def test_yolo_txt_folder(tmp_path, files):
    folder = tmp_path / "labels"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("0 0.5 0.5 0.2 0.4 0.95\n\n4 0.25 0.75 0.1 0.1 0.5\n")
    (folder / "sub" / "a.txt").write_text("2 0.5 0.5 1 1\n")
    (folder / "other.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    given = read_given_boxes(folder, files)
    assert given.unmatched == ["other.txt"]
    found = _by_name(given, files)  # images of 100 x 200
    assert torch.allclose(found["a"]["boxes"], torch.tensor([[80.0, 30, 120, 70], [40, 70, 60, 80]]))
    assert found["a"]["labels"].tolist() == [1, 0]  # YOLO class 4 is label 5: not the model's
    assert found["a"]["scores"].tolist() == pytest.approx([0.95, 0.5])
    assert found["sub/a"]["boxes"].tolist() == [[0, 0, 200, 100]]
    assert found["sub/a"]["labels"].tolist() == [3]
    assert found["sub/a"]["scores"] is None
    assert found["000000000042"]["boxes"].shape == (0, 4)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([{"file_name": "a.png", "bbox": [1, 2, 3]}], "entry 0: bbox must be [x, y, width, height]"),
        ([{"file_name": "a.png", "bbox": [1, 2, -3, 4]}], "entry 0: bbox [1, 2, -3, 4] has a negative"),
        ([{"bbox": [1, 2, 3, 4]}], "entry 0: names no image (give 'file_name' or 'image_id')"),
        (
            [{"image_id": 42, "bbox": [0, 0, 1, 1]}, {"image_id": 42, "bbox": [0, 0, 1, 1], "score": "hi"}],
            "entry 1: score must be a number, got 'hi'",
        ),
        ([{"image_id": 42, "bbox": [0, 0, 1, 1], "category_id": 1.5}], "category_id must be an integer"),
        ({"images": []}, "a COCO file needs 'images' and 'annotations' lists"),
        ("boxes", "expected a list of detections or a COCO file, got str"),
    ],
)
def test_bad_json_entries_name_file_entry_and_value(tmp_path, files, content, message):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError) as error:
        read_given_boxes(path, files)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2", "line 2: expected 'class cx cy w h [confidence]' (5 or 6 numbers), got 4"),
        ("cat 0.5 0.5 0.2 0.2", "line 2: not numbers: 'cat 0.5 0.5 0.2 0.2'"),
        ("0 0.5 nan 0.2 0.2", "line 2: a negative class or a non-finite number"),
        ("0 0.5 0.5 -0.2 0.2", "line 2: negative width or height"),
    ],
)
def test_bad_yolo_lines_name_file_line_and_text(tmp_path, files, line, message):
    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "a.txt").write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(DataError, match=f"^{folder / 'a.txt'}: ") as error:
        read_given_boxes(folder, files)
    assert message in str(error.value)


def test_missing_and_empty_sources(tmp_path, files):
    with pytest.raises(DataError) as error:
        read_given_boxes(tmp_path / "nothing.json", files)
    assert str(error.value) == f"--boxes {tmp_path / 'nothing.json'}: no such file or folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no \.txt files"):
        read_given_boxes(tmp_path / "empty", files)
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(DataError, match=r"broken\.json"):
        read_given_boxes(tmp_path / "broken.json", files)


def test_yolo_classes_by_the_detectors_names(tmp_path, files):
    """YOLO's class 1 is "triangle" in the detector's list: the model's label 3, not 2."""
    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n")
    given = read_given_boxes(folder, files, yolo_names=["person", "Triangle", "square"])
    (a,) = [f for f in files if f.name == "a"]
    assert given.arguments(a, (10, 10), CLASSES)["labels"].tolist() == [3, 0, 1]
    (folder / "a.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"a\.txt: line 1: class 3, and the 3 names given end at 2"):
        read_given_boxes(folder, files, yolo_names=["person", "Triangle", "square"])
