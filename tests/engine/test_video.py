"""Video files in and out: frames, frame rate, odd sizes, the display rotation, unreadable files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from maskrcnn.engine.video import VideoReader, VideoWriter
from tests.engine.prediction_helpers import random_image, read_video, write_text, write_video


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
        VideoReader(write_text(tmp_path / "bad.mp4"))


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
