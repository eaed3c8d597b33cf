"""RoIAlign (He et al., Mask R-CNN, 2017) in pure PyTorch.

The semantics are those of the Detectron / torchvision kernels, to the sample:

* a RoI ``(x1, y1, x2, y2)`` is scaled by ``spatial_scale`` (and shifted by -0.5 pixel when
  ``aligned=True``; with ``aligned=False`` its width and height are forced to at least 1);
* it is cut into ``output_size`` bins, and each bin averages bilinear samples taken on a regular
  ``grid_h x grid_w`` grid at the centres of its sub-cells, where the grid is ``sampling_ratio`` per axis,
  or ``ceil(roi_size / output_size)`` per axis when ``sampling_ratio <= 0`` (adaptive);
* a sample with ``y < -1``, ``y > H``, ``x < -1`` or ``x > W`` contributes 0; other samples are clamped
  to the map (``y <= 0`` reads row 0, ``y >= H - 1`` reads row ``H - 1``);
* the bin value is the sum of its samples divided by ``max(grid_h * grid_w, 1)``.

How it is computed: bilinear interpolation is linear in the feature map, so every output value is a
weighted sum of at most ``4 * grid_h * grid_w`` feature-map pixels ("taps"). The feature map is viewed as
a ``[N * H * W, C]`` table (channels last) and each bin as a bag of taps with per-tap weights, and
``torch.nn.functional.embedding_bag(mode="sum")`` gathers and sums them in one fused kernel, on CPU
and CUDA, with its own backward (a scatter-add into the table). Taps are built RoI-chunk by RoI-chunk
so memory stays bounded for huge RoIs with adaptive sampling, and no RoI ever copies the feature map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["convert_boxes_to_roi_format", "roi_align"]

# Most taps (index + weight pairs) built at once: ~2M taps is ~25 MB of indices and weights, whatever
# the RoI sizes. Larger inputs are processed in chunks of output rows.
_MAX_TAPS_PER_CHUNK = 1 << 21


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if len(size) == 1:
        return int(size[0]), int(size[0])
    if len(size) != 2:
        raise ValueError(f"output_size must be an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def convert_boxes_to_roi_format(boxes: Sequence[Tensor]) -> Tensor:
    """Concatenate per-image boxes into the ``[K, 5]`` ``(batch_index, x1, y1, x2, y2)`` RoI format.

    Args:
        boxes: per image ``i``, a ``[L_i, 4]`` tensor of xyxy boxes.

    Returns:
        ``[sum L_i, 5]`` RoIs in the dtype and device of the first tensor.
    """
    if len(boxes) == 0:
        raise ValueError(
            "convert_boxes_to_roi_format: expected a list with one [L, 4] tensor per image, got []"
        )
    first = boxes[0]
    rows = []
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes[{i}] must have shape [L, 4], got {list(b.shape)}")
        b = b.to(dtype=first.dtype, device=first.device)
        rows.append(torch.cat([torch.full_like(b[:, :1], i), b], dim=1))
    return torch.cat(rows, dim=0)


def _check_rois(rois: Tensor | Sequence[Tensor]) -> Tensor:
    if isinstance(rois, Tensor):
        if rois.dim() != 2 or rois.shape[1] != 5:
            raise ValueError(
                f"rois must be a [K, 5] tensor (batch_index, x1, y1, x2, y2) or a list of [L, 4] tensors, "
                f"got a tensor of shape {list(rois.shape)}"
            )
        return rois
    return convert_boxes_to_roi_format(rois)


def roi_align(
    input: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign with torchvision's signature and semantics (see the module docstring).

    Args:
        input: ``[N, C, H, W]`` feature map (any float dtype; channels-last memory avoids one copy).
        boxes: ``[K, 5]`` RoIs ``(batch_index, x1, y1, x2, y2)`` in input-image pixels, or a list of
            ``N`` tensors ``[L_i, 4]`` (then ``K = sum L_i``, in list order).
        output_size: ``(PH, PW)`` or an int for both.
        spatial_scale: feature-map pixels per input-image pixel, e.g. ``1/4`` for an FPN P2 map.
        sampling_ratio: samples per bin per axis; ``<= 0`` picks ``ceil(roi_size / output_size)``.
        aligned: shift the RoI by half a pixel so that pixel centres line up (Detectron2's fix).

    Returns:
        ``[K, C, PH, PW]`` pooled features, in ``input``'s dtype and device. Differentiable with
        respect to ``input`` (not the boxes, as in torchvision).
    """
    rois = _check_rois(boxes)
    if input.dim() != 4:
        raise ValueError(f"roi_align: input must be [N, C, H, W], got shape {list(input.shape)}")
    h, w = input.shape[-2:]
    table = feature_table(input)
    num_rois = rois.shape[0]
    dev = input.device
    batch_index = rois[:, 0].detach().to(device=dev, dtype=torch.int64)
    pooled = pool_rois_from_table(
        table,
        rois[:, 1:].detach().to(dev),
        row_offset=batch_index * (h * w),
        height=torch.full((num_rois,), h, dtype=torch.int64, device=dev),
        width=torch.full((num_rois,), w, dtype=torch.int64, device=dev),
        spatial_scale=torch.full((num_rois,), float(spatial_scale), dtype=torch.float64, device=dev),
        output_size=_pair(output_size),
        sampling_ratio=sampling_ratio,
        aligned=aligned,
    )
    return to_input_layout(pooled, input)


def to_input_layout(pooled: Tensor, like: Tensor) -> Tensor:
    """``[K, PH, PW, C]`` pooled rows as ``[K, C, PH, PW]``, in the memory format of the map ``like``.

    Channels-last maps (the model's) get a free channels-last view; NCHW maps get an NCHW copy, as the
    reference kernels return.
    """
    out = pooled.permute(0, 3, 1, 2)
    channels_last = like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous()
    return out if channels_last else out.contiguous()


def feature_table(feature: Tensor) -> Tensor:
    """View an ``[N, C, H, W]`` map as the ``[N * H * W, C]`` table of pixels that RoIAlign gathers from.

    Free for a channels-last map (which the model produces); an NCHW map is converted to channels-last
    first, the fastest of the transposing copies (a plain ``.contiguous()`` of the permuted view is
    about half as fast).
    """
    n, c, h, w = feature.shape
    return feature.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(n * h * w, c)


def _axis_taps(coord: Tensor, size: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bilinear taps along one axis, with the kernels' border rules.

    Args:
        coord: ``[R, P, G]`` sample coordinates (``R`` rows of RoIs or bins, ``P`` bins, ``G`` samples).
        size: ``[R, 1, 1]`` length of the axis (H or W) for each row.

    Returns:
        ``(low, high, w_low, w_high)``, each ``[R, P, G]``: the two pixel indices and their weights,
        weights zeroed for samples outside ``[-1, size]``.
    """
    valid = (coord >= -1.0) & (coord <= size)
    # Clamping to [0, size] first keeps the integer conversion in range for far-away samples, whose
    # weights are zero anyway.
    c = torch.minimum(coord.clamp(min=0.0), size.to(coord.dtype))
    low = c.to(torch.int64)  # c >= 0, so truncation is floor, as in the C++ `(int) y`
    last = size - 1
    at_edge = low >= last
    low = torch.where(at_edge, last, low)
    high = torch.where(at_edge, low, low + 1)
    c = torch.where(at_edge, low.to(c.dtype), c)
    frac = c - low.to(c.dtype)
    w_low = torch.where(valid, 1.0 - frac, 0.0)
    w_high = torch.where(valid, frac, 0.0)
    return low, high, w_low, w_high


def _merged_axis_taps(coord: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
    """Bilinear taps of all the samples of a bin along one axis, with repeated pixels merged.

    When the samples of a bin are close together (small bins: FPN levels are chosen so that bins are
    1-2 pixels), their low/high pixels overlap; merging them turns ``2 * G`` taps into about
    ``bin size + 2``. When the samples are far apart (a large bin with a fixed sampling ratio), the
    pixels between them are unused and the ``2 * G`` separate taps are returned instead.

    Args:
        coord: ``[R, P, G]`` sample coordinates (``G`` samples for each of ``P`` bins).
        size: ``[R, 1, 1]`` length of the axis.

    Returns:
        ``(index, weight)``, each ``[R, P, T]`` with ``T <= 2 * G``: pixel indices and their weights.
    """
    low, high, w_low, w_high = _axis_taps(coord, size)
    first = low.amin(dim=-1, keepdim=True)
    taps = int((high.amax(dim=-1, keepdim=True) - first).max()) + 1
    if taps >= 2 * coord.shape[-1]:
        return torch.cat((low, high), dim=-1), torch.cat((w_low, w_high), dim=-1)
    weight = coord.new_zeros((*coord.shape[:-1], taps))
    weight.scatter_add_(-1, low - first, w_low).scatter_add_(-1, high - first, w_high)
    index = torch.minimum(first + torch.arange(taps, device=coord.device), size - 1)
    return index, weight


def pool_rois_from_table(
    table: Tensor,
    rois: Tensor,
    *,
    row_offset: Tensor,
    height: Tensor,
    width: Tensor,
    spatial_scale: Tensor,
    output_size: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """RoIAlign of RoIs that may each read a different feature map stored in one table.

    This is the engine behind :func:`roi_align` and ``MultiScaleRoIAlign`` (called once per FPN level
    with that level's RoIs). Map sizes and offsets are per RoI, so several maps concatenated into one
    table can also be pooled in a single call.

    Args:
        table: ``[R, C]`` feature rows: pixel ``(y, x)`` of RoI ``k``'s map is row
            ``row_offset[k] + y * width[k] + x``.
        rois: ``[K, 4]`` xyxy boxes in input-image pixels.
        row_offset: ``int64[K]`` first table row of each RoI's ``H x W`` map.
        height: ``int64[K]`` map height per RoI.
        width: ``int64[K]`` map width per RoI.
        spatial_scale: ``float64[K]`` map pixels per image pixel per RoI.
        output_size: ``(PH, PW)``.
        sampling_ratio: samples per bin per axis, or ``<= 0`` for adaptive.
        aligned: half-pixel shift (see :func:`roi_align`).

    Returns:
        ``[K, PH, PW, C]`` pooled features in ``table``'s dtype (channels last: ``permute(0, 3, 1, 2)``
        gives the ``[K, C, PH, PW]`` result as a channels-last tensor).
    """
    ph, pw = output_size
    num_rois, channels = rois.shape[0], table.shape[1]
    if num_rois == 0:
        return table.new_zeros((0, ph, pw, channels))
    # Sample positions in at least float32 (float64 for float64 maps): half-precision coordinates would
    # put samples on the wrong pixels.
    coord_dtype = torch.float64 if table.dtype == torch.float64 else torch.float32
    offset = 0.5 if aligned else 0.0
    boxes = rois.to(coord_dtype) * spatial_scale.to(coord_dtype)[:, None] - offset
    roi_w = boxes[:, 2] - boxes[:, 0]
    roi_h = boxes[:, 3] - boxes[:, 1]
    if not aligned:
        # The original RoIAlign forces malformed RoIs to be at least 1x1.
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = roi_h / ph
    bin_w = roi_w / pw
    if sampling_ratio > 0:
        grid_h = torch.full((num_rois,), sampling_ratio, dtype=torch.int64, device=rois.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(bin_h).clamp(min=0).to(torch.int64)
        grid_w = torch.ceil(bin_w).clamp(min=0).to(torch.int64)

    pieces: list[Tensor] = []
    piece_rows: list[Tensor] = []
    # RoIs with the same sampling grid share one vectorised pass; with a fixed sampling_ratio there is
    # exactly one group.
    keys = grid_h * (int(grid_w.max()) + 1) + grid_w
    unique_keys = torch.unique(keys)
    single_group = unique_keys.numel() == 1
    for key in unique_keys.tolist():
        members = torch.arange(num_rois, device=rois.device) if single_group else torch.where(keys == key)[0]
        gh, gw = int(grid_h[members[0]]), int(grid_w[members[0]])
        # One "row" is one RoI's row of PW bins; chunk rows so a chunk holds at most _MAX_TAPS_PER_CHUNK
        # taps, and split the samples of a row when even one row is larger than that (huge RoIs with
        # adaptive sampling): partial sums of a bin add up to the bin since weights include 1/count.
        taps_per_sample_row = max(pw * 4 * gw, 1)
        samples_per_chunk = max(min(gh, _MAX_TAPS_PER_CHUNK // taps_per_sample_row), 1)
        rows_per_chunk = max(_MAX_TAPS_PER_CHUNK // (taps_per_sample_row * max(gh, 1)), 1)
        rows = (members[:, None] * ph + torch.arange(ph, device=rois.device)).reshape(-1)
        for start in range(0, rows.numel(), rows_per_chunk):
            chunk = rows[start : start + rows_per_chunk]
            parts = [
                _pool_rows(
                    table,
                    chunk,
                    boxes,
                    bin_h,
                    bin_w,
                    row_offset,
                    height,
                    width,
                    ph,
                    pw,
                    gh,
                    gw,
                    range(iy0, min(iy0 + samples_per_chunk, gh)),
                )
                for iy0 in range(0, max(gh, 1), samples_per_chunk)
            ]
            pooled = parts[0]
            for part in parts[1:]:
                pooled = pooled + part
            pieces.append(pooled)
            piece_rows.append(chunk)

    out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)  # [K*PH*PW, C] in piece order
    if not single_group:
        order = torch.cat(piece_rows)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        out = out.view(-1, pw, channels)[inverse]
    return out.reshape(num_rois, ph, pw, channels)


def _pool_rows(
    table: Tensor,
    rows: Tensor,
    boxes: Tensor,
    bin_h: Tensor,
    bin_w: Tensor,
    row_offset: Tensor,
    height: Tensor,
    width: Tensor,
    ph: int,
    pw: int,
    gh: int,
    gw: int,
    sample_rows: range,
) -> Tensor:
    """Pool ``rows`` (``roi * PH + bin_row``) whose RoIs all use a ``gh x gw`` sampling grid.

    Only the sample rows ``sample_rows`` (a sub-range of ``range(gh)``) are summed, each weighted by
    ``1 / (gh * gw)``, so the partial results over a partition of ``range(gh)`` add up to the bins.

    Returns:
        ``[len(rows) * PW, C]`` pooled values, row-major over ``(row, bin_col)``.
    """
    channels = table.shape[1]
    num_rows = rows.numel()
    if len(sample_rows) == 0 or gw == 0:
        # An empty sampling grid (a zero-size RoI with aligned=True and adaptive sampling) averages
        # nothing: the kernels output 0.
        return table.new_zeros((num_rows * pw, channels))
    roi = rows // ph
    bin_row = (rows % ph).to(boxes.dtype)
    dev, dtype = boxes.device, boxes.dtype
    sub_y = (torch.arange(sample_rows.start, sample_rows.stop, device=dev, dtype=dtype) + 0.5)[None, None, :]
    sub_x = (torch.arange(gw, device=dev, dtype=dtype) + 0.5)[None, None, :]
    bins_x = torch.arange(pw, device=dev, dtype=dtype)[None, :, None]
    bh = bin_h[roi][:, None, None]
    bw = bin_w[roi][:, None, None]
    # Same operation order as the C++ kernel: start + p * bin + (i + .5) * bin / grid.
    y = boxes[roi, 1][:, None, None] + bin_row[:, None, None] * bh + sub_y * bh / gh  # [R, 1, gh]
    x = boxes[roi, 0][:, None, None] + bins_x * bw + sub_x * bw / gw  # [R, PW, gw]

    ys, wy = _merged_axis_taps(y, height[roi][:, None, None])  # [R, 1, Ty]
    xs, wx = _merged_axis_taps(x, width[roi][:, None, None])  # [R, PW, Tx]
    ys, wy = ys[:, :, :, None], wy[:, :, :, None]
    xs, wx = xs[:, :, None, :], wx[:, :, None, :]

    base = row_offset[roi][:, None, None, None]
    index = (base + ys * width[roi][:, None, None, None] + xs).reshape(num_rows * pw, -1)
    weight = (wy * wx) * (1.0 / (gh * gw))
    weight = weight.reshape(num_rows * pw, -1).to(table.dtype)
    return F.embedding_bag(index, table, per_sample_weights=weight, mode="sum")
