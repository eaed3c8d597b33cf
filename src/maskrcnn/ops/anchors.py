"""Anchor boxes over the locations of each feature map (Faster R-CNN's "reference boxes")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from maskrcnn.structures import ImageList

__all__ = ["AnchorGenerator"]


def _floats(values: Sequence[float] | Sequence[Sequence[float]]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)  # type: ignore[arg-type]


def _per_level(values: Sequence[Sequence[float]] | Sequence[float]) -> tuple[tuple[float, ...], ...]:
    """``((a, b), (c,))`` as is; a flat ``(a, b)`` as one value per level, ``((a,), (b,))``."""
    if isinstance(values[0], (list, tuple)):
        return tuple(_floats(level) for level in values)  # type: ignore[arg-type]
    return tuple((float(v),) for v in values)  # type: ignore[arg-type]


class AnchorGenerator(nn.Module):
    """Anchors for every location of every feature map, torchvision's ``AnchorGenerator``.

    Level ``l`` has ``len(sizes[l]) * len(aspect_ratios[l])`` base ("cell") anchors centred on the origin:
    for aspect ratio ``r = h / w`` and size ``s``, ``w = s / sqrt(r)`` and ``h = s * sqrt(r)``, rounded to
    whole pixels (the rounding of the reference implementation, which trained weights expect). They are
    repeated at every location ``(x * stride_w, y * stride_h)`` of the level's map, where the stride is
    the padded image size divided by the map size.

    Anchor order, which the RPN head's outputs must follow: location-major (row-major over ``y, x``),
    then aspect ratio, then size.

    Args:
        sizes: per level, the anchor sizes in pixels (e.g. ``((32,), (64,), (128,), (256,), (512,))`` for
            FPN); a flat tuple means one size per level.
        aspect_ratios: per level, the height/width ratios; a flat tuple, or a single level, is used for
            every level.
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[float]] | Sequence[float] = ((128, 256, 512),),
        aspect_ratios: Sequence[Sequence[float]] | Sequence[float] = ((0.5, 1.0, 2.0),),
    ) -> None:
        super().__init__()
        self.sizes = _per_level(sizes)
        ratios = (
            _per_level(aspect_ratios)
            if isinstance(aspect_ratios[0], (list, tuple))
            else (_floats(aspect_ratios),)
        )
        # A flat tuple, or a single level, of aspect ratios serves every level of sizes.
        self.aspect_ratios = ratios * len(self.sizes) if len(ratios) == 1 else ratios
        if len(self.sizes) != len(self.aspect_ratios):
            raise ValueError(
                f"AnchorGenerator: {len(self.sizes)} levels of sizes but "
                f"{len(self.aspect_ratios)} levels of aspect ratios"
            )
        self.cell_anchors = [
            self.generate_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios, strict=True)
        ]

    @staticmethod
    def generate_anchors(
        scales: Sequence[float],
        aspect_ratios: Sequence[float],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Base anchors of one level.

        Returns:
            ``[len(aspect_ratios) * len(scales), 4]`` xyxy boxes centred on ``(0, 0)``.
        """
        scales_t = torch.as_tensor(scales, dtype=dtype, device=device)
        ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales_t[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * scales_t[None, :]).reshape(-1)
        return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()

    def num_anchors_per_location(self) -> list[int]:
        """Anchors at each location, per level."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios, strict=True)]

    def grid_anchors(
        self,
        grid_sizes: Sequence[tuple[int, int]],
        strides: Sequence[tuple[int, int]],
        dtype: torch.dtype,
        device: torch.device,
    ) -> list[Tensor]:
        """Anchors over each level's grid.

        Args:
            grid_sizes: per level, ``(h, w)`` of the feature map.
            strides: per level, ``(stride_h, stride_w)`` in image pixels.

        Returns:
            per level, ``[h * w * A, 4]`` anchors.
        """
        if len(grid_sizes) != len(self.cell_anchors):
            raise ValueError(
                f"AnchorGenerator: got {len(grid_sizes)} feature maps but anchors were configured for "
                f"{len(self.cell_anchors)} levels (sizes={self.sizes})"
            )
        anchors = []
        for (gh, gw), (sh, sw), base in zip(grid_sizes, strides, self.cell_anchors, strict=True):
            base = base.to(dtype=dtype, device=device)
            shifts_x = torch.arange(gw, dtype=torch.int32, device=device) * sw
            shifts_y = torch.arange(gh, dtype=torch.int32, device=device) * sh
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            anchors.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        return anchors

    def forward(self, image_list: ImageList, feature_maps: Sequence[Tensor]) -> list[Tensor]:
        """Anchors of every image of the batch.

        Args:
            image_list: the padded batch (its padded size sets the strides).
            feature_maps: per level, ``[N, C, h_l, w_l]``.

        Returns:
            per image, ``[sum_l h_l * w_l * A_l, 4]`` anchors (the same for every image of a batch).
        """
        image_h, image_w = image_list.tensors.shape[-2:]
        grid_sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in feature_maps]
        strides = [(image_h // gh, image_w // gw) for gh, gw in grid_sizes]
        first = feature_maps[0]
        per_level = self.grid_anchors(grid_sizes, strides, first.dtype, first.device)
        all_levels = torch.cat(per_level)
        return [all_levels for _ in image_list.image_sizes]
