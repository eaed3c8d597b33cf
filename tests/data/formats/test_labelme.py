import math

import numpy as np
import pytest
import torch

from maskrcnn.config import parse_value
from maskrcnn.data import DataError, load_dataset
from maskrcnn.data.formats.labelme import LabelMeDataset

from .writers_a import b64, mask, mask_png_b64, messages, png_bytes, write_image, write_json


def shape(label, points, kind="polygon", group_id=None, **extra):
    return {"label": label, "points": points, "group_id": group_id, "shape_type": kind, "flags": {}, **extra}


def square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def labelme(image_path, shapes, height, width, image_data=None):
    return {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": image_data,
        "imageHeight": height,
        "imageWidth": width,
    }


def test_shapes_groups_ignore_labels_and_ids(tmp_path):
    write_image(tmp_path / "a.png", 64, 48)
    shapes = [
        shape("cat", [[6, 8], [2, 3]], "rectangle"),  # corners in either order: pixels x 2..5, y 3..7
        shape("dog", square(10, 2, 14, 6), group_id=1),
        shape("__ignore__", square(0, 0, 5, 5)),
        shape("dog", square(20, 2, 22, 4), group_id=1),  # same instance as shape 1, occluded
        shape("cat", [[40, 24], [40, 39]], "circle"),  # centre and a point on it: radius 15
        shape("_background_", square(0, 0, 5, 5), group_id=1),
        shape("dog", square(30, 40, 34, 44), "oriented_rectangle"),
    ]
    write_json(tmp_path / "a.json", labelme("a.png", shapes, 48, 64))
    write_json(tmp_path / "b.json", labelme("b.png", [], 6, 8))
    write_image(tmp_path / "b.png", 8, 6)
    ds = load_dataset("labelme", tmp_path)
    assert isinstance(ds, LabelMeDataset)
    assert ds.problems == []  # ignored labels go silently
    assert ds.class_names == ["cat", "dog"]
    assert [(r.image_id, r.ref) for r in ds.records] == [(0, "a.png"), (1, "b.png")]
    assert [a.ref for a in ds.records[0].annotations] == [
        "shape 0 ('cat')",
        "group 1 (shapes 1, 3)",
        "shape 4 ('cat')",
        "shape 6 ('dog')",
    ]

    _, target = ds[0]
    assert target["labels"].tolist() == [1, 2, 1, 2]
    assert torch.equal(target["masks"][0], mask(48, 64, (2, 3, 6, 8)))
    assert torch.equal(target["masks"][1], mask(48, 64, (10, 2, 14, 6), (20, 2, 22, 4)))
    assert torch.equal(target["masks"][3], mask(48, 64, (30, 40, 34, 44)))
    assert abs(target["area"][2].item() - math.pi * 225) < 0.01 * math.pi * 225
    # The circle spans 25..55 by 9..39; pixel i is inside when its centre i + 0.5 is.
    assert target["boxes"].tolist() == [[2, 3, 6, 8], [10, 2, 22, 6], [25, 9, 55, 39], [30, 40, 34, 44]]
    _, target = ds[1]  # no shapes: a negative
    assert target["masks"].shape == (0, 6, 8)


def test_image_data_only_when_the_file_is_missing(tmp_path):
    red, green = (200, 0, 0), (0, 255, 0)
    write_json(tmp_path / "c.json", labelme("c.png", [], 6, 8, b64(png_bytes(8, 6, red))))
    write_image(tmp_path / "d.png", 8, 6, green)
    write_json(tmp_path / "d.json", labelme("d.png", [], 6, 8, b64(png_bytes(8, 6, red))))
    ds = LabelMeDataset(tmp_path)
    assert ds.problems == []
    assert ds.records[0].image_data == png_bytes(8, 6, red)
    assert ds.records[1].image_data is None
    image, _ = ds[0]
    assert image.shape == (3, 6, 8)
    assert torch.allclose(image[:, 0, 0], torch.tensor([200 / 255, 0.0, 0.0]))
    image, _ = ds[1]  # the file exists: its pixels, not the embedded ones
    assert torch.allclose(image[:, 0, 0], torch.tensor([0.0, 1.0, 0.0]))


def test_windows_paths_sub_folders_and_mask_shapes(tmp_path):
    write_image(tmp_path / "imgs" / "b.png", 16, 12)
    patch = np.zeros((3, 4), dtype=bool)  # the box (5, 6)-(8, 8): 4 wide, 3 high
    patch[0, :] = True
    patch[2, 3] = True
    shapes = [
        shape("cat", [[5, 6], [8, 8]], "mask", mask=mask_png_b64(patch)),
        shape("cat", [[5, 6], [8, 8]], "mask", group_id="g", mask=mask_png_b64(patch)),
        shape("cat", square(0, 0, 2, 2), group_id="g"),
    ]
    write_json(tmp_path / "ann" / "sub" / "b.json", labelme("..\\..\\imgs\\b.png", shapes, 12, 16))
    ds = LabelMeDataset(tmp_path / "ann")
    assert ds.problems == []
    assert ds.records[0].path == tmp_path / "ann" / "sub" / ".." / ".." / "imgs" / "b.png"
    _, target = ds[0]
    expected = mask(12, 16, (5, 6, 9, 7), (8, 8, 9, 9))  # row 6 over x 5..8, and the pixel (8, 8)
    assert torch.equal(target["masks"][0], expected)
    assert torch.equal(target["masks"][1], expected | mask(12, 16, (0, 0, 2, 2)))
    assert target["boxes"].tolist() == [[5, 6, 9, 9], [0, 0, 9, 9]]
    assert target["area"].tolist() == [5, 9]


def test_each_problem_names_file_image_and_shape(tmp_path):
    write_image(tmp_path / "p.png", 20, 16)
    shapes = [
        shape("cat", [[1, 1]], "point"),
        shape("cat", [[1, 1], [5, 5]], "line"),
        shape("cat", [[1, 1], [5, 5], [9, 1]], "linestrip"),
        shape("cat", [[1, 1], [5, 5]]),
        shape("cat", [[1, 1], [5, 5]], "blob"),
        shape("", square(1, 1, 5, 5)),
        shape("cat", square(1, 1, 5, 5), group_id=5),
        shape("dog", square(6, 1, 9, 5), group_id=5),
        shape("cat", [[1, 1], [5, 5], [9, 9]], "rectangle"),
        shape("cat", [[3, 3], [3, 3]], "circle"),
        shape("cat", [[0, 0], [3, 3]], "mask", mask=mask_png_b64(np.ones((2, 2), dtype=bool))),
        shape("cat", square(10, 10, 14, 14), group_id=9),
        shape("cat", [[1, 1], [2, 2]], group_id=9),
        shape("cat", [[1]]),
        shape("dog", square(1, 1, 5, 5)),
        shape("cat", square(2, 2, 6, 6)),  # fine
        shape("__ignore__", [[1, 1]], "point"),  # ignored before any check, though not in class_names
    ]
    write_json(tmp_path / "p.json", labelme("p.png", shapes, 16, 20))
    write_json(tmp_path / "q.json", labelme("q.png", [], 16, 20))
    write_image(tmp_path / "r.png", 20, 16)
    write_json(tmp_path / "r.json", labelme("r.png", [], 10, 10))
    write_json(tmp_path / "s.json", labelme("s.png", [], 16, 20, b64(b"hello")))
    write_json(tmp_path / "t.json", labelme("t.png", [], 16, 20, "\u00e9t\u00e9"))  # not even base64's ASCII
    write_json(tmp_path / "classes.json", ["cat", "dog"])
    ds = LabelMeDataset(tmp_path, class_names=["cat"])
    p = str(tmp_path / "p.json")
    expected = [
        f"{p}, image p.png, shape 0 ('cat'): a point has no area",
        f"{p}, image p.png, shape 1 ('cat'): a line has no area",
        f"{p}, image p.png, shape 2 ('cat'): a linestrip has no area",
        f"{p}, image p.png, shape 3 ('cat'): polygon part 0 has 2 points",
        f"{p}, image p.png, shape 4 ('cat'): unknown shape_type 'blob'",
        f"{p}, image p.png, shape 5 (''): label '' is not a class name",
        f"{p}, image p.png, group 5 (shapes 6, 7): one instance with different labels: 'cat' (shape 6), "
        "'dog' (shape 7)",
        f"{p}, image p.png, shape 8 ('cat'): rectangle has 3 points; expected two corners",
        f"{p}, image p.png, shape 9 ('cat'): circle of radius 0 has no area",
        f"{p}, image p.png, shape 10 ('cat'): mask image is 2x2 but its box (0, 0)-(3, 3) is 4x4",
        f"{p}, image p.png, shape 12 ('cat'): polygon part 0 has 2 points",
        f"{p}, image p.png, shape 13 ('cat'): points [[1]] are not a list of [x, y] pairs",
        f"{p}, image p.png, shape 14 ('dog'): label 'dog' is not one of class_names ['cat']",
        f"{tmp_path / 'q.json'}, image q.png: image file not found: {tmp_path / 'q.png'}",
        f"{tmp_path / 'r.json'}, image r.png: image is 20x16 but the annotations say 10x10",
        f"{tmp_path / 's.json'}, image s.png: image file not found: {tmp_path / 's.png'}, and imageData is "
        "unusable",
        f"{tmp_path / 't.json'}, image t.png: image file not found: {tmp_path / 't.png'}, and imageData is "
        "unusable",
    ]
    errors = messages(ds)
    assert len(errors) == len(expected)
    for message, tail in zip(errors, expected, strict=True):
        assert message.startswith(f"error: {tail}"), (message, tail)
    assert messages(ds, "warning") == [
        f"warning: {tmp_path / 'classes.json'}: not a LabelMe file (no 'shapes' list); skipped: a JSON list"
    ]
    assert [r.ref for r in ds.records] == ["p.png"]
    # The group keeps its good part; the lone good shape is kept.
    assert [a.ref for a in ds.records[0].annotations] == ["group 9 (shapes 11, 12)", "shape 15 ('cat')"]
    assert ds.records[0].annotations[0].segmentation == [[10, 10, 14, 10, 14, 14, 10, 14]]

    with pytest.raises(DataError, match=r"p\.json, image p\.png, shape 0 \('cat'\): a point has no area"):
        LabelMeDataset(tmp_path, class_names=["cat"], strict=True)


def test_single_file_and_custom_ignore_labels(tmp_path):
    write_image(tmp_path / "a.png", 8, 8)
    shapes = [
        shape("skip", square(1, 1, 3, 3)),
        shape("b", square(4, 4, 6, 6)),
        shape("a", square(0, 4, 2, 6)),
    ]
    path = write_json(tmp_path / "a.json", labelme("a.png", shapes, 8, 8))
    ds = LabelMeDataset(path, ignore_labels=["skip"])
    assert ds.problems == []
    assert ds.class_names == ["a", "b"]
    assert ds[0][1]["labels"].tolist() == [2, 1]


def test_malformed_files_raise(tmp_path):
    (tmp_path / "bad.json").write_text('{"shapes": [}')
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON \(line 1, column 13"):
        LabelMeDataset(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        LabelMeDataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \*\.json files"):
        LabelMeDataset(tmp_path / "empty")
    path = write_json(tmp_path / "coco.json", {"images": []})
    with pytest.raises(DataError, match=r"coco\.json: no 'shapes' list; expected a LabelMe"):
        LabelMeDataset(path)


# -- keypoints: point shapes grouped with their instance ---------------------------------------------


def point(name, x, y, group_id):
    return shape(name, [[x, y]], "point", group_id=group_id)


def _people(tmp_path):
    """Two files: a person as a rectangle with three points, one as a polygon with one (and a point of a
    name other files do not use), and a ball without keypoints."""
    write_image(tmp_path / "a.png", 32, 24)
    write_image(tmp_path / "b.png", 32, 24)
    a = [
        shape("person", [[2, 2], [12, 20]], "rectangle", group_id=1),
        point("nose", 7, 4.5, 1),
        point("left_eye", 8.25, 3, 1),
        point("right_eye", 5.75, 3, 1),
        shape("ball", square(20, 20, 24, 24)),
        shape("person", square(16, 2, 26, 18), group_id="p2"),
        point("nose", 21, 4, "p2"),
    ]
    b = [shape("person", square(1, 1, 9, 9), group_id=7), point("tail", 3, 8, 7), point("nose", 5, 2, 7)]
    write_json(tmp_path / "a.json", labelme("a.png", a, 24, 32))
    write_json(tmp_path / "b.json", labelme("b.png", b, 24, 32))


def test_points_are_the_keypoints_of_their_group_named_by_their_labels(tmp_path):
    _people(tmp_path)
    ds = LabelMeDataset(tmp_path)
    assert ds.problems == []
    assert ds.class_names == ["ball", "person"]  # point labels are keypoints, not classes
    spec = ds.keypoint_spec
    assert spec.names == ("left_eye", "nose", "right_eye", "tail")  # sorted, without the option
    assert spec.skeleton == ()
    assert spec.flip_permutation() == [2, 1, 0, 3]  # left_eye <-> right_eye, from the names
    assert [a.ref for a in ds.records[0].annotations] == [
        "group 1 (shapes 0, 1, 2, 3)",
        "shape 4 ('ball')",
        "group p2 (shapes 5, 6)",
    ]
    expected = torch.tensor(
        [
            [[8.25, 3, 2], [7, 4.5, 2], [5.75, 3, 2], [0, 0, 0]],
            [[0, 0, 0]] * 4,
            [[0, 0, 0], [21, 4, 2], [0, 0, 0], [0, 0, 0]],
        ]
    )
    assert torch.equal(ds.load_keypoints(0), expected)
    _, target = ds[0]
    assert torch.equal(target["keypoints"], expected)
    assert target["labels"].tolist() == [2, 1, 2]
    assert torch.equal(target["masks"][0], mask(24, 32, (2, 2, 12, 20)))
    assert torch.equal(ds.load_keypoints(1), torch.tensor([[[0, 0, 0], [5, 2, 2], [0, 0, 0], [3, 8, 2]]]))


def test_keypoint_names_and_skeleton_from_the_options_as_the_command_line_gives_them(tmp_path):
    _people(tmp_path)
    ds = load_dataset(
        "labelme",
        tmp_path,
        keypoints=parse_value("nose,left_eye,right_eye"),
        skeleton=parse_value("nose-left_eye,0-2"),
    )
    spec = ds.keypoint_spec
    assert spec.names == ("nose", "left_eye", "right_eye")
    assert spec.skeleton == ((0, 1), (0, 2))
    assert spec.flip_permutation() == [0, 2, 1]
    assert messages(ds, "warning") == [
        f"warning: {tmp_path / 'b.json'}, image b.png, shape 1 ('tail'): point 'tail' is not one of "
        "keypoints ['nose', 'left_eye', 'right_eye']; ignored"
    ]
    assert ds.load_keypoints(0)[0].tolist() == [[7, 4.5, 2], [8.25, 3, 2], [5.75, 3, 2]]
    assert ds.load_keypoints(1).tolist() == [[[5, 2, 2], [0, 0, 0], [0, 0, 0]]]
    # Index pairs, as YAML's [[0, 1]] or Python give them.
    assert LabelMeDataset(
        tmp_path, keypoints=["nose", "left_eye"], skeleton=[[1, 0]]
    ).keypoint_spec.skeleton == ((1, 0),)


@pytest.mark.parametrize(
    ("skeleton", "match"),
    [
        (["nose-ear"], r"edge 'nose-ear' is not two keypoints 'a-b' \(names or indices 0\.\.2 of \['nose', "),
        (["0-1", "0-3"], r"edge '0-3' is not two keypoints"),
        ([[0, 5]], r"edge \[0, 5\] is not two keypoint indices 0\.\.2"),
    ],
)
def test_a_skeleton_edge_that_is_not_two_keypoints_is_named(tmp_path, skeleton, match):
    _people(tmp_path)
    with pytest.raises(DataError, match=r"--format labelme: option skeleton: " + match):
        LabelMeDataset(tmp_path, keypoints=["nose", "left_eye", "right_eye"], skeleton=skeleton)


def test_a_skeleton_without_keypoints_is_an_error(tmp_path):
    write_image(tmp_path / "a.png", 8, 8)
    write_json(tmp_path / "a.json", labelme("a.png", [shape("cat", square(1, 1, 4, 4))], 8, 8))
    assert LabelMeDataset(tmp_path).keypoint_spec is None
    with pytest.raises(DataError, match=r"option skeleton=\['0-1'\], but .* has no keypoints"):
        LabelMeDataset(tmp_path, skeleton=["0-1"])


def test_each_keypoint_problem_names_file_shape_and_value(tmp_path):
    write_image(tmp_path / "p.png", 20, 16)
    shapes = [
        point("nose", 3, 3, None),  # no group: no instance
        point("nose", 3, 3, 4),  # group 4 has no shape with an area
        point("left_eye", 4, 4, 4),
        shape("person", square(1, 1, 9, 9), group_id=5),
        point("nose", 3, 3, 5),
        point("nose", 4, 3, 5),  # a second nose: the instance is left out
        shape("person", square(10, 1, 18, 9), group_id=6),
        shape("nose", [[12, 3], [13, 3]], "point", group_id=6),  # two points in one point shape
        point("", 13, 3, 6),
        point("left_eye", 25, 3, 6),  # outside the 20x16 image: left out
        point("right_eye", 14, 4, 6),  # fine
    ]
    write_json(tmp_path / "p.json", labelme("p.png", shapes, 16, 20))
    ds = LabelMeDataset(tmp_path)
    where = f"{tmp_path / 'p.json'}, image p.png"
    assert messages(ds) == [
        f"error: {where}, shape 0 ('nose'): a point has no area; as a keypoint it needs the group_id of its "
        "instance's shape",
        f"error: {where}, group 4 (shapes 1, 2): keypoints without an instance: no polygon, rectangle, "
        "circle or mask has their group_id",
        f"error: {where}, group 5 (shapes 3, 4, 5): two points named 'nose' (shapes 4 and 5) in one instance",
        f"error: {where}, shape 7 ('nose'): a point has points [[12, 3], [13, 3]]; expected one [x, y]",
        f"error: {where}, shape 8 (''): label '' is not a keypoint name",
    ]
    assert messages(ds, "warning") == [
        f"warning: {where}, group 6 (shapes 6, 7, 8, 9, 10): keypoint 0 (left_eye) at (25, 3) outside the "
        "20x16 image; left out (v = 0)"
    ]
    assert ds.keypoint_spec.names == ("left_eye", "nose", "right_eye")
    assert [a.ref for a in ds.records[0].annotations] == ["group 6 (shapes 6, 7, 8, 9, 10)"]
    assert ds.load_keypoints(0).tolist() == [[[0, 0, 0], [0, 0, 0], [14, 4, 2]]]
    with pytest.raises(DataError, match=r"shape 0 \('nose'\): a point has no area"):
        LabelMeDataset(tmp_path, strict=True)


def test_a_point_that_is_not_a_number_drops_its_instance_with_an_error(tmp_path):
    write_image(tmp_path / "a.png", 32, 24)
    shapes = [
        shape("person", square(1, 1, 9, 9), group_id=1),
        point("nose", float("nan"), 2, 1),  # json writes NaN, and Python's json reads it back
        shape("person", square(12, 1, 20, 9), group_id=2),
        point("nose", 15, 2, 2),
    ]
    write_json(tmp_path / "a.json", labelme("a.png", shapes, 24, 32))
    ds = LabelMeDataset(tmp_path)
    assert [a.ref for a in ds.records[0].annotations] == ["group 2 (shapes 2, 3)"]
    assert [p.severity for p in ds.problems] == ["error"]
    assert ds.problems[0].annotation == "group 1 (shapes 0, 1)"
