"""``maskrcnn export --format onnx``: the whole detector as one ONNX graph (opset 18).

The graph is ``torch.onnx.export(..., dynamo=True)`` of :class:`~maskrcnn.export.ExportableMaskRCNN`
(``torch.export`` first, then the exporter's ATen-to-ONNX library), with the three custom operators of
:mod:`maskrcnn.export.ops` translated by the functions below (``custom_translation_table``, written
with onnxscript):

* ``resize_image`` -> the output size in float64 (``Floor(size * Min(min_size / short, max_size /
  long))``, the eager arithmetic; float32 is one pixel off for ~9% of image sizes) and ``Resize``
  (bilinear, ``pytorch_half_pixel``: ``F.interpolate(align_corners=False)``);
* ``roi_align`` -> ``RoiAlign`` (``mode="avg"``; ``coordinate_transformation_mode`` ``"output_half_pixel"``
  for ``aligned=False``, the legacy RoIAlign torchvision's Mask R-CNN uses, ``"half_pixel"`` for
  ``aligned=True``; a sampling ratio ``<= 0`` becomes ONNX's 0, the same adaptive ``ceil(roi / bins)``
  grid). ONNX Runtime's kernel is the Detectron/torchvision one (1x1 minimum RoI size when not aligned,
  samples beyond -1 or the map's size read 0, clamping at the border);
* ``grouped_nms`` -> ``NonZero`` (the boxes over the score threshold), a ``[1, G, M]`` score matrix with
  one row per group (class, or pyramid level) holding only that group's boxes' scores, ``-inf`` elsewhere,
  and one ``NonMaxSuppression`` on it, whose per-class loop is exactly per-group NMS (the
  coordinate-offset trick of torchvision's ``batched_nms`` would change IoUs by float rounding of the
  shifted coordinates), then a ``TopK`` to order the kept boxes by decreasing score.

The legacy TorchScript exporter (``dynamo=False``) is deprecated in torch 2.x and traces Python control
flow at one example size, so it is not used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from maskrcnn.export.exported import export_program
from maskrcnn.export.wrapper import OUTPUT_NAMES, ExportableMaskRCNN

__all__ = ["OPSET", "export_onnx", "onnx_translations"]

OPSET = 18
# The lowest finite float32: NonMaxSuppression's score_threshold, so that the -inf entries of the score
# matrix (other groups' boxes) never take part, whether a runtime compares with > or >=.
_LOWEST = -3.4028234663852886e38


def onnx_translations() -> dict[Any, Any]:
    """``custom_translation_table`` for ``torch.onnx.export``: our custom operators -> onnxscript."""
    from onnxscript import opset18 as op
    from onnxscript.onnx_types import DOUBLE, INT64

    from maskrcnn.export import ops  # noqa: F401  (registers torch.ops.maskrcnn_export.*)

    def resize_image(image: Any, min_size: int, max_size: int) -> Any:
        sides = op.Cast(op.Shape(image, start=1, end=3), to=DOUBLE.dtype)  # (H, W)
        short = op.ReduceMin(sides, keepdims=0)
        long = op.ReduceMax(sides, keepdims=0)
        scale = op.Min(
            op.Div(op.CastLike(float(min_size), sides), short),
            op.Div(op.CastLike(float(max_size), sides), long),
        )
        size = op.Max(op.Cast(op.Floor(op.Mul(sides, scale)), to=INT64.dtype), op.Constant(value_int=1))
        sizes = op.Concat(op.Constant(value_ints=[1]), op.Shape(image, start=0, end=1), size, axis=0)
        resized = op.Resize(
            op.Unsqueeze(image, [0]),
            None,
            None,
            sizes,
            mode="linear",
            coordinate_transformation_mode="pytorch_half_pixel",
        )
        return op.Squeeze(resized, [0])

    def roi_align(
        feature: Any,
        rois: Any,
        spatial_scale: float,
        output_height: int,
        output_width: int,
        sampling_ratio: int,
        aligned: bool,
    ) -> Any:
        batch_index = op.Cast(op.Squeeze(op.Slice(rois, [0], [1], [1]), [1]), to=INT64.dtype)
        return op.RoiAlign(
            feature,
            op.Slice(rois, [1], [5], [1]),
            batch_index,
            mode="avg",
            coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
            spatial_scale=spatial_scale,
            output_height=output_height,
            output_width=output_width,
            sampling_ratio=max(sampling_ratio, 0),
        )

    def grouped_nms(
        boxes: Any, scores: Any, groups: Any, num_groups: int, iou_threshold: float, score_threshold: float
    ) -> Any:
        candidates = op.Reshape(op.NonZero(op.Greater(scores, op.CastLike(score_threshold, scores))), [-1])
        cand_scores = op.Gather(scores, candidates, axis=0)
        member = op.Equal(
            op.Unsqueeze(op.Range(0, num_groups, 1), [1]), op.Unsqueeze(op.Gather(groups, candidates), [0])
        )  # [G, M]
        matrix = op.Where(member, op.Unsqueeze(cand_scores, [0]), op.CastLike(float("-inf"), scores))
        selected = op.NonMaxSuppression(
            op.Unsqueeze(op.Gather(boxes, candidates, axis=0), [0]),
            op.Unsqueeze(matrix, [0]),
            op.Shape(candidates),  # at most every candidate (0 candidates: nothing selected)
            op.Constant(value_float=iou_threshold),
            op.Constant(value_float=_LOWEST),
        )  # [S, 3] (batch, group, candidate)
        kept = op.Gather(candidates, op.Reshape(op.Slice(selected, [2], [3], [1]), [-1]))
        _, order = op.TopK(op.Gather(scores, kept), op.Shape(kept), largest=1, sorted=1)
        return op.Gather(kept, order)

    return {
        torch.ops.maskrcnn_export.resize_image.default: resize_image,
        torch.ops.maskrcnn_export.roi_align.default: roi_align,
        torch.ops.maskrcnn_export.grouped_nms.default: grouped_nms,
    }


def export_onnx(
    wrapper: ExportableMaskRCNN,
    out: str | os.PathLike[str],
    *,
    example: torch.Tensor,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``wrapper`` as a self-contained ``.onnx`` file (weights inside) and return its path.

    Args:
        wrapper: the model to export.
        out: the file to write.
        example: a ``[3, H, W]`` image to trace with (``H`` and ``W`` stay symbolic).
        metadata: strings stored in the model's ``metadata_props`` (e.g. the class names).

    Raises:
        ImportError: onnx or onnxscript is not installed (the ``export`` extra).
    """
    import onnx  # noqa: F401  (fail early, before the long trace, when the extra is missing)
    import onnxscript  # noqa: F401

    program = export_program(wrapper, example=example)
    with torch.no_grad():
        onnx_program = torch.onnx.export(
            program,
            (example,),
            dynamo=True,
            input_names=["image"],
            output_names=list(OUTPUT_NAMES),
            opset_version=OPSET,
            custom_translation_table=onnx_translations(),
            verbose=False,
        )
    for key, value in (metadata or {}).items():
        onnx_program.model.metadata_props[key] = value
    path = Path(out)
    onnx_program.save(str(path), external_data=False)
    return path
