"""Images in the forms users hold them (tensor, array, PIL image, path) -> the model's input tensor."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from maskrcnn.data.image_io import pil_to_tensor, read_image

__all__ = ["ImageInput", "to_image_tensor"]

ImageInput = Tensor | np.ndarray | Image.Image | str | os.PathLike


def to_image_tensor(image: ImageInput) -> Tensor:
    """Any accepted image form -> float ``[C, H, W]`` in 0..1 (the model's input).

    * float tensor: ``[C, H, W]`` in 0..1, used as it is (the project's image contract);
    * uint8 tensor: ``[H, W, C]`` (numpy's layout) or ``[C, H, W]`` (torchvision's ``read_image``),
      told apart by which end has 1, 3 or 4 channels (``[H, W, C]`` when both do);
    * numpy array: ``[H, W, 3]`` or ``[H, W]``, uint8 0..255 or float 0..1, RGB (convert OpenCV's BGR
      first: ``array[..., ::-1]``); a fourth (alpha) channel is dropped, grey is repeated to RGB;
    * PIL image: any mode, converted to RGB (its EXIF orientation is not applied: the pixels are taken
      as they are in memory);
    * a path: read with :func:`maskrcnn.data.read_image` (EXIF orientation applied).
    """
    if isinstance(image, str | os.PathLike):
        return read_image(image)
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    if isinstance(image, np.ndarray):
        array = torch.from_numpy(np.ascontiguousarray(image))
        if array.dim() == 2:
            array = array[..., None]
        return _from_hwc(array, "array")
    if not isinstance(image, Tensor):
        raise TypeError(
            f"cannot predict on a {type(image).__name__}: pass a tensor, array, PIL image or path"
        )
    if image.is_floating_point():
        if image.dim() != 3:
            raise ValueError(f"a float image tensor must be [C, H, W] in 0..1, got {list(image.shape)}")
        return image.float()  # the model computes in float32 (float64 input would fail in its convs)
    if image.dim() == 2:
        image = image[..., None]
    if image.dim() == 3 and image.shape[-1] not in (1, 3, 4) and image.shape[0] in (1, 3, 4):
        image = image.permute(1, 2, 0)
    return _from_hwc(image, "tensor")


def _from_hwc(image: Tensor, what: str) -> Tensor:
    """``[H, W, C]`` (C in 1, 3, 4) uint8 0..255 or float 0..1 -> float ``[3, H, W]``."""
    if image.dim() != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"an image {what} must be [H, W, 3] (or [H, W], [H, W, 4]), got {list(image.shape)}")
    if image.dtype == torch.uint8:
        image = image.float().div_(255.0)
    elif image.is_floating_point():
        image = image.float()
    else:
        raise ValueError(f"an image {what} must hold uint8 (0..255) or floats (0..1), got {image.dtype}")
    image = image[..., :3] if image.shape[-1] == 4 else image.expand(-1, -1, 3)
    return image.permute(2, 0, 1).contiguous()
