"""Reading images into the project's image contract: float ``[3, H, W]`` RGB in 0..1.

Every file goes through Pillow, with the EXIF orientation applied (phones store portrait photos as rotated
landscape pixels plus a tag), and every mode converted: grey, palette, grey + alpha, RGBA (alpha dropped),
CMYK, 16-bit and 32-bit integer grey, float grey. Pillow's decompression-bomb guard stays on, and its
warning counts as an error: a huge image fails with a message instead of exhausting memory. Pillow's
other warnings about a file (corrupt EXIF data, a truncated TIFF tag) are logged as one line naming the
file, not shown as warnings that name Pillow's source line.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageError",
    "image_size",
    "is_image_file",
    "pil_to_rgb",
    "pil_to_tensor",
    "pixel_limit",
    "read_image",
    "read_image_bytes",
    "read_pil_image",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")

# 16-bit PNG / TIFF masks and images use these modes; their full range maps to 0..1.
_INTEGER_RANGES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


class ImageError(ValueError):
    """An image that cannot be read (missing, not an image, truncated, too large), naming the file."""


log = logging.getLogger(__name__)

# What Pillow's decoders raise on damaged data besides OSError (found by fuzzing: a TIFF of invalid
# dimensions is a ValueError from Image.open; a broken EXIF block a SyntaxError or struct.error).
_DAMAGED = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)


@contextlib.contextmanager
def _pillow_warnings(name: str) -> Iterator[None]:
    """Pillow's warnings while it reads the file ``name``: the decompression-bomb warning raised (past
    ``MAX_IMAGE_PIXELS`` it warns, past twice that it raises: stop at the first), the others logged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield
    for message in dict.fromkeys(str(w.message).strip() for w in caught):  # each once, in order
        log.warning("%s: %s", name, message)


def _bomb(name: str, error: Exception) -> ImageError:
    return ImageError(
        f"{name}: refused as a possible decompression bomb ({error}; to read it, raise the limit: "
        "--max-pixels N)"
    )


def _open(source: str | os.PathLike[str] | bytes, name: str) -> Image.Image:
    try:
        with _pillow_warnings(name):
            return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb(name, e) from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image Pillow can read") from None
    except _DAMAGED as e:
        raise ImageError(f"{name}: cannot open ({e})") from None


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` after EXIF orientation, from the file's header (the pixels are not decoded).

    For PNG only EXIF data stored before the pixels is seen (``img.getexif()`` would read the whole file
    to look for it after them, hundreds of times slower); cameras and editors write it before.
    """
    name = str(path)
    with _open(path, name) as img, _pillow_warnings(name):
        width, height = img.size
        try:
            if img.format == "PNG":
                raw = img.info.get("exif")
                exif = Image.Exif()
                if raw:
                    exif.load(raw)
            else:
                exif = img.getexif()
            orientation = exif.get(0x0112, 1)
        except _DAMAGED as e:
            raise ImageError(f"{name}: cannot read the header ({e})") from None
    # Orientations 5-8 transpose the image.
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def read_image(path: str | os.PathLike[str]) -> Tensor:
    """Decode an image file into float ``[3, H, W]`` RGB in 0..1 (see the module docstring)."""
    return _decode(_open(path, str(path)), str(path))


def read_image_bytes(data: bytes, name: str) -> Tensor:
    """Like :func:`read_image`, from encoded bytes (e.g. LabelMe's embedded ``imageData``)."""
    return _decode(_open(data, name), name)


def read_pil_image(path: str | os.PathLike[str]) -> Image.Image:
    """Decode an image file into a PIL image in the file's own mode, EXIF orientation applied.

    For images too large to hold as floats (a 20,000 x 20,000 RGB scene is 1.2 GB as bytes, 4.8 GB as
    float32): tiled inference converts it one tile at a time (:func:`pil_to_tensor` on each crop).
    """
    return _decode(_open(path, str(path)), str(path), to_tensor=False)


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Read images of up to ``max_pixels`` pixels inside the block (``None``: Pillow's own limit,
    ``Image.MAX_IMAGE_PIXELS``, about 89 million pixels: beyond it an image is refused as a possible
    decompression bomb). The limit is Pillow's, for the whole process, and restored after the block."""
    if max_pixels is None:
        yield
        return
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    # Pillow warns past its limit and raises past twice it; the warning is an error here
    # (_pillow_warnings), so the limit given is the one that refuses.
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = int(max_pixels)
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def _decode(img: Image.Image, name: str, *, to_tensor: bool = True) -> Any:
    try:
        with _pillow_warnings(name):
            try:
                img.load()
                # In place: exif_transpose otherwise copies even an upright image (1.2 GB more for a
                # 20,000-pixel scene).
                ImageOps.exif_transpose(img, in_place=True)
                return pil_to_tensor(img) if to_tensor else img
            finally:
                if to_tensor:
                    img.close()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb(name, e) from None
    except _DAMAGED as e:  # truncated or corrupt data
        raise ImageError(f"{name}: cannot decode ({e})") from None


def pil_to_tensor(img: Image.Image) -> Tensor:
    """A PIL image of any mode as float ``[3, H, W]`` RGB in 0..1 (see the module docstring)."""
    mode = img.mode
    if mode in _INTEGER_RANGES or mode == "I":
        array = np.asarray(img, dtype=np.float64)
        # "I" holds 32-bit integers; files that use it (e.g. 16-bit PNGs opened by older Pillow) rarely
        # exceed 16 bits, so scale by 65535 unless the data is larger.
        top = _INTEGER_RANGES.get(mode, 65535.0 if array.max(initial=0) <= 65535 else float(2**32 - 1))
        grey = torch.from_numpy(array / top).float().clamp_(0, 1)
        return grey[None].expand(3, -1, -1).contiguous()
    if mode == "F":
        grey = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).clamp_(0, 1)
        return grey[None].expand(3, -1, -1).contiguous()
    array = np.asarray(pil_to_rgb(img), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def pil_to_rgb(img: Image.Image) -> Image.Image:
    """A PIL image of any mode as 8-bit RGB, as :func:`pil_to_tensor` reads it (the image itself when it
    is RGB already): for drawing on."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _INTEGER_RANGES or mode in ("I", "F"):
        array = pil_to_tensor(img).mul_(255).add_(0.5).to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    # Palette images may carry transparency: go through RGBA so the palette's colours are kept, then
    # drop alpha. Grey, CMYK, YCbCr, LAB and HSV convert directly.
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
    return img.convert("RGB")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of the image suffixes this project reads."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES
