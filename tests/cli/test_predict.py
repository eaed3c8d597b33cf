"""The predict and splash commands, end to end through ``maskrcnn.cli.main``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import build_parser, main
from maskrcnn.engine.predictor import Predictor
from maskrcnn.engine.tiling import checkpoint_tiling
from maskrcnn.ops.masks import rle_decode
from tests.engine.prediction_helpers import (
    LeftHalfModel,
    random_image,
    read_video,
    save_image,
    tiny_checkpoint,
    untrained_predictor,
    write_text,
    write_video,
)

pytestmark = pytest.mark.usefixtures("one_thread")
checkpoint = pytest.fixture(scope="module")(tiny_checkpoint)
predictor = pytest.fixture(scope="module")(untrained_predictor)


def test_arguments_and_defaults():
    parser = build_parser()
    args = parser.parse_args(["predict", "photos/", "--weights", "w.safetensors", "--out", "o"])
    assert (args.source, args.weights, args.out) == ("photos/", "w.safetensors", "o")
    assert (args.score_threshold, args.classes, args.batch_size, args.device) == (0.5, None, 1, "auto")
    assert (args.recursive, args.save_masks) == (False, False)
    splash = parser.parse_args(["splash", "v.mp4", "--weights", "w", "--out", "o", "--batch-size", "4"])
    assert splash.batch_size == 4
    assert not hasattr(splash, "save_masks")


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "x.png", "--out", "o"],  # --weights is required
        ["predict", "x.png", "--weights", "w"],  # --out is required
        ["predict", "x.png", "--weights", "w", "--out", "o", "--score-threshold", "1.5"],
        ["predict", "x.png", "--weights", "w", "--out", "o", "--batch-size", "0"],
        ["splash", "x.png", "--weights", "w", "--out", "o", "--save-masks"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_predict_folder_writes_overlays_results_and_masks(
    checkpoint: Path, predictor: Predictor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    folder = tmp_path / "in"
    folder.mkdir()
    arrays = {name: random_image(seed) for seed, name in enumerate(("one.png", "two.jpg", "three.png"))}
    for name, array in arrays.items():
        Image.fromarray(array).save(folder / name, quality=95)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "readme.txt").write_text("ignored")
    out = tmp_path / "out"
    args = ("--weights", str(checkpoint), "--out", str(out), "--score-threshold", "0", "--save-masks")
    assert main(["predict", str(folder), *args, "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err
    assert "skipped" in captured.err
    assert "3 images" in captured.out
    assert "30 detections" in captured.out

    for stem in ("one", "two", "three"):
        with Image.open(out / f"{stem}.png") as overlay:
            assert overlay.size == (64, 48)
            assert overlay.mode == "RGB"
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 30
    assert sorted({r["file_name"] for r in results}) == sorted(f"{folder.as_posix()}/{n}" for n in arrays)
    assert sorted({r["image_id"] for r in results}) == [1, 2, 3]
    one = [r for r in results if r["file_name"].endswith("one.png")]
    expected = predictor(folder / "one.png")
    assert [r["category"] for r in one] == expected.class_names
    assert [r["score"] for r in one] == pytest.approx(expected.scores.tolist(), abs=1e-4)

    masks = sorted(p.name for p in (out / "masks").iterdir())
    assert len(masks) == 30
    assert f"one_0_{expected.class_names[0]}.png" in masks
    with Image.open(out / "masks" / f"one_0_{expected.class_names[0]}.png") as mask:
        pixels = np.asarray(mask)
    assert pixels.shape == (48, 64)
    assert set(np.unique(pixels)) <= {0, 255}
    assert np.array_equal(pixels > 0, rle_decode(one[0]["segmentation"]).numpy() > 0)


def test_predict_single_image_and_glob(checkpoint: Path, tmp_path: Path):
    for seed, name in enumerate(("a.png", "b.png", "c.jpg")):
        Image.fromarray(random_image(seed)).save(tmp_path / name)
    common = ("--weights", str(checkpoint), "--score-threshold", "0", "--classes", "square,disc")
    assert main(["predict", str(tmp_path / "c.jpg"), "--out", str(tmp_path / "single"), *common]) == 0
    assert sorted(p.name for p in (tmp_path / "single").iterdir()) == ["c.png", "results.json"]
    results = json.loads((tmp_path / "single" / "results.json").read_text())
    assert {r["category"] for r in results} <= {"square", "disc"}

    assert main(["predict", f"{tmp_path}/*.png", "--out", str(tmp_path / "glob"), *common]) == 0
    assert sorted(p.name for p in (tmp_path / "glob").iterdir()) == ["a.png", "b.png", "results.json"]


def test_predict_video(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    source = write_video(tmp_path / "clip.mp4", [random_image(seed) for seed in range(6)], fps=15)
    out = tmp_path / "out"
    args = ("--weights", str(checkpoint), "--out", str(out), "--score-threshold", "0", "--batch-size", "4")
    assert main(["predict", str(source), *args]) == 0
    assert "1 video (6 frames)" in capsys.readouterr().out
    frames, rate = read_video(out / "clip_predictions.mp4")
    assert len(frames) == 6
    assert frames[0].shape == (48, 64, 3)
    assert rate == 15
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 60
    assert sorted({r["frame"] for r in results}) == list(range(6))
    assert sorted({r["image_id"] for r in results}) == list(range(1, 7))
    assert all(r["file_name"] == source.as_posix() for r in results)


# ----------------------------------------------------------------------------------------------------
# The splash command, with a model whose masks are known


@pytest.fixture
def left_half(monkeypatch: pytest.MonkeyPatch) -> None:
    def from_checkpoint(cls: type[Predictor], path: object, **kwargs: Any) -> Predictor:
        # A checkpoint trained on whole images: "tile as trained" means none.
        tile, overlap = checkpoint_tiling(kwargs.pop("tile", None), kwargs.pop("tile_overlap", None), {})
        return cls(LeftHalfModel(), ["thing"], tile=tile, tile_overlap=overlap, **kwargs)

    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(from_checkpoint))


@pytest.mark.usefixtures("left_half")
def test_splash_image_keeps_colour_inside_masks(tmp_path: Path):
    array = random_image(8)
    Image.fromarray(array).save(tmp_path / "photo.png")
    assert main(["splash", str(tmp_path / "photo.png"), "--weights", "x", "--out", str(tmp_path / "o")]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["photo_splash.png"]
    splash = np.asarray(Image.open(tmp_path / "o" / "photo_splash.png"))
    assert np.array_equal(splash[:, :32], array[:, :32])  # inside: the original colours
    right = splash[:, 32:].astype(int)
    assert np.array_equal(right[..., 0], right[..., 1])
    assert np.array_equal(right[..., 1], right[..., 2])
    assert not np.array_equal(array[:, 32:, 0], array[:, 32:, 1])  # the input was not grey there


@pytest.mark.usefixtures("left_half")
def test_splash_video(tmp_path: Path):
    colours = [(220, 30, 30), (30, 200, 40), (40, 40, 230)]
    frames = [np.broadcast_to(np.uint8(colours[k % 3]), (48, 64, 3)).copy() for k in range(6)]
    source = write_video(tmp_path / "clip.mp4", frames, fps=10)
    assert main(["splash", str(source), "--weights", "x", "--out", str(tmp_path / "o")]) == 0
    splashed, rate = read_video(tmp_path / "o" / "clip_splash.mp4")
    assert len(splashed) == 6
    assert splashed[0].shape == (48, 64, 3)
    assert rate == 10
    for frame, colour in zip(splashed, colours * 2, strict=True):
        inside, outside = frame[8:40, 4:24].astype(int), frame[8:40, 40:60].astype(int)
        assert np.abs(inside.mean((0, 1)) - colour).max() < 12  # lossy codec: near the colour
        assert np.ptp(outside.mean((0, 1))) < 6  # grey: R, G and B alike


# ----------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        (lambda d: d / "missing.png", (), "no such file, folder or glob"),
        (lambda d: write_text(d / "notes.txt"), (), "unsupported file"),
        (lambda d: save_image(d), ("--device", "tpu"), "unknown device 'tpu'"),
        (lambda d: save_image(d), ("--device", "cuda:99"), "cuda:99 is not available"),
        (lambda d: save_image(d), ("--classes", "zebra"), "unknown class 'zebra'"),
        (save_image, ("--weights", "nothing.safetensors"), "weights nothing.safetensors: no such"),
        (lambda d: write_text(d / "corrupt.png"), (), "not an image Pillow can read"),
        (lambda d: save_image(d), (), "would overwrite an input"),
    ],
)
def test_errors_exit_1_with_a_message(
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setup: Callable[[Path], Path],
    extra: tuple[str, ...],
    message: str,
):
    source = setup(tmp_path)
    # The overlay of image.png written into the folder it came from would replace it.
    out = source.parent if message.startswith("would") else tmp_path / "out"
    argv = ["predict", str(source), "--weights", str(checkpoint), "--out", str(out), *extra]
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_a_wrong_out_is_said_before_the_model_is_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    image = save_image(tmp_path)
    taken = tmp_path / "taken"
    taken.write_text("")
    unwritable = Path("/proc/maskrcnn-out")  # a folder nobody may create files in, even root
    cases = [
        (taken, f"error: --out {taken} is a file; give a folder"),
        (taken / "sub", f"error: --out {taken / 'sub'}: {taken} is a file, so the folder cannot be created"),
        (unwritable, f"error: --out {unwritable}: cannot write into /proc ("),
    ]
    for out, message in cases:
        # The checkpoint does not exist: the --out error comes first, before any work.
        argv = ["predict", str(image), "--weights", str(tmp_path / "none.safetensors"), "--out", str(out)]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(message), err
        assert err.count("\n") == 1, err
