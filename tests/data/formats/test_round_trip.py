"""Every reader -> COCO JSON -> the COCO reader gives the same images, masks, labels and class names, and
for a dataset with keypoints the same keypoints, names, skeleton and mirror pairs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskrcnn.data import load_dataset
from maskrcnn.data.formats.export import write_coco
from tests.data.formats.writers_b import box_mask, label_image, rgb


def _via(root: Path) -> tuple[str, Path, dict]:
    rgb(root / "a.png", 20, 30)
    rgb(root / "b.png", 20, 30, seed=1)
    regions = [
        {
            "shape_attributes": {"name": "polygon", "all_points_x": [2, 12, 7], "all_points_y": [2, 3, 15]},
            "region_attributes": {"kind": "balloon"},
        },
        {
            "shape_attributes": {"name": "circle", "cx": 20, "cy": 10, "r": 5},
            "region_attributes": {"kind": "kite"},
        },
    ]
    data = {
        "a.png123": {"filename": "a.png", "size": 123, "regions": regions, "file_attributes": {}},
        "b.png45": {"filename": "b.png", "size": 45, "regions": [], "file_attributes": {}},
    }
    (root / "via.json").write_text(json.dumps(data))
    return "via", root / "via.json", {"class_attribute": "kind"}


def _labelme(root: Path) -> tuple[str, Path, dict]:
    rgb(root / "a.png", 24, 32)
    shapes = [
        {"label": "cat", "points": [[2, 2], [10, 2], [10, 9]], "group_id": 1, "shape_type": "polygon"},
        {"label": "cat", "points": [[20, 12], [28, 20]], "group_id": 1, "shape_type": "rectangle"},
        {"label": "dog", "points": [[16, 6], [16, 10]], "group_id": None, "shape_type": "circle"},
    ]
    (root / "a.json").write_text(
        json.dumps({"shapes": shapes, "imagePath": "a.png", "imageHeight": 24, "imageWidth": 32})
    )
    return "labelme", root, {}


def _instance_png(root: Path) -> tuple[str, Path, dict]:
    rgb(root / "PNGImages" / "p1.png", 16, 20)
    ids = box_mask(16, 20, (1, 6), (2, 9), 1) + box_mask(16, 20, (9, 14), (10, 18), 2)
    label_image(root / "PedMasks" / "p1_mask.png", ids, mode="P")
    return "instance-png", root, {"class_name": "pedestrian"}


def _mask_dirs(root: Path) -> tuple[str, Path, dict]:
    rgb(root / "n1" / "images" / "n1.png", 12, 14)
    label_image(root / "n1" / "masks" / "m1.png", box_mask(12, 14, (0, 3), (0, 4), 255))
    label_image(root / "n1" / "masks" / "m2.png", box_mask(12, 14, (6, 11), (7, 13), 255))
    rgb(root / "n2" / "images" / "n2.png", 12, 14, seed=2)  # no masks: a negative
    return "mask-dirs", root, {"class_name": "nucleus"}


def _yolo(root: Path) -> tuple[str, Path, dict]:
    rgb(root / "images" / "train" / "y.png", 20, 40)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "y.txt").write_text("1 0.1 0.1 0.4 0.1 0.4 0.6\n0 0.5 0.2 0.9 0.2 0.7 0.9\n")
    (root / "data.yaml").write_text("train: images/train\nnames: [cup, fork]\n")
    return "yolo", root / "data.yaml", {}


def _labelme_keypoints(root: Path) -> tuple[str, Path, dict]:
    rgb(root / "a.png", 24, 32)
    shapes = [
        {"label": "cat", "points": [[2, 2], [12, 20]], "group_id": 1, "shape_type": "rectangle"},
        {"label": "left_ear", "points": [[4.5, 3]], "group_id": 1, "shape_type": "point"},
        {"label": "right_ear", "points": [[9.25, 3.5]], "group_id": 1, "shape_type": "point"},
        {"label": "dog", "points": [[20, 12], [28, 20]], "group_id": 2, "shape_type": "rectangle"},
        {"label": "nose", "points": [[24, 14]], "group_id": 2, "shape_type": "point"},
    ]
    (root / "a.json").write_text(
        json.dumps({"shapes": shapes, "imagePath": "a.png", "imageHeight": 24, "imageWidth": 32})
    )
    return "labelme", root, {"skeleton": ["left_ear-nose", "nose-right_ear"]}


def _yolo_pose(root: Path) -> tuple[str, Path, dict]:
    # Names that do not tell the mirror pairs (kp0, kp1, kp2): flip_idx must survive the conversion.
    rgb(root / "images" / "train" / "y.png", 16, 32)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "y.txt").write_text(
        "0 0.25 0.5 0.25 0.5 0.1875 0.25 2 0.3125 0.375 1 0 0 0\n1 0.75 0.5 0.25 0.5 0.75 0.5 2 0 0 0 0 0 0\n"
    )
    (root / "data.yaml").write_text(
        "train: images/train\nnames: [a, b]\nkpt_shape: [3, 3]\nflip_idx: [0, 2, 1]\n"
    )
    return "yolo", root / "data.yaml", {}


def _coco_keypoints(root: Path) -> tuple[str, Path, dict]:
    rgb(root / "a.png", 16, 20)
    names = ["nose", "left_eye", "right_eye"]
    categories = [{"id": 1, "name": "person", "keypoints": names, "skeleton": [[1, 2], [1, 3]]}]
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [],
            "bbox": [2, 2, 8, 10],
            "keypoints": [5, 4, 2, 3.5, 3.25, 1, 0, 0, 0],
            "num_keypoints": 2,
        },
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[12, 2, 18, 2, 18, 9, 12, 9]]},
    ]
    images = [{"id": 1, "file_name": "a.png", "height": 16, "width": 20}]
    data = {"images": images, "annotations": anns, "categories": categories}
    (root / "k.json").write_text(json.dumps(data))
    return "coco", root / "k.json", {}


@pytest.mark.parametrize(
    "make",
    [_via, _labelme, _instance_png, _mask_dirs, _yolo, _labelme_keypoints, _yolo_pose, _coco_keypoints],
    ids=lambda f: f.__name__[1:],
)
def test_round_trip(tmp_path, make):
    fmt, path, options = make(tmp_path / "src")
    source = load_dataset(fmt, path, **options)
    assert not [p for p in source.problems if p.severity == "error"]
    out = write_coco(source, tmp_path / "coco.json")
    back = load_dataset("coco", out)
    assert back.class_names == source.class_names
    assert len(back) == len(source)
    spec, spec_back = source.keypoint_spec, back.keypoint_spec
    assert (spec is None) == (spec_back is None)
    if spec is not None:
        assert spec_back.names == spec.names
        assert spec_back.skeleton == spec.skeleton
        assert spec_back.flip_permutation() == spec.flip_permutation()
    total = 0
    for i in range(len(source)):
        image, target = source[i]
        image_back, target_back = back[i]
        assert torch.equal(image, image_back)
        assert torch.equal(target["masks"], target_back["masks"])
        assert torch.equal(target["labels"], target_back["labels"])
        assert torch.equal(target["boxes"], target_back["boxes"])
        assert target.keys() == target_back.keys()
        if spec is not None:
            assert target["keypoints"][..., 2].any()
            assert torch.equal(target["keypoints"], target_back["keypoints"])
        total += len(target["labels"])
    assert total >= 2
    assert np.all([p.severity != "error" for p in back.problems])
