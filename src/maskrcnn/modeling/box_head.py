"""Box branch of the RoI heads: pooled RoI features -> class scores and class-specific box deltas.

Module names follow torchvision (``fc6``/``fc7`` for the two-layer MLP head, a numbered sequence for the
conv head of the v2 model, ``cls_score``/``bbox_pred`` for the predictor).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.modeling.layers import ConvNormAct, NormFactory, init_relu_convs
from maskrcnn.modeling.rpn import box_regression_loss

__all__ = ["ConvFCHead", "FastRCNNPredictor", "TwoMLPHead", "fastrcnn_loss"]


class TwoMLPHead(nn.Module):
    """Flatten and two fully connected layers with ReLU (the original Faster R-CNN FPN head).

    Args:
        in_channels: ``C * P * P`` of the pooled ``[K, C, P, P]`` features.
        representation_size: width of both layers.
    """

    def __init__(self, in_channels: int, representation_size: int) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        """``[K, C, P, P]`` -> ``[K, representation_size]``."""
        x = F.relu(self.fc6(x.flatten(1)))
        return F.relu(self.fc7(x))


class ConvFCHead(nn.Sequential):
    """3x3 convolutions (with normalisation), flatten, and fully connected layers (torchvision's v2 head).

    Args:
        in_channels: channels ``C`` of the pooled features.
        pool_size: ``P`` of the ``[K, C, P, P]`` pooled features.
        conv_channels: output channels of each 3x3 convolution.
        fc_sizes: widths of the fully connected layers.
        norm: optional ``channels -> norm`` after each convolution.
    """

    def __init__(
        self,
        in_channels: int,
        pool_size: int,
        *,
        conv_channels: Sequence[int] = (256, 256, 256, 256),
        fc_sizes: Sequence[int] = (1024,),
        norm: NormFactory | None = None,
    ) -> None:
        layers: list[nn.Module] = []
        previous = in_channels
        for channels in conv_channels:
            layers.append(ConvNormAct(previous, channels, norm=norm))
            previous = channels
        layers.append(nn.Flatten())
        previous = previous * pool_size * pool_size
        for size in fc_sizes:
            layers += [nn.Linear(previous, size), nn.ReLU(inplace=True)]
            previous = size
        super().__init__(*layers)
        init_relu_convs(self)


class FastRCNNPredictor(nn.Module):
    """Class logits and one set of box deltas per class.

    Args:
        in_channels: width of the box head's output.
        num_classes: classes including the background.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[K, in_channels]`` -> ``[K, num_classes]`` logits, ``[K, num_classes * 4]`` deltas."""
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


def fastrcnn_loss(
    class_logits: Tensor,
    box_regression: Tensor,
    labels: Sequence[Tensor],
    regression_targets: Sequence[Tensor],
    *,
    box_loss: str = "smooth_l1",
    beta: float = 1.0 / 9.0,
) -> tuple[Tensor, Tensor]:
    """Classification and box-regression losses of the sampled proposals.

    Args:
        class_logits: ``[K, num_classes]``.
        box_regression: ``[K, num_classes * 4]``.
        labels: per image ``int64[K_i]``, 0 for background.
        regression_targets: per image ``[K_i, 4]`` encoded matched ground-truth boxes.

    Returns:
        ``(loss_classifier, loss_box_reg)``: cross-entropy over all proposals, and the box loss of the
        foreground proposals (on their ground-truth class's deltas only) divided by the number of
        proposals.
    """
    labels_t = torch.cat(list(labels))
    targets = torch.cat(list(regression_targets))
    classification = F.cross_entropy(class_logits, labels_t)
    pos = torch.where(labels_t > 0)[0]
    deltas = box_regression.reshape(box_regression.shape[0], -1, 4)
    box = box_regression_loss(deltas[pos, labels_t[pos]], targets[pos], kind=box_loss, beta=beta)
    return classification, box / max(labels_t.numel(), 1)
