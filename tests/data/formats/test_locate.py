"""Images not where the annotation file says: the usual places are searched, and the search is said."""

import pytest

from maskrcnn.data import DataError, load_dataset

from .writers_a import messages, write_image, write_json

SQUARE = [[1, 1, 6, 1, 6, 6, 1, 6]]


def _coco(path, names):
    images = [{"id": k + 1, "file_name": n, "height": 8, "width": 8} for k, n in enumerate(names)]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": SQUARE}]
    return write_json(path, {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]})


@pytest.mark.parametrize(
    ("json_at", "images_at"),
    [
        ("instances.json", "images"),  # images/ beside the JSON
        ("ann/instances.json", "images"),  # ../images/
        ("annotations/instances_val2017.json", "val2017"),  # the COCO layout
        ("annotations/instances_val2017.json", "images/val2017"),
    ],
)
def test_coco_images_are_found_in_the_usual_places(tmp_path, json_at, images_at):
    for name in ("a.png", "b.png"):
        write_image(tmp_path / images_at / name, 8, 8)
    path = _coco(tmp_path / json_at, ["a.png", "b.png"])
    ds = load_dataset("coco", path)
    assert [r.path for r in ds.records] == [tmp_path / images_at / "a.png", tmp_path / images_at / "b.png"]
    assert messages(ds, "warning") == [
        f"warning: {path}: images are not beside the annotation file; found them in {tmp_path / images_at}/"
    ]
    assert ds[0][1]["labels"].tolist() == [1]


def test_images_beside_the_file_win_and_are_not_remarked(tmp_path):
    write_image(tmp_path / "a.png", 8, 8)
    write_image(tmp_path / "images" / "a.png", 8, 8)
    ds = load_dataset("coco", _coco(tmp_path / "instances.json", ["a.png", "gone.png"]))
    assert ds.records[0].path == tmp_path / "a.png"
    assert messages(ds, "warning") == []
    assert len(messages(ds)) == 1  # gone.png: missing, said as before


def test_no_image_anywhere_names_the_files_and_every_folder(tmp_path):
    names = ["a.png", "b.png", "c.png", "d.png"]
    path = _coco(tmp_path / "annotations" / "instances_train2017.json", names)
    with pytest.raises(DataError) as e:
        load_dataset("coco", path)
    folders = [
        tmp_path / "annotations",
        tmp_path / "annotations" / "images",
        tmp_path / "images",
        tmp_path / "train2017",
        tmp_path / "images" / "train2017",
        tmp_path,
    ]
    assert str(e.value) == (
        f"{path}: none of the images it lists were found (a.png, b.png, c.png ... (4 in all)); looked in "
        + ", ".join(f"{f}/" for f in folders)
        + "; pass image_dir= (-o image_dir=FOLDER)"
    )
    with pytest.raises(DataError, match=rf"looked in {tmp_path / 'elsewhere'}/; check the folder given"):
        load_dataset("coco", path, image_dir=tmp_path / "elsewhere")
    # Trusting the JSON (no image check at load): nothing is looked for, problems show when loaded.
    assert len(load_dataset("coco", path, check_images=False)) == 4


def test_via_images_in_images_folder(tmp_path):
    write_image(tmp_path / "images" / "a.png", 8, 8)
    region = {"shape_attributes": {"name": "polygon", "all_points_x": [1, 6, 6], "all_points_y": [1, 1, 6]}}
    via = {"a.png1": {"filename": "a.png", "size": 1, "regions": [region], "file_attributes": {}}}
    path = write_json(tmp_path / "via.json", via)
    ds = load_dataset("via", path)
    assert ds.records[0].path == tmp_path / "images" / "a.png"
    assert messages(ds, "warning") == [
        f"warning: {path}: images are not beside the annotation file; found them in {tmp_path / 'images'}/"
    ]
    with pytest.raises(DataError, match=r"via\.json: none of the images it lists were found \(a\.png\)"):
        load_dataset("via", path, image_dir=tmp_path)
