"""The Predictor, sources, video I/O, and the predict and splash commands, on a tiny untrained model."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from maskrcnn.engine import predict as predict_module
from maskrcnn.engine.predict import (
    Detections,
    Predictor,
    SourceError,
    add_predict_arguments,
    add_splash_arguments,
    detections_to_coco,
    iter_sources,
    resolve_device,
    run_predict,
    run_splash,
    to_image_tensor,
)
from maskrcnn.engine.video import VideoReader, VideoWriter
from maskrcnn.modeling import build_model
from maskrcnn.ops.masks import rle_decode
from maskrcnn.weights import save_checkpoint
from tests.modeling.helpers import tiny_config

CLASSES = ["square", "disc", "triangle"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The tiny model takes milliseconds on one thread; on a busy shared machine, two threads spend most
    # of their time waiting for each other.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(tiny_config())
    return save_checkpoint(
        model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", config=tiny_config(), class_names=CLASSES
    )


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    # Untrained: every score is near 1/4, so a threshold of 0 gives the model's 10 detections per image.
    return Predictor.from_checkpoint(checkpoint, score_threshold=0.0)


def random_image(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth random ``uint8 [H, W, 3]`` picture (blocks of colour, so that codecs keep it)."""
    g = np.random.default_rng(seed)
    blocks = g.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(blocks.repeat(8, 0).repeat(8, 1)[:height, :width])


def write_video(
    path: Path, frames: list[np.ndarray], fps: int = 10, *, rotation: int = 0, codec: str = "mpeg4"
) -> Path:
    """Encode ``uint8 [H, W, 3]`` frames with PyAV directly (independently of the code under test)."""
    container = av.open(str(path), mode="w")
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = "yuv420p"
    if rotation:
        stream.set_display_rotation(rotation)
    for array in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)], rate


def run_command(kind: str, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    (add_predict_arguments if kind == "predict" else add_splash_arguments)(parser)
    args = parser.parse_args(list(argv))
    return (run_predict if kind == "predict" else run_splash)(args)


def assert_same(a: Detections, b: Detections, atol: float = 1e-4) -> None:
    assert len(a) == len(b)
    assert torch.equal(a.labels, b.labels)
    assert a.class_names == b.class_names
    torch.testing.assert_close(a.boxes, b.boxes, atol=atol, rtol=0)
    torch.testing.assert_close(a.scores, b.scores, atol=atol, rtol=0)
    assert (a.masks != b.masks).float().mean() < 1e-3  # a probability right at 0.5 may flip


# ----------------------------------------------------------------------------------------------------
# Predictor


def test_predictor_inputs_agree(predictor: Predictor, tmp_path: Path):
    array = random_image(0)
    path = tmp_path / "image.png"
    Image.fromarray(array).save(path)
    reference = predictor(path)
    assert len(reference) == 10
    assert reference.masks.dtype == torch.bool
    assert reference.masks.shape == (10, 48, 64)
    assert reference.boxes.shape == (10, 4)
    assert reference.image_size == (48, 64)
    assert reference.class_names == [CLASSES[int(label) - 1] for label in reference.labels]
    assert torch.all(reference.scores[:-1] >= reference.scores[1:])  # highest first
    assert reference.mask_probs is None
    as_float = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    for image in (
        array,
        Image.fromarray(array),
        str(path),
        as_float,
        torch.from_numpy(array),  # uint8 [H, W, 3]
        torch.from_numpy(array).permute(2, 0, 1),  # uint8 [3, H, W], as torchvision reads
        array.astype(np.float32) / 255,  # float [H, W, 3]
    ):
        assert_same(predictor(image), reference)


def test_predictor_on_device(checkpoint: Path, device: str):
    found = Predictor.from_checkpoint(checkpoint, device=device, score_threshold=0.0)(random_image(9))
    assert len(found) == 10
    assert found.boxes.device.type == "cpu"  # results come back to the CPU
    assert found.masks.shape == (10, 48, 64)


def test_to_image_tensor_forms():
    grey = np.full((4, 5), 255, np.uint8)
    assert torch.equal(to_image_tensor(grey), torch.ones(3, 4, 5))
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 7
    image = to_image_tensor(rgba)
    assert image.shape == (3, 4, 5)
    assert image[0].eq(1).all()
    assert image[1:].eq(0).all()
    assert to_image_tensor(Image.new("L", (5, 4), 51)).shape == (3, 4, 5)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        to_image_tensor(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="uint8"):
        to_image_tensor(np.zeros((4, 5, 3), np.int32))
    with pytest.raises(TypeError):
        to_image_tensor([1, 2, 3])  # type: ignore[arg-type]


def test_score_threshold_and_class_filter(checkpoint: Path, predictor: Predictor):
    image = random_image(1)
    everything = predictor(image)
    cut = float(everything.scores[4])
    above = Predictor.from_checkpoint(checkpoint, score_threshold=cut)(image)
    assert len(above) == int((everything.scores >= cut).sum()) >= 5
    assert torch.all(above.scores >= cut)
    torch.testing.assert_close(above.boxes, everything.boxes[: len(above)], atol=1e-4, rtol=0)

    wanted = everything.class_names[0]
    only = Predictor.from_checkpoint(checkpoint, score_threshold=0.0, classes=[wanted])(image)
    expected = [k for k, name in enumerate(everything.class_names) if name == wanted]
    assert only.class_names == [wanted] * len(expected)
    torch.testing.assert_close(only.scores, everything.scores[expected], atol=1e-5, rtol=0)

    with pytest.raises(ValueError, match=r"unknown class 'zebra'.*square, disc, triangle"):
        Predictor.from_checkpoint(checkpoint, classes=["zebra"])


def test_model_threshold_lowered_only_during_the_call(predictor: Predictor):
    heads = predictor.model.roi_heads
    assert heads.score_thresh == pytest.approx(0.05)
    seen = []
    hook = heads.register_forward_pre_hook(lambda module, inputs: seen.append(module.score_thresh))
    try:
        predictor(random_image(2))
    finally:
        hook.remove()
    assert seen == [0.0]
    assert heads.score_thresh == pytest.approx(0.05)


def test_batch_equals_one_by_one(checkpoint: Path):
    images = [random_image(seed) for seed in (3, 4, 5)]
    single = Predictor.from_checkpoint(checkpoint, score_threshold=0.0)
    one_by_one = [single(image) for image in images]
    for found, expected in zip(single.predict_batch(images), one_by_one, strict=True):
        assert_same(found, expected)
    batched = Predictor.from_checkpoint(checkpoint, score_threshold=0.0, batch_size=2)
    streamed = list(batched.predict_stream(iter(images)))
    assert len(streamed) == 3
    for found, expected in zip(streamed, one_by_one, strict=True):
        assert_same(found, expected)
    assert single.predict_batch([]) == []


def test_keep_probabilities(checkpoint: Path):
    found = Predictor.from_checkpoint(checkpoint, score_threshold=0.0, keep_probabilities=True)(
        random_image(6)
    )
    assert found.mask_probs is not None
    assert found.mask_probs.shape == found.masks.shape
    assert torch.equal(found.masks, found.mask_probs >= 0.5)


def test_detections_to_coco(predictor: Predictor):
    found = predictor(random_image(7))
    results = detections_to_coco(found, file_name="x.png", image_id=3)
    assert len(results) == len(found)
    first = results[0]
    assert list(first)[:2] == ["file_name", "image_id"]
    assert first["category"] == found.class_names[0]
    assert first["category_id"] == int(found.labels[0])
    x1, y1, x2, y2 = found.boxes[0].tolist()
    assert first["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.01)
    assert isinstance(first["segmentation"]["counts"], str)
    assert torch.equal(rle_decode(first["segmentation"]).bool(), found.masks[0])
    json.dumps(results)  # JSON-ready


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="not available"):
        resolve_device("cuda:99")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="mps is not available"):
            resolve_device("mps")


# ----------------------------------------------------------------------------------------------------
# Sources and video I/O


def test_iter_sources(tmp_path: Path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for name in ("b.png", "a.jpg", "a.png", "sub/c.png", ".hidden/d.png", ".e.png", "notes.txt", "clip.mp4"):
        (root / name).write_bytes(b"")
    flat = list(iter_sources(root))
    assert [(f.path.name, f.kind, f.name) for f in flat] == [
        ("a.jpg", "image", "a_jpg"),
        ("a.png", "image", "a_png"),
        ("b.png", "image", "b"),
        ("clip.mp4", "video", "clip"),
    ]
    deep = list(iter_sources(root, recursive=True))
    assert [f.name for f in deep] == ["a_jpg", "a_png", "b", "clip", "sub/c"]
    pattern = list(iter_sources(f"{root}/**/*.png"))
    assert [f.name for f in pattern] == ["a", "b", "sub/c"]
    assert [f.name for f in iter_sources(root / "sub" / "c.png")] == ["c"]

    with pytest.raises(SourceError, match="no such file, folder or glob"):
        iter_sources(tmp_path / "missing")
    with pytest.raises(SourceError, match="unsupported file"):
        iter_sources(root / "notes.txt")
    with pytest.raises(SourceError, match=r"no images .* in pattern"):
        iter_sources(f"{root}/*.gif")
    with pytest.raises(SourceError, match="--recursive"):
        iter_sources(tmp_path)


def test_video_reader_and_writer(tmp_path: Path):
    frames = [random_image(seed) for seed in range(4)]
    source = write_video(tmp_path / "in.mp4", frames, fps=12)
    with VideoReader(source) as reader:
        assert (reader.info.width, reader.info.height, reader.info.fps) == (64, 48, 12)
        assert reader.info.frames == 4
        decoded = list(reader)
    assert len(decoded) == 4
    assert decoded[0].shape == (3, 48, 64)
    assert decoded[0].dtype == torch.float32
    assert (decoded[0] * 255 - torch.from_numpy(frames[0]).permute(2, 0, 1)).abs().mean() < 8

    # Odd sizes are padded by one pixel: yuv420p needs even ones.
    with VideoWriter(tmp_path / "odd.mp4", Fraction(30000, 1001)) as writer:
        for frame in decoded:
            writer.write(frame[:, :47, :63])
        with pytest.raises(ValueError, match="the first was 47x63"):
            writer.write(decoded[0])
    written, rate = read_video(tmp_path / "odd.mp4")
    assert len(written) == 4
    assert written[0].shape == (48, 64, 3)
    assert rate == Fraction(30000, 1001)

    with pytest.raises(ValueError, match="cannot open"):
        VideoReader(_text(tmp_path / "bad.mp4"))


def _text(path: Path) -> Path:
    path.write_text("not a video")
    return path


def test_video_rotation_applied(tmp_path: Path):
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:16, :16] = 255  # a white corner, top left as stored
    source = write_video(tmp_path / "portrait.mp4", [frame] * 2, rotation=90)
    with VideoReader(source) as reader:
        assert (reader.info.width, reader.info.height, reader.info.rotation) == (48, 64, 90)
        first = next(iter(reader))
    # Turned 90 degrees counter-clockwise: the top-left corner goes to the bottom left.
    assert first.shape == (3, 64, 48)
    assert first[:, -16:, :16].mean() > 0.9
    assert first[:, :16, :16].mean() < 0.1


# ----------------------------------------------------------------------------------------------------
# The predict command


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
    assert run_command("predict", str(folder), *args, "--batch-size", "2") == 0
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
    assert run_command("predict", str(tmp_path / "c.jpg"), "--out", str(tmp_path / "single"), *common) == 0
    assert sorted(p.name for p in (tmp_path / "single").iterdir()) == ["c.png", "results.json"]
    results = json.loads((tmp_path / "single" / "results.json").read_text())
    assert {r["category"] for r in results} <= {"square", "disc"}

    assert run_command("predict", f"{tmp_path}/*.png", "--out", str(tmp_path / "glob"), *common) == 0
    assert sorted(p.name for p in (tmp_path / "glob").iterdir()) == ["a.png", "b.png", "results.json"]


def test_predict_video(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    source = write_video(tmp_path / "clip.mp4", [random_image(seed) for seed in range(6)], fps=15)
    out = tmp_path / "out"
    args = ("--weights", str(checkpoint), "--out", str(out), "--score-threshold", "0", "--batch-size", "4")
    assert run_command("predict", str(source), *args) == 0
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


class LeftHalfModel(nn.Module):
    """Finds one "thing" covering the left half of every image."""

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = []
        for image in images:
            height, width = image.shape[-2:]
            masks = torch.zeros(1, 1, height, width)
            masks[..., : width // 2] = 0.9
            out.append(
                {
                    "boxes": torch.tensor([[0.0, 0.0, width / 2, float(height)]]),
                    "labels": torch.tensor([1]),
                    "scores": torch.tensor([0.9]),
                    "masks": masks,
                }
            )
        return out


@pytest.fixture
def left_half(monkeypatch: pytest.MonkeyPatch) -> None:
    def from_checkpoint(cls: type[Predictor], path: object, **kwargs: object) -> Predictor:
        return cls(LeftHalfModel(), ["thing"], **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(predict_module.Predictor, "from_checkpoint", classmethod(from_checkpoint))


@pytest.mark.usefixtures("left_half")
def test_splash_image_keeps_colour_inside_masks(tmp_path: Path):
    array = random_image(8)
    Image.fromarray(array).save(tmp_path / "photo.png")
    assert (
        run_command("splash", str(tmp_path / "photo.png"), "--weights", "x", "--out", str(tmp_path / "o"))
        == 0
    )
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
    assert run_command("splash", str(source), "--weights", "x", "--out", str(tmp_path / "o")) == 0
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
        (lambda d: _text(d / "notes.txt"), (), "unsupported file"),
        (lambda d: _image(d), ("--device", "tpu"), "unknown device 'tpu'"),
        (lambda d: _image(d), ("--device", "cuda:99"), "cuda:99 is not available"),
        (lambda d: _image(d), ("--classes", "zebra"), "unknown class 'zebra'"),
        (lambda d: _image(d), ("--weights", "nothing.safetensors"), "cannot use checkpoint nothing"),
        (lambda d: _text(d / "corrupt.png"), (), "not an image Pillow can read"),
        (lambda d: _image(d), (), "would overwrite an input"),
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
    argv = [str(source), "--weights", str(checkpoint), "--out", str(out), *extra]
    assert run_command("predict", *argv) == 1
    assert message in capsys.readouterr().err


def _image(folder: Path) -> Path:
    Image.fromarray(random_image(0)).save(folder / "image.png")
    return folder / "image.png"
