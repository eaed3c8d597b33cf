"""YOLO segmentation reader (Ultralytics layout) on data YAMLs, images and label files written here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from maskrcnn.config import parse_value
from maskrcnn.data import DataError, load_dataset
from maskrcnn.data.formats.yolo import YoloDataset, label_path
from maskrcnn.data.keypoints import COCO_KEYPOINT_NAMES, COCO_SKELETON

from .writers_b import rgb

# Powers of two: normalised coordinates are exact in binary, so pixels come back exactly.
H, W = 16, 32
# The rectangle x 3..10, y 2..6 (pixel edges): rows 2..5 and columns 3..9, box (3, 2, 10, 6).
RECT = f"{3 / W} {2 / H} {10 / W} {2 / H} {10 / W} {6 / H} {3 / W} {6 / H}"
TRIANGLE = f"0 0 {8 / W} 0 0 {8 / H}"


def _dataset(root: Path, labels: dict[str, str | None], split: str = "train", ext: str = ".png") -> None:
    """Images ``root/images/<split>/<name><ext>`` and, unless ``None``, their label files."""
    for k, (name, text) in enumerate(labels.items()):
        rgb(root / "images" / split / f"{name}{ext}", H, W, seed=k)
        if text is not None:
            label = root / "labels" / split / f"{name}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)


def _yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _errors(dataset) -> list:
    return [p for p in dataset.problems if p.severity == "error"]


def test_label_path_replaces_the_last_images_component() -> None:
    assert label_path(Path("/d/images/train/a.jpg")) == Path("/d/labels/train/a.txt")
    assert label_path(Path("/images/x/images/a.b.jpg")) == Path("/images/x/labels/a.b.txt")
    assert label_path(Path("/d/pics/a.jpg")) == Path("/d/pics/a.txt")  # no images/: beside the image
    assert label_path(Path("/d/x/images.jpg")) == Path("/d/x/images.txt")  # the file name is not a folder


def test_yolo_folder_split_with_list_names(tmp_path: Path) -> None:
    _dataset(tmp_path, {"a": f"1 {RECT}\n\n0 {TRIANGLE}\n", "b": None, "c": ""})
    data = _yaml(tmp_path / "data.yaml", "train: images/train\nnames: [cat, dog]\n")
    ds = YoloDataset(data)
    assert ds.class_names == ["cat", "dog"]
    # b has no label file: a background image by YOLO's convention, said because labels get lost too.
    assert [str(p) for p in ds.problems] == [
        f"warning: {data}: 1 images have no label file (read as images without objects): images/train/b.png"
    ]
    assert [r.ref for r in ds.records] == ["images/train/a.png", "images/train/b.png", "images/train/c.png"]
    _, target = ds[0]
    assert target["labels"].tolist() == [2, 1]
    assert target["boxes"][0].tolist() == [3, 2, 10, 6]
    expected = torch.zeros(H, W, dtype=torch.uint8)
    expected[2:6, 3:10] = 1
    assert torch.equal(target["masks"][0], expected)
    assert [a.ref for a in ds.records[0].annotations] == ["line 1", "line 3"]
    for index in (1, 2):  # no label file / an empty one: negatives
        _, target = ds[index]
        assert target["masks"].shape == (0, H, W)
        assert int(target["image_id"]) == index


def test_yolo_list_file_dict_names_and_relative_root(tmp_path: Path) -> None:
    root = tmp_path / "datasets" / "cells"
    _dataset(root, {"x": f"2 {RECT}\n", "y": f"0 {TRIANGLE}\n"}, split="val", ext=".jpg")
    (root / "val.txt").write_text("./images/val/y.jpg\nimages/val/x.jpg\n\n")
    data = _yaml(
        tmp_path / "configs" / "cells.yaml",
        "path: ../datasets/cells\ntrain: val.txt\nval: [val.txt]\nnames:\n  0: a\n  1: b\n  2: c\n",
    )
    ds = YoloDataset(data, split="val")
    assert ds.class_names == ["a", "b", "c"]
    assert [r.ref for r in ds.records] == ["images/val/y.jpg", "images/val/x.jpg"]
    assert ds[1][1]["labels"].tolist() == [3]
    assert ds[1][1]["boxes"].tolist() == [[3, 2, 10, 6]]  # JPEG pixels, but labels are exact
    ds = load_dataset("yolo", data)  # train: the same list, as a single entry
    assert len(ds) == 2


def test_yolo_list_of_folders_and_absent_path(tmp_path: Path) -> None:
    _dataset(tmp_path, {"a": f"0 {RECT}\n"}, split="one")
    _dataset(tmp_path, {"b": f"0 {RECT}\n"}, split="two")
    data = _yaml(tmp_path / "d.yaml", "train: [images/one, images/two]\nnc: 1\n")
    ds = YoloDataset(data)
    assert ds.class_names == ["class_0"]
    assert [int(ds[i][1]["image_id"]) for i in range(2)] == [0, 1]
    assert [r.path.name for r in ds.records] == ["a.png", "b.png"]


def test_yolo_bad_lines_are_instance_errors_with_line_numbers(tmp_path: Path) -> None:
    lines = [
        f"0 {RECT}",  # 1: fine
        "0 0.5 0.5 0.2 0.2",  # 2: a box
        "0 0.1 0.1 0.2 0.2 0.3",  # 3: odd
        "0 0.1 0.1 0.2 0.2",  # 4: 2 points (4 values: a box too); see 5
        "0 0.1 0.1",  # 5: one point
        "0 0.1 abc 0.2 0.2 0.3 0.3",  # 6: not a number
        f"5 {RECT}",  # 7: unknown class
        "0 0.1 0.1 0.2 0.2 0.3 0.3",  # 8: collinear: no area
        f"1.0 {TRIANGLE}",  # 9: fine, class written as a float
    ]
    _dataset(tmp_path, {"a": "\n".join(lines) + "\n"})
    data = _yaml(tmp_path / "data.yaml", "train: images/train\nnames: [p, q]\n")
    ds = YoloDataset(data)
    label_file = str(tmp_path / "labels" / "train" / "a.txt")
    errors = _errors(ds)
    assert [p.annotation for p in errors] == [f"line {n}" for n in (2, 3, 4, 5, 6, 7, 8)]
    assert all(p.source == label_file and p.image == "images/train/a.png" for p in errors)
    messages = [p.message for p in errors]
    assert "no mask" in messages[0]
    assert "4 coordinates" in messages[0]
    assert "odd number of coordinates (5)" in messages[1]
    assert "1 point(s)" in messages[3]
    assert "non-numeric value 'abc'" in messages[4]
    assert "unknown class index 5" in messages[5]
    assert "zero-area" in messages[6]
    assert f"{label_file}, image images/train/a.png, line 7: " in str(errors[5])
    assert ds[0][1]["labels"].tolist() == [1, 2]
    assert [a.ref for a in ds.records[0].annotations] == ["line 1", "line 9"]
    with pytest.raises(DataError, match=r"a\.txt, image images/train/a\.png, line 2: .*no mask"):
        YoloDataset(data, strict=True)


def test_yolo_out_of_range_points_warn_and_missing_image_in_list(tmp_path: Path) -> None:
    _dataset(tmp_path, {"a": "0 -0.5 0 1 0 1 1\n"})
    (tmp_path / "list.txt").write_text("images/train/a.png\nimages/train/gone.png\nnotes.md\n")
    data = _yaml(tmp_path / "data.yaml", "train: list.txt\nnames: [p]\n")
    ds = YoloDataset(data)
    assert len(ds) == 1
    not_image, clipped, missing = ds.problems  # the listing, then the images in order
    assert clipped.severity == "warning"
    assert "clipped" in clipped.message
    assert not_image.source == str(tmp_path / "list.txt")
    assert not_image.annotation == "line 3"
    assert missing.image == "images/train/gone.png"
    assert "not found" in missing.message


def test_yolo_yaml_problems(tmp_path: Path) -> None:
    _dataset(tmp_path, {"a": None})
    with pytest.raises(DataError, match="no 'val' entry"):
        YoloDataset(_yaml(tmp_path / "d1.yaml", "train: images/train\nnames: [p]\n"), split="val")
    # (A missing train entry would be read from images/train beside the YAML, with a warning.)
    with pytest.raises(DataError, match=r"'test' entry 'images/nope' .* not a folder or a \.txt list"):
        YoloDataset(_yaml(tmp_path / "d2.yaml", "test: images/nope\nnames: [p]\n"), split="test")
    with pytest.raises(DataError, match=r"indices must be 0\.\.1"):
        YoloDataset(_yaml(tmp_path / "d3.yaml", "train: images/train\nnames: {0: a, 2: b}\n"))
    with pytest.raises(DataError, match="no 'names'"):
        YoloDataset(_yaml(tmp_path / "d4.yaml", "train: images/train\n"))
    with pytest.raises(DataError, match="not valid YAML"):
        YoloDataset(_yaml(tmp_path / "d5.yaml", "train: [\n"))
    with pytest.raises(DataError, match="not found"):
        YoloDataset(tmp_path / "missing.yaml")


def test_yolo_roboflow_export_layout(tmp_path: Path) -> None:
    # Roboflow: data.yaml beside train/ and valid/, each with images/ and labels/, and "../" paths.
    for split in ("train", "valid"):
        rgb(tmp_path / split / "images" / "a.jpg", H, W)
        (tmp_path / split / "labels").mkdir()
        (tmp_path / split / "labels" / "a.txt").write_text(f"0 {RECT}\n")
    data = _yaml(
        tmp_path / "data.yaml", "train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['cell']\n"
    )
    ds = YoloDataset(data, split="val")
    assert [r.ref for r in ds.records] == ["valid/images/a.jpg"]
    assert ds[0][1]["boxes"].tolist() == [[3, 2, 10, 6]]


def _warnings(dataset) -> list[str]:
    return [p.message for p in dataset.problems if p.severity == "warning"]


def test_paths_of_another_machine_are_read_from_the_layout_beside_the_yaml(tmp_path: Path) -> None:
    _dataset(tmp_path, {"a": f"0 {RECT}\n"})
    windows = "C:\\Users\\me\\data\\images\\train"
    path = _yaml(tmp_path / "data.yaml", f"path: /content/datasets/x\ntrain: {windows}\nnames: [cell]\n")
    ds = YoloDataset(path)
    assert ds[0][1]["boxes"].tolist() == [[3, 2, 10, 6]]
    assert _warnings(ds) == [
        f"the root '/content/datasets/x' (its 'path') is not a folder; read {tmp_path}/",
        f"'train' entry {windows!r} does not exist; read {tmp_path / 'images' / 'train'}/ (beside the YAML)",
    ]
    # Roboflow's layout: <split>/images and <split>/labels, "valid" for val.
    rgb(tmp_path / "rf" / "valid" / "images" / "v.png", H, W)
    (tmp_path / "rf" / "valid" / "labels").mkdir()
    (tmp_path / "rf" / "valid" / "labels" / "v.txt").write_text(f"0 {RECT}\n")
    path = _yaml(
        tmp_path / "rf" / "data.yaml",
        "train: ../train/images\nval: D:/exports/rf/valid/images\nnames: [cell]\n",
    )
    ds = YoloDataset(path, split="val")
    assert ds.records[0].path == tmp_path / "rf" / "valid" / "images" / "v.png"
    assert ds[0][1]["labels"].tolist() == [1]
    assert len(_warnings(ds)) == 1
    with pytest.raises(
        DataError, match=r"'train' entry '\.\./train/images' .* is not a folder or a \.txt list"
    ):
        YoloDataset(path)


def test_label_files_without_an_image_are_a_warning(tmp_path: Path) -> None:
    _dataset(tmp_path, {"a": f"0 {RECT}\n"})
    for name in ("gone", "renamed"):
        (tmp_path / "labels" / "train" / f"{name}.txt").write_text(f"0 {RECT}\n")
    ds = YoloDataset(_yaml(tmp_path / "data.yaml", "train: images/train\nnames: [cell]\n"))
    labels = tmp_path / "labels" / "train"
    assert _warnings(ds) == [
        f"2 label files have no image (not read): {labels / 'gone.txt'}, {labels / 'renamed.txt'}"
    ]


# -- pose labels: class, box (cx cy w h), keypoints ----------------------------------------------------

# The box centred at (8, 8), 8 x 8 pixels: x 4..12, y 4..12.
BOX = f"{8 / W} {8 / H} {8 / W} {8 / H}"
POSE_YAML = "train: images/train\nnames: [bird]\nkpt_shape: [3, 3]\nflip_idx: [0, 2, 1]\n"


def test_pose_labels_with_visibility_names_and_flip_idx(tmp_path: Path) -> None:
    # Points (6, 4) visible, (10, 6) hidden, the third not labelled (its numbers mean nothing).
    _dataset(tmp_path, {"a": f"0 {BOX} {6 / W} {4 / H} 2 {10 / W} {6 / H} 1 0.5 0.5 0\n", "b": ""})
    data = _yaml(tmp_path / "data.yaml", POSE_YAML + "kpt_names:\n  0: [head, wing_a, wing_b]\n")
    ds = load_dataset("yolo", data, skeleton=parse_value("head-wing_a,head-wing_b"))
    assert ds.problems == []
    spec = ds.keypoint_spec
    assert spec.names == ("head", "wing_a", "wing_b")
    assert spec.flip_index == (0, 2, 1)  # the names alone would not tell
    assert spec.skeleton == ((0, 1), (0, 2))
    expected = torch.tensor([[[6, 4, 2], [10, 6, 1], [0, 0, 0]]], dtype=torch.float32)
    assert torch.equal(ds.load_keypoints(0), expected)
    _, target = ds[0]
    assert torch.equal(target["keypoints"], expected)
    # No outline in YOLO pose: the mask is the box.
    box = torch.zeros(H, W, dtype=torch.uint8)
    box[4:12, 4:12] = 1
    assert torch.equal(target["masks"], box[None])
    assert target["boxes"].tolist() == [[4, 4, 12, 12]]
    assert ds[1][1]["keypoints"].shape == (0, 3, 3)  # an empty label file: a negative
    assert YoloDataset(data).keypoint_spec.skeleton == ()  # no skeleton of its own


def test_pose_labels_without_visibility(tmp_path: Path) -> None:
    # kpt_shape [K, 2]: a point at (0, 0) or below zero is not labelled, the others are visible.
    lines = [f"0 {BOX} {8 / W} {4 / H} 0 0", f"0 {BOX} -0.25 0.5 {24 / W} {12 / H}"]
    _dataset(tmp_path, {"a": "\n".join(lines) + "\n"})
    ds = YoloDataset(_yaml(tmp_path / "data.yaml", "train: images/train\nnames: [p]\nkpt_shape: [2, 2]\n"))
    assert ds.problems == []
    assert ds.keypoint_spec.names == ("kp0", "kp1")
    assert ds.keypoint_spec.flip_permutation() == [0, 1]
    assert ds.load_keypoints(0).tolist() == [[[8, 4, 2], [0, 0, 0]], [[0, 0, 0], [24, 12, 2]]]


def test_pose_with_17_keypoints_and_no_names_is_coco_person(tmp_path: Path) -> None:
    points = " ".join(f"{(k + 1) / W} {(k % 8 + 1) / H} 2" for k in range(17))
    _dataset(tmp_path, {"a": f"0 {BOX} {points}\n"})
    flip = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    data = _yaml(
        tmp_path / "data.yaml",
        f"train: images/train\nnames: [person]\nkpt_shape: [17, 3]\nflip_idx: {flip}\n",
    )
    ds = YoloDataset(data)
    assert ds.keypoint_spec.names == COCO_KEYPOINT_NAMES
    assert ds.keypoint_spec.skeleton == COCO_SKELETON
    assert ds.keypoint_spec.flip_permutation() == flip
    assert ds.load_keypoints(0)[0].tolist() == [[k + 1, k % 8 + 1, 2] for k in range(17)]


def test_pose_bad_lines_are_instance_errors_with_line_numbers(tmp_path: Path) -> None:
    lines = [
        f"0 {BOX} 0.1 0.1 2",  # 1: one keypoint of three
        f"0 {8 / W} {8 / H} 0 {8 / H} 0 0 0 0 0 0 0 0 0",  # 2: a box without width
        f"0 {BOX} 0.25 0.25 3 0 0 0 0 0 0",  # 3: visibility 3
        f"0 {BOX} 1.5 0.25 2 0.25 0.25 2 0 0 0",  # 4: a point outside the image: left out
        f"0 {BOX} 0.25 x 2 0 0 0 0 0 0",  # 5: not a number
    ]
    _dataset(tmp_path, {"a": "\n".join(lines) + "\n"})
    ds = YoloDataset(_yaml(tmp_path / "data.yaml", POSE_YAML))
    where = f"{tmp_path / 'labels' / 'train' / 'a.txt'}, image images/train/a.png"
    assert [str(p) for p in _errors(ds)] == [
        f"error: {where}, line 1: 8 values; kpt_shape [3, 3] needs 14: the class, the box (cx cy w h) and "
        "3 x (x y v)",
        f"error: {where}, line 2: box width 0 / height {8 / H}: both must be positive",
        f"error: {where}, line 3: keypoint 0 has visibility 3.0; expected 0 (not labelled), 1 (hidden) or 2 "
        "(visible)",
        f"error: {where}, line 5: non-numeric value 'x'",
    ]
    assert _warnings(ds) == [f"keypoint 0 (kp0) at (48, 4) outside the {W}x{H} image; left out (v = 0)"]
    assert ds.load_keypoints(0).tolist() == [[[0, 0, 0], [8, 4, 2], [0, 0, 0]]]
    with pytest.raises(DataError, match=r"a\.txt, image images/train/a\.png, line 1: 8 values"):
        YoloDataset(_yaml(tmp_path / "data.yaml", POSE_YAML), strict=True)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("kpt_shape: [3, 4]\n", r"kpt_shape \[3, 4\] is not \[K, 2\] or \[K, 3\]"),
        (
            "kpt_shape: [3, 3]\nflip_idx: [0, 1]\n",
            r"flip_idx \[0, 1\] is not a permutation of the keypoints 0\.\.2",
        ),
        ("kpt_shape: [2, 3]\nkpt_names: [a, b, c]\n", r"kpt_names \['a', 'b', 'c'\] is not 2 keypoint names"),
        (
            "kpt_shape: [2, 3]\nkpt_names: {0: [a, b], 1: [b, a]}\n",
            r"kpt_names .* differ between classes; a dataset has one set of keypoints",
        ),
        ("kpt_shape: [2, 3]\nkpt_names: [a, a]\n", r"kpt_names: keypoint names repeat: \['a', 'a'\]"),
    ],
)
def test_pose_yaml_problems(tmp_path: Path, extra: str, match: str) -> None:
    _dataset(tmp_path, {"a": None})
    data = _yaml(tmp_path / "data.yaml", "train: images/train\nnames: [p, q]\n" + extra)
    with pytest.raises(DataError, match=re.escape(str(data)) + ": " + match):
        YoloDataset(data)


def test_a_skeleton_without_kpt_shape_is_an_error(tmp_path: Path) -> None:
    _dataset(tmp_path, {"a": f"0 {RECT}\n"})
    data = _yaml(tmp_path / "data.yaml", "train: images/train\nnames: [p]\n")
    assert YoloDataset(data).keypoint_spec is None
    with pytest.raises(DataError, match=r"--format yolo: option skeleton, but .* has no kpt_shape"):
        YoloDataset(data, skeleton=["0-1"])
