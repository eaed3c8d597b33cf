import math
import re

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from maskrcnn.data import DataError, ImageError, load_dataset
from maskrcnn.data.formats.coco import CocoDataset

from .writers_a import mask, messages, truncate, write_image, write_json

W, H = 20, 16


def _categories():
    # Non-contiguous and out of order on purpose: labels follow increasing id.
    return [
        {"id": 7, "name": "cat"},
        {"id": 1, "name": "person"},
        {"id": 90, "name": "zebra"},
    ]


def _dataset(tmp_path, images, annotations, categories=None, **options):
    path = write_json(
        tmp_path / "train.json",
        {"images": images, "annotations": annotations, "categories": categories or _categories()},
    )
    return CocoDataset(path, **options)


def test_polygons_rle_kinds_crowd_and_category_mapping(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    blob = np.zeros((H, W), dtype=np.uint8)
    blob[1:3, 14:19] = 1  # rows 1..2, columns 14..18
    compressed = coco_mask.encode(np.asfortranarray(blob))
    compressed["counts"] = compressed["counts"].decode("ascii")
    # Uncompressed RLE runs go down the columns, zeros first: 15 * 16 + 4 zeros reach column 15, row 4;
    # then 6 ones (rows 4..9) and the remaining 320 - 250 zeros.
    crowd = {"size": [H, W], "counts": [15 * 16 + 4, 6, 70]}
    anns = [
        {
            "id": 11,
            "image_id": 5,
            "category_id": 7,
            "segmentation": [[2, 3, 6, 3, 6, 8, 2, 8], [10, 10, 12, 10, 12, 12, 10, 12]],
            "iscrowd": 0,
        },
        {"id": 12, "image_id": 5, "category_id": 90, "segmentation": compressed, "iscrowd": 0},
        {"id": 13, "image_id": 5, "category_id": 1, "segmentation": crowd, "iscrowd": 1},
    ]
    ds = _dataset(tmp_path, [{"id": 5, "file_name": "a.png", "height": H, "width": W}], anns)
    assert ds.class_names == ["person", "cat", "zebra"]
    assert ds.category_ids == [1, 7, 90]
    assert ds.num_classes == 4
    assert ds.problems == []
    assert ds.records[0].image_id == 5
    assert ds.records[0].extra == {"file_name": "a.png"}

    image, target = ds[0]
    assert image.shape == (3, H, W)
    assert target["labels"].tolist() == [2, 3, 1]
    assert target["iscrowd"].tolist() == [0, 0, 1]
    assert target["image_id"].item() == 5
    expected = torch.zeros((3, H, W), dtype=torch.uint8)
    expected[0, 3:8, 2:6] = 1  # the rectangle (2, 3)-(6, 8): pixels x 2..5, y 3..7
    expected[0, 10:12, 10:12] = 1  # second part: pixels x 10..11, y 10..11
    expected[1, 1:3, 14:19] = 1
    expected[2, 4:10, 15] = 1
    assert torch.equal(target["masks"], expected)
    assert target["area"].tolist() == [20 + 4, 10, 6]
    assert target["boxes"].tolist() == [[2, 3, 12, 12], [14, 1, 19, 3], [15, 4, 16, 10]]
    # Crowd regions are not instances to sample by class.
    assert ds.instance_labels(0) == [2, 3]


def test_load_dataset_negatives_and_sub_folders(tmp_path):
    write_image(tmp_path / "imgs" / "train" / "b.png", 8, 6)
    write_image(tmp_path / "imgs" / "c.png", 8, 6)
    path = write_json(
        tmp_path / "ann" / "instances.json",
        {
            "images": [
                {"id": 1, "file_name": "train/b.png", "height": 6, "width": 8},
                {"id": 2, "file_name": "c.png", "height": 6, "width": 8},
            ],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 3, "segmentation": [[1, 1, 4, 1, 4, 3, 1, 3]]},
            ],
            "categories": [{"id": 3, "name": "thing"}],
        },
    )
    ds = load_dataset("coco", path, image_dir=tmp_path / "imgs")
    assert isinstance(ds, CocoDataset)
    assert len(ds) == 2
    assert ds.category_ids == [3]
    assert ds.class_names == ["thing"]
    _, target = ds[0]
    assert target["boxes"].tolist() == [[1, 1, 4, 3]]
    assert target["labels"].tolist() == [1]
    # The image without annotations stays, as a negative.
    image, target = ds[1]
    assert image.shape == (3, 6, 8)
    assert target["masks"].shape == (0, 6, 8)
    assert target["boxes"].shape == (0, 4)
    assert ds.problems == []
    assert "1 without objects" in ds.summary()


def test_each_problem_is_reported_with_file_image_and_annotation(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    write_image(tmp_path / "wrong_size.png", 10, 10)
    truncate(write_image(tmp_path / "broken.png", W, H), 12)
    square = [[2, 2, 8, 2, 8, 8, 2, 8]]
    images = [
        {"id": 1, "file_name": "a.png", "height": H, "width": W},
        {"id": 1, "file_name": "dup.png", "height": H, "width": W},
        {"id": 2, "file_name": "missing.png", "height": H, "width": W},
        {"id": 3, "file_name": "wrong_size.png", "height": H, "width": W},
        {"id": 4, "file_name": "broken.png", "height": H, "width": W},
    ]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "segmentation": square},  # fine
        {"id": 1, "image_id": 1, "category_id": 7, "segmentation": square},  # duplicate id
        {"id": 2, "image_id": 99, "category_id": 7, "segmentation": square},  # unknown image
        {"id": 3, "image_id": 1, "category_id": 8, "segmentation": square},  # unknown category
        {"id": 4, "image_id": 1, "category_id": 7, "bbox": [1, 1, 3, 3]},  # no segmentation
        {"id": 17, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 5, 5]]},  # 2 points
        {"id": 18, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 5, 1, 9, 1]]},  # no area
        {"id": 19, "image_id": 1, "category_id": 7, "segmentation": [[30, 30, 40, 30, 40, 40]]},  # outside
        {"id": 20, "image_id": 1, "category_id": 7, "segmentation": {"size": [5, 5], "counts": [3, 2, 20]}},
        {"id": 21, "image_id": 2, "category_id": 7, "segmentation": square},  # image missing: not repeated
        {
            "id": 22,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [[-5, 2, 8, 2, 8, 8, -5, 8]],
        },  # partly out
    ]
    ds = _dataset(tmp_path, images, anns)
    errors = messages(ds)
    src = str(tmp_path / "train.json")
    expected = [
        f"error: {src}, image dup.png: duplicate image id 1 (first used by a.png)",
        f"error: {src}, image missing.png: image file not found: {tmp_path / 'missing.png'}",
        f"error: {src}, image wrong_size.png: image is 10x10 but the annotations say {W}x{H}",
        f"error: {src}, image broken.png: ",
        f"error: {src}, image a.png, annotation 1: duplicate annotation id 1",
        f"error: {src}, annotation 2: image_id 99 is not in 'images'",
        f"error: {src}, image a.png, annotation 3: unknown category_id 8 (categories: [1, 7, 90])",
        f"error: {src}, image a.png, annotation 4: no segmentation (bbox only)",
        f"error: {src}, image a.png, annotation 17: polygon part 0 has 2 points",
        f"error: {src}, image a.png, annotation 18: zero-area instance",
        f"error: {src}, image a.png, annotation 19: polygon lies outside the {W}x{H} image",
        f"error: {src}, image a.png, annotation 20: RLE size [5, 5] differs from the image size [{H}, {W}]",
    ]
    assert len(errors) == len(expected)
    for message, start in zip(errors, expected, strict=True):
        assert message.startswith(start), (message, start)
    assert "not an image" in errors[3] or "cannot open" in errors[3]
    assert messages(ds, "warning") == [
        f"warning: {src}, image a.png, annotation 22: coordinates outside the {W}x{H} image "
        "(x -5.0..8.0, y 2.0..8.0); clipped",
        f"warning: {src}: class 'zebra' (category id 90) has no instances",
    ]
    # What is left: the one good image with its two good instances.
    assert [r.ref for r in ds.records] == ["a.png"]
    assert [a.ref for a in ds.records[0].annotations] == ["annotation 1", "annotation 22"]
    assert "skipped 8 instances and 4 images" in ds.summary()

    with pytest.raises(DataError, match=r"train\.json, image dup\.png: duplicate image id 1"):
        _dataset(tmp_path, images, anns, strict=True)


def test_strict_raises_on_an_annotation_error(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    images = [{"id": 1, "file_name": "a.png", "height": H, "width": W}]
    anns = [{"id": 17, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 5, 5]]}]
    with pytest.raises(DataError, match=r"image a\.png, annotation 17: polygon part 0 has 2 points"):
        _dataset(tmp_path, images, anns, strict=True)
    assert len(_dataset(tmp_path, images, anns).records[0].annotations) == 0


def test_check_images_false_trusts_the_json(tmp_path):
    images = [{"id": 1, "file_name": "not_there.png", "height": H, "width": W}]
    anns = [{"id": 1, "image_id": 1, "category_id": 7, "segmentation": [[2, 2, 8, 2, 8, 8]]}]
    ds = _dataset(tmp_path, images, anns, check_images=False, categories=[{"id": 7, "name": "cat"}])
    assert ds.problems == []
    assert len(ds) == 1
    assert ds.image_size(0) == (H, W)
    with pytest.raises(ImageError, match=r"not_there\.png"):
        ds[0]


def test_image_truncated_past_its_header_fails_when_loaded(tmp_path):
    # The header check at load cannot see missing pixel data; decoding does, with the file named.
    rng = np.random.default_rng(0)
    path = tmp_path / "half.jpg"
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path, quality=95)
    truncate(path, path.stat().st_size // 2)  # the headers take ~600 bytes of ~30 kB
    ds = _dataset(tmp_path, [{"id": 1, "file_name": "half.jpg", "height": 96, "width": 128}], [])
    assert messages(ds) == []
    with pytest.raises(ImageError, match=r"half\.jpg"):
        ds[0]


def test_flat_polygon_is_read_with_a_warning_and_sizes_come_from_the_file(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    images = [{"id": 1, "file_name": "a.png"}]  # no size in the JSON: taken from the file
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [2, 3, 6, 3, 6, 8, 2, 8]}]
    ds = _dataset(tmp_path, images, anns, categories=[{"id": 1, "name": "person"}])
    assert (ds.records[0].height, ds.records[0].width) == (H, W)
    assert messages(ds, "warning") == [
        f"warning: {tmp_path / 'train.json'}, image a.png, annotation 1: segmentation is a flat list of "
        "numbers; read as one polygon"
    ]
    _, target = ds[0]
    assert target["boxes"].tolist() == [[2, 3, 6, 8]]
    assert target["area"].item() == 4 * 5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"images": [', r"not valid JSON \(line 1, column 13"),
        ('[{"image_id": 1, "score": 0.5}]', r"a list \(a results file\?\).*expected a COCO instances"),
        ('{"images": [], "categories": [{"id": 1}]}', r"categories\[0\]"),
        (
            '{"images": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}',
            "duplicate category",
        ),
        ('{"images": [], "annotations": {}, "categories": []}', "'annotations' is dict"),
    ],
)
def test_malformed_files_raise(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match=r"bad\.json: .*" + match):
        CocoDataset(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        CocoDataset(tmp_path / "nope.json")


def test_categories_by_id_and_iscrowd_polygon(tmp_path):
    write_image(tmp_path / "a.png", 40, 40)
    r = 10.0
    circle = [
        v
        for k in range(64)
        for v in (20 + r * math.cos(k * math.pi / 32), 20 + r * math.sin(k * math.pi / 32))
    ]
    anns = [{"id": 1, "image_id": 1, "category_id": 90, "segmentation": [circle], "iscrowd": 1}]
    ds = _dataset(tmp_path, [{"id": 1, "file_name": "a.png", "height": 40, "width": 40}], anns)
    _, target = ds[0]
    assert target["labels"].tolist() == [3]
    assert target["iscrowd"].tolist() == [1]
    assert ds.category_ids[target["labels"].item() - 1] == 90
    assert abs(target["area"].item() - math.pi * r * r) < 0.02 * math.pi * r * r


def test_an_option_the_reader_does_not_take_is_named_before_reading(tmp_path):
    with pytest.raises(DataError, match=r"--format coco: .*'colour'.*; its options: .*image_dir"):
        load_dataset("coco", tmp_path / "never read.json", colour="red")


def test_string_image_and_annotation_ids_match_and_get_integer_ids(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    write_image(tmp_path / "b.png", W, H)
    images = [
        {"id": "img6", "file_name": "a.png", "height": H, "width": W},
        {"id": "img7", "file_name": "b.png", "height": H, "width": W},
    ]
    square = [[2, 2, 8, 2, 8, 8, 2, 8]]
    anns = [
        {"id": "ann1", "image_id": "img7", "category_id": 7, "segmentation": square},
        {"id": 2, "image_id": "img9", "category_id": 7, "segmentation": square},
    ]
    ds = _dataset(tmp_path, images, anns)
    assert [(r.image_id, r.extra["coco_id"]) for r in ds.records] == [(1, "img6"), (2, "img7")]
    assert [a.ref for a in ds.records[1].annotations] == ["annotation ann1"]
    _, target = ds[1]
    assert target["image_id"].item() == 2
    assert target["labels"].tolist() == [2]
    assert messages(ds) == [
        f"error: {tmp_path / 'train.json'}, annotation 2: image_id 'img9' is not in 'images'"
    ]


@pytest.mark.parametrize(
    ("rle", "match"),
    [
        ({"size": [H, W], "counts": "!!!bad"}, r"RLE counts '!!!bad' are not a compressed COCO RLE string"),
        (
            {"size": [H, W], "counts": [3, 2, 2000]},
            rf"RLE counts \[3, 2, 2000\] cover 2005 pixels; .* {H * W}",
        ),
        ({"size": [H, W], "counts": [3, -2, H * W - 1]}, r"hold a negative run"),
        ({"size": [H, W + 1], "counts": [H * (W + 1)]}, rf"RLE size \[{H}, {W + 1}\] differs from the image"),
    ],
)
def test_malformed_rle_is_a_problem_naming_file_image_and_annotation(tmp_path, rle, match):
    write_image(tmp_path / "a.png", W, H)
    images = [{"id": 1, "file_name": "a.png", "height": H, "width": W}]
    anns = [{"id": 5, "image_id": 1, "category_id": 7, "segmentation": rle, "iscrowd": 1}]
    ds = _dataset(tmp_path, images, anns)
    (error,) = messages(ds)
    assert error.startswith(f"error: {tmp_path / 'train.json'}, image a.png, annotation 5: ")
    assert re.search(match, error), error
    assert ds[0][1]["masks"].shape == (0, H, W)  # left out; the image stays
    with pytest.raises(DataError, match=match):
        _dataset(tmp_path, images, anns, strict=True)


def test_malformed_rle_found_when_loaded_without_the_image_size(tmp_path):
    # No size in the JSON and check_images=False: the RLE can only be checked once the image is read.
    write_image(tmp_path / "a.png", W, H)
    images = [{"id": 1, "file_name": "a.png"}]
    rle = {"size": [H, W + 1], "counts": [H * (W + 1) - 3, 3]}
    anns = [{"id": 5, "image_id": 1, "category_id": 7, "segmentation": rle}]
    ds = _dataset(tmp_path, images, anns, check_images=False, categories=[{"id": 7, "name": "cat"}])
    assert ds.problems == []
    with pytest.raises(
        DataError, match=r"train\.json, image a\.png, annotation 5: RLE size \[16, 21\] differs"
    ):
        ds[0]


def test_warnings_for_empty_classes_and_stored_area_or_bbox_far_from_the_mask(tmp_path):
    write_image(tmp_path / "a.png", 40, 40)
    square = [[0, 0, 20, 0, 20, 20, 0, 20]]  # area 400, box [0, 0, 20, 20]
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": square,
            "area": 390,
            "bbox": [0, 0, 20, 20],
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 1,
            "segmentation": square,
            "area": 100.5,
            "bbox": [0, 0, 20, 21],
        },
        {
            "id": 3,
            "image_id": 1,
            "category_id": 1,
            "segmentation": square,
            "area": 400,
            "bbox": [15, 15, 20, 20],
        },
    ]
    categories = [{"id": 0, "name": "cells-XY4z"}, {"id": 1, "name": "cell"}]  # Roboflow's placeholder 0
    images = [{"id": 1, "file_name": "a.png", "height": 40, "width": 40}]
    ds = _dataset(tmp_path, images, anns, categories=categories)
    src = tmp_path / "train.json"
    assert messages(ds, "warning") == [
        f"warning: {src}, image a.png, annotation 2: stored area 100.5 is more than 2x off the "
        "segmentation's 400",
        f"warning: {src}, image a.png, annotation 3: stored bbox [15, 15, 20, 20] overlaps the "
        "segmentation's box [0, 0, 20, 20] with IoU 0.03 < 0.5",
        f"warning: {src}: class 'cells-XY4z' (category id 0) has no instances",
    ]
    assert [a.ref for a in ds.records[0].annotations] == ["annotation 1", "annotation 2", "annotation 3"]


# -- keypoints ---------------------------------------------------------------------------------------


def _keypoint_categories():
    # COCO's layout: the person category names its keypoints and a 1-based skeleton; a second category
    # without keypoints shares the file.
    return [
        {
            "id": 1,
            "name": "person",
            "keypoints": ["nose", "left_eye", "right_eye"],
            "skeleton": [[1, 2], [1, 3]],
        },
        {"id": 3, "name": "dog"},
    ]


def test_person_keypoints_box_only_instances_and_categories_without_keypoints(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [[2, 2, 8, 2, 8, 12, 2, 12]],
            "keypoints": [5, 4, 2, 3.5, 3.25, 1, 0, 0, 0],
            "num_keypoints": 2,
        },
        {
            # Box only (as keypoint exports write people): the box x 10..14, y 8..14 is its outline. A
            # point a half pixel past the border is moved onto it; an unlabelled one's numbers are dropped.
            "id": 2,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [],
            "bbox": [10, 8, 4, 6],
            "keypoints": [12, 10, 2, 20.5, -0.5, 2, 7, 7, 0],
            "num_keypoints": 2,
        },
        {"id": 3, "image_id": 1, "category_id": 3, "segmentation": [[14, 0, 18, 0, 18, 4, 14, 4]]},
        # COCO's crowd regions: num_keypoints 0, every keypoint zero.
        {
            "id": 4,
            "image_id": 1,
            "category_id": 1,
            "segmentation": {"size": [H, W], "counts": [15 * 16 + 4, 6, 70]},
            "iscrowd": 1,
            "keypoints": [0] * 9,
            "num_keypoints": 0,
        },
        {"id": 5, "image_id": 1, "category_id": 1, "segmentation": [[0, 12, 4, 12, 4, 16, 0, 16]]},
    ]
    images = [{"id": 1, "file_name": "a.png", "height": H, "width": W}]
    ds = _dataset(tmp_path, images, anns, categories=_keypoint_categories())
    assert messages(ds) == []
    assert messages(ds, "warning") == [
        f"warning: {tmp_path / 'train.json'}: 1 annotations have no segmentation: their boxes are their "
        "outlines (masks): annotation 2"
    ]
    spec = ds.keypoint_spec
    assert spec.names == ("nose", "left_eye", "right_eye")
    assert spec.skeleton == ((0, 1), (0, 2))
    assert spec.flip_permutation() == [0, 2, 1]
    expected = torch.tensor(
        [
            [[5, 4, 2], [3.5, 3.25, 1], [0, 0, 0]],
            [[12, 10, 2], [W, 0, 2], [0, 0, 0]],
            [[0, 0, 0]] * 3,  # the dog: its category has no keypoints
            [[0, 0, 0]] * 3,
            [[0, 0, 0]] * 3,  # a person without keypoints: none labelled
        ]
    )
    assert torch.equal(ds.load_keypoints(0), expected)
    _, target = ds[0]
    assert torch.equal(target["keypoints"], expected)
    assert target["labels"].tolist() == [1, 1, 2, 1, 1]
    assert torch.equal(target["masks"][1], mask(H, W, (10, 8, 14, 14)))
    assert target["boxes"][1].tolist() == [10, 8, 14, 14]


def test_a_file_without_keypoints_has_no_spec_and_box_only_stays_an_error(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    anns = [{"id": 4, "image_id": 1, "category_id": 7, "bbox": [1, 1, 3, 3]}]
    ds = _dataset(tmp_path, [{"id": 1, "file_name": "a.png", "height": H, "width": W}], anns)
    assert ds.keypoint_spec is None
    assert "keypoints" not in ds[0][1]
    assert messages(ds)[0].endswith(
        "annotation 4: no segmentation (bbox only); instance segmentation needs polygons or RLE"
    )


def test_each_keypoint_problem_names_the_annotation(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    square = [[2, 2, 8, 2, 8, 8, 2, 8]]

    def ann(i, keypoints, category=1, **extra):
        return {
            "id": i,
            "image_id": 1,
            "category_id": category,
            "segmentation": square,
            "keypoints": keypoints,
            **extra,
        }

    anns = [
        ann(1, [1, 1, 2, 2, 2, 2]),  # 6 values for 3 keypoints
        ann(2, [1, 1, 2, "x", 2, 2, 0, 0, 0]),
        ann(3, [1, 1, 2, 2, 2, 3, 0, 0, 0]),  # visibility 3
        ann(4, {"x": 1}),
        ann(5, [1, 1, 2, 30, 4, 2, 5, -3, 1], num_keypoints=3),  # two points far outside: left out
        ann(6, [1, 1, 2, 2, 2, 2, 0, 0, 0], num_keypoints=1),  # says 1, has 2
        ann(7, [1, 1, 2, 2, 2, 2, 0, 0, 0], category=3),  # the dog names no keypoints
        {"id": 8, "image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 3]},  # box only, but no width
        ann(9, [1, 1, 2, 2, 2, 2, 3, 3, 2], num_keypoints=3),  # fine
    ]
    ds = _dataset(
        tmp_path,
        [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        anns,
        categories=_keypoint_categories(),
    )
    where = f"{tmp_path / 'train.json'}, image a.png"
    assert messages(ds) == [
        f"error: {where}, annotation 1: has 6 keypoint values; expected 9 (3 x (x, y, v))",
        f"error: {where}, annotation 2: keypoint 1 value 'x' is not a number",
        f"error: {where}, annotation 3: keypoint 1 has visibility 3; expected 0 (not labelled), 1 (hidden) "
        "or 2 (visible)",
        f"error: {where}, annotation 4: keypoints {{'x': 1}} is not a list [x1, y1, v1, ...]",
        f"error: {where}, annotation 8: no segmentation, and its bbox [1, 1, 0, 3] is not [x, y, w, h] with "
        "w, h > 0",
    ]
    assert messages(ds, "warning") == [
        f"warning: {where}, annotation 5: keypoints 1 (left_eye) at (30, 4), 2 (right_eye) at (5, -3) "
        f"outside the {W}x{H} image; left out (v = 0)",
        f"warning: {where}, annotation 6: num_keypoints 1 but 2 keypoints are labelled (v > 0)",
        f"warning: {where}, annotation 7: category 3 names no keypoints; the annotation's keypoints are "
        "left out",
    ]
    assert [a.ref for a in ds.records[0].annotations] == [f"annotation {i}" for i in (5, 6, 7, 9)]
    assert ds.load_keypoints(0).tolist() == [
        [[1, 1, 2], [0, 0, 0], [0, 0, 0]],
        [[1, 1, 2], [2, 2, 2], [0, 0, 0]],
        [[0, 0, 0]] * 3,
        [[1, 1, 2], [2, 2, 2], [3, 3, 2]],
    ]
    with pytest.raises(DataError, match=r"image a\.png, annotation 1: has 6 keypoint values; expected 9"):
        _dataset(
            tmp_path,
            [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
            anns,
            categories=_keypoint_categories(),
            strict=True,
        )


def test_keypoints_without_named_keypoints_are_left_out_with_one_warning(tmp_path):
    write_image(tmp_path / "a.png", W, H)
    anns = [
        {
            "id": i,
            "image_id": 1,
            "category_id": 7,
            "segmentation": [[2, 2, 8, 2, 8, 8]],
            "keypoints": [1, 1, 2],
        }
        for i in (1, 2)
    ]
    ds = _dataset(
        tmp_path,
        [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        anns,
        categories=[{"id": 7, "name": "cat"}],
    )
    assert ds.keypoint_spec is None
    assert messages(ds, "warning") == [
        f"warning: {tmp_path / 'train.json'}: 2 annotations have keypoints but no category names its "
        "keypoints (categories[].keypoints); keypoints left out: annotation 1, annotation 2"
    ]


@pytest.mark.parametrize(
    ("categories", "match"),
    [
        (
            [
                {"id": 1, "name": "a", "keypoints": ["x", "y"]},
                {"id": 2, "name": "b", "keypoints": ["y", "x"]},
            ],
            r"categories\[1\] \('b'\): keypoints \['y', 'x'\] differ from those of categories\[0\] \('a'\) "
            r"\['x', 'y'\]; a dataset has one set of keypoints",
        ),
        (
            [{"id": 1, "name": "a", "keypoints": ["x", "y"], "skeleton": [[0, 1]]}],
            r"categories\[0\] \('a'\): skeleton \[\[0, 1\]\] is not a list of 1-based \[a, b\] pairs of "
            r"its 2 keypoints \(1\.\.2\)",
        ),
        (
            [{"id": 1, "name": "a", "keypoints": ["x", "x"]}],
            r"categories\[0\] \('a'\): keypoint names repeat: \['x', 'x'\]",
        ),
        (
            [{"id": 1, "name": "a", "keypoints": "x,y"}],
            r"categories\[0\] \('a'\): keypoints 'x,y' is not a list of keypoint names",
        ),
        (
            [{"id": 1, "name": "a", "keypoints": ["x", "y"], "flip_index": [0, 0]}],
            r"categories\[0\] \('a'\): flip_index \[0, 0\] must be a permutation of 0\.\.1",
        ),
    ],
)
def test_malformed_keypoint_categories_raise(tmp_path, categories, match):
    path = write_json(tmp_path / "bad.json", {"images": [], "annotations": [], "categories": categories})
    with pytest.raises(DataError, match=re.escape(str(path)) + ": " + match):
        CocoDataset(path)
