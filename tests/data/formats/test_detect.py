"""``detect_format``: each format told from its path, and the refusals that say what was seen."""

import numpy as np
import pytest

from maskrcnn.data import DataError, load_dataset
from maskrcnn.data.formats import resolve_format
from maskrcnn.data.formats.detect import detect_format

from .writers_a import write_image, write_json
from .writers_b import label_image, rgb

SQUARE = [[1, 1, 6, 1, 6, 6, 1, 6]]


def _coco(tmp_path):
    write_image(tmp_path / "a.png", 8, 8)
    return write_json(
        tmp_path / "instances.json",
        {
            "images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": SQUARE}],
            "categories": [{"id": 1, "name": "thing"}],
        },
    )


def _via_region(name):
    return {"filename": name, "size": 1, "regions": [], "file_attributes": {}}


def test_each_format_is_detected(tmp_path):
    assert detect_format(_coco(tmp_path / "coco")) == "coco"
    assert detect_format(write_json(tmp_path / "via1.json", {"a.png1": _via_region("a.png")})) == "via"
    project = {
        "_via_settings": {},
        "_via_img_metadata": {"a.png1": _via_region("a.png")},
        "_via_attributes": {},
    }
    assert detect_format(write_json(tmp_path / "via2.json", project)) == "via"
    labelme = {"shapes": [], "imagePath": "a.png", "imageHeight": 8, "imageWidth": 8}
    write_json(tmp_path / "lm" / "sub" / "a.json", labelme)
    assert detect_format(tmp_path / "lm") == "labelme"
    assert detect_format(tmp_path / "lm" / "sub" / "a.json") == "labelme"
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cell]\n")
    assert detect_format(tmp_path / "data.yaml") == "yolo"
    rgb(tmp_path / "fudan" / "PNGImages" / "x.png", 4, 4)
    label_image(tmp_path / "fudan" / "PedMasks" / "x_mask.png", np.ones((4, 4)))
    assert detect_format(tmp_path / "fudan") == "instance-png"
    rgb(tmp_path / "nuclei" / "s1" / "images" / "s1.png", 4, 4)
    label_image(tmp_path / "nuclei" / "s1" / "masks" / "m.png", np.ones((4, 4)))
    assert detect_format(tmp_path / "nuclei") == "mask-dirs"
    assert resolve_format("via", tmp_path / "nuclei") == "via"  # a given format is not second-guessed


def test_load_dataset_detects_with_none_or_auto(tmp_path):
    path = _coco(tmp_path)
    for format in (None, "auto"):
        ds = load_dataset(format, path)
        assert type(ds).__name__ == "CocoDataset"
        assert ds.class_names == ["thing"]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda p: write_json(p / "r.json", [{"image_id": 1}]),
            r"r\.json: .*a JSON list \(a COCO results file\?\).*--format",
        ),
        (
            lambda p: write_json(p / "o.json", {"info": 1}),
            r"o\.json: not a dataset format .*keys \['info'\].*--format",
        ),
        (lambda p: (p / "n.txt").write_text("x") and p / "n.txt", r"n\.txt: .*a \.txt file"),
        (
            lambda p: (p / "d.yaml").write_text("lr: 1\n") and p / "d.yaml",
            r"d\.yaml: .*keys \['lr'\]; a YOLO data YAML",
        ),
        (lambda p: p / "nowhere", r"nowhere: no such file or folder"),
    ],
)
def test_unrecognised_paths_say_what_was_seen(tmp_path, make, match):
    with pytest.raises(DataError, match=match):
        detect_format(make(tmp_path))


def test_ambiguous_and_empty_folders_ask_for_format(tmp_path):
    both = {"images": [], "categories": [], "shapes": [], "imagePath": "a.png"}
    with pytest.raises(DataError, match=r"could be coco or labelme .*; pass --format to choose"):
        detect_format(write_json(tmp_path / "both.json", both))
    folder = tmp_path / "yolo"
    (folder / "images").mkdir(parents=True)
    (folder / "data.yaml").write_text("names: [a]\ntrain: images\n")
    with pytest.raises(
        DataError, match=r"a folder with data\.yaml, images/; pass the annotation file itself"
    ):
        detect_format(folder)
    with pytest.raises(DataError, match=r"no dataset path .* pass --format"):
        detect_format(None)
