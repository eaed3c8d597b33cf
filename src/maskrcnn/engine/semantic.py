"""Semantic maps from instance detections: one class (or one instance) per pixel, and their PNG files.

An instance model says which objects are where; many uses want one answer per pixel instead: the area
of each class, a layer for a GIS, a comparison with a semantic-segmentation model (FCN's output). The
maps are made from a prediction's binary masks. Where masks overlap, the pixel goes to the
highest-scoring detection; between equal scores, to the earlier one (detections come highest score
first, so that is the one listed first). Pixels no mask covers are background, 0.

Both maps are painted from the masks' crops (:class:`~maskrcnn.structures.CroppedMasks`), lowest score
first, so that each pixel ends with its best detection: the work is the masks' extents, never a full-size
``[D, H, W]`` tensor (100 detections in a 2048 x 1365 photo would be 280 MB of it).

The files (both read back by any PNG reader as the ids themselves, e.g. ``np.asarray(Image.open(f))``):

* :func:`write_class_png`: the class map as an 8-bit palette PNG (mode ``P``), pixel value = class id
  (label ``k`` is ``class_names[k - 1]``), coloured with :func:`voc_palette` so that viewers show it as
  PASCAL VOC's ``SegmentationClass`` pictures look. More than 255 classes: a 16-bit grey PNG (``I;16``)
  of the ids, without colours.
* :func:`write_instance_png`: the instance map as Penn-Fudan's ``PedMasks`` store it (the project's
  ``instance-png`` format reads it back): 0 background, ``1..D`` the detections in their order; an
  8-bit grey PNG (``L``) when the largest id fits in 255, else 16-bit (``I;16``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from maskrcnn.io import atomic_write
from maskrcnn.structures import CroppedMasks

__all__ = ["instance_map", "semantic_map", "voc_palette", "write_class_png", "write_instance_png"]

# The largest id a 16-bit PNG holds.
_UINT16_MAX = 65535


def voc_palette(count: int = 256) -> list[tuple[int, int, int]]:
    """PASCAL VOC's colours of ids ``0..count - 1``: the bits of the id dealt out to red, green and blue
    in turn (bit 0 to red, 1 to green, 2 to blue, 3 to red...), most significant colour bit first.

    Id 0 is black, 1 ``(128, 0, 0)``, 2 ``(0, 128, 0)``, 3 ``(128, 128, 0)``, 4 ``(0, 0, 128)``, ...,
    255 ``(224, 224, 192)`` (the colour VOC gives its "void" border pixels). Every id gets a colour of
    its own, the same in every image and every run.
    """
    colours = []
    for index in range(count):
        rgb = [0, 0, 0]
        for shift in range(8):
            for channel in range(3):
                rgb[channel] |= ((index >> (3 * shift + channel)) & 1) << (7 - shift)
        colours.append((rgb[0], rgb[1], rgb[2]))
    return colours


def _as_crops(masks: CroppedMasks | Tensor) -> CroppedMasks:
    """``masks`` as crops: taken as they are, or cut from a bool / integer ``[D, H, W]`` (nonzero inside)."""
    if isinstance(masks, CroppedMasks):
        return masks
    if masks.dim() != 3 or masks.is_floating_point():
        raise ValueError(
            f"masks must be CroppedMasks or a bool / uint8 [D, H, W] tensor, got {masks.dtype} "
            f"{list(masks.shape)} (threshold probabilities first: maskrcnn.ops.binarize_masks)"
        )
    return CroppedMasks.from_dense(masks)


def instance_map(masks: CroppedMasks | Tensor, scores: Tensor) -> Tensor:
    """Which detection holds each pixel.

    Args:
        masks: ``D`` binary masks: :class:`~maskrcnn.structures.CroppedMasks` (``image_size`` ``(H, W)``)
            or bool / uint8 ``[D, H, W]`` (nonzero inside).
        scores: ``[D]``: where masks overlap, the highest score holds the pixel (equal scores: the
            earlier detection).

    Returns:
        int64 ``[H, W]`` on the masks' device: 0 background, ``k + 1`` on the pixels detection ``k``
        holds.
    """
    crops = _as_crops(masks)
    if len(scores) != len(crops):
        raise ValueError(f"{len(scores)} scores for {len(crops)} masks")
    out = torch.zeros(crops.image_size, dtype=torch.int64, device=crops.device)
    if not len(crops):
        return out
    # Painted lowest score first, so that the best detection of a pixel is painted last. A stable sort of
    # the detections in reverse order paints the later of two equal scores first: the earlier one wins.
    backwards = torch.arange(len(crops) - 1, -1, -1)
    order = backwards[scores.detach().cpu()[backwards].argsort(stable=True)]
    for k in order.tolist():
        crop, (y, x) = crops.crops[k], crops.origins[k]
        out[y : y + crop.shape[0], x : x + crop.shape[1]].masked_fill_(crop, k + 1)
    return out


def semantic_map(masks: CroppedMasks | Tensor, labels: Tensor, scores: Tensor) -> Tensor:
    """The class of each pixel: the label of the detection that holds it (see :func:`instance_map`).

    Args:
        masks: ``D`` binary masks: :class:`~maskrcnn.structures.CroppedMasks` (``image_size`` ``(H, W)``)
            or bool / uint8 ``[D, H, W]``.
        labels: int64 ``[D]``, 1..K.
        scores: ``[D]``.

    Returns:
        int64 ``[H, W]`` class ids on the masks' device, 0 background.
    """
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels for {len(scores)} scores")
    holder = instance_map(masks, scores)
    lookup = torch.cat([labels.new_zeros(1), labels]).to(holder.device, torch.int64)
    return lookup[holder]


def _checked_ids(values: Tensor, largest: int, what: str) -> np.ndarray:
    """``values`` (an integer ``[H, W]`` map) as a numpy array, after checking they lie in
    ``0..largest``."""
    if values.dim() != 2 or values.is_floating_point() or values.dtype == torch.bool:
        raise ValueError(f"{what} must be an integer [H, W] tensor, got {values.dtype} {list(values.shape)}")
    array = values.detach().cpu().numpy()
    if array.size and (array.min() < 0 or array.max() > largest):
        raise ValueError(f"{what} holds ids {array.min()}..{array.max()}; expected 0..{largest}")
    return array


def _save_png(path: Path, image: Image.Image) -> Path:
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def write_class_png(path: Path, class_map: Tensor, *, num_classes: int) -> Path:
    """Write a class map (:func:`semantic_map`) as a PNG of its ids, atomically.

    Args:
        path: the file (its folder is created).
        class_map: integer ``[H, W]``, ids ``0..num_classes`` (0 background).
        num_classes: K, the model's classes: up to 255, an 8-bit palette PNG coloured by
            :func:`voc_palette`; more (up to 65535), a 16-bit grey PNG of the ids. The choice is the
            model's, not the image's, so that every map of a run has the same form.

    Raises:
        ValueError: ids outside ``0..num_classes``; more than 65535 classes.
    """
    if not 0 <= num_classes <= _UINT16_MAX:
        raise ValueError(f"num_classes {num_classes}: a PNG holds class ids up to {_UINT16_MAX}")
    ids = _checked_ids(class_map, num_classes, "class_map")
    if num_classes <= 255:
        image = Image.fromarray(ids.astype(np.uint8))
        image.putpalette([v for colour in voc_palette() for v in colour])  # "L" becomes "P"
    else:
        image = Image.fromarray(ids.astype(np.uint16))
    return _save_png(Path(path), image)


def write_instance_png(path: Path, instance_map: Tensor) -> Path:
    """Write an instance map (:func:`instance_map`) as a Penn-Fudan style instance-id PNG, atomically:
    0 background, ``1..D`` the instances; 8-bit grey (``L``) when its largest id is at most 255, else
    16-bit (``I;16``).

    Raises:
        ValueError: negative ids, or ids above 65535.
    """
    ids = _checked_ids(instance_map, _UINT16_MAX, "instance_map")
    small = not ids.size or ids.max() <= 255
    return _save_png(Path(path), Image.fromarray(ids.astype(np.uint8 if small else np.uint16)))
