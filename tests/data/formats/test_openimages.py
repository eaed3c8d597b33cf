"""``--format openimages`` on a small download laid out as Google publishes it (openimages_fixture.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data import DataError, load_dataset
from maskrcnn.data.formats.detect import detect_format
from maskrcnn.data.formats.openimages import OpenImagesDataset, read_class_descriptions

from .openimages_fixture import CAR, IMAGES, PUMPKIN, replace_line, write_mask, write_open_images


def _errors(dataset) -> list[str]:
    return [str(p) for p in dataset.problems if p.severity == "error"]


def _warnings(dataset) -> list[str]:
    return [str(p) for p in dataset.problems if p.severity == "warning"]


def _assert_items_match(dataset, fixture, rows=None) -> None:
    """Every item's image is the JPEG's pixels and its instances the fixture's masks resized (exactly),
    labelled by name, in CSV order; ``rows`` (CSV lines) limits the masks expected."""
    for index in range(len(dataset)):
        record = dataset.records[index]
        image_id = record.extra["open_images_id"]
        expected = [m for m in fixture.masks_of(image_id) if rows is None or m.line in rows]
        image, target = dataset[index]
        pixels = np.array(Image.open(fixture.images[image_id]).convert("RGB"))
        assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
        assert [dataset.class_names[k - 1] for k in target["labels"].tolist()] == [m.name for m in expected]
        assert target["masks"].shape == (len(expected), *image.shape[-2:])
        for mask, want in zip(target["masks"], expected, strict=True):
            assert np.array_equal(mask.numpy().astype(bool), want.expected)
        assert int(target["image_id"]) == [iid for iid, _, _ in IMAGES].index(image_id)


@pytest.mark.parametrize(
    ("masks", "v7"),
    [("zip-folders", False), ("flat", True), ("beside", False)],
    ids=["zips-v5", "flat-v7", "beside"],
)
def test_instances_are_the_masks_resized_to_the_image(tmp_path: Path, masks: str, v7: bool) -> None:
    fixture = write_open_images(tmp_path, masks=masks, v7=v7)
    dataset = OpenImagesDataset(fixture.csv)
    assert dataset.problems == []
    assert dataset.class_names == ["Car", "Man", "Pumpkin"]  # every class the CSV has, sorted
    assert [r.ref for r in dataset.records] == [f"{iid}.jpg" for iid, _, _ in IMAGES]
    assert [len(r.annotations) for r in dataset.records] == [3, 2, 1, 1, 1]
    assert [a.ref for a in dataset.records[0].annotations] == ["line 2", "line 3", "line 4"]
    # The resize is not a no-op: the masks are at other sizes (2x, odd, half) than the images.
    assert fixture.masks[0].drawn.shape == (96, 128)
    assert fixture.masks[3].drawn.shape == (73, 97)
    _assert_items_match(dataset, fixture)
    assert dataset.summary().startswith("5 images (0 without objects), instances: Car 2, Man 1, Pumpkin 5")


def test_class_descriptions_with_and_without_the_v7_header(tmp_path: Path) -> None:
    v5 = write_open_images(tmp_path / "v5").class_csv
    v7 = write_open_images(tmp_path / "v7", v7=True).class_csv
    assert v7.read_text().startswith("LabelName,DisplayName\n")
    assert v5.read_text().startswith("/m/011k07,")
    assert read_class_descriptions(v5) == read_class_descriptions(v7)
    assert len(read_class_descriptions(v5)) == 30
    assert read_class_descriptions(v5)[PUMPKIN] == "Pumpkin"


def test_classes_and_min_iou_keep_only_what_is_asked(tmp_path: Path) -> None:
    fixture = write_open_images(tmp_path)
    dataset = OpenImagesDataset(fixture.csv, classes=["Pumpkin", "Man"], min_iou=0.6)
    assert dataset.class_names == ["Pumpkin", "Man"]  # the order given
    # Image 3 has only a Car: not part of the dataset. Image 4's only Pumpkin is below the floor: left out
    # (not a negative). Line 3 (IoU 0.45) is left out of image 0, line 2 and 4 (0.91, 0.80) kept.
    assert [r.image_id for r in dataset.records] == [0, 1, 2]
    assert dataset.problems == []
    _assert_items_match(dataset, fixture, rows={2, 4, 5, 7})
    assert dataset[0][1]["labels"].tolist() == [1, 2]
    assert dataset.summary().endswith("; 2 masks below min_iou=0.6 left out")
    # The floor alone keeps every class; the class list alone keeps every mask of it.
    assert len(OpenImagesDataset(fixture.csv, min_iou=0.6)) == 4
    only = OpenImagesDataset(fixture.csv, classes=["Car"])
    assert only.class_names == ["Car"]
    assert [r.image_id for r in only.records] == [1, 3]
    # Through load_dataset, as -o classes=Pumpkin,Man -o min_iou=0.6 gives them (one text, one number).
    loaded = load_dataset("openimages", fixture.csv, classes="Pumpkin,Man", min_iou=0.6)
    assert loaded.class_names == ["Pumpkin", "Man"]
    assert len(loaded) == 3


def test_class_names_the_csv_lacks_are_refused_with_close_names(tmp_path: Path) -> None:
    fixture = write_open_images(tmp_path)
    with pytest.raises(
        DataError, match=r"class-descriptions-boxable.csv: no class 'pumpkins' .*close names: Pumpkin"
    ):
        OpenImagesDataset(fixture.csv, classes=["pumpkins"])
    with pytest.raises(DataError, match=r"no class 'Zebra' among its 30 \(no close name\)"):
        OpenImagesDataset(fixture.csv, classes=["Pumpkin", "Zebra"])
    with pytest.raises(DataError, match=r"min_iou=1.5 is not a number in 0\.\.1"):
        OpenImagesDataset(fixture.csv, min_iou=1.5)
    # A class the class CSV has but no row uses: an empty class, said.
    empty = OpenImagesDataset(fixture.csv, classes=["Pumpkin", "Squash"])
    assert empty.class_names == ["Pumpkin", "Squash"]
    assert _warnings(empty) == [f"warning: {fixture.csv}: class 'Squash' has no instances"]
    # Two MIDs of one display name are one class (V7's 20,000 classes have such names).
    fixture.class_csv.write_text(fixture.class_csv.read_text().replace("/m/0dv77,Squash", "/m/0dv77,Pumpkin"))
    replace_line(fixture, 8, CAR, "/m/0dv77")  # image 3's Car becomes the other Pumpkin
    merged = OpenImagesDataset(fixture.csv, classes=["Pumpkin"])
    assert [r.image_id for r in merged.records] == [0, 1, 2, 3, 4]
    assert _warnings(merged) == [
        f"warning: {fixture.csv}: LabelNames /m/05zsy, /m/0dv77 share the display name 'Pumpkin': one class"
    ]
    assert OpenImagesDataset(fixture.csv).class_names == ["Car", "Man", "Pumpkin"]


def test_problems_name_the_csv_line_column_and_value(tmp_path: Path) -> None:
    fixture = write_open_images(tmp_path)
    m = fixture.masks
    m[5].path.unlink()  # line 7, image 2's only mask
    fixture.images[IMAGES[3][0]].unlink()  # image 3
    replace_line(fixture, 3, "0.45000", "0.x5")  # PredictedIoU of line 3
    replace_line(fixture, 6, CAR, "/m/0zzzzz")  # unknown LabelName on line 6 (image 1's Car)
    lines = fixture.csv.read_text().splitlines()
    box = lines[8].split(",")
    box[4] = "1.7"  # BoxXMin of line 9
    lines[8] = ",".join(box)
    lines.append("onlyone,field")  # line 10
    lines.append(f"x.png,,{PUMPKIN},1,0,1,0,1,0.9,")  # line 11
    fixture.csv.write_text("\n".join(lines) + "\n")

    dataset = OpenImagesDataset(fixture.csv, min_iou=0.5)
    csv = str(fixture.csv)
    i0, i1, i2, i3, i4 = (f"{iid}.jpg" for iid, _, _ in IMAGES)
    assert _errors(dataset) == [
        f"error: {csv}, image {i0}, line 3: PredictedIoU '0.x5' is not a number",
        f"error: {csv}, image {i1}, line 6: LabelName '/m/0zzzzz' is not in class-descriptions-boxable.csv",
        f"error: {csv}, line 10: 2 fields; the header has 10",
        f"error: {csv}, line 11: ImageID is empty",
        f"error: {csv}, image {i2}, line 7: mask file not found: {m[5].file} "
        f"(looked in {tmp_path}/masks/train-masks-f/, {tmp_path}/masks/)",
        f"error: {csv}, image {i3}: image file not found (looked in {tmp_path}/train/)",
    ]
    assert _warnings(dataset) == [
        f"warning: {csv}, image {i4}, line 9: BoxXMin '1.7' is not a number in 0..1; the box is not used "
        "(boxes come from the mask)",
        f"warning: {csv}: no mask file at all of the ImageIDs starting with f: unpack train-masks-f.zip into "
        f"{tmp_path}/masks/ (flat, or each into a folder of its name)",
        f"warning: {csv}: class 'Car' has no instances",  # line 6 unknown, line 8's image missing
    ]
    # What is left: image 0 (lines 2, 4), image 1 (line 5), image 4 (line 9, its box ignored); image 2
    # lost its only mask.
    assert [r.ref for r in dataset.records] == [i0, i1, i4]
    assert [[a.ref for a in r.annotations] for r in dataset.records] == [
        ["line 2", "line 4"],
        ["line 5"],
        ["line 9"],
    ]
    assert dataset.summary().endswith("skipped 5 instances and 1 images with errors")
    with pytest.raises(DataError, match=r"line 3: PredictedIoU '0.x5' is not a number"):
        OpenImagesDataset(fixture.csv, min_iou=0.5, strict=True)


def test_an_unreadable_mask_is_an_error_naming_it_when_read(tmp_path: Path, capsys) -> None:
    fixture = write_open_images(tmp_path)
    fixture.masks[3].path.write_bytes(b"not a png")  # line 5, image 1
    dataset = OpenImagesDataset(fixture.csv)
    assert dataset.problems == []  # masks are decoded only when an item is read
    with pytest.raises(
        DataError, match=rf"image {IMAGES[1][0]}.jpg, line 5: .*{fixture.masks[3].file}: cannot read mask"
    ):
        dataset[1]
    assert main(["check-data", "--format", "openimages", str(fixture.csv)]) == 1
    out = capsys.readouterr().out
    # The problem line names the CSV and the image once, then the line and the mask.
    assert (
        f"error: {fixture.csv}, image {IMAGES[1][0]}.jpg: line 5: {fixture.masks[3].path}: cannot read" in out
    )
    assert out.count(str(fixture.csv)) == 2  # the "dataset:" line and the problem


def test_a_mask_left_empty_by_the_resize_is_left_out_with_a_warning(tmp_path: Path, caplog) -> None:
    fixture = write_open_images(tmp_path)
    speck = np.zeros((96, 128), dtype=bool)
    speck[10, 10] = True  # 2x down: the image's pixels sample the mask's odd rows and columns only
    write_mask(fixture.masks[2].path, speck)  # line 4, image 0's Man
    write_mask(fixture.masks[0].path, np.zeros((96, 128), dtype=bool))  # line 2: nothing drawn at all
    dataset = OpenImagesDataset(fixture.csv)
    with caplog.at_level(logging.WARNING, logger="maskrcnn.data.formats.openimages"):
        _, target = dataset[0]
    assert target["labels"].tolist() == [dataset.class_names.index("Pumpkin") + 1]
    assert np.array_equal(target["masks"][0].numpy().astype(bool), fixture.masks[1].expected)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"{fixture.csv}, image {IMAGES[0][0]}.jpg, line {k}: mask {fixture.masks[k - 2].file} (128x96) has "
        "no pixel at the image's 64x48; left out"
        for k in (2, 4)
    ]


def test_a_digit_whose_masks_are_all_missing_says_which_zip(tmp_path: Path) -> None:
    fixture = write_open_images(tmp_path)
    for mask in fixture.masks_of(IMAGES[2][0]):  # the only ImageID starting with f
        mask.path.unlink()
    dataset = OpenImagesDataset(fixture.csv)
    assert len(_errors(dataset)) == 1
    assert _warnings(dataset) == [
        f"warning: {fixture.csv}: no mask file at all of the ImageIDs starting with f: unpack "
        f"train-masks-f.zip into {tmp_path}/masks/ (flat, or each into a folder of its name)"
    ]


def test_what_is_nowhere_is_an_error_naming_every_place_looked_in(tmp_path: Path) -> None:
    fixture = write_open_images(tmp_path)
    (tmp_path / "train").rename(tmp_path / "pictures")
    with pytest.raises(DataError) as e:
        OpenImagesDataset(fixture.csv)
    message = str(e.value)
    first = ", ".join(f"{iid}.jpg" for iid, _, _ in IMAGES[:3])
    assert f"none of the images it lists were found ({first} ... (5 in all)); looked in" in message
    assert (
        f"looked in {tmp_path}/train/ (and sub-folders train_0 .. train_f); {tmp_path}/images/train/"
        in message
    )
    assert message.endswith("pass image_dir= (-o image_dir=FOLDER)")
    dataset = OpenImagesDataset(fixture.csv, image_dir=tmp_path / "pictures")
    assert len(dataset) == 5
    assert dataset.problems == []

    (tmp_path / "masks").rename(tmp_path / "pngs")
    with pytest.raises(DataError) as e:
        OpenImagesDataset(fixture.csv, image_dir=tmp_path / "pictures")
    shards = "(and sub-folders train-masks-0 .. train-masks-f, 0 .. f, 0 .. F)"
    assert f"none of the masks it lists were found ({fixture.masks[0].file}, " in str(e.value)
    assert f"looked in {tmp_path}/masks/ {shards}; {tmp_path}/masks/train/ {shards}; " in str(e.value)
    assert (
        len(OpenImagesDataset(fixture.csv, image_dir=tmp_path / "pictures", mask_dir=tmp_path / "pngs")) == 5
    )
    with pytest.raises(
        DataError,
        match=r"in .*/pictures/ \(and sub-folders train-masks-0 .*check the folder given; or pass classes=",
    ):
        OpenImagesDataset(fixture.csv, image_dir=tmp_path / "pictures", mask_dir=tmp_path / "pictures")

    fixture.class_csv.rename(tmp_path / "names.csv")
    with pytest.raises(
        DataError, match=r"no class descriptions CSV \(class-descriptions-boxable.csv, .*pass class_csv="
    ):
        OpenImagesDataset(fixture.csv)
    kwargs = {
        "image_dir": tmp_path / "pictures",
        "mask_dir": tmp_path / "pngs",
        "class_csv": tmp_path / "names.csv",
    }
    assert OpenImagesDataset(fixture.csv, **kwargs).class_names == ["Car", "Man", "Pumpkin"]
    with pytest.raises(
        DataError, match="a folder; pass the segmentation CSV itself \\(found train-annotations"
    ):
        OpenImagesDataset(tmp_path)


def test_fiftyone_zoo_layout(tmp_path: Path) -> None:
    fixture = write_open_images(tmp_path, fiftyone=True)
    assert fixture.csv == tmp_path / "train" / "labels" / "segmentations.csv"
    dataset = OpenImagesDataset(fixture.csv, classes=["Pumpkin"])
    assert dataset.problems == []
    assert len(dataset) == 4
    _assert_items_match(dataset, fixture, rows={2, 3, 5, 7, 9})


def test_check_data_end_to_end_and_detection(tmp_path: Path, capsys) -> None:
    fixture = write_open_images(tmp_path)
    args = [
        "check-data",
        "--format",
        "openimages",
        str(fixture.csv),
        "-o",
        "classes=Pumpkin,Man",
        "-o",
        "min_iou=0.6",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "images: 3 (0 without objects)" in out
    assert "instances per class: Pumpkin 3, Man 1" in out
    assert "result: OK, trainable" in out
    assert detect_format(fixture.csv) == "openimages"
    assert main(["check-data", str(fixture.csv), "-o", "classes=Pumpkin"]) == 0
    captured = capsys.readouterr()
    assert f"data: detected format openimages ({fixture.csv})" in captured.err
    assert "instances per class: Pumpkin 5" in captured.out
    with pytest.raises(
        DataError, match=r"class-descriptions-boxable.csv: .*first line is '/m/011k07,Tortoise'"
    ):
        detect_format(fixture.class_csv)
    with pytest.raises(
        DataError, match=r"pass the annotation file itself \(e.g. train-annotations-object-segmentation.csv\)"
    ):
        detect_format(tmp_path)
