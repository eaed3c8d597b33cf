"""The catalogue of bad and unusual inputs, run through the command line as a user would.

Each case builds its input in a fresh folder and gives the command line to run; the run must end with
the expected exit code (1 for bad input, 0 for input that is valid but unusual, 2 for argparse's usage
errors), never with a traceback or the "internal error" line kept for bugs, and its messages must name
what is wrong: the file, the item (image, annotation, key) and the value.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.cli import main
from tests.engine.prediction_helpers import random_image, tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
checkpoint = pytest.fixture(scope="module")(tiny_checkpoint)

# A case's setup gets its folder and the tiny checkpoint, writes what it needs and returns the argv.
Setup = Callable[[Path, Path], list[str]]


@dataclass(frozen=True)
class Case:
    name: str
    setup: Setup
    code: int = 1
    says: tuple[str, ...] = ()  # texts the output must hold (stdout and stderr together)


CASES: list[Case] = []


def case(name: str, code: int = 1, *says: str) -> Callable[[Setup], Setup]:
    def register(setup: Setup) -> Setup:
        CASES.append(Case(name, setup, code, says))
        return setup

    return register


# --- inputs ----------------------------------------------------------------------------------------


def save(path: Path, image: Image.Image, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def rgb(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(random_image(seed, height, width))


def predict(d: Path, ckpt: Path, source: Path | str, *extra: str) -> list[str]:
    return ["predict", str(source), "--weights", str(ckpt), "--out", str(d / "out"), *extra]


def polygon(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def coco_dict(d: Path) -> dict:
    """Two 64x48 images beside the JSON, one square each, class 'cat' (id 1)."""
    for name in ("a.png", "b.png"):
        save(d / name, rgb())
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 2, "file_name": "b.png", "width": 64, "height": 48},
        ],
        "annotations": [
            {
                "id": 10 + i,
                "image_id": i,
                "category_id": 1,
                "segmentation": [polygon(10, 10, 30, 30)],
                "bbox": [10, 10, 20, 20],
                "area": 400,
                "iscrowd": 0,
            }
            for i in (1, 2)
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }


def check_coco(d: Path, data: object, *extra: str) -> list[str]:
    path = d / "ann.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return ["check-data", "--format", "coco", str(path), *extra]


def coco_case(name: str, code: int, *says: str) -> Callable[[Callable[[dict], object]], None]:
    """A COCO file changed by ``mutate`` (which edits the dict or returns what to write)."""

    def register(mutate: Callable[[dict], object]) -> None:
        def setup(d: Path, ckpt: Path) -> list[str]:
            data = coco_dict(d)
            out = mutate(data)
            return check_coco(d, data if out is None else out)

        CASES.append(Case(name, setup, code, says))

    return register


def via_dict(d: Path) -> dict:
    save(d / "a.png", rgb())
    region = {
        "shape_attributes": {
            "name": "polygon",
            "all_points_x": [10, 30, 30, 10],
            "all_points_y": [10, 10, 30, 30],
        },
        "region_attributes": {"kind": "balloon"},
    }
    return {"a.png1": {"filename": "a.png", "size": 1, "regions": [region], "file_attributes": {}}}


def via_case(name: str, code: int, *says: str, options: tuple[str, ...] = ()) -> Callable[[Callable], None]:
    def register(mutate: Callable[[dict], object]) -> None:
        def setup(d: Path, ckpt: Path) -> list[str]:
            data = via_dict(d)
            out = mutate(data)
            path = d / "via_region_data.json"
            out = data if out is None else out
            path.write_text(out if isinstance(out, str) else json.dumps(out))
            return ["check-data", "--format", "via", str(path), *options]

        CASES.append(Case(name, setup, code, says))

    return register


def labelme_folder(d: Path, shape: dict | None = None, **doc: object) -> Path:
    folder = d / "labelme"
    save(folder / "a.png", rgb())
    body = {
        "imagePath": "a.png",
        "imageHeight": 48,
        "imageWidth": 64,
        "shapes": [
            shape or {"label": "cat", "points": [[10, 10], [30, 10], [30, 30]], "shape_type": "polygon"}
        ],
    }
    body.update(doc)
    (folder / "a.json").write_text(json.dumps({k: v for k, v in body.items() if v is not None}))
    return folder


def check_labelme(folder: Path) -> list[str]:
    return ["check-data", "--format", "labelme", str(folder)]


def yolo_dataset(
    d: Path, label: str = "0 0.5 0.5 0.4 0.4 0.4 0.2 0.2 0.8\n", yaml: str | None = None
) -> Path:
    save(d / "images" / "train" / "a.png", rgb())
    (d / "labels" / "train").mkdir(parents=True)
    (d / "labels" / "train" / "a.txt").write_text(label)
    path = d / "data.yaml"
    path.write_text(
        yaml if yaml is not None else f"path: {d}\ntrain: images/train\nval: images/train\nnames: [cat]\n"
    )
    return path


def check_yolo(path: Path) -> list[str]:
    return ["check-data", "--format", "yolo", str(path)]


def train_argv(d: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "shapes", "--out", str(d / "run"), *extra]


class Evil:
    """A pickle that would run a command when loaded."""

    def __reduce__(self) -> tuple:
        return (print, ("this must never be printed",))


# --- images ----------------------------------------------------------------------------------------


@case("image truncated", 1, "cut.png", "skipped")
def _(d, ckpt):
    data = io.BytesIO()
    rgb().save(data, format="PNG")
    (d / "cut.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    return predict(d, ckpt, d / "cut.png")


@case("image empty file", 1, "empty.jpg")
def _(d, ckpt):
    (d / "empty.jpg").write_bytes(b"")
    return predict(d, ckpt, d / "empty.jpg")


@case("image is text", 1, "notes.png", "not an image")
def _(d, ckpt):
    (d / "notes.png").write_text("hello")
    return predict(d, ckpt, d / "notes.png")


@case("image decompression bomb", 1, "bomb.png", "pixels")
def _(d, ckpt):
    save(d / "bomb.png", Image.new("1", (10000, 10000)))
    return predict(d, ckpt, d / "bomb.png")


@case("image above --max-pixels", 1, "wide.png", "decompression bomb", "--max-pixels")
def _(d, ckpt):
    save(d / "wide.png", rgb(width=200, height=100))
    return predict(d, ckpt, d / "wide.png", "--max-pixels", "10000")


@case("image 16-bit grey through tiles", 0, "tiles: 32 px", "1 image")
def _(d, ckpt):
    save(d / "deep.png", Image.fromarray((np.arange(90 * 70).reshape(90, 70) * 10).astype(np.uint16)))
    return predict(d, ckpt, d / "deep.png", "--tile", "32", "--overlay-size", "40")


@case("tile overlap on a model not trained on tiles", 1, "--tile-overlap", "give a tile size")
def _(d, ckpt):
    save(d / "a.png", rgb())
    return predict(d, ckpt, d / "a.png", "--tile-overlap", "8")


@case("image 16-bit grey", 0, "1 image")
def _(d, ckpt):
    save(d / "deep.png", Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)))
    return predict(d, ckpt, d / "deep.png")


@case("image CMYK JPEG", 0, "1 image")
def _(d, ckpt):
    save(d / "cmyk.jpg", rgb().convert("CMYK"))
    return predict(d, ckpt, d / "cmyk.jpg")


@case("image palette", 0, "1 image")
def _(d, ckpt):
    save(d / "pal.png", rgb().convert("P"))
    return predict(d, ckpt, d / "pal.png")


@case("image with alpha", 0, "1 image")
def _(d, ckpt):
    save(d / "alpha.png", rgb().convert("RGBA"))
    return predict(d, ckpt, d / "alpha.png")


@case("image grey with alpha", 0, "1 image")
def _(d, ckpt):
    save(d / "la.png", rgb().convert("LA"))
    return predict(d, ckpt, d / "la.png")


@case("image 1x1", 0, "1 image")
def _(d, ckpt):
    save(d / "dot.png", rgb(1, 1))
    return predict(d, ckpt, d / "dot.png")


@case("image 3000x8 strip", 0, "1 image")
def _(d, ckpt):
    save(d / "strip.png", rgb(3000, 8))
    return predict(d, ckpt, d / "strip.png")


@case("image 8x3000 strip", 0, "1 image")
def _(d, ckpt):
    save(d / "tall.png", rgb(8, 3000))
    return predict(d, ckpt, d / "tall.png")


@case("image huge (12 Mpx)", 0, "1 image")
def _(d, ckpt):
    save(d / "big.png", Image.new("RGB", (4000, 3000), (90, 120, 40)))
    return predict(d, ckpt, d / "big.png")


@case("image float TIFF", 0, "1 image")
def _(d, ckpt):
    save(d / "float.tif", Image.fromarray(np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)))
    return predict(d, ckpt, d / "float.tif")


def test_exif_rotation_is_applied(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    # A phone's portrait photo: stored 64 wide, 48 high, with "rotate 90" in its EXIF data.
    exif = Image.Exif()
    exif[0x0112] = 6
    save(tmp_path / "phone.jpg", rgb(), exif=exif.tobytes())
    assert main(predict(tmp_path, checkpoint, tmp_path / "phone.jpg")) == 0
    (overlay,) = (tmp_path / "out").glob("phone.*")
    with Image.open(overlay) as picture:
        assert picture.size == (48, 64)


@case("image folder with one bad image among good ones", 0, "bad.png", "skipped", "1 image")
def _(d, ckpt):
    save(d / "src" / "good.png", rgb())
    (d / "src" / "bad.png").write_text("not a picture")
    return predict(d, ckpt, d / "src")


@case("source folder without images", 1, "nothing", "no image")
def _(d, ckpt):
    (d / "nothing").mkdir()
    (d / "nothing" / "readme.txt").write_text("hi")
    return predict(d, ckpt, d / "nothing")


@case("source missing", 1, "missing.jpg")
def _(d, ckpt):
    return predict(d, ckpt, d / "missing.jpg")


@case("score threshold 0", 0, "1 image")
def _(d, ckpt):
    save(d / "a.png", rgb())
    return predict(d, ckpt, d / "a.png", "--score-threshold", "0")


@case("score threshold above 1", 2, "--score-threshold", "1.5")
def _(d, ckpt):
    save(d / "a.png", rgb())
    return predict(d, ckpt, d / "a.png", "--score-threshold", "1.5")


# --- paths -----------------------------------------------------------------------------------------


@case("output over a file", 1, "taken.txt", "file")
def _(d, ckpt):
    save(d / "a.png", rgb())
    (d / "taken.txt").write_text("keep me")
    return ["predict", str(d / "a.png"), "--weights", str(ckpt), "--out", str(d / "taken.txt")]


@case("output inside a file", 1, "taken.txt")
def _(d, ckpt):
    save(d / "a.png", rgb())
    (d / "taken.txt").write_text("keep me")
    return ["predict", str(d / "a.png"), "--weights", str(ckpt), "--out", str(d / "taken.txt" / "out")]


@case("output folder not writable", 1, "/proc/maskrcnn-out")
def _(d, ckpt):
    save(d / "a.png", rgb())
    return ["predict", str(d / "a.png"), "--weights", str(ckpt), "--out", "/proc/maskrcnn-out"]


@case("check-data on a missing file", 1, "nowhere.json")
def _(d, ckpt):
    return ["check-data", "--format", "coco", str(d / "nowhere.json")]


@case("LabelMe folder empty", 1, "labelme", "no")
def _(d, ckpt):
    (d / "labelme").mkdir()
    return check_labelme(d / "labelme")


# --- COCO ------------------------------------------------------------------------------------------


@case("COCO invalid JSON", 1, "ann.json", "JSON")
def _(d, ckpt):
    return check_coco(d, '{"images": [')


coco_case("COCO top level is a list", 1, "ann.json", "list")(lambda data: [data])
coco_case("COCO without images", 1, "ann.json", "images")(lambda data: data.pop("images") and None)
coco_case("COCO without categories", 1, "ann.json", "categories")(
    lambda data: data.pop("categories") and None
)
coco_case("COCO bbox of strings", 1, "ann.json", "bbox")(
    lambda data: data["annotations"][0].update(bbox="10,10,20,20", segmentation=[])
)
coco_case("COCO NaN in a polygon", 1, "ann.json", "annotation 11", "nan")(
    lambda data: json.dumps(data).replace(
        "[10, 10, 30, 10, 30, 30, 10, 30]", "[10, NaN, 30, 10, 30, 30, 10, 30]", 1
    )
)
coco_case("COCO infinite bbox beside a polygon", 0, "ann.json", "annotation 11", "bbox", "inf")(
    lambda data: json.dumps(data).replace("[10, 10, 20, 20]", "[10, 10, Infinity, 20]", 1)
)
coco_case("COCO polygon of two points", 1, "ann.json", "annotation 11")(
    lambda data: data["annotations"][0].update(segmentation=[[10, 10, 30, 30]])
)
coco_case("COCO polygon outside the image", 1, "ann.json", "annotation 11")(
    lambda data: data["annotations"][0].update(
        segmentation=[polygon(100, 100, 130, 130)], bbox=[100, 100, 30, 30]
    )
)
coco_case("COCO unknown category", 1, "ann.json", "category_id", "7")(
    lambda data: data["annotations"][0].update(category_id=7)
)
coco_case("COCO annotation of a missing image", 1, "ann.json", "image_id", "99")(
    lambda data: data["annotations"][0].update(image_id=99)
)
coco_case("COCO duplicate image ids", 1, "ann.json", "duplicate", "1")(
    lambda data: data["images"][1].update(id=1)
)
coco_case("COCO duplicate annotation ids", 1, "ann.json", "duplicate", "11")(
    lambda data: data["annotations"][1].update(id=11)
)
coco_case("COCO string image ids", 0, "images: 2", "OK")(
    lambda data: (
        [d.update(id=f"img{d['id']}") for d in data["images"]]
        and [a.update(image_id=f"img{a['image_id']}") for a in data["annotations"]]
        and None
    )
)
coco_case("COCO with no images", 1, "ann.json", "nothing to train on", "no images")(
    lambda data: data.update(images=[], annotations=[])
)
coco_case("COCO with images but no objects", 1, "nothing to train on", "none of the images (2)")(
    lambda data: data.update(annotations=[])
)
coco_case("COCO malformed RLE counts", 1, "ann.json", "annotation 11", "counts")(
    lambda data: data["annotations"][0].update(segmentation={"size": [48, 64], "counts": "!!not rle"})
)
coco_case("COCO RLE of another size", 1, "ann.json", "annotation 11", "size")(
    lambda data: data["annotations"][0].update(segmentation={"size": [20, 20], "counts": [0, 400]})
)
coco_case("COCO image size disagrees with the file", 1, "a.png", "48")(
    lambda data: data["images"][0].update(width=640, height=480)
)
coco_case("COCO image file missing", 1, "gone.png", "not found")(
    lambda data: data["images"][0].update(file_name="gone.png")
)
coco_case("COCO placeholder category without instances", 0, "background", "no instances")(
    lambda data: data["categories"].insert(0, {"id": 0, "name": "background"})
)
coco_case("COCO area disagrees with the mask", 0, "ann.json", "annotation 11", "area")(
    lambda data: data["annotations"][0].update(area=40000)
)
coco_case("COCO image without annotations", 0, "b.png", "without objects")(
    lambda data: data["annotations"].pop() and None
)


@case("COCO images elsewhere: evaluate says where it looked", 1, "a.png", "looked")
def _(d, ckpt):
    data = coco_dict(d)
    (d / "annotations").mkdir()
    for name in ("a.png", "b.png"):
        (d / name).rename(d / "annotations" / ("x" + name))
    path = d / "annotations" / "ann.json"
    path.write_text(json.dumps(data))
    return [
        "evaluate",
        "--weights",
        str(ckpt),
        "--format",
        "coco",
        "--data",
        str(path),
        "--out",
        str(d / "eval"),
    ]


@case(
    "evaluate on a COCO file with a broken annotation",
    0,
    "1 annotation problems left out",
    "image a.png, annotation 11",
    "2 points",
    "evaluated 2 images",
)
def _(d, ckpt):
    data = coco_dict(d)
    data["categories"][0]["name"] = "square"  # one of the checkpoint's classes
    data["annotations"][0]["segmentation"] = [[10, 10, 30, 10]]
    path = d / "ann.json"
    path.write_text(json.dumps(data))
    return ["evaluate", "--weights", str(ckpt), "--data", str(path), "--out", str(d / "eval")]


@case("train on a COCO file without images", 1, "empty.json", "no images")
def _(d, ckpt):
    (d / "empty.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]})
    )
    return train_argv(d, "--format", "coco", "--data", str(d / "empty.json"), "--set", "train.max_steps=1")


# --- VIA -------------------------------------------------------------------------------------------

via_case("VIA invalid JSON", 1, "via_region_data.json", "JSON")(lambda data: '{"a.png1": ')
via_case("VIA top level is a list", 1, "via_region_data.json", "list")(lambda data: list(data.values()))
via_case("VIA region without shape_attributes", 1, "via_region_data.json", "shape_attributes")(
    lambda data: data["a.png1"]["regions"][0].pop("shape_attributes") and None
)
via_case("VIA polygon with unequal x and y", 1, "via_region_data.json", "region 0", "4 x and 2 y")(
    lambda data: data["a.png1"]["regions"][0]["shape_attributes"].update(all_points_y=[10, 10])
)
via_case(
    "VIA class attribute missing", 1, "via_region_data.json", "name", options=("-o", "class_attribute=name")
)(lambda data: None)
via_case(
    "VIA unknown class",
    1,
    "via_region_data.json",
    "balloon",
    options=("-o", "class_attribute=kind", "-o", "class_names=[dog]"),
)(lambda data: None)
via_case("VIA unknown shape", 1, "via_region_data.json", "hexagon")(
    lambda data: data["a.png1"]["regions"][0]["shape_attributes"].update(name="hexagon")
)


@case("VIA image without regions", 0, "b.png", "without")
def _(d, ckpt):
    data = via_dict(d)
    save(d / "b.png", rgb())
    data["b.png1"] = {"filename": "b.png", "size": 1, "regions": [], "file_attributes": {}}
    path = d / "via_region_data.json"
    path.write_text(json.dumps(data))
    return ["check-data", "--format", "via", str(path)]


via_case(
    "VIA class_names with a class no region has",
    0,
    "via_region_data.json",
    "class 'kite' has no instances",
    options=("-o", "class_attribute=kind", "-o", "class_names=balloon,kite"),
)(lambda data: None)
via_case("VIA whose only image has no regions", 1, "a.png", "nothing to train on")(
    lambda data: data["a.png1"].update(regions=[])
)


# --- LabelMe ---------------------------------------------------------------------------------------


# A JSON beside the images may be anything (a config, a class list): skipped with a warning.
@case("LabelMe file without shapes", 0, "a.json", "shapes", "skipped", "images: 1")
def _(d, ckpt):
    folder = labelme_folder(d, shapes=None)
    save(folder / "b.png", rgb())
    shape = {"label": "cat", "points": [[10, 10], [30, 10], [30, 30]], "shape_type": "polygon"}
    body = {"imagePath": "b.png", "imageHeight": 48, "imageWidth": 64, "shapes": [shape]}
    (folder / "b.json").write_text(json.dumps(body))
    return check_labelme(folder)


@case("LabelMe folder whose only file has no shapes", 1, "a.json", "skipped", "nothing to train on")
def _(d, ckpt):
    return check_labelme(labelme_folder(d, shapes=None))


@case("LabelMe class_names with a class no shape has", 0, "labelme", "class 'dog' has no instances")
def _(d, ckpt):
    return [*check_labelme(labelme_folder(d)), "-o", "class_names=cat,dog"]


@case("LabelMe unsupported shape type", 1, "a.json", "spline")
def _(d, ckpt):
    return check_labelme(
        labelme_folder(d, {"label": "cat", "points": [[1, 1], [5, 5]], "shape_type": "spline"})
    )


@case("LabelMe size disagrees with the image", 1, "a.json", "480")
def _(d, ckpt):
    return check_labelme(labelme_folder(d, imageHeight=480, imageWidth=640))


@case("LabelMe NaN point", 1, "a.json", "nan")
def _(d, ckpt):
    folder = labelme_folder(d)
    path = folder / "a.json"
    path.write_text(path.read_text().replace("[10, 10]", "[NaN, 10]"))
    return check_labelme(folder)


@case("LabelMe circle of overflowing radius", 1, "a.json", "finite radius")
def _(d, ckpt):
    shape = {"label": "cat", "points": [[-1e308, 10], [1e308, 10]], "shape_type": "circle"}
    return check_labelme(labelme_folder(d, shape))


@case("LabelMe polygon vertex a billion pixels away", 0, "a.json")
def _(d, ckpt):
    shape = {"label": "cat", "points": [[10, 10], [30, 10], [30, 1e9]], "shape_type": "polygon"}
    return check_labelme(labelme_folder(d, shape))


@case("LabelMe image missing", 1, "a.json", "a.png")
def _(d, ckpt):
    folder = labelme_folder(d)
    (folder / "a.png").unlink()
    return check_labelme(folder)


# --- YOLO ------------------------------------------------------------------------------------------


@case("YOLO line with too few numbers", 1, "a.txt", "1")
def _(d, ckpt):
    return check_yolo(yolo_dataset(d, "0 0.5 0.5\n"))


@case("YOLO class out of range", 1, "a.txt", "3")
def _(d, ckpt):
    return check_yolo(yolo_dataset(d, "3 0.2 0.2 0.8 0.2 0.8 0.8\n"))


@case("YOLO coordinates above 1", 0, "a.txt", "line 1", "clipped")
def _(d, ckpt):
    return check_yolo(yolo_dataset(d, "0 0.2 0.2 1.8 0.2 0.8 0.8\n"))


@case("YOLO label file without an image", 0, "orphan.txt")
def _(d, ckpt):
    path = yolo_dataset(d)
    (d / "labels" / "train" / "orphan.txt").write_text("0 0.2 0.2 0.8 0.2 0.8 0.8\n")
    return check_yolo(path)


# Roboflow's exports name a placeholder class no label uses: warned (it can only score AP -1).
@case("YOLO class that no label uses", 0, "data.yaml", "class 'dog' has no instances", "OK")
def _(d, ckpt):
    return check_yolo(
        yolo_dataset(d, yaml=f"path: {d}\ntrain: images/train\nval: images/train\nnames: [cat, dog]\n")
    )


@case("YOLO image without a label file", 0, "1 images have no label file", "images/train/b.png", "OK")
def _(d, ckpt):
    path = yolo_dataset(d)
    save(d / "images" / "train" / "b.png", rgb())
    return check_yolo(path)


@case("YOLO data YAML broken", 1, "data.yaml")
def _(d, ckpt):
    return check_yolo(yolo_dataset(d, yaml="names: [cat\ntrain: : :\n"))


@case("YOLO data YAML without names", 1, "data.yaml", "names")
def _(d, ckpt):
    return check_yolo(yolo_dataset(d, yaml=f"path: {d}\ntrain: images/train\n"))


@case("YOLO data YAML with Windows paths", 0, "C:", "images")
def _(d, ckpt):
    return check_yolo(yolo_dataset(d, yaml="path: C:\\Users\\me\\data\ntrain: images/train\nnames: [cat]\n"))


# --- mask folders ----------------------------------------------------------------------------------


@case("Penn-Fudan mask of another size", 1, "a_mask.png", "64")
def _(d, ckpt):
    save(d / "pf" / "PNGImages" / "a.png", rgb())
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[5:10, 5:10] = 1
    save(d / "pf" / "PedMasks" / "a_mask.png", Image.fromarray(mask))
    return ["check-data", "--format", "instance-png", str(d / "pf")]


@case("nucleus-style mask that is no image", 1, "m1.png")
def _(d, ckpt):
    save(d / "nuclei" / "s1" / "images" / "s1.png", rgb())
    (d / "nuclei" / "s1" / "masks").mkdir(parents=True)
    (d / "nuclei" / "s1" / "masks" / "m1.png").write_text("no mask")
    return ["check-data", "--format", "mask-dirs", str(d / "nuclei")]


# --- checkpoints -----------------------------------------------------------------------------------


def with_weights(make: Callable[[Path, Path], Path], name: str, *says: str) -> None:
    def setup(d: Path, ckpt: Path) -> list[str]:
        save(d / "a.png", rgb())
        return ["predict", str(d / "a.png"), "--weights", str(make(d, ckpt)), "--out", str(d / "out")]

    CASES.append(Case(name, setup, 1, says))


def truncated(d: Path, ckpt: Path) -> Path:
    (d / "cut.safetensors").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    return d / "cut.safetensors"


def random_bytes(d: Path, ckpt: Path) -> Path:
    (d / "noise.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    return d / "noise.safetensors"


def empty_checkpoint(d: Path, ckpt: Path) -> Path:
    (d / "empty.pth").write_bytes(b"")
    return d / "empty.pth"


def code_pickle(d: Path, ckpt: Path) -> Path:
    torch.save({"model": Evil()}, d / "evil.pth")
    return d / "evil.pth"


def raw_pickle(d: Path, ckpt: Path) -> Path:
    (d / "evil2.pth").write_bytes(pickle.dumps(Evil()))
    return d / "evil2.pth"


def wrong_shapes(d: Path, ckpt: Path) -> Path:
    """The project's own checkpoint (config and classes beside the tensors) with one tensor reshaped."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(ckpt), "pt") as f:
        metadata = f.metadata()
    state = load_file(str(ckpt))
    key = next(k for k in state if k.endswith("cls_score.weight"))
    state[key] = torch.zeros(7, state[key].shape[1])
    save_file(state, str(d / "shapes.safetensors"), metadata=metadata)
    return d / "shapes.safetensors"


def classifier(d: Path, ckpt: Path) -> Path:
    torch.save(
        {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 2048)}, d / "resnet.pth"
    )
    return d / "resnet.pth"


with_weights(truncated, "checkpoint truncated", "cut.safetensors")
with_weights(random_bytes, "checkpoint of random bytes", "noise.safetensors")
with_weights(empty_checkpoint, "checkpoint empty", "empty.pth")
with_weights(code_pickle, "checkpoint pickle with code", "evil.pth")
with_weights(raw_pickle, "checkpoint plain pickle with code", "evil2.pth")
with_weights(wrong_shapes, "checkpoint with wrong shapes", "shapes.safetensors", "cls_score")
with_weights(classifier, "checkpoint of another architecture", "resnet.pth")


@case("checkpoint is a folder", 1, "ckpt_dir")
def _(d, ckpt):
    (d / "ckpt_dir").mkdir()
    save(d / "a.png", rgb())
    return ["predict", str(d / "a.png"), "--weights", str(d / "ckpt_dir"), "--out", str(d / "out")]


def keypoint_checkpoint(d: Path, keypoints: dict | None = None) -> Path:
    """A tiny untrained keypoint-only model (no mask head), its keypoints named as ``keypoints`` says."""
    import dataclasses

    from maskrcnn.modeling import build_model
    from maskrcnn.weights import save_checkpoint
    from tests.modeling.helpers import tiny_config

    cfg = tiny_config()
    heads = dataclasses.replace(cfg.roi_heads, mask_head=False, num_keypoints=3, keypoint_head_channels=(8,))
    cfg = dataclasses.replace(cfg, roi_heads=heads)
    extra = {"keypoints": keypoints} if keypoints is not None else {}
    return save_checkpoint(
        build_model(cfg), d / "kp.safetensors", config=cfg, class_names=["a", "b", "c"], extra=extra
    )


@case("splash with a keypoint-only model", 1, "color splash", "keypoint-only")
def _(d, ckpt):
    save(d / "a.png", rgb())
    return ["splash", str(d / "a.png"), "--weights", str(keypoint_checkpoint(d)), "--out", str(d / "out")]


@case("predict --save-masks with a keypoint-only model", 1, "save_masks", "keypoint-only")
def _(d, ckpt):
    save(d / "a.png", rgb())
    return predict(d, keypoint_checkpoint(d), d / "a.png", "--save-masks")


@case("predict --tile with a keypoint-only model", 1, "kp.safetensors", "keypoint-only", "whole images")
def _(d, ckpt):
    save(d / "a.png", rgb())
    return predict(d, keypoint_checkpoint(d), d / "a.png", "--tile", "64")


@case("checkpoint naming its keypoints badly", 1, "kp.safetensors", "skeleton edge (0, 9)")
def _(d, ckpt):
    save(d / "a.png", rgb())
    named = {"names": ["a", "b", "c"], "skeleton": [[0, 9]]}
    return predict(d, keypoint_checkpoint(d, named), d / "a.png")


# --- configs and flags -----------------------------------------------------------------------------


def config_file(d: Path, text: str) -> list[str]:
    (d / "cfg.yaml").write_text(text)
    return ["train", "--config", str(d / "cfg.yaml"), "--out", str(d / "run")]


@case("config broken YAML", 1, "cfg.yaml")
def _(d, ckpt):
    return config_file(d, "train: {lr: 0.1\nmodel: [")


@case("config unknown key", 1, "cfg.yaml", "trian")
def _(d, ckpt):
    return config_file(d, "trian:\n  lr: 0.1\n")


@case("config wrong type", 1, "cfg.yaml", "lr", "fast")
def _(d, ckpt):
    return config_file(d, "train:\n  lr: fast\n")


@case("config top level is a list", 1, "cfg.yaml")
def _(d, ckpt):
    return config_file(d, "- train\n- lr\n")


def set_case(name: str, assignment: str, *says: str) -> None:
    """``train --set ASSIGNMENT`` on the shapes preset: exit 1 with ``says`` in the message."""
    CASES.append(Case(name, lambda d, ckpt: train_argv(d, "--set", assignment), 1, says))


set_case("flag --set of an unknown key", "train.lrr=0.1", "train.lrr")
set_case("flag --set of a wrong type", "train.lr=abc", "train.lr", "abc")
set_case("flag --set out of range", "data.batch_size=0", "data.batch_size", "0")
# A NaN threshold compares false with everything: it used to train a whole run to an empty model.
set_case("flag --set NaN NMS threshold", "model.rpn.nms_thresh=nan", "model.rpn.nms_thresh", "finite")
set_case("flag --set integer beyond floats", "model.num_classes=1e309", "model.num_classes", "inf")
set_case("flag --set NaN learning rate", "train.lr=nan", "train.lr", "nan")
set_case("flag --set without =", "train.lr", "train.lr")


@case("flag unknown preset", 2, "nopreset")
def _(d, ckpt):
    return ["train", "--preset", "nopreset", "--out", str(d / "run")]


@case("reader option unknown", 1, "colour", "image_dir")
def _(d, ckpt):
    return [*check_coco(d, coco_dict(d)), "-o", "colour=red"]


@case("reader option without =", 1, "image_dir")
def _(d, ckpt):
    return [*check_coco(d, coco_dict(d)), "-o", "image_dir"]


@case("reader option of the wrong type", 1, "check_images=7", "true or false")
def _(d, ckpt):
    return [*check_coco(d, coco_dict(d)), "-o", "check_images=7"]


# --- given boxes (predict --boxes) -----------------------------------------------------------------


def boxes_case(name: str, code: int, *says: str) -> Callable[[Callable[[Path], Path]], None]:
    """A case predicting on ``src/a.png`` with the ``--boxes`` the function writes."""

    def register(write: Callable[[Path], Path]) -> None:
        def setup(d: Path, ckpt: Path) -> list[str]:
            save(d / "src" / "a.png", rgb())
            return predict(d, ckpt, d / "src", "--boxes", str(write(d)))

        CASES.append(Case(name, setup, code, says))

    return register


def dets(d: Path, entries: object) -> Path:
    (d / "dets.json").write_text(json.dumps(entries))
    return d / "dets.json"


@boxes_case("boxes not JSON", 1, "dets.json")
def _(d):
    (d / "dets.json").write_text("[{'bbox': 1}")
    return d / "dets.json"


@boxes_case("boxes entry without a box", 1, "dets.json: entry 1", "bbox", "none")
def _(d):
    return dets(d, [{"file_name": "a.png", "bbox": [1, 1, 5, 5]}, {"file_name": "a.png", "bbox": None}])


@boxes_case("boxes with a NaN", 1, "dets.json: entry 0", "nan")
def _(d):
    (d / "dets.json").write_text('[{"file_name": "a.png", "bbox": [1, NaN, 5, 5]}]')
    return d / "dets.json"


@boxes_case("boxes outside the image and empty ones", 0, "3 masks for given boxes")
def _(d):
    boxes = [[-20, -10, 30, 30], [60, 40, 100, 100], [10, 10, 0, 0]]
    return dets(d, [{"file_name": "a.png", "bbox": b, "category_id": 1} for b in boxes])


@boxes_case("boxes for no image of the source", 0, "0 masks for given boxes", "not in")
def _(d):
    return dets(d, [{"file_name": "elsewhere.png", "bbox": [1, 1, 5, 5]}])


@boxes_case("YOLO boxes with a bad line", 1, "a.txt: line 2", "5 or 6 numbers")
def _(d):
    (d / "labels").mkdir()
    (d / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5\n")
    return d / "labels"


# --- Open Images -----------------------------------------------------------------------------------


def open_images(d: Path, rows: list[str]) -> list[str]:
    """``check-data`` of a one-image Open Images download whose CSV has ``rows`` after the header."""
    save(d / "train" / "0a1b2c3d4e5f6a7b.jpg", rgb())
    mask = np.zeros((24, 32), np.uint8)
    mask[4:20, 6:26] = 255
    save(d / "masks" / "0a1b2c3d4e5f6a7b_m05zsy_1.png", Image.fromarray(mask))
    (d / "class-descriptions-boxable.csv").write_text("/m/05zsy,Pumpkin\n/m/04yx4,Man\n")
    header = "MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,PredictedIoU,Clicks"
    csv = d / "train-annotations-object-segmentation.csv"
    csv.write_text("\n".join([header, *rows]) + "\n")
    return ["check-data", str(csv)]


_PUMPKIN = "0a1b2c3d4e5f6a7b_m05zsy_1.png,0a1b2c3d4e5f6a7b,/m/05zsy,1,0.1,0.8,0.1,0.9,0.9,"


@case("Open Images row with an unknown class", 1, "line 3", "/m/0zzzz")
def _(d, ckpt):
    return open_images(
        d, [_PUMPKIN, "0a1b2c3d4e5f6a7b_m0zzzz_2.png,0a1b2c3d4e5f6a7b,/m/0zzzz,2,0,1,0,1,0.9,"]
    )


@case("Open Images row cut short", 1, "line 3", "fields")
def _(d, ckpt):
    return open_images(d, [_PUMPKIN, "0a1b2c3d4e5f6a7b_m05zsy_3.png,0a1b2c3d4e5f6a7b"])


@case("Open Images mask that is no PNG", 1, "jpg: line 2: ", "m05zsy_1.png: cannot read mask")
def _(d, ckpt):
    argv = open_images(d, [_PUMPKIN])
    (d / "masks" / "0a1b2c3d4e5f6a7b_m05zsy_1.png").write_text("not a picture")
    return argv


@case("Open Images class misspelt", 1, "pumpkins", "Pumpkin")
def _(d, ckpt):
    return [*open_images(d, [_PUMPKIN]), "-o", "classes=pumpkins"]


# --- videos ----------------------------------------------------------------------------------------


@case("video corrupt", 1, "clip.mp4")
def _(d, ckpt):
    (d / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    return predict(d, ckpt, d / "clip.mp4")


@case("video without frames", 1, "none.mp4", "skipped")
def _(d, ckpt):
    # A container with a video stream and no frame in it.
    container = av.open(str(d / "none.mp4"), mode="w")
    stream = container.add_stream("mpeg4", rate=10)
    stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
    container.start_encoding()
    container.close()
    return predict(d, ckpt, d / "none.mp4")


@pytest.mark.parametrize("item", CASES, ids=[c.name for c in CASES])
def test_bad_input(item: Case, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = item.setup(tmp_path, checkpoint)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert "Traceback" not in said, said
    assert "internal error" not in said, said
    assert "this must never be printed" not in said
    assert code == item.code, said
    lowered = said.lower()
    for text in item.says:
        assert text.lower() in lowered, f"{text!r} not in: {said}"


def test_the_catalogue_is_large():
    assert len(CASES) + 1 >= 60  # and the EXIF test
    assert len({c.name for c in CASES}) == len(CASES)
