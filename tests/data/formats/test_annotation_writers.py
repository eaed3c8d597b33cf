"""The annotation writers end to end: a dataset (the shapes, a COCO file of RLE masks with holes) written
as COCO, LabelMe, VIA and YOLO reads back through our own readers with the same images, classes and masks
(exact at tolerance 0 and for COCO; IoU > 0.98 at the default), and keypoints; predictions with scores;
images of one name from two folders; the layouts the tools need."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from maskrcnn.data import DataError, load_dataset
from maskrcnn.data.formats.annotation_writer import (
    DEFAULT_TOLERANCE,
    SAVE_FORMATS,
    annotation_writer,
    write_dataset,
)
from maskrcnn.data.formats.export import to_coco
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.data.shapes import ShapesDataset
from maskrcnn.ops import rle_encode
from maskrcnn.structures import CroppedMasks

from .writers_a import write_json
from .writers_b import rgb


def _out(root: Path, fmt: str) -> Path:
    return root / ("out.json" if fmt == "coco" else fmt)


def _read(fmt: str, written: Path, source) -> object:
    """``written`` read back, told the class order (LabelMe and VIA sort the classes they find) and the
    keypoint order (LabelMe's points carry names only)."""
    names = list(source.class_names)
    options = {
        "coco": {},
        "labelme": {"class_names": names},
        "via": {"class_attribute": "class", "class_names": names},
        "yolo": {},
    }[fmt]
    if fmt == "labelme" and source.keypoint_spec is not None:
        options["keypoints"] = list(source.keypoint_spec.names)
    back = load_dataset(fmt, written, **options)
    assert [str(p) for p in back.problems if p.severity == "error"] == []
    return back


def _pairs(source, back) -> list[tuple[dict, dict]]:
    """``(source target, read-back target)`` per image, matched by the pixels (the readers order images
    their own way)."""
    assert len(back) == len(source)
    items = [source[i] for i in range(len(source))]
    pairs = []
    for i in range(len(back)):
        image, target = back[i]
        (match,) = [t for im, t in items if torch.equal(im, image)]
        pairs.append((match, target))
    return pairs


def _ious(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    a, b = a.bool().flatten(1), b.bool().flatten(1)
    return ((a & b).sum(1) / (a | b).sum(1)).tolist()


def _check_masks(pairs, *, exact: bool) -> int:
    count = 0
    for target, target_back in pairs:
        assert torch.equal(target["labels"], target_back["labels"])
        if exact:
            assert torch.equal(target["masks"], target_back["masks"])
        else:
            assert min(_ious(target["masks"], target_back["masks"]), default=1.0) > 0.98
        count += len(target["labels"])
    return count


@pytest.mark.parametrize("tolerance", [0.0, DEFAULT_TOLERANCE])
@pytest.mark.parametrize("fmt", SAVE_FORMATS)
def test_the_shapes_round_trip(tmp_path, fmt, tolerance):
    source = ShapesDataset(count=3, seed=5, image_size=96)
    written = write_dataset(source, fmt, _out(tmp_path, fmt), tolerance=tolerance)
    back = _read(fmt, written, source)
    assert back.class_names == source.class_names
    # Synthetic images are written as PNGs: the pixels come back (matched in _pairs).
    assert _check_masks(_pairs(source, back), exact=tolerance == 0 or fmt == "coco") >= 4


def _coco_with_holes(root: Path) -> Path:
    """Two photos in src/ and a COCO file of RLE masks: a ring (a hole), an object of two parts with a hole
    in one, a polygon, a negative image."""
    rgb(root / "src" / "a.png", 40, 50)
    rgb(root / "src" / "b.jpg", 30, 20, seed=3)
    ring = np.zeros((40, 50), dtype=np.uint8)
    ring[5:25, 5:30] = 1
    ring[10:18, 12:20] = 0
    parts = np.zeros((40, 50), dtype=np.uint8)
    parts[28:38, 2:12] = 1
    parts[30:33, 5:8] = 0
    parts[26:39, 30:48] = 1
    images = [
        {"id": 3, "file_name": "a.png", "height": 40, "width": 50},
        {"id": 9, "file_name": "b.jpg", "height": 30, "width": 20},
    ]
    annotations = [
        {"id": 1, "image_id": 3, "category_id": 5, "segmentation": rle_encode(torch.from_numpy(ring))[0]},
        {"id": 2, "image_id": 3, "category_id": 2, "segmentation": rle_encode(torch.from_numpy(parts))[0]},
        {"id": 3, "image_id": 3, "category_id": 5, "segmentation": [[33, 3, 46, 3, 40, 20]]},
    ]
    categories = [{"id": 5, "name": "donut"}, {"id": 2, "name": "pair"}]
    return write_json(
        root / "src" / "coco.json", {"images": images, "annotations": annotations, "categories": categories}
    )


@pytest.mark.parametrize("fmt", SAVE_FORMATS)
def test_a_coco_file_with_holes_round_trips(tmp_path, fmt):
    source = load_dataset("coco", _coco_with_holes(tmp_path))
    for tolerance in (0.0, DEFAULT_TOLERANCE):
        out = _out(tmp_path / str(tolerance), fmt)
        back = _read(fmt, write_dataset(source, fmt, out, tolerance=tolerance), source)
        assert back.class_names == source.class_names == ["pair", "donut"]  # COCO's order: by id
        assert _check_masks(_pairs(source, back), exact=tolerance == 0 or fmt == "coco") == 3
    if fmt == "via":
        # The project lies apart from the photos: VIA, and the reader, find them through default_filepath.
        project = json.loads((out / "via_region_data.json").read_text())
        assert project["_via_settings"]["core"]["default_filepath"] == f"{(tmp_path / 'src').as_posix()}/"
        assert sorted(p.name for p in out.iterdir()) == ["via_region_data.json"]
    if fmt == "coco":  # the categories keep their ids
        categories = json.loads(out.read_text())["categories"]
        assert [(c["id"], c["name"]) for c in categories] == [(2, "pair"), (5, "donut")]


def _pose_dataset() -> ShapesDataset:
    source = ShapesDataset(count=3, seed=2, image_size=96, keypoints=True)
    visibility = torch.cat([source[i][1]["keypoints"][..., 2].flatten() for i in range(3)])
    assert {0.0, 1.0, 2.0} <= set(visibility.tolist())  # hidden and unlabelled points are among them
    return source


@pytest.mark.parametrize("fmt", ["coco", "labelme", "yolo"])
def test_keypoints_round_trip(tmp_path, fmt):
    source = _pose_dataset()
    back = _read(fmt, write_dataset(source, fmt, _out(tmp_path, fmt)), source)
    assert back.keypoint_spec.names == source.keypoint_spec.names
    assert back.keypoint_spec.flip_permutation() == source.keypoint_spec.flip_permutation()
    for target, target_back in _pairs(source, back):
        points, points_back = target["keypoints"], target_back["keypoints"]
        assert torch.equal(target["labels"], target_back["labels"])
        if fmt == "labelme":  # LabelMe has no hidden points: every labelled one reads back visible
            assert torch.equal(points[..., :2], points_back[..., :2])
            assert torch.equal(points[..., 2] > 0, points_back[..., 2] == 2)
        else:
            assert torch.equal(points, points_back)
        if fmt == "yolo":  # YOLO pose has no outlines: the boxes of the masks come back
            assert torch.equal(target["boxes"], target_back["boxes"])
        else:
            assert min(_ious(target["masks"], target_back["masks"]), default=1.0) > 0.98


def test_via_leaves_keypoints_out_with_a_warning(tmp_path, caplog):
    source = _pose_dataset()
    with caplog.at_level(logging.WARNING):
        written = write_dataset(source, "via", tmp_path / "via")
    assert f"{tmp_path / 'via'}: VIA has no keypoints; the 4 keypoints are left out" in caplog.text
    back = _read("via", written, source)
    assert back.keypoint_spec is None
    assert _check_masks(_pairs(source, back), exact=False) > 0


@pytest.mark.parametrize("fmt", SAVE_FORMATS)
def test_images_of_one_name_in_two_folders_are_both_written(tmp_path, fmt):
    rgb(tmp_path / "src" / "day" / "x.png", 12, 16)
    rgb(tmp_path / "src" / "night" / "x.png", 12, 16, seed=1)
    images = [
        {"id": k, "file_name": f"{f}/x.png", "height": 12, "width": 16} for k, f in ((1, "day"), (2, "night"))
    ]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 7, 1, 7]]},
        {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[4, 3, 15, 3, 15, 11, 4, 11]]},
    ]
    path = write_json(
        tmp_path / "src" / "coco.json",
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cat"}]},
    )
    source = load_dataset("coco", path)
    out = _out(tmp_path, fmt)
    back = _read(fmt, write_dataset(source, fmt, out, tolerance=0), source)
    _check_masks(_pairs(source, back), exact=True)
    if fmt == "labelme":
        assert sorted(p.name for p in out.iterdir()) == ["x.json", "x_2.json"]
    if fmt == "yolo":
        assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["x.png", "x_2.png"]
        assert sorted(p.name for p in (out / "labels" / "train").iterdir()) == ["x.txt", "x_2.txt"]


def _prediction(tmp_path: Path) -> dict:
    """What a Predictor's Detections give: cropped masks (the last one empty), labels, scores, keypoints
    ``(x, y, 1)``."""
    rgb(tmp_path / "photo.jpg", 30, 40)
    dense = torch.zeros(3, 30, 40, dtype=torch.bool)
    dense[0, 2:12, 3:15] = True
    dense[1, 15:28, 20:38] = True
    dense[1, 20:23, 25:30] = False
    keypoints = torch.tensor(
        [[[5.5, 4.25, 1.0], [12.0, 10.0, 1.0]], [[22.0, 18.0, 1.0], [30.5, 25.0, 1.0]], [[0.0, 0.0, 1.0]] * 2]
    )
    return {
        "image_path": tmp_path / "photo.jpg",
        "height": 30,
        "width": 40,
        "masks": CroppedMasks.from_dense(dense),
        "labels": torch.tensor([2, 1, 1]),
        "scores": torch.tensor([0.934, 0.51, 0.3]),
        "keypoints": keypoints,
    }


@pytest.mark.parametrize("fmt", SAVE_FORMATS)
def test_predictions_are_written_with_their_scores(tmp_path, fmt, caplog):
    spec = KeypointSpec(("head", "tail"))
    prediction = _prediction(tmp_path)
    writer = annotation_writer(fmt, _out(tmp_path, fmt), class_names=["cat", "dog"], keypoint_spec=spec)
    with caplog.at_level(logging.WARNING):
        writer.add(**prediction)
        out = writer.close()
    assert "1 empty masks left out (no outline to draw)" in caplog.text
    if fmt == "coco":
        annotations = json.loads(out.read_text())["annotations"]
        assert [a["score"] for a in annotations] == [0.934, 0.51]
        assert annotations[0]["keypoints"] == [5.5, 4.25, 1, 12.0, 10.0, 1]
        assert annotations[1]["bbox"] == [20.0, 15.0, 18.0, 13.0]
    if fmt == "labelme":
        shapes = json.loads((out / "photo.json").read_text())["shapes"]
        assert [(s["label"], s["shape_type"], s["group_id"], s["description"]) for s in shapes] == [
            ("dog", "polygon", 1, "score 0.93"),
            ("head", "point", 1, ""),
            ("tail", "point", 1, ""),
            ("cat", "polygon", 2, "score 0.51"),
            ("head", "point", 2, ""),
            ("tail", "point", 2, ""),
        ]
    back = load_dataset(fmt, out, **({"class_names": ["cat", "dog"]} if fmt in ("labelme", "via") else {}))
    _, target = back[0]
    assert target["labels"].tolist() == [2, 1]
    expected = prediction["masks"].dense()[:2]
    if fmt == "yolo":  # pose lines: the boxes
        assert target["boxes"].tolist() == [[3.0, 2.0, 15.0, 12.0], [20.0, 15.0, 38.0, 28.0]]
        assert target["keypoints"][0].tolist() == [[5.5, 4.25, 1.0], [12.0, 10.0, 1.0]]
    else:
        assert min(_ious(expected, target["masks"])) > 0.98


def test_crowd_regions_stay_in_coco_and_are_left_out_elsewhere(tmp_path, caplog):
    rgb(tmp_path / "src" / "a.png", 12, 16)
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 7, 1, 7]]},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[10, 3, 15, 3, 15, 11]], "iscrowd": 1},
    ]
    path = write_json(
        tmp_path / "src" / "coco.json",
        {
            "images": [{"id": 1, "file_name": "a.png", "height": 12, "width": 16}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "cat"}],
        },
    )
    source = load_dataset("coco", path)
    coco = load_dataset("coco", write_dataset(source, "coco", tmp_path / "out.json"))
    assert coco[0][1]["iscrowd"].tolist() == [0, 1]
    with caplog.at_level(logging.WARNING):
        out = write_dataset(source, "labelme", tmp_path / "labelme")
    assert "1 crowd regions left out (LabelMeWriter writes no crowd regions)" in caplog.text
    assert len(json.loads((out / "a.json").read_text())["shapes"]) == 1


def test_the_layouts(tmp_path):
    source = load_dataset("coco", _coco_with_holes(tmp_path))
    labelme = write_dataset(source, "labelme", tmp_path / "labelme")
    a = json.loads((labelme / "a.json").read_text())
    assert (a["imagePath"], a["imageData"], a["imageHeight"], a["imageWidth"]) == (
        "../src/a.png",
        None,
        40,
        50,
    )
    assert [(s["label"], s["group_id"]) for s in a["shapes"]] == [
        ("donut", None),
        ("pair", 2),
        ("pair", 2),
        ("donut", None),
    ]
    assert json.loads((labelme / "b.json").read_text())["shapes"] == []  # the negative

    via = json.loads(write_dataset(source, "via", tmp_path / "via").read_text())
    assert list(via["_via_img_metadata"]) == [
        f"a.png{os.path.getsize(tmp_path / 'src' / 'a.png')}",
        f"b.jpg{os.path.getsize(tmp_path / 'src' / 'b.jpg')}",
    ]
    assert via["_via_image_id_list"] == list(via["_via_img_metadata"])
    assert via["_via_attributes"]["region"]["class"]["options"] == {"pair": "", "donut": ""}
    regions = via["_via_img_metadata"][via["_via_image_id_list"][0]]["regions"]
    assert [r["region_attributes"] for r in regions] == [
        {"class": "donut"},
        {"class": "pair"},
        {"class": "donut"},
    ]

    data_yaml = write_dataset(source, "yolo", tmp_path / "yolo")
    data = yaml.safe_load(data_yaml.read_text())
    assert data == {"train": "images/train", "val": "images/train", "names": {0: "pair", 1: "donut"}}
    image = tmp_path / "yolo" / "images" / "train" / "b.jpg"
    assert os.path.samefile(image, tmp_path / "src" / "b.jpg")  # a hard link: no copy of the pixels
    assert (tmp_path / "yolo" / "labels" / "train" / "b.txt").read_text() == ""  # a negative
    write_dataset(source, "yolo", tmp_path / "yolo")  # again over the earlier run: replaced
    lines = (tmp_path / "yolo" / "labels" / "train" / "a.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["1", "0", "1"]
    # The triangle's outline, divided by the width (50) and height (40): short decimals, inside 0..1.
    assert lines[2].startswith("1 0.66 0.09 0.672 0.075 0.912 0.075 ")
    assert all(0 <= float(v) <= 1 and len(v) <= 11 for line in lines for v in line.split()[1:])


def test_add_checks_its_arguments(tmp_path):
    writer = annotation_writer("labelme", tmp_path / "out", class_names=["cat"])
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 2:4, 2:4] = True
    image = torch.zeros(3, 8, 8)
    ok = {"image_path": None, "height": 8, "width": 8, "masks": masks, "image": image}
    with pytest.raises(DataError, match=r"labels \[2\] for 1 masks; expected 1 labels in 1\.\.1"):
        writer.add(**ok, labels=torch.tensor([2]))
    with pytest.raises(DataError, match=r"masks of a \(8, 8\) image for a \(8, 9\) image"):
        writer.add(**{**ok, "width": 9}, labels=torch.tensor([1]))
    with pytest.raises(DataError, match="keypoints given, but the writer has no keypoint_spec"):
        writer.add(**ok, labels=torch.tensor([1]), keypoints=torch.zeros(1, 2, 3))
    with pytest.raises(DataError, match="no image_path and no image to write"):
        writer.add(**{**ok, "image": None}, labels=torch.tensor([1]))
    writer.add(**ok, labels=torch.tensor([1]), name="frame")
    assert writer.close() == tmp_path / "out"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["frame.json", "frame.png"]
    with pytest.raises(DataError, match="is closed"):
        writer.add(**ok, labels=torch.tensor([1]))
    with pytest.raises(
        ValueError, match="unknown annotation format 'voc'; choose from coco, labelme, via, yolo"
    ):
        annotation_writer("voc", tmp_path, class_names=["cat"])


def test_the_coco_writer_writes_what_to_coco_gives(tmp_path):
    # Two ways to a COCO dict (convert's writer, evaluation's to_coco), one builder: the same file.
    source = load_dataset("coco", _coco_with_holes(tmp_path))
    for root in (None, tmp_path):
        written = write_dataset(source, "coco", tmp_path / "writer.json", image_root=root)
        assert json.loads(written.read_text()) == to_coco(source, image_root=root)
