"""``check-data``, ``inspect data`` and ``convert``."""

import pytest

from maskrcnn.cli import main


def _via_dataset(root):
    import json

    import numpy as np
    from PIL import Image

    root.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(root / name)
    noise = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "c.jpg", quality=95)
    data = (root / "c.jpg").read_bytes()
    (root / "c.jpg").write_bytes(data[: int(len(data) * 0.8)])  # header intact: found only when decoded
    good = {"name": "polygon", "all_points_x": [2, 12, 7], "all_points_y": [2, 3, 15]}
    bad = {"name": "polygon", "all_points_x": [2, 12], "all_points_y": [2, 3]}
    regions = {"0": {"shape_attributes": good, "region_attributes": {}}}
    via = {
        "a.png1": {"filename": "a.png", "size": 1, "regions": regions, "file_attributes": {}},
        "b.png2": {
            "filename": "b.png",
            "size": 2,
            "regions": [{"shape_attributes": bad, "region_attributes": {}}],
        },
        "c.jpg3": {"filename": "c.jpg", "size": 3, "regions": regions, "file_attributes": {}},
    }
    (root / "via.json").write_text(json.dumps(via))
    return root / "via.json"


def test_check_data_reports_problems_and_exit_codes(tmp_path, capsys):
    path = _via_dataset(tmp_path / "via")
    assert main(["check-data", "--format", "via", str(path), "-o", "class_name=balloon"]) == 1
    out = capsys.readouterr().out
    assert "images: 3 (1 without objects)" in out
    assert "instances per class: balloon 1" in out
    assert "problems: 2 errors" in out
    assert f"error: {path}, image b.png, region 0: polygon part 0 has 2 points" in out
    assert "c.jpg: cannot decode" in out
    assert main(["check-data", "--format", "via", str(path), "--strict"]) == 1
    assert "polygon part 0 has 2 points" in capsys.readouterr().err
    assert main(["check-data", "--format", "shapes", "-o", "count=5"]) == 0
    assert "result: OK, trainable" in capsys.readouterr().out


def test_inspect_and_convert(tmp_path, capsys):
    from PIL import Image

    from maskrcnn.data import load_dataset

    out = tmp_path / "grid.png"
    args = ["inspect", "data", "--format", "shapes", "-o", "count=6", "--out", str(out), "--count", "4"]
    assert (
        main([*args, "--anchors", "--set", "transform.min_size=128", "--set", "transform.max_size=128"]) == 0
    )
    assert Image.open(out).size == (4 * 256, 256 + 14)
    assert Image.open(tmp_path / "grid_anchors.png").size == (128, 128)
    coco = tmp_path / "coco.json"
    path = _via_dataset(tmp_path / "via")
    assert main(["convert", "--from", "via", str(path), "--to", "coco", str(coco)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {coco}: 2 images, 1 classes (2 instances or images with errors left out" in captured.out
    assert "image b.png, region 0: polygon part 0 has 2 points" in captured.err
    assert "c.jpg: cannot decode" in captured.err
    # The image whose only polygon is broken stays, as a negative; the truncated one is left out.
    back = load_dataset("coco", coco)
    assert [back.image_reference(i).rsplit("/", 1)[-1] for i in range(len(back))] == ["a.png", "b.png"]
    assert back[0][1]["labels"].tolist() == [1]
    assert main(["convert", "--from", "via", str(path), "--to", "coco", str(coco), "--strict"]) == 1


def test_format_is_detected_when_not_given(tmp_path, capsys):
    path = _via_dataset(tmp_path / "via")
    assert main(["check-data", str(path)]) == 1  # the broken polygon and image of _via_dataset
    captured = capsys.readouterr()
    assert f"data: detected format via ({path})" in captured.err
    assert "instances per class: object 1" in captured.out
    coco = tmp_path / "coco.json"
    assert main(["convert", str(path), "--to", "coco", str(coco)]) == 0
    assert main(["check-data", "--format", "auto", str(coco)]) == 0
    assert f"data: detected format coco ({coco})" in capsys.readouterr().err
    assert main(["check-data", str(tmp_path / "via" / "a.png")]) == 1
    assert "a.png: not a dataset format that can be detected (a .png file" in capsys.readouterr().err
    assert main(["check-data"]) == 1
    assert "error: no dataset path to detect the format from; pass --format" in capsys.readouterr().err


def test_evaluate_says_where_it_looked_for_missing_images(tmp_path, capsys):
    import json

    path = tmp_path / "instances.json"
    images = [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}]
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"never read: the data is read first")
    assert (
        main(["evaluate", "--weights", str(weights), "--data", str(path), "--out", str(tmp_path / "e")]) == 1
    )
    err = capsys.readouterr().err
    assert f"data: detected format coco ({path})" in err
    assert (
        f"error: {path}: none of the images it lists were found (a.png); looked in {tmp_path}/, "
        f"{tmp_path / 'images'}/, {tmp_path.parent / 'images'}/; pass image_dir="
    ) in err


@pytest.mark.parametrize("fmt", ["coco", "labelme", "via", "yolo"])
def test_convert_to_each_format(tmp_path, capsys, fmt):
    import torch

    from maskrcnn.data import load_dataset

    path = _via_dataset(tmp_path / "via")
    out = tmp_path / ("out.json" if fmt == "coco" else "out")
    assert main(["convert", "--from", "via", str(path), "--to", fmt, str(out), "--tolerance", "0"]) == 0
    captured = capsys.readouterr()
    written = {"coco": out, "labelme": out, "via": out / "via_region_data.json", "yolo": out / "data.yaml"}[
        fmt
    ]
    assert f"wrote {written}: 2 images, 1 classes (2 instances or images with errors left out" in captured.out
    assert "image b.png, region 0: polygon part 0 has 2 points" in captured.err
    source, back = load_dataset("via", path), load_dataset(fmt, written)
    assert back.class_names == ["object"]
    targets = sorted((back[i][1] for i in range(len(back))), key=lambda t: -len(t["labels"]))
    assert [t["labels"].tolist() for t in targets] == [[1], []]  # a.png's triangle, and b.png, a negative
    assert torch.equal(targets[0]["masks"], source[0][1]["masks"])  # --tolerance 0: exact


def test_convert_refuses_what_it_cannot_write(tmp_path, capsys):
    from maskrcnn.data.formats.annotation_writer import DEFAULT_TOLERANCE

    path = str(_via_dataset(tmp_path / "via"))
    assert main(["convert", "--from", "via", path, "--to", "voc", str(tmp_path / "o")]) == 1
    assert "convert --to voc: choose from coco, labelme, via, yolo" in capsys.readouterr().err
    assert (
        main(["convert", "--from", "via", path, "--to", "yolo", str(tmp_path / "o"), "--image-root", "x"])
        == 1
    )
    assert "--image-root is for --to coco" in capsys.readouterr().err
    assert (
        main(["convert", "--from", "via", path, "--to", "via", str(tmp_path / "o"), "--tolerance", "-1"]) == 1
    )
    assert "--tolerance -1.0: must be 0 or more" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["convert", "--from", "via", path, "--to", "labelme", str(tmp_path / "file")]) == 1
    assert f"--to {tmp_path / 'file'} is a file; give a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    assert f"(default {DEFAULT_TOLERANCE:g}:" in " ".join(capsys.readouterr().out.split())
