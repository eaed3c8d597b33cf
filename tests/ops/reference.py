"""Slow, obvious reference implementations that the vectorised ops are checked against."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def roi_align_loop(
    features: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """A transcription of the Detectron/torchvision CPU kernel, one sample at a time, in float64."""
    feat = features.detach().double().numpy()
    boxes = rois.detach().double().numpy()
    ph_n, pw_n = output_size
    n_rois = boxes.shape[0]
    channels, height, width = feat.shape[1:]
    out = np.zeros((n_rois, channels, ph_n, pw_n))
    offset = 0.5 if aligned else 0.0

    def bilinear(img: np.ndarray, y: float, x: float) -> np.ndarray:
        if y < -1.0 or y > height or x < -1.0 or x > width:
            return np.zeros(channels)
        y = max(y, 0.0)
        x = max(x, 0.0)
        y_low, x_low = int(y), int(x)
        if y_low >= height - 1:
            y_high = y_low = height - 1
            y = float(y_low)
        else:
            y_high = y_low + 1
        if x_low >= width - 1:
            x_high = x_low = width - 1
            x = float(x_low)
        else:
            x_high = x_low + 1
        ly, lx = y - y_low, x - x_low
        hy, hx = 1.0 - ly, 1.0 - lx
        return (
            hy * hx * img[:, y_low, x_low]
            + hy * lx * img[:, y_low, x_high]
            + ly * hx * img[:, y_high, x_low]
            + ly * lx * img[:, y_high, x_high]
        )

    for k in range(n_rois):
        b = int(boxes[k, 0])
        x1, y1, x2, y2 = (boxes[k, 1:] * spatial_scale - offset).tolist()
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / ph_n, roi_w / pw_n
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph_n)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw_n)
        count = max(grid_h * grid_w, 1)
        for ph in range(ph_n):
            for pw in range(pw_n):
                acc = np.zeros(channels)
                for iy in range(grid_h):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        acc += bilinear(feat[b], y, x)
                out[k, :, ph, pw] = acc / count
    return torch.from_numpy(out)


def nms_loop(boxes: Tensor, scores: Tensor, threshold: float, groups: Tensor | None = None) -> Tensor:
    """Greedy NMS, one box at a time, with the same IoU arithmetic (and dtype) as the reference kernels.

    Ties in score are visited in index order. With ``groups``, only boxes of one group suppress each other.
    """
    b = boxes.numpy()
    order = np.argsort(-scores.numpy(), kind="stable")
    g = np.zeros(len(b), dtype=np.int64) if groups is None else groups.numpy()
    x1, y1, x2, y2 = b.T
    area = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(b), dtype=bool)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[pos + 1 :]
        rest = rest[(g[rest] == g[i]) & ~suppressed[rest]]
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (area[i] + area[rest] - inter)
        suppressed[rest[iou > np.asarray(threshold, dtype=b.dtype)]] = True
    return torch.tensor(keep, dtype=torch.int64)
