"""What the inference tests share: a tiny untrained checkpoint, pictures, videos, a model with known masks.

Fixtures are made from these functions in each test module, e.g.
``checkpoint = pytest.fixture(scope="module")(tiny_checkpoint)``, then
``predictor = pytest.fixture(scope="module")(untrained_predictor)``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from maskrcnn.engine.predictor import Predictor
from maskrcnn.modeling import build_model
from maskrcnn.weights import save_checkpoint
from tests.modeling.helpers import tiny_config

CLASSES = ["square", "disc", "triangle"]


def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model for :data:`CLASSES` (every score near 1/4; 10 detections per image)."""
    torch.manual_seed(0)
    model = build_model(tiny_config())
    return save_checkpoint(
        model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", config=tiny_config(), class_names=CLASSES
    )


def untrained_predictor(checkpoint: Path) -> Predictor:
    """The :func:`tiny_checkpoint` at threshold 0: the model's 10 detections per image (scores near 1/4)."""
    return Predictor.from_checkpoint(checkpoint, score_threshold=0.0)


def random_image(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth random ``uint8 [H, W, 3]`` picture (blocks of colour, so that codecs keep it)."""
    g = np.random.default_rng(seed)
    blocks = g.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(blocks.repeat(8, 0).repeat(8, 1)[:height, :width])


def save_image(folder: Path, name: str = "image.png", seed: int = 0) -> Path:
    Image.fromarray(random_image(seed)).save(folder / name)
    return folder / name


def write_text(path: Path) -> Path:
    """A file that is no image or video, whatever its suffix."""
    path.write_text("not a video")
    return path


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


class LeftHalfModel(nn.Module):
    """Finds one "thing" covering the left half of every image (score 0.9, mask probability 0.9).

    Its call takes the images only (no ``score_thresh``), as any module the Predictor accepts may.
    """

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
