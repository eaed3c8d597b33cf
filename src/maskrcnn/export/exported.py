"""``maskrcnn export --format torch-export``: the detector as a ``torch.export`` program (``.pt2``).

``torch.export`` is PyTorch's maintained whole-graph capture (TorchScript is deprecated): it records
the :class:`~maskrcnn.export.ExportableMaskRCNN` graph with symbolic image height and width, and
``torch.export.save`` writes it with its weights as one ``.pt2`` file. Loading it needs torch and this
package (the custom operators of :mod:`maskrcnn.export.ops` run the model's own RoIAlign, NMS and
resize), but not the model's Python classes or config: :func:`load_exported`.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from maskrcnn.export import ops as export_ops
from maskrcnn.export.wrapper import ExportableMaskRCNN

__all__ = [
    "check_no_pickled_code",
    "export_program",
    "image_dynamic_shapes",
    "load_exported",
    "save_exported",
]

# Smallest image side accepted: torch.export treats sizes 0 and 1 as special cases.
MIN_SIDE = 2


def image_dynamic_shapes() -> tuple[dict[int, Any]]:
    """``dynamic_shapes`` of the single ``[3, H, W]`` input: ``H`` and ``W`` free, at least 2."""
    return ({1: torch.export.Dim("height", min=MIN_SIDE), 2: torch.export.Dim("width", min=MIN_SIDE)},)


def export_program(wrapper: ExportableMaskRCNN, *, example: Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of ``wrapper`` traced with the ``[3, H, W]`` image ``example``, ``H`` and ``W``
    symbolic (non-strict mode: the model's Python runs as is, with fake tensors)."""
    assert export_ops  # the custom operators must be registered before tracing
    with torch.no_grad():
        return torch.export.export(wrapper, (example,), dynamic_shapes=image_dynamic_shapes(), strict=False)


def save_exported(
    program: torch.export.ExportedProgram,
    out: str | os.PathLike[str],
    *,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write ``program`` (weights included) as one ``.pt2`` file and return its path; ``extra_files``
    (name -> text) are stored beside it in the archive."""
    path = Path(out)
    torch.export.save(program, path, extra_files=extra_files)
    return path


def check_no_pickled_code(path: str | os.PathLike[str]) -> None:
    """Refuse a ``.pt2`` archive that ``torch.export.load`` would unpickle anything unsafe from.

    Raises:
        ValueError: not a zip archive; a weight or constant stored as a pickle (``use_pickle``); a
            ``.pt`` entry (the sample inputs) that ``torch.load(weights_only=True)`` refuses.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path}: not a .pt2 archive ({e})") from None
    with archive:
        for name in archive.namelist():
            if name.endswith("_config.json"):
                entries = json.loads(archive.read(name)).get("config", {})
                pickled = [key for key, meta in entries.items() if meta.get("use_pickle")]
                if pickled:
                    raise ValueError(f"{path}: {name} stores {pickled[0]!r} as a pickle; refusing to load it")
            elif name.endswith(".pt"):
                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception as e:  # any refusal or corruption: do not let torch fall back to pickle
                    message = f"{path}: {name} is not plain tensors ({e}); refusing to load it"
                    raise ValueError(message) from None


def load_exported(path: str | os.PathLike[str]) -> tuple[torch.export.ExportedProgram, list[str]]:
    """Load a ``.pt2`` written by ``maskrcnn export``: the program and its class names (labels 1..K).

    ``program.module()(image)`` returns ``(boxes, labels, scores, masks)`` for a ``[3, H, W]`` image in
    0..1.

    Raises:
        ValueError: the file is no ``.pt2`` archive, or it holds pickled data. ``torch.export.load``
            unpickles some entries with ``weights_only=False`` (tensor subclasses, script objects, and
            sample inputs it cannot read safely), which could run code from a file someone else wrote;
            ``maskrcnn export`` writes none, so such a file is refused before it is loaded.
    """
    assert export_ops  # registers torch.ops.maskrcnn_export.*, which the program calls
    check_no_pickled_code(path)
    extra = {"class_names.json": ""}
    program = torch.export.load(Path(path), extra_files=extra)
    return program, list(json.loads(extra["class_names.json"] or "[]"))
