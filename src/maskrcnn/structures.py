"""Typed containers passed between stages."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ImageList"]


@dataclass
class ImageList:
    """A batch of images padded to one size, with the size of each image before padding.

    Attributes:
        tensors: ``[N, C, H, W]`` padded batch.
        image_sizes: per image, ``(height, width)`` of its unpadded content (top-left aligned).
    """

    tensors: Tensor
    image_sizes: list[tuple[int, int]]

    def to(self, device: torch.device | str) -> ImageList:
        return ImageList(self.tensors.to(device), list(self.image_sizes))
