"""Every reader -> COCO JSON -> the COCO reader gives the same images, masks, labels and class names."""

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


@pytest.mark.parametrize(
    "make", [_via, _labelme, _instance_png, _mask_dirs, _yolo], ids=lambda f: f.__name__[1:]
)
def test_round_trip(tmp_path, make):
    fmt, path, options = make(tmp_path / "src")
    source = load_dataset(fmt, path, **options)
    assert not [p for p in source.problems if p.severity == "error"]
    out = write_coco(source, tmp_path / "coco.json")
    back = load_dataset("coco", out)
    assert back.class_names == source.class_names
    assert len(back) == len(source)
    total = 0
    for i in range(len(source)):
        image, target = source[i]
        image_back, target_back = back[i]
        assert torch.equal(image, image_back)
        assert torch.equal(target["masks"], target_back["masks"])
        assert torch.equal(target["labels"], target_back["labels"])
        assert torch.equal(target["boxes"], target_back["boxes"])
        total += len(target["labels"])
    assert total >= 2
    assert np.all([p.severity != "error" for p in back.problems])
