"""Mask branch of the RoI heads: pooled RoI features -> one ``M x M`` mask logit map per class.

Module names follow torchvision (``mask_head.i.0`` convolutions, ``mask_predictor.conv5_mask`` and
``mask_predictor.mask_fcn_logits``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.modeling.layers import ConvNormAct, NormFactory, init_relu_convs
from maskrcnn.ops import roi_align

__all__ = [
    "MaskRCNNHeads",
    "MaskRCNNPredictor",
    "mask_probabilities",
    "maskrcnn_loss",
    "project_masks_on_boxes",
]


class MaskRCNNHeads(nn.Sequential):
    """A stack of 3x3 convolutions with ReLU (four of 256 channels in the paper), keeping the RoI size.

    Args:
        in_channels: channels of the pooled features.
        layers: output channels of each convolution.
        dilation: dilation of the convolutions.
        norm: optional ``channels -> norm`` after each convolution (BatchNorm in torchvision's v2).
    """

    def __init__(
        self, in_channels: int, layers: Sequence[int], *, dilation: int = 1, norm: NormFactory | None = None
    ) -> None:
        blocks = []
        previous = in_channels
        for channels in layers:
            blocks.append(ConvNormAct(previous, channels, dilation=dilation, norm=norm))
            previous = channels
        super().__init__(*blocks)
        self.out_channels = previous
        init_relu_convs(self)


class MaskRCNNPredictor(nn.Sequential):
    """2x upsampling by a transposed convolution, ReLU, and a 1x1 convolution to one logit map per class.

    Args:
        in_channels: channels of the mask head's output.
        dim_reduced: channels after the transposed convolution.
        num_classes: classes including the background.
    """

    def __init__(self, in_channels: int, dim_reduced: int, num_classes: int) -> None:
        super().__init__(
            OrderedDict(
                [
                    ("conv5_mask", nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("mask_fcn_logits", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)),
                ]
            )
        )
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.zeros_(param)


def project_masks_on_boxes(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, size: int) -> Tensor:
    """Crop each matched ground-truth mask to its proposal and resample it to ``size x size``.

    RoIAlign on the full-resolution binary mask gives a soft target (the fraction of each target cell
    inside the object), exactly what the reference implementations train on.

    Args:
        gt_masks: ``[G, H, W]`` binary masks of one image.
        boxes: ``[K, 4]`` proposals.
        matched_idxs: ``int64[K]`` index of each proposal's ground truth in ``gt_masks``.
        size: ``M``.

    Returns:
        ``[K, M, M]`` targets in ``boxes``' dtype, in 0..1.
    """
    rois = torch.cat([matched_idxs.to(boxes)[:, None], boxes], dim=1)
    return roi_align(gt_masks[:, None].to(rois), rois, (size, size), 1.0)[:, 0]


def maskrcnn_loss(
    mask_logits: Tensor,
    proposals: Sequence[Tensor],
    gt_masks: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    matched_idxs: Sequence[Tensor],
) -> Tensor:
    """Per-pixel binary cross-entropy on the ground-truth class's mask only.

    Using the ground-truth class alone decouples masks from classification: classes do not compete for
    pixels (the paper's key difference from a per-pixel softmax).

    Args:
        mask_logits: ``[K, num_classes, M, M]`` for the positive proposals of all images.
        proposals: per image ``[K_i, 4]`` positive proposals.
        gt_masks: per image ``[G_i, H, W]``.
        gt_labels: per image ``int64[G_i]``.
        matched_idxs: per image ``int64[K_i]`` ground truth of each proposal.

    Returns:
        the mean loss (0, still back-propagating, when there is no positive proposal).
    """
    size = mask_logits.shape[-1]
    labels = torch.cat([lab[idx] for lab, idx in zip(gt_labels, matched_idxs, strict=True)])
    targets = torch.cat(
        [
            project_masks_on_boxes(m, p, i, size)
            for m, p, i in zip(gt_masks, proposals, matched_idxs, strict=True)
        ]
    )
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    picked = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(picked, targets)


def mask_probabilities(mask_logits: Tensor, labels: Sequence[Tensor]) -> list[Tensor]:
    """Sigmoid of each detection's own class's mask.

    Args:
        mask_logits: ``[D, num_classes, M, M]`` for the detections of all images.
        labels: per image ``int64[D_i]`` predicted classes.

    Returns:
        per image ``[D_i, 1, M, M]`` probabilities.
    """
    flat = torch.cat(list(labels))
    picked = mask_logits[torch.arange(flat.shape[0], device=flat.device), flat]
    return list(picked.sigmoid()[:, None].split([len(lab) for lab in labels], dim=0))
