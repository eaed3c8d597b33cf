"""``predict``'s other outputs, end to end through ``maskrcnn.cli.main``: the class and instance maps
(``--semantic``, ``--instance-png``), the predictions as annotations (``--save-as``, read back by our
readers), and masks for given boxes (``--boxes``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data import load_dataset
from maskrcnn.data.formats.annotation_writer import SAVE_FORMATS
from maskrcnn.engine.prediction_outputs import annotations_path
from maskrcnn.ops.masks import rle_decode
from tests.engine.prediction_helpers import CLASSES, random_image, save_image, tiny_checkpoint, write_video

pytestmark = pytest.mark.usefixtures("one_thread")
checkpoint = pytest.fixture(scope="module")(tiny_checkpoint)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed, name in enumerate(("a.png", "b.png")):
        save_image(folder, name, seed)
    return folder


def _predict(checkpoint: Path, source: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(source), "--weights", str(checkpoint), "--out", str(out), *extra])


def _results(out: Path) -> dict[str, list[dict]]:
    by_file: dict[str, list[dict]] = {}
    for result in json.loads((out / "results.json").read_text()):
        by_file.setdefault(Path(result["file_name"]).name, []).append(result)
    return by_file


def test_semantic_and_instance_maps_follow_the_results(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert _predict(checkpoint, photos, out, "--score-threshold", "0", "--semantic", "--instance-png") == 0
    assert f"wrote 4 maps into {out / 'semantic'}, {out / 'instances'}" in capsys.readouterr().out
    for name, results in _results(out).items():
        with Image.open(out / "semantic" / name) as picture:
            assert picture.mode == "P"
            classes = np.asarray(picture)
        with Image.open(out / "instances" / name) as picture:
            instances = np.asarray(picture).astype(np.int64)
        masks = np.stack([rle_decode(r["segmentation"]).numpy() > 0 for r in results])
        scores = np.array([r["score"] for r in results])
        # Each covered pixel holds the best-scoring mask over it; the rest is background.
        covered = masks.any(0)
        best = np.where(masks, scores[:, None, None], -1.0).max(0)
        assert np.array_equal(instances > 0, covered)
        ids = instances[covered] - 1
        rows, columns = np.nonzero(covered)
        assert masks[ids, rows, columns].all()
        assert np.allclose(scores[ids], best[covered])
        labels = np.array([0] + [r["category_id"] for r in results])
        assert np.array_equal(classes, labels[instances])
    # The instance PNGs are Penn-Fudan masks: the instance-png reader takes them.
    maps = load_dataset(
        "instance-png", tmp_path, image_dir="photos", mask_dir="out/instances", mask_suffix=""
    )
    assert len(maps) == 2


@pytest.mark.parametrize("fmt", SAVE_FORMATS)
def test_save_as_writes_annotations_that_read_back(checkpoint, photos, tmp_path, capsys, fmt):
    out = tmp_path / "out"
    assert (
        _predict(checkpoint, photos, out, "--score-threshold", "0", "--save-as", fmt, "--tolerance", "0") == 0
    )
    written = {"coco": "coco/instances.json", "labelme": "labelme", "via": "via/via_region_data.json"}
    path = out / written.get(fmt, "yolo/data.yaml")
    assert f"wrote the predictions as annotations: {path}" in capsys.readouterr().out
    options = {"class_names": CLASSES} if fmt in ("labelme", "via") else {}
    back = load_dataset(fmt, path, **options)
    assert back.class_names == CLASSES
    results = _results(out)
    assert len(back) == 2
    for i in range(len(back)):
        name = Path(back.image_info[i]["path"]).name
        _, target = back[i]
        expected = [r for r in results[name] if rle_decode(r["segmentation"]).any()]
        assert target["labels"].tolist() == [r["category_id"] for r in expected]
        masks = torch.stack([rle_decode(r["segmentation"]) for r in expected])
        assert torch.equal(target["masks"].bool(), masks.bool())  # --tolerance 0: exact


def test_images_without_detections_are_written_for_checking(checkpoint, photos, tmp_path):
    out = tmp_path / "out"
    assert _predict(checkpoint, photos, out, "--score-threshold", "1", "--save-as", "coco") == 0
    coco = json.loads(annotations_path(out, "coco").read_text())
    assert sorted(Path(image["file_name"]).name for image in coco["images"]) == ["a.png", "b.png"]
    assert coco["annotations"] == []
    assert [c["name"] for c in coco["categories"]] == CLASSES


def test_masks_for_given_boxes(checkpoint, photos, tmp_path, capsys):
    detections = [
        {"file_name": "photos/a.png", "bbox": [4, 6, 30, 20], "category_id": 2, "score": 0.9},
        {"file_name": "b.png", "bbox": [30, 10, 20, 30], "category": "triangle", "score": 0.7},
        {"file_name": "b.png", "bbox": [0, 0, 10, 10], "category": "person", "score": 0.4},
        {"file_name": "c.png", "bbox": [0, 0, 10, 10], "category_id": 1, "score": 0.2},
    ]
    boxes = tmp_path / "dets.json"
    boxes.write_text(json.dumps(detections))
    out = tmp_path / "out"
    assert _predict(checkpoint, photos, out, "--boxes", str(boxes), "--save-masks") == 0
    captured = capsys.readouterr()
    assert f"boxes: 3 for 2 of 2 images from {boxes}" in captured.err
    assert f"warning: 1 image of {boxes} not in {photos}: file_name c.png" in captured.err
    assert "2 images on cpu" in captured.out
    assert ": 3 masks for given boxes" in captured.out
    results = _results(out)
    assert [r["bbox"] for r in results["a.png"]] == [[4.0, 6.0, 30.0, 20.0]]
    assert [(r["category_id"], r["score"]) for r in results["a.png"]] == [(2, 0.9)]
    assert [r["bbox"] for r in results["b.png"]] == [[30.0, 10.0, 20.0, 30.0], [0.0, 0.0, 10.0, 10.0]]
    assert [r["score"] for r in results["b.png"]] == [0.7, 0.4]
    assert results["b.png"][0]["category"] == "triangle"
    assert results["b.png"][1]["category_id"] in (1, 2, 3)  # "person": the model's best class
    for result in (*results["a.png"], *results["b.png"]):  # each mask stays inside its box
        x, y, w, h = result["bbox"]
        ys, xs = np.nonzero(rle_decode(result["segmentation"]).numpy())
        assert xs.min() >= x - 1
        assert ys.min() >= y - 1
        assert xs.max() <= x + w
        assert ys.max() <= y + h
    assert len(list((out / "masks").iterdir())) == 3


def test_yolo_boxes_with_the_models_classes(checkpoint, photos, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("0 0.5 0.5 0.5 0.5 0.8\n7 0.25 0.25 0.2 0.2 0.6\n")
    out = tmp_path / "out"
    assert _predict(checkpoint, photos, out, "--boxes", str(labels), "--box-classes", "model") == 0
    results = _results(out)
    assert "b.png" not in results  # no boxes given: no masks
    assert [r["bbox"] for r in results["a.png"]] == [[16.0, 12.0, 32.0, 24.0], [9.6, 7.2, 12.8, 9.6]]
    assert [r["score"] for r in results["a.png"]] == [0.8, 0.6]


def test_yolo_boxes_named_by_the_detectors_data_yaml(checkpoint, photos, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("0 0.5 0.5 0.5 0.5 0.8\n1 0.25 0.25 0.2 0.2 0.6\n")
    data = tmp_path / "detector.yaml"
    data.write_text("names: {0: triangle, 1: square}\n")
    out = tmp_path / "out"
    assert _predict(checkpoint, photos, out, "--boxes", str(labels), "--box-names", str(data)) == 0
    assert [r["category"] for r in _results(out)["a.png"]] == ["triangle", "square"]
    assert _predict(checkpoint, photos, tmp_path / "o2", "--boxes", str(labels), "--box-names", "disc,x") == 0
    assert _results(tmp_path / "o2")["a.png"][0]["category"] == "disc"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--boxes", "{missing}"], "error: --boxes {missing}: no such file or folder"),
        (["--boxes", "{bad}"], "error: {bad}: entry 0: bbox must be [x, y, width, height]"),
        (["--boxes", "{dets}", "--tile", "32"], "error: --boxes runs on whole images: leave --tile out"),
        (["--tolerance", "-1", "--save-as", "via"], "error: --tolerance -1: must be 0 or more"),
        (["--box-names", "a,b"], "error: --box-names is for --boxes"),
        (["--boxes", "{dets}", "--box-names", "a,b"], "error: --box-names names the classes of YOLO txt"),
        (["--boxes", "{labels}", "--box-names", "a,,b"], "error: --box-names 'a,,b': an empty name"),
    ],
)
def test_bad_box_and_annotation_options_are_one_line_errors(
    checkpoint, photos, tmp_path, capsys, extra, message
):
    files = {"missing": tmp_path / "missing.json", "bad": tmp_path / "bad.json", "dets": tmp_path / "d.json"}
    files["labels"] = tmp_path / "labels"
    files["labels"].mkdir()
    files["bad"].write_text(json.dumps([{"file_name": "a.png", "bbox": [1, 2]}]))
    files["dets"].write_text("[]")
    argv = [part.format(**files) for part in extra]
    assert _predict(checkpoint, photos, tmp_path / "out", *argv) == 1
    assert message.format(**files) in capsys.readouterr().err


def test_boxes_and_save_as_refuse_videos(checkpoint, photos, tmp_path, capsys):
    write_video(photos / "clip.mp4", [random_image(0), random_image(1)])
    (tmp_path / "d.json").write_text("[]")
    assert _predict(checkpoint, photos, tmp_path / "o", "--boxes", str(tmp_path / "d.json")) == 1
    assert "error: --boxes: for images only, and the source has videos" in capsys.readouterr().err
    assert _predict(checkpoint, photos, tmp_path / "o", "--save-as", "labelme") == 1
    assert "error: save_as: for images only, and the source has videos" in capsys.readouterr().err
