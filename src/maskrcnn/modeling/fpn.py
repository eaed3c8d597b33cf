"""Feature Pyramid Network (Lin et al., 2017) on top of a ResNet body.

Names follow torchvision (``inner_blocks.i.0`` the 1x1 lateral convolutions, ``layer_blocks.i.0`` the
3x3 output convolutions), so its checkpoints load by name.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.modeling.backbone import ResNet
from maskrcnn.modeling.layers import ConvNormAct, NormFactory

__all__ = ["FEATURE_NAMES", "BackboneWithFPN", "FeaturePyramidNetwork"]

# Output names, finest first: P2..P5 from the FPN and P6, a stride-2 subsampling of P5 that the RPN uses
# for the largest anchors.
FEATURE_NAMES = ("p2", "p3", "p4", "p5", "p6")


class FeaturePyramidNetwork(nn.Module):
    """Top-down pathway with lateral connections, plus the extra P6 level.

    Args:
        in_channels_list: channels of C2..C5.
        out_channels: channels of every output.
        norm: optional ``channels -> norm`` after each convolution (torchvision's v2 uses BatchNorm).
    """

    def __init__(
        self, in_channels_list: list[int], out_channels: int, *, norm: NormFactory | None = None
    ) -> None:
        super().__init__()
        self.inner_blocks = nn.ModuleList(
            ConvNormAct(c, out_channels, kernel_size=1, norm=norm, relu=False) for c in in_channels_list
        )
        self.layer_blocks = nn.ModuleList(
            ConvNormAct(out_channels, out_channels, kernel_size=3, norm=norm, relu=False)
            for _ in in_channels_list
        )
        self.out_channels = out_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: list[Tensor]) -> OrderedDict[str, Tensor]:
        """``[C2..C5]`` -> ``{"p2": [N, out, H/4, W/4], ..., "p6": [N, out, H/64, W/64]}``.

        ``H``, ``W``: the input image's size; map sizes are rounded up.
        """
        last_inner = self.inner_blocks[-1](features[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(features) - 2, -1, -1):
            lateral = self.inner_blocks[idx](features[idx])
            # Nearest upsampling to the lateral's exact size (odd sizes do not double exactly).
            top_down = F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            last_inner = lateral + top_down
            results.insert(0, self.layer_blocks[idx](last_inner))
        # P6: a 1x1 max-pool with stride 2 is a plain subsampling of P5, as in the reference implementations.
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        return OrderedDict(zip(FEATURE_NAMES, results, strict=True))


class BackboneWithFPN(nn.Module):
    """A ResNet ``body`` followed by an ``fpn``: images to the P2..P6 pyramid.

    Attributes:
        out_channels: channels of every pyramid level.
    """

    def __init__(self, *, body: ResNet, fpn: FeaturePyramidNetwork) -> None:
        super().__init__()
        self.body = body
        self.fpn = fpn
        self.out_channels = fpn.out_channels

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        """``[N, C, H, W]`` padded batch -> ``{"p2".."p6": [N, out_channels, h_l, w_l]}``."""
        return self.fpn(self.body(images))
