"""instance-png (label images) and mask-dirs (one PNG per instance) readers, on files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.data import DataError, load_dataset
from maskrcnn.data.formats.masks import InstancePngDataset, MaskDirsDataset

from .writers_b import box_mask, label_image, rgb

H, W = 12, 16


def _errors(dataset) -> list:
    return [p for p in dataset.problems if p.severity == "error"]


# ------------------------------------------------------------------------------------------------------
# instance-png


def _penn_fudan(root: Path, mode: str = "P", suffix: str = "_mask") -> dict[str, np.ndarray]:
    """Two images; masks with ids 1 and 2 in the first, id 1 in the second."""
    first = box_mask(H, W, (2, 5), (3, 9), 1) + box_mask(H, W, (8, 10), (0, 1), 2)
    second = box_mask(H, W, (0, 11), (15, 15), 1)
    pixels = {}
    for name, values in (("FudanPed00001", first), ("FudanPed00002", second)):
        pixels[name] = rgb(root / "PNGImages" / f"{name}.png", H, W, seed=len(pixels))
        label_image(root / "PedMasks" / f"{name}{suffix}.png", values, mode)
    return pixels


@pytest.mark.parametrize("mode", ["P", "L"])
def test_instance_png_reads_ids_as_instances(tmp_path: Path, mode: str) -> None:
    pixels = _penn_fudan(tmp_path, mode)
    ds = InstancePngDataset(tmp_path)
    assert len(ds) == 2
    assert ds.class_names == ["object"]
    assert ds.problems == []
    image, target = ds[0]
    expected = torch.from_numpy(pixels["FudanPed00001"]).permute(2, 0, 1).float() / 255
    assert torch.allclose(image, expected)
    assert target["boxes"].tolist() == [[3, 2, 10, 6], [0, 8, 2, 11]]
    assert target["labels"].tolist() == [1, 1]
    assert target["area"].tolist() == [4 * 7, 3 * 2]
    assert int(target["image_id"]) == 0
    assert torch.equal(target["masks"][0], torch.from_numpy(box_mask(H, W, (2, 5), (3, 9))).to(torch.uint8))
    _, target = ds[1]
    assert target["boxes"].tolist() == [[15, 0, 16, 12]]
    assert int(target["image_id"]) == 1
    assert ds.records[0].ref == "FudanPed00001.png"
    assert [a.ref for a in ds.records[0].annotations] == ["instance 1", "instance 2"]


def test_instance_png_exact_stem_match_and_folder_options(tmp_path: Path) -> None:
    rgb(tmp_path / "img" / "a.jpg", H, W)
    label_image(tmp_path / "lbl" / "a.png", box_mask(H, W, (1, 1), (1, 1), 7))
    ds = InstancePngDataset(tmp_path, image_dir="img", mask_dir="lbl", class_name="person")
    assert ds.class_names == ["person"]
    _, target = ds[0]
    assert target["boxes"].tolist() == [[1, 1, 2, 2]]


def test_instance_png_16_bit_ids_with_class_map(tmp_path: Path) -> None:
    rgb(tmp_path / "PNGImages" / "x.png", H, W)
    values = box_mask(H, W, (0, 3), (0, 3), 1000) + box_mask(H, W, (5, 6), (5, 9), 300)
    values += box_mask(H, W, (9, 9), (9, 9), 301)
    label_image(tmp_path / "PedMasks" / "x_mask.png", values, "I;16")
    ds = InstancePngDataset(tmp_path, class_map={1000: "car", 300: "person", 301: "person"})
    assert ds.class_names == ["car", "person"]
    _, target = ds[0]
    # Instances in id order: 300, 301, 1000.
    assert target["labels"].tolist() == [2, 2, 1]
    assert target["boxes"].tolist() == [[5, 5, 10, 7], [9, 9, 10, 10], [0, 0, 4, 4]]

    ds = InstancePngDataset(tmp_path, class_map={1000: "car", 300: "person"})
    (problem,) = _errors(ds)
    assert problem.annotation == "instance 301"
    assert problem.image == "x.png"
    assert "301" in problem.message
    assert "class_map" in problem.message
    assert "x_mask.png" in problem.message
    assert ds[0][1]["labels"].tolist() == [2, 1]  # the unmapped instance is skipped, the image kept
    with pytest.raises(DataError, match="instance id 301"):
        InstancePngDataset(tmp_path, class_map={1000: "car", 300: "person"}, strict=True)


def test_instance_png_ignored_ids(tmp_path: Path) -> None:
    rgb(tmp_path / "PNGImages" / "x.png", H, W)
    values = box_mask(H, W, (2, 5), (3, 9), 255)
    values[3:5, 4:8] = 1  # an object with a "void" border, as in VOC
    label_image(tmp_path / "PedMasks" / "x_mask.png", values)
    assert InstancePngDataset(tmp_path, ignore_ids=[255])[0][1]["boxes"].tolist() == [[4, 3, 8, 5]]
    ds = InstancePngDataset(tmp_path, class_map={1: "thing", 255: None})
    assert ds.class_names == ["thing"]
    assert ds[0][1]["labels"].tolist() == [1]


def test_instance_png_size_mismatch_and_missing_mask_are_image_errors(tmp_path: Path) -> None:
    _penn_fudan(tmp_path)
    label_image(tmp_path / "PedMasks" / "FudanPed00002_mask.png", np.ones((H, W + 1)))
    rgb(tmp_path / "PNGImages" / "FudanPed00003.png", H, W)
    ds = InstancePngDataset(tmp_path)
    assert len(ds) == 1
    assert ds.records[0].ref == "FudanPed00001.png"
    size, missing = _errors(ds)
    assert size.image == "FudanPed00002.png"
    assert size.annotation == ""
    assert "FudanPed00002_mask.png is 17x12, the image 16x12" in size.message
    assert missing.image == "FudanPed00003.png"
    assert "no mask file" in missing.message
    assert ds.summary().endswith("skipped 0 instances and 2 images with errors")
    with pytest.raises(DataError, match="17x12"):
        InstancePngDataset(tmp_path, strict=True)


def test_instance_png_all_zero_mask_is_a_negative_and_stray_masks_warn(tmp_path: Path) -> None:
    rgb(tmp_path / "PNGImages" / "empty.png", H, W)
    label_image(tmp_path / "PedMasks" / "empty_mask.png", np.zeros((H, W)))
    label_image(tmp_path / "PedMasks" / "orphan_mask.png", np.zeros((H, W)))
    ds = InstancePngDataset(tmp_path)
    _, target = ds[0]
    assert target["masks"].shape == (0, H, W)
    (warning,) = ds.problems
    assert warning.severity == "warning"
    assert "orphan_mask.png" in warning.message


def test_instance_png_images_and_masks_in_one_folder(tmp_path: Path) -> None:
    rgb(tmp_path / "data" / "a.png", H, W)
    label_image(tmp_path / "data" / "a_mask.png", box_mask(H, W, (2, 5), (3, 9)))
    ds = InstancePngDataset(tmp_path, image_dir="data", mask_dir="data")
    assert len(ds) == 1
    assert ds.problems == []
    assert ds[0][1]["boxes"].tolist() == [[3, 2, 10, 6]]


def test_instance_png_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "PNGImages").mkdir()
    with pytest.raises(DataError, match="no mask folder 'PedMasks'"):
        InstancePngDataset(tmp_path)


# ------------------------------------------------------------------------------------------------------
# mask-dirs


def _sample(root: Path, name: str, masks: dict[str, np.ndarray] | None, seed: int = 0) -> None:
    rgb(root / name / "images" / f"{name}.png", H, W, seed)
    for file, values in (masks or {}).items():
        label_image(root / name / "masks" / file, values * 255)


def test_mask_dirs_reads_one_instance_per_file_and_negatives(tmp_path: Path) -> None:
    _sample(
        tmp_path, "b2", {"m1.png": box_mask(H, W, (2, 5), (3, 9)), "m0.png": box_mask(H, W, (0, 0), (0, 15))}
    )
    _sample(tmp_path, "a1", None, seed=1)  # no masks/ folder: an image without objects
    ds = load_dataset("mask-dirs", tmp_path)
    assert isinstance(ds, MaskDirsDataset)
    assert ds.problems == []
    assert [r.ref for r in ds.records] == ["a1.png", "b2.png"]
    _, negative = ds[0]
    assert negative["masks"].shape == (0, H, W)
    assert int(negative["image_id"]) == 0
    _, target = ds[1]
    assert int(target["image_id"]) == 1
    assert target["boxes"].tolist() == [[0, 0, 16, 1], [3, 2, 10, 6]]  # m0.png then m1.png
    assert target["labels"].tolist() == [1, 1]
    assert [a.ref for a in ds.records[1].annotations] == ["mask m0.png", "mask m1.png"]
    assert ds.summary().startswith("2 images (1 without objects), instances: object 2")


def test_mask_dirs_empty_and_mismatched_masks_are_instance_errors(tmp_path: Path) -> None:
    good = box_mask(H, W, (2, 5), (3, 9))
    _sample(tmp_path, "s", {"empty.png": np.zeros((H, W)), "good.png": good, "wide.png": np.ones((H, W + 2))})
    ds = MaskDirsDataset(tmp_path)
    empty, wide = _errors(ds)
    assert empty.annotation == "mask empty.png"
    assert empty.image == "s.png"
    assert "zero-area" in empty.message
    assert wide.annotation == "mask wide.png"
    assert "mask is 18x12, the image 16x12" in wide.message
    assert ds[0][1]["boxes"].tolist() == [[3, 2, 10, 6]]
    with pytest.raises(DataError, match=r"mask empty\.png.*zero-area"):
        MaskDirsDataset(tmp_path, strict=True)


def test_mask_dirs_class_map_by_longest_prefix(tmp_path: Path) -> None:
    one = box_mask(H, W, (1, 1), (1, 1))
    _sample(tmp_path, "s", {"cell_01.png": one, "cell_big_02.png": one, "debris.png": one, "x.png": one})
    ds = MaskDirsDataset(tmp_path, class_map={"cell": "cell", "cell_big": "big cell", "debris": "debris"})
    assert ds.class_names == ["cell", "big cell", "debris"]
    assert ds[0][1]["labels"].tolist() == [1, 2, 3]  # cell_01, cell_big_02, debris (name order)
    (unmatched,) = _errors(ds)
    assert unmatched.annotation == "mask x.png"
    assert "class_map" in unmatched.message


def test_mask_dirs_16_bit_mask_and_other_image_name(tmp_path: Path) -> None:
    rgb(tmp_path / "s" / "images" / "photo.jpg", H, W)
    label_image(tmp_path / "s" / "masks" / "m.png", box_mask(H, W, (2, 5), (3, 9), 40000), "I;16")
    ds = MaskDirsDataset(tmp_path)
    assert ds.records[0].ref == "photo.jpg"
    assert ds[0][1]["boxes"].tolist() == [[3, 2, 10, 6]]


def test_mask_dirs_sample_without_image_is_an_image_error(tmp_path: Path) -> None:
    _sample(tmp_path, "ok", None)
    (tmp_path / "noimage" / "masks").mkdir(parents=True)
    Image.new("RGB", (W, H)).save(tmp_path / "ok" / "images" / "other.png")  # ok.png still wins
    ds = MaskDirsDataset(tmp_path)
    assert [r.ref for r in ds.records] == ["ok.png"]
    (problem,) = _errors(ds)
    assert problem.image == "noimage"
    assert "no images/ folder" in problem.message
    with pytest.raises(DataError, match="noimage"):
        MaskDirsDataset(tmp_path, strict=True)
