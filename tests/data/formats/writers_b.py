"""Small image and mask files for the mask-folder, YOLO and export tests, written with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def rgb(path: Path, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A random RGB image (PNG, or JPEG by suffix); returns its uint8 ``[H, W, 3]`` pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def label_image(path: Path, values: np.ndarray, mode: str = "L") -> None:
    """Write integer ``[H, W]`` values as a grey ``"L"``, palette ``"P"`` or 16-bit ``"I;16"`` PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        img = Image.fromarray(values.astype(np.uint16))
        assert img.mode == "I;16"
    else:
        img = Image.fromarray(values.astype(np.uint8))
        if mode == "P":
            # Colours unrelated to the indices: the reader must use the index, not the colour.
            palette = np.random.default_rng(1).integers(0, 256, 768, dtype=np.uint8)
            img.putpalette(palette.tobytes())
            assert img.mode == "P"
    img.save(path)


def box_mask(
    height: int, width: int, rows: tuple[int, int], cols: tuple[int, int], value: int = 1
) -> np.ndarray:
    """``[H, W]`` zeros with ``value`` on rows ``rows[0]..rows[1]`` and columns ``cols[0]..cols[1]``
    (inclusive)."""
    out = np.zeros((height, width), dtype=np.int64)
    out[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = value
    return out
