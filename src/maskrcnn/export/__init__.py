"""Deployment: the whole detector as one ONNX graph or one ``torch.export`` program.

:func:`export_model` writes a Mask R-CNN as a file that runs without the model's Python classes and
config: resize, normalisation, backbone, RPN, box and mask heads, NMS and the mapping back to input
pixels are all inside. One call takes one ``float32 [3, H, W]`` RGB image in 0..1 (the model's own input
contract) and returns ``boxes [D, 4]`` (xyxy, input pixels), ``labels int64 [D]``, ``scores [D]`` (by
decreasing score) and ``masks [D, 1, 28, 28]`` (each detection's mask probabilities over its box;
:func:`paste_masks` puts them into the image). ``D`` may be 0.

Formats:

* ``onnx`` (opset 18, needs the ``export`` extra): ``torch.onnx.export(..., dynamo=True)``; RoIAlign and
  NMS become the standard ``RoiAlign`` and ``NonMaxSuppression`` operators, so ONNX Runtime and other
  runtimes run it as it is (:mod:`maskrcnn.export.onnx`).
* ``torch-export`` (``.pt2``): the ``torch.export`` program, PyTorch's maintained whole-graph capture
  (TorchScript is deprecated and traces the model's Python control flow at one example size). Loading it
  needs torch and this package, whose custom operators it calls (:func:`load_exported`).

Shapes: ``H`` and ``W`` are dynamic (any size of at least 2 px), the batch is one image and the channels
are 3. The graph computes what the eager model computes for any image whose resized height is at least
68 px (the presets resize the short side to 800 px unless the long side would pass 1333 px: every aspect
ratio up to 19:1). For flatter images the eager model, like torchvision's, infers the pyramid levels'
scales from the unpadded height and pools from the wrong places; the exported graph uses the true scales.
A ``.pt2`` program also checks at each call that every pyramid level is at least 2 cells on each side
(resized sides above 64 px) and raises otherwise. Thresholds, sizes and the detection cap are constants
of the file, fixed at export.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from maskrcnn.export.exported import export_program, load_exported, save_exported
from maskrcnn.export.paste import as_detection, paste_masks
from maskrcnn.export.wrapper import OUTPUT_NAMES, ExportableMaskRCNN
from maskrcnn.modeling.mask_rcnn import MaskRCNN

__all__ = [
    "FORMATS",
    "OUTPUT_NAMES",
    "ExportableMaskRCNN",
    "as_detection",
    "example_image",
    "export_model",
    "load_exported",
    "paste_masks",
]

FORMATS = ("onnx", "torch-export")


def example_image(model: MaskRCNN) -> torch.Tensor:
    """A mid-grey ``[3, H, W]`` image of the model's evaluation size (4:3) to trace with: every pyramid
    level has several cells, so that no size is specialised to 1."""
    side = model.transform.min_size[-1]
    return torch.full((3, side, side * 4 // 3), 0.5)


def export_model(
    model: MaskRCNN,
    out: str | os.PathLike[str],
    *,
    format: str,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write ``model`` (evaluation mode, float32, on the CPU) as ``format`` to ``out``.

    Args:
        model: the detector; it is put in evaluation mode, in float32 on the CPU (in place).
        out: the file to write (``.onnx`` / ``.pt2`` by convention).
        format: one of :data:`FORMATS`.
        class_names: names of labels 1..K, stored in the file (ONNX metadata ``class_names``, the
            ``.pt2``'s extra file ``class_names.json``) as a JSON list.

    Raises:
        ValueError: an unknown format, or a model that is no Mask R-CNN.
        ImportError: ``onnx`` without the ``export`` extra (onnx, onnxscript).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r} (choose from {', '.join(FORMATS)})")
    if not isinstance(model, MaskRCNN):
        raise ValueError(f"only a Mask R-CNN can be exported, not a {type(model).__name__}")
    model = model.float().cpu().eval()
    wrapper = ExportableMaskRCNN(model)
    example = example_image(model)
    names = json.dumps(list(class_names or []))
    with _quiet():
        if format == "onnx":
            from maskrcnn.export.onnx import export_onnx

            return export_onnx(wrapper, out, example=example, metadata={"class_names": names})
        program = export_program(wrapper, example=example)
        return save_exported(program, out, extra_files={"class_names.json": names})


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence what torch's exporters say about themselves while they work (that torchvision's operators
    are not registered, deprecation notes about their own internals): none of it concerns the user."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
