"""Typed containers passed between stages."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pycocotools import mask as coco_mask
from torch import Tensor

__all__ = ["CroppedMasks", "ImageList"]


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


class CroppedMasks:
    """``N`` binary masks of one ``H x W`` image, each stored as the crop of its own extent.

    A detector's masks cover a small part of a large photo: 100 full-size masks of a 2048 x 1365 photo
    are 280 MB of booleans, their extents usually a few MB. Everything a prediction is used for (COCO RLE,
    drawing, the color splash, tight boxes) is computed from the crops; :meth:`dense` builds the
    ``[N, H, W]`` tensor when it is asked for.

    Args:
        crops: per mask, bool ``[h, w]``: the mask's pixels inside its extent. Its first and last rows
            and columns each hold a pixel of the mask (``[0, 0]`` for an empty mask).
        origins: per mask, ``(y0, x0)``: where ``crops[k][0, 0]`` lies in the image.
        image_size: ``(H, W)``.

    Use :meth:`from_dense` for full-size masks; :func:`maskrcnn.ops.paste_masks_cropped` pastes a
    detector's RoI masks into this form.
    """

    def __init__(
        self, crops: Sequence[Tensor], origins: Sequence[tuple[int, int]], image_size: tuple[int, int]
    ) -> None:
        if len(crops) != len(origins):
            raise ValueError(f"{len(crops)} crops for {len(origins)} origins")
        self.crops = list(crops)
        self.origins = [(int(y), int(x)) for y, x in origins]
        self.image_size = (int(image_size[0]), int(image_size[1]))

    @classmethod
    def from_dense(cls, masks: Tensor) -> CroppedMasks:
        """The masks of a ``[N, H, W]`` tensor (nonzero = inside), each cropped to its extent."""
        n, height, width = masks.shape
        if not n:
            return cls([], [], (height, width))
        bits = masks if masks.dtype == torch.bool else masks != 0
        crops, origins = [], []
        for k in range(n):
            crop, origin = _tight(bits[k], 0, 0)
            crops.append(crop)
            origins.append(origin)
        return cls(crops, origins, (height, width))

    @classmethod
    def from_regions(
        cls, crops: Sequence[Tensor], origins: Sequence[tuple[int, int]], image_size: tuple[int, int]
    ) -> CroppedMasks:
        """Masks given inside regions that may be larger than their extent (their boxes): each is
        shrunk to its extent."""
        tight = [_tight(crop.bool(), y, x) for crop, (y, x) in zip(crops, origins, strict=True)]
        return cls([crop for crop, _ in tight], [origin for _, origin in tight], image_size)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: Tensor | Sequence[int]) -> CroppedMasks:
        """The masks at ``index`` (an index or boolean ``[N]`` tensor, or a list of indices), in its order."""
        if isinstance(index, Tensor) and index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        picked = [int(k) for k in index]
        return CroppedMasks(
            [self.crops[k] for k in picked], [self.origins[k] for k in picked], self.image_size
        )

    def resized(self, size: tuple[int, int]) -> CroppedMasks:
        """The masks of the same image resized to ``size`` ``(h, w)`` (nearest neighbour: output pixel
        ``(y, x)`` takes the input pixel its centre falls in), each still a crop of its extent."""
        height, width = self.image_size
        new_h, new_w = int(size[0]), int(size[1])
        sy, sx = new_h / height, new_w / width
        crops, origins = [], []
        for crop, (y, x) in self:
            h, w = crop.shape
            # The output rows (columns) whose centres fall inside the crop's rows (columns).
            r0, r1 = math.ceil((y * sy) - 0.5), math.ceil(((y + h) * sy) - 0.5)
            c0, c1 = math.ceil((x * sx) - 0.5), math.ceil(((x + w) * sx) - 0.5)
            r0, c0 = max(r0, 0), max(c0, 0)
            r1, c1 = min(r1, new_h), min(c1, new_w)
            if not crop.numel() or r1 <= r0 or c1 <= c0:
                crops.append(crop.new_zeros((0, 0)))
                origins.append((0, 0))
                continue
            rows = ((torch.arange(r0, r1, dtype=torch.float64) + 0.5) / sy).floor().long() - y
            cols = ((torch.arange(c0, c1, dtype=torch.float64) + 0.5) / sx).floor().long() - x
            crops.append(crop[rows.clamp_(0, h - 1)][:, cols.clamp_(0, w - 1)])
            origins.append((r0, c0))
        return CroppedMasks.from_regions(crops, origins, (new_h, new_w))

    def __iter__(self) -> Iterator[tuple[Tensor, tuple[int, int]]]:
        """``(crop, (y0, x0))`` of each mask."""
        return iter(zip(self.crops, self.origins, strict=True))

    @property
    def device(self) -> torch.device:
        """Where the crops are (the CPU when there are none)."""
        return self.crops[0].device if self.crops else torch.device("cpu")

    def cpu(self) -> CroppedMasks:
        return CroppedMasks([c.cpu() for c in self.crops], self.origins, self.image_size)

    def boxes(self) -> Tensor:
        """float32 ``[N, 4]`` tight xyxy boxes in pixel-edge coordinates (as
        :func:`maskrcnn.ops.masks_to_boxes`: a mask over columns ``x0..x1`` ends at ``x1 + 1``); empty masks
        get ``(0, 0, 0, 0)``."""
        rows = [
            (x, y, x + c.shape[1], y + c.shape[0]) if c.numel() else (0, 0, 0, 0)
            for c, (y, x) in zip(self.crops, self.origins, strict=True)
        ]
        return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)

    def areas(self) -> Tensor:
        """int64 ``[N]``: pixels in each mask."""
        return torch.tensor([int(c.sum()) for c in self.crops], dtype=torch.int64)

    def mask(self, k: int) -> Tensor:
        """bool ``[H, W]``: mask ``k`` at full size."""
        out = torch.zeros(self.image_size, dtype=torch.bool, device=self.device)
        crop, (y, x) = self.crops[k], self.origins[k]
        out[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
        return out

    def dense(self) -> Tensor:
        """bool ``[N, H, W]`` on the crops' device, stored column by column (``[N, W, H]`` transposed:
        the order of COCO's RLE, so :func:`maskrcnn.ops.rle_encode` reads it without a copy)."""
        height, width = self.image_size
        out = torch.zeros((len(self), width, height), dtype=torch.bool, device=self.device)
        for k, (crop, (y, x)) in enumerate(self):
            out[k, x : x + crop.shape[1], y : y + crop.shape[0]] = crop.T
        return out.transpose(1, 2)

    def union(self) -> Tensor:
        """bool ``[H, W]``: the pixels inside any mask."""
        out = torch.zeros(self.image_size, dtype=torch.bool, device=self.device)
        for crop, (y, x) in self:
            out[y : y + crop.shape[0], x : x + crop.shape[1]] |= crop
        return out

    def rle(self) -> list[dict[str, Any]]:
        """Compressed COCO RLE of each mask, as :func:`maskrcnn.ops.rle_encode` gives for :meth:`dense`
        (``{"size": [H, W], "counts": str}``), computed from the crops alone.

        COCO's RLE runs through the image column by column (pixel ``(y, x)`` is number ``x * H + y``) and
        counts the pixels between changes, starting with the background. Inside a crop's column the
        changes are where the column's value changes, with background above and below it; a crop as
        tall as the image continues into the next column, where an end and a start at one position
        cancel.
        """
        height, width = self.image_size
        total = height * width
        results = []
        for crop, (y0, x0) in self:
            h, w = crop.shape
            if not crop.numel():
                counts = np.array([total], dtype=np.int64)
            else:
                columns = np.zeros((w, h + 2), dtype=np.bool_)
                columns[:, 1:-1] = crop.cpu().numpy().T
                # Flat positions of the changes, column by column and rows in order (a boolean
                # comparison and flatnonzero: several times faster than diff and a 2-d nonzero).
                c, r = np.divmod(np.flatnonzero(columns[:, 1:] != columns[:, :-1]), h + 1)
                changes = (x0 + c).astype(np.int64) * height + y0 + r
                if h == height:
                    changes, times = np.unique(changes, return_counts=True)
                    changes = changes[times % 2 == 1]
                counts = np.diff(np.concatenate(([0], changes, [total])))
                if counts[-1] == 0:  # the mask ends on the image's last pixel: no background run after it
                    counts = counts[:-1]
            rle = coco_mask.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
            results.append({"size": [height, width], "counts": rle["counts"].decode("ascii")})
        return results


def _tight(mask: Tensor, y: int, x: int) -> tuple[Tensor, tuple[int, int]]:
    """A bool ``[h, w]`` mask at ``(y, x)`` shrunk to its extent (``[0, 0]`` at ``(0, 0)`` when empty)."""
    if not mask.numel():
        return mask.new_zeros((0, 0)), (0, 0)
    # Bool reduced as bytes: amax is several times faster than any() on large masks.
    bytes_ = mask.view(torch.uint8)
    rows = torch.nonzero(bytes_.amax(dim=1)).flatten()
    if not len(rows):
        return mask.new_zeros((0, 0)), (0, 0)
    cols = torch.nonzero(bytes_.amax(dim=0)).flatten()
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return mask[r0:r1, c0:c1], (y + r0, x + c0)
