"""One inference call of a model, shared by the :class:`~maskrcnn.engine.predictor.Predictor` and the
evaluator: the precision, a score threshold below the model's own, and masks left unpasted.

Pasting every candidate's mask into a full-size float image is most of the cost on large photos (100
detections on a 2048 x 1365 photo: 1.1 GB of floats). A :class:`~maskrcnn.modeling.MaskRCNN` is asked
for its ``[D, 1, M, M]`` RoI probabilities instead (key ``roi_masks``); the caller drops what it does
not keep and pastes the rest straight into booleans cut to each mask's extent (:func:`binary_masks`).
Any other module is called as it is (``masks`` ``[D, 1, H, W]`` probabilities).

A model may also give keypoints (``keypoints`` ``[D, K, 3]``, ``keypoints_scores`` ``[D, K]``, in image
pixels), and may give no masks at all (a keypoint-only model, as torchvision's keypoint R-CNN): every
helper here passes the other fields through as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from torch import Tensor, nn

from maskrcnn.engine.precision import Precision
from maskrcnn.modeling.mask_rcnn import MaskRCNN
from maskrcnn.ops import binarize_masks, paste_masks_cropped
from maskrcnn.structures import CroppedMasks

__all__ = [
    "NO_MASKS_FOR_TILES",
    "binary_masks",
    "gives_masks",
    "keypoint_count",
    "run_model",
    "select",
    "with_binary_masks",
]

NO_MASKS_FOR_TILES = (
    "tiled inference joins the tiles' detections into objects by their masks, and this model gives none "
    "(a keypoint-only model): run it on whole images"
)


def gives_masks(model: nn.Module) -> bool:
    """Whether the model's detections carry masks: a Mask R-CNN's ``roi_heads.has_masks``; any other
    module is taken at the contract's word (masks) unless its ``roi_heads`` says otherwise."""
    return bool(getattr(getattr(model, "roi_heads", None), "has_masks", True))


def keypoint_count(model: nn.Module) -> int:
    """Keypoints per detection the model gives: its ``roi_heads.num_keypoints`` (0: none)."""
    return int(getattr(getattr(model, "roi_heads", None), "num_keypoints", 0) or 0)


def run_model(
    model: nn.Module,
    images: Sequence[Tensor],
    *,
    precision: Precision | None = None,
    score_threshold: float | None = None,
) -> list[dict[str, Tensor]]:
    """The model's detections on ``images`` (call under ``torch.inference_mode()``, model in eval mode).

    Args:
        model: a Mask R-CNN, or any module whose evaluation call maps a list of ``[C, H, W]`` images to
            per image ``boxes``, ``labels``, ``scores`` and ``masks`` ``[D, 1, H, W]``.
        images: ``[C, H, W]`` floats in 0..1, on the model's device.
        precision: autocast for the call (``None``: float32).
        score_threshold: when below a Mask R-CNN's own ``roi_heads.score_thresh``, the call's threshold
            (so that a low threshold means what it says); the module is never changed.

    Returns:
        per image ``boxes`` float32 ``[D, 4]`` (input pixels), ``labels`` int64 ``[D]``, ``scores`` float32
        ``[D]``, ``roi_masks`` float32 ``[D, 1, M, M]`` (a Mask R-CNN) or ``masks`` ``[D, 1, H, W]``
        (none from a model without masks), and from a model with keypoints ``keypoints`` ``[D, K, 3]``
        and ``keypoints_scores`` ``[D, K]``.
    """
    context = precision.autocast() if precision is not None else contextlib.nullcontext()
    if not isinstance(model, MaskRCNN):
        with context:
            return model(list(images))
    kwargs = {}
    if score_threshold is not None and score_threshold < model.roi_heads.score_thresh:
        # The model drops candidates at its own threshold (0.05 by default) before the per-class NMS.
        kwargs["score_thresh"] = score_threshold
    with context:
        outputs = model(list(images), paste_masks=False, **kwargs)
    for output in outputs:
        if "masks" in output:
            output["roi_masks"] = output.pop("masks")
    return outputs


def select(detection: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    """The detections at ``index`` (an index or boolean ``[D]`` tensor), every field alike."""
    return {key: value[index] for key, value in detection.items()}


def binary_masks(
    detection: dict[str, Tensor], size: tuple[int, int], threshold: float
) -> CroppedMasks | None:
    """The masks of the image of ``size``, probability above ``threshold``, as crops of their extents
    (``None``: the detection has no masks, from a keypoint-only model).

    RoI masks are pasted straight into booleans inside their boxes (:func:`maskrcnn.ops.paste_masks_cropped`);
    full-size probabilities are compared, then cropped.
    """
    if "roi_masks" in detection:
        return paste_masks_cropped(detection["roi_masks"], detection["boxes"], size, threshold)
    if "masks" not in detection:
        return None
    masks = detection["masks"]
    return CroppedMasks.from_dense(binarize_masks(masks[:, 0] if masks.dim() == 4 else masks, threshold))


def with_binary_masks(
    outputs: list[dict[str, Tensor]], images: Sequence[Tensor], threshold: float
) -> list[dict[str, Tensor | CroppedMasks]]:
    """:func:`run_model`'s outputs with their masks binary (:func:`binary_masks` at each image's size) in
    ``masks``, as tiled inference merges them.

    Raises:
        ValueError: an output without masks (:data:`NO_MASKS_FOR_TILES`).
    """
    for output, image in zip(outputs, images, strict=True):
        masks = binary_masks(output, (int(image.shape[-2]), int(image.shape[-1])), threshold)
        if masks is None:
            raise ValueError(NO_MASKS_FOR_TILES)
        output["masks"] = masks
        output.pop("roi_masks", None)
    return outputs  # type: ignore[return-value]
