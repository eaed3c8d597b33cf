"""Video files in and out with PyAV: frames as the project's images, results as H.264 MP4.

Reading decodes the first video stream into float ``[3, H, W]`` RGB frames in 0..1, upright: a rotation
stored in the stream's display matrix (phones record portrait video as rotated landscape pixels plus
that matrix) is applied, as players do. Audio and subtitle streams are ignored. The frame rate is the
stream's average rate; a variable-rate video is written back at that constant rate.

Writing encodes H.264 (``libx264``, ``yuv420p``: plays everywhere) or, where this FFmpeg build has no
H.264 encoder, MPEG-4 part 2, into an MP4 file at the given frame rate. ``yuv420p`` stores colour at half
resolution, so width and height must be even: an odd-sized frame is padded by one pixel on the right or
at the bottom, repeating the last column or row (nothing of the picture is lost; the output is then one
pixel wider or taller than the input).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoError",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "is_video_file",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")

# Encoders tried in order: H.264 first, MPEG-4 part 2 (in every FFmpeg build) as the fallback.
_ENCODERS = ("libx264", "mpeg4")
# When a stream states no frame rate at all (rare: some raw or broken files), assume the common one.
_DEFAULT_FPS = Fraction(30)


class VideoError(ValueError):
    """A video that cannot be opened, decoded or written, naming the file."""


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of the video suffixes this project reads."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, as :class:`VideoReader` delivers it.

    Attributes:
        width: frame width in pixels, after rotation.
        height: frame height in pixels, after rotation.
        fps: frames per second (the stream's average rate).
        frames: the frame count the container states; ``None`` when it states none (MKV, WebM).
        rotation: degrees counter-clockwise applied to upright the frames (0, 90, 180 or -90).
    """

    width: int
    height: int
    fps: Fraction
    frames: int | None
    rotation: int


def _frame_to_array(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB, upright."""
    array = frame.to_ndarray(format="rgb24")
    turns = round(rotation / 90) % 4
    # np.rot90 turns counter-clockwise, as the display matrix's angle counts.
    return np.ascontiguousarray(np.rot90(array, k=turns)) if turns else array


class VideoReader:
    """Decode a video's frames one at a time (the whole video is never held in memory).

    Use as a context manager (or call :meth:`close`); iterating yields float ``[3, H, W]`` RGB frames in
    0..1. ``info`` describes the video; the first frame is decoded on opening to learn its rotation.

    Raises:
        VideoError: the file is missing, is no video, has no video stream, or is corrupt.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: file not found")
        try:
            self._container = av.open(str(self.path))
        except av.FFmpegError as e:
            raise VideoError(f"{self.path}: cannot open as a video ({e})") from None
        try:
            if not self._container.streams.video:
                raise VideoError(f"{self.path}: has no video stream")
            stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"  # frame- and slice-threaded decoding where the codec allows
            self._frames = self._container.decode(stream)
            self._first = self._next_frame(0)
            rotation = self._first.rotation if self._first is not None else 0
            width, height = stream.codec_context.width, stream.codec_context.height
            if round(rotation / 90) % 2:
                width, height = height, width
            fps = stream.average_rate or stream.guessed_rate or _DEFAULT_FPS
            self.info = VideoInfo(
                width=width, height=height, fps=Fraction(fps), frames=stream.frames or None, rotation=rotation
            )
        except BaseException:
            self._container.close()
            raise

    def _next_frame(self, index: int) -> av.VideoFrame | None:
        try:
            return next(self._frames)
        except StopIteration:
            return None
        except av.FFmpegError as e:
            raise VideoError(f"{self.path}: cannot decode frame {index} ({e})") from None

    def __iter__(self) -> Iterator[Tensor]:
        """Frames as float ``[3, H, W]`` in 0..1; a corrupt frame raises :class:`VideoError`."""
        frame, index = self._first, 0
        self._first = None  # a reader is iterated once
        while frame is not None:
            array = _frame_to_array(frame, self.info.rotation)
            yield torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)
            index += 1
            frame = self._next_frame(index)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _pick_encoder() -> str:
    for name in _ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except (av.FFmpegError, ValueError):  # PyAV raises UnknownCodecError (a ValueError)
            continue
        return name
    raise VideoError(f"this FFmpeg build has none of the video encoders {', '.join(_ENCODERS)}")


def _to_uint8_hwc(frame: Tensor | Image.Image | np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` from a float ``[3, H, W]`` tensor (0..1), a PIL image or a uint8 array."""
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    if isinstance(frame, Tensor):
        if frame.dim() != 3 or frame.shape[0] != 3:
            raise ValueError(f"VideoWriter: expected a [3, H, W] frame, got {list(frame.shape)}")
        frame = (frame.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu()
        return frame.numpy()
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"VideoWriter: expected a uint8 [H, W, 3] array, got {frame.dtype} {frame.shape}")
    return frame


class VideoWriter:
    """Encode frames into an MP4 file (see the module docstring for the codec and the even size).

    The first frame fixes the size; later frames must have the same. Use as a context manager (or call
    :meth:`close`): closing flushes the encoder and finishes the file, also after an error, so a
    partial video stays playable.

    Args:
        path: the ``.mp4`` file to write (its folder is created).
        fps: frames per second.
        crf: H.264 quality (lower is better and larger; 18 is close to visually lossless).
    """

    def __init__(self, path: str | os.PathLike[str], fps: Fraction | float, *, crf: int = 18) -> None:
        self.path = Path(path)
        # MPEG-4 part 2 needs a time base denominator below 2**16; an exact 30000/1001 fits.
        self.fps = Fraction(fps).limit_denominator(65535)
        if self.fps <= 0:
            raise VideoError(f"{self.path}: frame rate must be positive, got {fps}")
        self.crf = crf
        self.codec = _pick_encoder()
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (height, width) of the frames as given
        self._container: Any = None
        self._stream: Any = None

    def _open(self, height: int, width: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w")
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            stream.options = {"crf": str(self.crf), "preset": "medium"}
        else:
            # MPEG-4's default of 200 kbit/s smears detail; about 0.2 bit per pixel looks clean.
            stream.bit_rate = max(1_000_000, int(0.2 * stream.width * stream.height * float(self.fps)))
        self._stream = stream
        self.size = (height, width)

    def write(self, frame: Tensor | Image.Image | np.ndarray) -> None:
        """Append one frame: float ``[3, H, W]`` in 0..1, a PIL image, or ``uint8 [H, W, 3]`` RGB."""
        array = _to_uint8_hwc(frame)
        height, width = array.shape[:2]
        if self._container is None:
            self._open(height, width)
        elif self.size != (height, width):
            raise ValueError(
                f"VideoWriter {self.path}: frame {self.frames_written} is {height}x{width}, "
                f"the first was {self.size[0]}x{self.size[1]}"  # type: ignore[index]
            )
        if height % 2 or width % 2:
            array = np.pad(array, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (nothing is written when no frame came)."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
