"""From the exported graph's outputs to the model's detections: pasting the ``M x M`` masks.

The exported graph returns each detection's mask as ``M x M`` (28 x 28) probabilities over its box, the
compact form (a full-image mask per detection would be ``D x H x W`` floats). These helpers paste them
into the image with the model's own :func:`maskrcnn.ops.paste_masks_in_image` /
:func:`maskrcnn.ops.paste_masks_thresholded`, so the result is what ``model([image])`` returns. They take
the numpy arrays ONNX Runtime returns or tensors, and need neither onnxruntime nor the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maskrcnn.ops import paste_masks_in_image, paste_masks_thresholded

__all__ = ["as_detection", "paste_masks"]


def _tensor(value: Tensor | np.ndarray) -> Tensor:
    return value if isinstance(value, Tensor) else torch.from_numpy(np.asarray(value))


def paste_masks(
    masks: Tensor | np.ndarray,
    boxes: Tensor | np.ndarray,
    image_size: tuple[int, int],
    *,
    threshold: float | None = None,
) -> Tensor:
    """Paste per-detection mask probabilities into ``(H, W)`` images.

    Args:
        masks: ``[D, 1, M, M]`` (or ``[D, M, M]``) probabilities, the exported graph's ``masks``.
        boxes: ``[D, 4]`` xyxy boxes in the image's pixels, the graph's ``boxes``.
        image_size: ``(H, W)`` of the image given to the graph.
        threshold: ``None``: float probabilities; a value (e.g. 0.5): binary masks, computed inside each
            box only (much less memory for many detections on a large image).

    Returns:
        ``float [D, 1, H, W]`` probabilities, or with ``threshold`` ``bool [D, H, W]``.
    """
    masks_t = _tensor(masks).float()
    if masks_t.dim() == 3:
        masks_t = masks_t[:, None]
    boxes_t = _tensor(boxes).float()
    size = (int(image_size[0]), int(image_size[1]))
    if threshold is None:
        return paste_masks_in_image(masks_t, boxes_t, size)
    return paste_masks_thresholded(masks_t, boxes_t, size, threshold)


def as_detection(
    outputs: Sequence[Any], image_size: tuple[int, int], *, paste: bool = True
) -> dict[str, Tensor]:
    """The graph's ``(boxes, labels, scores, masks)`` as the model's detection dict.

    Args:
        outputs: the four outputs in order (``session.run(None, {"image": ...})`` or a ``.pt2`` program's
            result).
        image_size: ``(H, W)`` of the input image.
        paste: paste the masks into ``[D, 1, H, W]`` (the model's ``masks``); else keep ``[D, 1, M, M]``.

    Returns:
        ``{"boxes": [D, 4], "labels": int64 [D], "scores": [D], "masks": ...}`` tensors.
    """
    boxes, labels, scores, masks = (_tensor(o) for o in outputs)
    if paste:
        masks = paste_masks(masks, boxes, image_size)
    return {"boxes": boxes, "labels": labels, "scores": scores, "masks": masks}
