"""Export of any dataset to COCO JSON: structure, ids, file names, atomic writing, lossless masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from maskrcnn.data import AnnotatedDataset, Annotation, DataError, ImageRecord, InstanceDataset
from maskrcnn.data.formats.coco import CocoDataset
from maskrcnn.data.formats.export import CocoBuilder, convert, to_coco, write_coco
from maskrcnn.data.formats.masks import MaskDirsDataset
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.ops.masks import rle_decode

from .writers_b import box_mask, label_image, rgb

H, W = 12, 16


def _mask_dirs(root: Path) -> MaskDirsDataset:
    """Sample ``a`` with two instances (one ragged), sample ``b`` without any."""
    ragged = box_mask(H, W, (0, 11), (15, 15))
    ragged[3, 2] = ragged[7, 9] = 1  # not a box: the RLE must keep every pixel
    rgb(root / "a" / "images" / "a.png", H, W)
    label_image(root / "a" / "masks" / "m1.png", box_mask(H, W, (2, 5), (3, 9)) * 255)
    label_image(root / "a" / "masks" / "m2.png", ragged * 255)
    rgb(root / "b" / "images" / "b.png", H, W)
    return MaskDirsDataset(root)


def _decoded(coco: dict, image_id: int) -> list[Tensor]:
    return [rle_decode(a["segmentation"]) for a in coco["annotations"] if a["image_id"] == image_id]


def test_to_coco_structure(tmp_path: Path) -> None:
    ds = _mask_dirs(tmp_path / "src")
    coco = to_coco(ds, image_root=tmp_path / "src")
    assert coco["categories"] == [{"id": 1, "name": "object"}]
    assert coco["images"] == [
        {"id": 0, "file_name": "a/images/a.png", "height": H, "width": W},
        {"id": 1, "file_name": "b/images/b.png", "height": H, "width": W},
    ]
    first, second = coco["annotations"]
    assert first["id"] == 1
    assert second["id"] == 2
    assert first["image_id"] == 0
    assert first["category_id"] == 1
    assert first["iscrowd"] == 0
    assert first["bbox"] == [3, 2, 7, 4]
    assert first["area"] == 28
    assert second["bbox"] == [2, 0, 14, 12]
    assert second["area"] == 14
    assert isinstance(first["segmentation"]["counts"], str)
    assert first["segmentation"]["size"] == [H, W]
    for mask, (_, target) in zip(_decoded(coco, 0), [ds[0]], strict=False):
        assert torch.equal(mask, target["masks"][0])
    assert torch.equal(torch.stack(_decoded(coco, 0)), ds[0][1]["masks"])
    json.dumps(coco)  # JSON-ready


def test_to_coco_absolute_names_and_category_ids(tmp_path: Path) -> None:
    rgb(tmp_path / "img.png", H, W)
    records = [
        ImageRecord(
            image_id=42,
            path=tmp_path / "img.png",
            height=H,
            width=W,
            annotations=[
                Annotation(2, [[3, 2, 10, 2, 10, 6, 3, 6]]),
                Annotation(1, [[0, 0, 4, 0, 0, 4]], True),
            ],
        )
    ]
    ds = AnnotatedDataset(
        records, ["cat", "dog"], category_ids=[17, 5], transforms=lambda i, t: (i.flip(-1), t)
    )
    coco = to_coco(ds)
    assert coco["images"][0]["file_name"] == (tmp_path / "img.png").as_posix()
    assert coco["images"][0]["id"] == 42
    assert coco["categories"] == [{"id": 17, "name": "cat"}, {"id": 5, "name": "dog"}]
    assert [a["category_id"] for a in coco["annotations"]] == [5, 17]
    assert [a["iscrowd"] for a in coco["annotations"]] == [0, 1]
    assert coco["annotations"][0]["bbox"] == [3, 2, 7, 4]
    assert ds.transforms is not None  # set aside while exporting, then restored


class _NoFiles(InstanceDataset):
    """Two in-memory images, the second with the same image id unless told otherwise."""

    def __init__(self, second_id: int) -> None:
        super().__init__()
        self.add_class("blob")
        self.add_image(image_id=3)
        self.add_image(image_id=second_id)

    def load_image(self, index: int) -> Tensor:
        return torch.zeros(3, H, W)

    def load_masks(self, index: int) -> tuple[Tensor, Tensor]:
        masks = torch.zeros(2, H, W, dtype=torch.uint8)
        masks[0, 1:3, 1:3] = 1  # the second mask is empty: dropped by the item
        return masks, torch.ones(2, dtype=torch.int64)


def test_to_coco_dataset_without_files() -> None:
    coco = to_coco(_NoFiles(second_id=8))
    assert [i["file_name"] for i in coco["images"]] == ["image_3.png", "image_8.png"]
    assert [(a["image_id"], a["bbox"], a["area"]) for a in coco["annotations"]] == [
        (3, [1, 1, 2, 2], 4),
        (8, [1, 1, 2, 2], 4),
    ]
    with pytest.raises(DataError, match="share image_id 3"):
        to_coco(_NoFiles(second_id=3))


def test_write_coco_is_atomic_and_round_trips_masks(tmp_path: Path) -> None:
    ds = _mask_dirs(tmp_path / "src")
    out = tmp_path / "out" / "sub" / "coco.json"
    assert write_coco(ds, out, image_root=tmp_path / "src") == out
    assert sorted(p.name for p in out.parent.iterdir()) == ["coco.json"]  # no temporary file left
    coco = json.loads(out.read_text())
    assert len(coco["annotations"]) == 2
    out.write_text("old")
    write_coco(ds, out)
    assert json.loads(out.read_text())["images"][0]["file_name"].endswith("/src/a/images/a.png")

    with pytest.raises(DataError):  # a failure leaves the old file and no temporary one
        write_coco(_NoFiles(second_id=3), out)
    assert json.loads(out.read_text())["images"][0]["file_name"].endswith("/src/a/images/a.png")
    assert sorted(p.name for p in out.parent.iterdir()) == ["coco.json"]


@pytest.mark.parametrize("relative", [True, False])
def test_round_trip_through_the_coco_reader(tmp_path: Path, relative: bool) -> None:
    ds = _mask_dirs(tmp_path / "src")
    out = write_coco(ds, tmp_path / "coco.json", image_root=tmp_path / "src" if relative else None)
    # Absolute file names: found whatever image_dir says.
    back = CocoDataset(out, image_dir=tmp_path / "src" if relative else tmp_path / "elsewhere")
    assert back.class_names == ds.class_names
    assert len(back) == len(ds)
    for index in range(len(ds)):
        image, target = ds[index]
        image_back, target_back = back[index]
        assert torch.equal(image, image_back)
        for key in ("masks", "labels", "boxes", "iscrowd", "image_id"):
            assert torch.equal(target[key], target_back[key]), key


def test_convert_yolo(tmp_path: Path) -> None:
    rgb(tmp_path / "images" / "train" / "a.png", 16, 32)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text(
        "1 0.09375 0.125 0.3125 0.125 0.3125 0.375\n0 0.5 0.5\n"
    )
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: [p, q]\n")
    out = convert("yolo", tmp_path / "data.yaml", tmp_path / "coco.json", image_root=tmp_path, split="train")
    coco = json.loads(out.read_text())
    assert coco["images"][0]["file_name"] == "images/train/a.png"
    assert [c["name"] for c in coco["categories"]] == ["p", "q"]
    (ann,) = coco["annotations"]  # the bad line 2 is left out
    assert ann["category_id"] == 2
    mask = rle_decode(ann["segmentation"]).numpy()
    assert ann["area"] == int(mask.sum())
    assert mask.shape == (16, 32)
    ys, xs = np.nonzero(mask)
    assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
    with pytest.raises(DataError, match="line 2"):
        convert("yolo", tmp_path / "data.yaml", tmp_path / "strict.json", strict=True)
    assert not (tmp_path / "strict.json").exists()


def _keypoint_records(tmp_path: Path) -> list[ImageRecord]:
    rgb(tmp_path / "img.png", H, W)
    annotations = [
        Annotation(1, [[3, 2, 10, 2, 10, 6, 3, 6]], keypoints=[4, 3, 2, 9.5, 5.25, 1, 0, 0, 0]),
        Annotation(1, [[0, 6, 4, 6, 4, 10, 0, 10]], True),  # a crowd: no keypoints
    ]
    return [ImageRecord(image_id=7, path=tmp_path / "img.png", height=H, width=W, annotations=annotations)]


def test_to_coco_writes_keypoints_as_coco_person_keypoints(tmp_path: Path) -> None:
    spec = KeypointSpec(("nose", "left_eye", "right_eye"), ((0, 1), (0, 2)))
    ds = AnnotatedDataset(_keypoint_records(tmp_path), ["person"], keypoint_spec=spec)
    coco = to_coco(ds)
    assert coco["categories"] == [
        {
            "id": 1,
            "name": "person",
            "keypoints": ["nose", "left_eye", "right_eye"],
            "skeleton": [[1, 2], [1, 3]],
        }
    ]
    first, crowd = coco["annotations"]
    assert first["keypoints"] == [4, 3, 2, 9.5, 5.25, 1, 0, 0, 0]
    assert all(isinstance(v, int) for v in first["keypoints"][2::3])  # visibilities as COCO writes them
    assert first["num_keypoints"] == 2
    assert crowd["keypoints"] == [0] * 9
    assert crowd["num_keypoints"] == 0
    json.dumps(coco)


def test_mirror_pairs_the_names_do_not_tell_are_written_as_flip_index(tmp_path: Path) -> None:
    spec = KeypointSpec(("kp0", "kp1", "kp2"), flip_index=(0, 2, 1))
    ds = AnnotatedDataset(_keypoint_records(tmp_path), ["thing"], keypoint_spec=spec)
    (category,) = to_coco(ds)["categories"]
    assert category["flip_index"] == [0, 2, 1]
    # Pairs the names already tell are not repeated.
    named = KeypointSpec(("nose", "left_eye", "right_eye"), flip_index=(0, 2, 1))
    assert "flip_index" not in CocoBuilder(["person"], [1], keypoint_spec=named).categories[0]


def test_a_target_without_the_dataset_keypoints_is_an_error() -> None:
    builder = CocoBuilder(["person"], [1], keypoint_spec=KeypointSpec.default(3))
    target = {
        "masks": torch.ones(1, H, W, dtype=torch.uint8),
        "boxes": torch.tensor([[0.0, 0, W, H]]),
        "labels": torch.tensor([1]),
    }
    with pytest.raises(DataError, match=r"a\.png: the dataset has 3 keypoints, its target keypoints none; "):
        builder.add(1, H, W, target, reference="a.png")
    with pytest.raises(DataError, match=r"keypoints \[1, 2, 3\]; expected \[1, 3, 3\]"):
        builder.add(1, H, W, {**target, "keypoints": torch.zeros(1, 2, 3)})
    assert builder.images == []  # nothing added by a failed call
