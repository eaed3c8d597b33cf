"""Keypoint branch of the RoI heads (the paper's pose extension): pooled RoI features -> one ``56 x 56``
heatmap per keypoint, trained as a one-hot mask with a softmax over its positions.

Module names follow torchvision (``keypoint_head.0``, ``keypoint_head.2``... convolutions with ReLUs
between them, ``keypoint_predictor.kps_score_lowres``), so its ``keypointrcnn_resnet50_fpn`` checkpoints
load as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "KeypointRCNNHeads",
    "KeypointRCNNPredictor",
    "heatmaps_to_keypoints",
    "keypointrcnn_loss",
    "keypoints_to_heatmap",
]


class KeypointRCNNHeads(nn.Sequential):
    """``len(layers)`` 3x3 convolutions, each followed by a ReLU (eight of 512 channels in the paper),
    keeping the ``14 x 14`` RoI size.

    Args:
        in_channels: channels of the pooled features.
        layers: output channels of each convolution.
    """

    def __init__(self, in_channels: int, layers: Sequence[int]) -> None:
        modules: list[nn.Module] = []
        previous = in_channels
        for channels in layers:
            modules.append(nn.Conv2d(previous, channels, 3, stride=1, padding=1))
            modules.append(nn.ReLU(inplace=True))
            previous = channels
        super().__init__(*modules)
        self.out_channels = previous
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)


class KeypointRCNNPredictor(nn.Module):
    """A stride-2 transposed convolution to one map per keypoint, then 2x bilinear upsampling:
    ``[K, C, 14, 14]`` -> ``[K, num_keypoints, 56, 56]`` logits.

    Args:
        in_channels: channels of the keypoint head's output.
        num_keypoints: keypoints per object.
    """

    def __init__(self, in_channels: int, num_keypoints: int) -> None:
        super().__init__()
        kernel = 4
        self.kps_score_lowres = nn.ConvTranspose2d(
            in_channels, num_keypoints, kernel, stride=2, padding=kernel // 2 - 1
        )
        nn.init.kaiming_normal_(self.kps_score_lowres.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.kps_score_lowres.bias)
        self.up_scale = 2
        self.out_channels = num_keypoints

    def forward(self, x: Tensor) -> Tensor:
        x = self.kps_score_lowres(x)
        return F.interpolate(
            x, scale_factor=float(self.up_scale), mode="bilinear", align_corners=False,
            recompute_scale_factor=False,
        )  # fmt: skip


def keypoints_to_heatmap(keypoints: Tensor, rois: Tensor, heatmap_size: int) -> tuple[Tensor, Tensor]:
    """The heatmap cell of each keypoint in its proposal's ``S x S`` grid, and whether it can be learnt.

    A keypoint in cell ``(row, col)`` becomes the class ``row * S + col`` of a softmax over the ``S * S``
    positions; one exactly on the box's right or bottom edge belongs to the last cell.

    Args:
        keypoints: ``[P, K, 3]`` ``(x, y, v)`` of each proposal's matched object, image pixels.
        rois: ``[P, 4]`` proposals (xyxy).
        heatmap_size: ``S``.

    Returns:
        ``int64 [P, K]`` target positions (0 where not valid) and ``int64 [P, K]`` validity: the keypoint
        is labelled (``v > 0``) and inside its proposal.
    """
    offset_x, offset_y = rois[:, 0, None], rois[:, 1, None]
    scale_x = heatmap_size / (rois[:, 2] - rois[:, 0])[:, None]
    scale_y = heatmap_size / (rois[:, 3] - rois[:, 1])[:, None]
    x, y = keypoints[..., 0], keypoints[..., 1]
    on_right = x == rois[:, 2, None]
    on_bottom = y == rois[:, 3, None]
    col = ((x - offset_x) * scale_x).floor().long()
    row = ((y - offset_y) * scale_y).floor().long()
    col[on_right] = heatmap_size - 1
    row[on_bottom] = heatmap_size - 1
    inside = (col >= 0) & (row >= 0) & (col < heatmap_size) & (row < heatmap_size)
    valid = (inside & (keypoints[..., 2] > 0)).long()
    return (row * heatmap_size + col) * valid, valid


def keypointrcnn_loss(
    keypoint_logits: Tensor,
    proposals: Sequence[Tensor],
    gt_keypoints: Sequence[Tensor],
    matched_idxs: Sequence[Tensor],
) -> Tensor:
    """Cross-entropy of each labelled keypoint's position over its heatmap's ``S * S`` positions.

    Only keypoints that are labelled and fall inside their proposal count (the paper: "visible
    keypoints only"); the mean is over them.

    Args:
        keypoint_logits: ``[P, K, S, S]`` for the positive proposals of all images.
        proposals: per image ``[P_i, 4]`` positive proposals.
        gt_keypoints: per image ``[G_i, K, 3]``.
        matched_idxs: per image ``int64[P_i]`` ground truth of each proposal.

    Returns:
        the mean loss (0, still back-propagating, when no keypoint can be learnt).
    """
    p, k, h, w = keypoint_logits.shape
    if h != w:
        raise ValueError(f"keypointrcnn_loss: heatmaps must be square, got {h}x{w}")
    targets, valid = [], []
    for boxes, keypoints, idx in zip(proposals, gt_keypoints, matched_idxs, strict=True):
        t, v = keypoints_to_heatmap(keypoints[idx].to(boxes.dtype), boxes, h)
        targets.append(t.view(-1))
        valid.append(v.view(-1))
    target = torch.cat(targets) if targets else keypoint_logits.new_zeros(0, dtype=torch.long)
    chosen = torch.where(torch.cat(valid))[0] if valid else target
    if target.numel() == 0 or chosen.numel() == 0:
        return keypoint_logits.sum() * 0
    logits = keypoint_logits.reshape(p * k, h * w)
    return F.cross_entropy(logits[chosen], target[chosen])


def heatmaps_to_keypoints(maps: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
    """Place each keypoint at the peak of its heatmap, resampled to its box's size in pixels.

    Each ``S x S`` map is upsampled (bicubic) to ``ceil(box height) x ceil(box width)`` cells, so that
    the peak is found at about one-pixel resolution rather than ``box / S``; the keypoint is the centre of
    the best cell, mapped into the box.

    Args:
        maps: ``[D, K, S, S]`` heatmap logits of the detections of one image.
        rois: ``[D, 4]`` their boxes (xyxy, the resized image's pixels).

    Returns:
        ``[D, K, 3]`` keypoints ``(x, y, 1)`` in the boxes' pixels and ``[D, K]`` scores (the resampled
        logit at the peak), both float32 as torchvision returns them.
    """
    num, k = maps.shape[:2]
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    widths_ceil, heights_ceil = widths.ceil(), heights.ceil()
    xy = torch.zeros((num, 3, k), dtype=torch.float32, device=maps.device)
    scores = torch.zeros((num, k), dtype=torch.float32, device=maps.device)
    keypoint_index = torch.arange(k, device=maps.device)
    for i in range(num):
        # Each box has its own size in pixels: one interpolation per detection.
        out_w, out_h = int(widths_ceil[i].item()), int(heights_ceil[i].item())
        roi_map = F.interpolate(maps[i][:, None], size=(out_h, out_w), mode="bicubic", align_corners=False)[
            :, 0
        ]
        pos = roi_map.reshape(k, -1).argmax(dim=1)
        col = pos % out_w
        row = torch.div(pos - col, out_w, rounding_mode="floor")
        xy[i, 0] = (col.float() + 0.5) * (widths[i] / out_w) + rois[i, 0]
        xy[i, 1] = (row.float() + 0.5) * (heights[i] / out_h) + rois[i, 1]
        xy[i, 2] = 1
        scores[i] = roi_map[keypoint_index, row, col]
    return xy.permute(0, 2, 1), scores


def keypoint_predictions(keypoint_logits: Tensor, boxes: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
    """:func:`heatmaps_to_keypoints` per image: ``keypoint_logits`` ``[D, K, S, S]`` for the detections
    of all images, ``boxes`` per image ``[D_i, 4]`` -> per image ``([D_i, K, 3], [D_i, K])``."""
    split = keypoint_logits.split([len(b) for b in boxes], dim=0)
    return [heatmaps_to_keypoints(maps, b) for maps, b in zip(split, boxes, strict=True)]
