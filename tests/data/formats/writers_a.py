"""Small file writers shared by the COCO, VIA and LabelMe reader tests."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def write_image(path: Path, width: int, height: int, color: tuple[int, int, int] = (10, 20, 30)) -> Path:
    """A solid-colour image (format from the suffix), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), color).save(path)
    return path


def png_bytes(width: int, height: int, color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def mask_png_b64(patch: np.ndarray) -> str:
    """A boolean patch as LabelMe 5 stores a mask shape: a base64 PNG of 0/1 bytes."""
    buffer = io.BytesIO()
    Image.fromarray(patch.astype(np.uint8)).save(buffer, format="PNG")
    return b64(buffer.getvalue())


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def truncate(path: Path, keep: int) -> Path:
    """Cut a file to its first ``keep`` bytes, as an interrupted copy would."""
    path.write_bytes(path.read_bytes()[:keep])
    return path


def mask(height: int, width: int, *boxes: tuple[int, int, int, int]) -> torch.Tensor:
    """``uint8 [height, width]`` with the pixels ``x0 <= x < x1, y0 <= y < y1`` of each box set."""
    out = torch.zeros((height, width), dtype=torch.uint8)
    for x0, y0, x1, y1 in boxes:
        out[y0:y1, x0:x1] = 1
    return out


def messages(dataset: Any, severity: str = "error") -> list[str]:
    return [str(p) for p in dataset.problems if p.severity == severity]
