"""RoIAlign over an FPN pyramid: each RoI is pooled from the level that matches its size."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from maskrcnn.ops.boxes import box_area
from maskrcnn.ops.roi_align import (
    _pair,
    convert_boxes_to_roi_format,
    feature_table,
    pool_rois_from_table,
    to_input_layout,
)

__all__ = ["LevelMapper", "MultiScaleRoIAlign", "infer_scale"]


def infer_scale(feature: Tensor, original_size: Sequence[int]) -> float:
    """The power of two closest to ``feature height / image height`` (e.g. 0.25 for P2).

    Args:
        feature: ``[N, C, h, w]`` feature map.
        original_size: ``(H, W)`` of the (padded) input batch.
    """
    approx = feature.shape[-2] / original_size[0]
    return 2.0 ** round(math.log2(approx))


class LevelMapper:
    """Assigns each RoI to an FPN level with Eq. 1 of the FPN paper (Lin et al., 2017).

    ``k = floor(k0 + log2(sqrt(area) / s0) + eps)``, clamped to ``[k_min, k_max]``: a 224x224 RoI goes to
    the canonical level ``k0 = 4``, one half that size to level 3, and so on.

    Args:
        k_min: finest level available (2 for P2).
        k_max: coarsest level available (5 for P5).
        canonical_scale: ``s0``, the RoI size that maps to ``canonical_level``.
        canonical_level: ``k0``.
        eps: keeps exact powers of two (e.g. a 112x112 RoI) from falling to the level below through
            rounding in ``log2``.
    """

    def __init__(
        self,
        *,
        k_min: int,
        k_max: int,
        canonical_scale: int = 224,
        canonical_level: int = 4,
        eps: float = 1e-6,
    ) -> None:
        self.k_min = k_min
        self.k_max = k_max
        self.s0 = canonical_scale
        self.lvl0 = canonical_level
        self.eps = eps

    def __call__(self, boxlists: Sequence[Tensor]) -> Tensor:
        """Level index (0 = ``k_min``) of every box.

        Args:
            boxlists: per image, ``[L_i, 4]`` xyxy boxes in image pixels.

        Returns:
            ``int64[sum L_i]`` in ``[0, k_max - k_min]``.
        """
        s = torch.sqrt(torch.cat([box_area(b) for b in boxlists]))
        levels = torch.floor(self.lvl0 + torch.log2(s / self.s0) + torch.tensor(self.eps, dtype=s.dtype))
        # Inverted boxes have a negative area and a NaN size: send them to the finest level rather than
        # to an undefined integer.
        levels = torch.nan_to_num(levels, nan=float(self.k_min)).clamp(min=self.k_min, max=self.k_max)
        return levels.to(torch.int64) - self.k_min


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign over several feature maps, torchvision's ``MultiScaleRoIAlign``.

    Each RoI is pooled from one level chosen by :class:`LevelMapper`; the level scales are inferred from
    the feature-map sizes relative to the largest image in the batch. Each level is pooled once, for all
    its RoIs, from a channels-last view of its map, and the rows are written into place, so the output
    comes out in input order.

    Args:
        featmap_names: keys of the feature dict to pool from, finest (largest map) first.
        output_size: ``(PH, PW)`` or an int.
        sampling_ratio: samples per bin per axis (``<= 0``: adaptive).
        canonical_scale: see :class:`LevelMapper`.
        canonical_level: see :class:`LevelMapper`.
        aligned: half-pixel-aligned RoIAlign (torchvision's Mask R-CNN uses ``False``).
    """

    def __init__(
        self,
        featmap_names: Sequence[str],
        output_size: int | Sequence[int],
        sampling_ratio: int,
        *,
        canonical_scale: int = 224,
        canonical_level: int = 4,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        if len(featmap_names) == 0:
            raise ValueError("MultiScaleRoIAlign: featmap_names is empty")
        self.featmap_names = list(featmap_names)
        self.output_size = _pair(output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level
        self.aligned = aligned

    def extra_repr(self) -> str:
        return (
            f"featmap_names={self.featmap_names}, output_size={self.output_size}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )

    def forward(
        self, x: dict[str, Tensor], boxes: Sequence[Tensor], image_shapes: Sequence[tuple[int, int]]
    ) -> Tensor:
        """Pool every box from its level.

        Args:
            x: feature maps ``name -> [N, C, H_l, W_l]`` (extra keys are ignored).
            boxes: per image, ``[L_i, 4]`` xyxy boxes in (resized) image pixels.
            image_shapes: per image, ``(height, width)`` before padding.

        Returns:
            ``[sum L_i, C, PH, PW]``, channels-last in memory when the maps are.
        """
        missing = [name for name in self.featmap_names if name not in x]
        if missing:
            raise KeyError(f"MultiScaleRoIAlign: feature maps {missing} not found; have {list(x)}")
        features = [x[name] for name in self.featmap_names]
        original_size = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
        scales = [infer_scale(f, original_size) for f in features]
        levels_k = [-math.log2(s) for s in scales]
        if any(b - a != 1 for a, b in itertools.pairwise(levels_k)):
            raise ValueError(
                f"MultiScaleRoIAlign: feature maps {self.featmap_names} have scales {scales}; they must "
                "halve from one level to the next, finest first"
            )

        first = features[0]
        device = first.device
        rois = convert_boxes_to_roi_format([b.detach() for b in boxes]).to(device)
        if len(features) == 1:
            level = torch.zeros(rois.shape[0], dtype=torch.int64, device=device)
        else:
            mapper = LevelMapper(
                k_min=round(levels_k[0]),
                k_max=round(levels_k[-1]),
                canonical_scale=self.canonical_scale,
                canonical_level=self.canonical_level,
            )
            level = mapper(list(boxes)).to(device)

        # Pool level by level from each map's [N*H*W, C] table (a free view of channels-last maps, which
        # the model produces; NCHW maps are transposed once), writing each level's rows into place.
        batch_index = rois[:, 0].to(torch.int64)
        ph, pw = self.output_size
        out = first.new_zeros((rois.shape[0], ph, pw, first.shape[1]))
        for lvl, (feature, scale) in enumerate(zip(features, scales, strict=True)):
            idx = torch.where(level == lvl)[0]
            if idx.numel() == 0:
                continue
            h, w = feature.shape[-2:]
            k = idx.numel()
            pooled = pool_rois_from_table(
                feature_table(feature),
                rois[idx, 1:],
                row_offset=batch_index[idx] * (h * w),
                height=torch.full((k,), h, dtype=torch.int64, device=device),
                width=torch.full((k,), w, dtype=torch.int64, device=device),
                spatial_scale=torch.full((k,), scale, dtype=torch.float64, device=device),
                output_size=self.output_size,
                sampling_ratio=self.sampling_ratio,
                aligned=self.aligned,
            )
            out = pooled if k == rois.shape[0] else out.index_copy_(0, idx, pooled)
        return to_input_layout(out, first)
