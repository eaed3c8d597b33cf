"""Reader options held against the readers' type hints (what ``-o KEY=VALUE`` gives is YAML's reading of
the text, so a list written without brackets arrives as one text)."""

from pathlib import Path

import pytest

from maskrcnn.config import parse_value
from maskrcnn.data import load_dataset
from maskrcnn.data.dataset import DataError
from maskrcnn.data.formats.labelme import LabelMeDataset
from maskrcnn.data.formats.masks import InstancePngDataset
from maskrcnn.data.formats.options import checked_options
from maskrcnn.data.formats.via import ViaDataset


def test_a_text_for_a_list_of_texts_is_split_at_its_commas():
    for text in ("balloon,kite", "balloon, kite", "[balloon, kite]", "balloon,kite,"):
        options = checked_options("via", ViaDataset, {"class_names": parse_value(text)})
        assert options == {"class_names": ["balloon", "kite"]}, text
    assert checked_options("via", ViaDataset, {"class_names": "balloon"}) == {"class_names": ["balloon"]}


def test_keypoint_names_and_skeleton_edges_from_the_command_line():
    options = {
        "keypoints": parse_value("nose,left_eye,right_eye"),
        "skeleton": parse_value("nose-left_eye,0-2"),
    }
    assert checked_options("labelme", LabelMeDataset, options) == {
        "keypoints": ["nose", "left_eye", "right_eye"],
        "skeleton": ["nose-left_eye", "0-2"],
    }
    # YAML's index pairs pass as they are.
    pairs = {"skeleton": parse_value("[[0, 1], [0, 2]]")}
    assert checked_options("labelme", LabelMeDataset, pairs) == {"skeleton": [[0, 1], [0, 2]]}
    with pytest.raises(DataError, match=r"option skeleton=\[\[0, 'x'\]\] should be a list of texts"):
        checked_options("labelme", LabelMeDataset, {"skeleton": parse_value("[[0, x]]")})


def test_keypoint_sigmas_from_the_command_line_reach_the_spec(tmp_path):
    from maskrcnn.data.formats.coco import CocoDataset
    from maskrcnn.data.shapes import write_shapes_coco

    for text in ("0.1,0.2,0.3,0.4", "[0.1, 0.2, 0.3, 0.4]"):
        options = checked_options("coco", CocoDataset, {"keypoint_sigmas": parse_value(text)})
        assert options == {"keypoint_sigmas": [0.1, 0.2, 0.3, 0.4]}, text
    with pytest.raises(DataError, match=r"option keypoint_sigmas='0.1,x' should be a list of numbers"):
        checked_options("coco", CocoDataset, {"keypoint_sigmas": parse_value("0.1,x")})
    path = write_shapes_coco(tmp_path, count=2, keypoints=True)
    data = load_dataset("coco", path, keypoint_sigmas=parse_value("0.1,0.2,0.3,0.4"))
    assert data.keypoint_spec.oks_sigmas() == [0.1, 0.2, 0.3, 0.4]
    assert load_dataset("coco", path).keypoint_spec.oks_sigmas() == [0.05] * 4
    with pytest.raises(
        DataError, match=r"keypoint_sigmas=\[0.1, 0.2\]: expected 4 positive values, one per keypoint"
    ):
        load_dataset("coco", path, keypoint_sigmas=[0.1, 0.2])
    plain = write_shapes_coco(tmp_path / "plain", count=1)
    with pytest.raises(DataError, match=r"keypoint_sigmas given, but the data has no keypoints"):
        load_dataset("coco", plain, keypoint_sigmas=[0.1])


def test_a_single_value_for_a_list_becomes_a_list_of_one():
    assert checked_options("instance-png", InstancePngDataset, {"ignore_ids": parse_value("255")}) == {
        "ignore_ids": [255]
    }
    assert checked_options("instance-png", InstancePngDataset, {"ignore_ids": parse_value("[0, 255]")}) == {
        "ignore_ids": [0, 255]
    }


def test_values_that_fit_pass_unchanged():
    options = {"image_dir": Path("imgs"), "class_attribute": "kind", "class_name": None, "strict": True}
    assert checked_options("via", ViaDataset, options) == options
    mapping = {"class_map": parse_value("{1: person, 2: null}")}
    assert checked_options("instance-png", InstancePngDataset, mapping) == {
        "class_map": {1: "person", 2: None}
    }


@pytest.mark.parametrize(
    ("format", "key", "text", "expected"),
    [
        ("coco", "check_images", "7", "true or false"),
        ("via", "class_names", "{a: 1}", "a list of texts ([a, b] or a,b)"),
        ("instance-png", "ignore_ids", "[1, x]", "a list of whole numbers ([1, 2] or 1,2)"),
        ("instance-png", "class_map", "[person]", "a mapping such as {1: person, 2: car}"),
        ("shapes", "count", "many", "a whole number"),
        ("shapes", "overlap", "true", "a number"),
        ("via", "class_attribute", "[kind]", "a text"),
    ],
)
def test_a_value_that_does_not_fit_names_the_option_the_value_and_the_type(format, key, text, expected):
    with pytest.raises(DataError) as error:
        load_dataset(format, "unused" if format != "shapes" else None, **{key: parse_value(text)})
    assert str(error.value) == f"--format {format}: option {key}={parse_value(text)!r} should be {expected}"
