import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.modeling.backbone import resnet
from maskrcnn.modeling.fpn import FEATURE_NAMES, BackboneWithFPN, FeaturePyramidNetwork
from maskrcnn.modeling.layers import norm_factory


def _identity(fpn: FeaturePyramidNetwork) -> None:
    """Make every lateral and output convolution the identity (1x1 and centred 3x3), biases zero."""
    with torch.no_grad():
        for block in [*fpn.inner_blocks, *fpn.layer_blocks]:
            conv = block[0]
            conv.weight.zero_()
            k = conv.kernel_size[0] // 2
            for c in range(conv.out_channels):
                conv.weight[c, c, k, k] = 1.0
            conv.bias.zero_()


def test_top_down_sum_golden():
    # With identity convolutions, P_i = C_i + nearest-upsampled P_{i+1}, and P6 takes every other pixel.
    fpn = FeaturePyramidNetwork([2, 2, 2, 2], 2)
    _identity(fpn)
    c = [
        torch.arange(2 * h * w, dtype=torch.float32).reshape(1, 2, h, w)
        for h, w in [(7, 9), (4, 5), (2, 3), (1, 2)]
    ]
    out = fpn(c)
    assert list(out) == list(FEATURE_NAMES)
    p5 = c[3]
    p4 = c[2] + F.interpolate(p5, size=(2, 3), mode="nearest")
    p3 = c[1] + F.interpolate(p4, size=(4, 5), mode="nearest")
    p2 = c[0] + F.interpolate(p3, size=(7, 9), mode="nearest")
    for name, expected in zip(["p2", "p3", "p4", "p5"], [p2, p3, p4, p5], strict=True):
        torch.testing.assert_close(out[name], expected)
    torch.testing.assert_close(out["p6"], p5[:, :, ::2, ::2])
    # Odd sizes: the top-down map is resized to the lateral's size, not doubled.
    assert out["p3"][0, 0, 3, 4] == c[1][0, 0, 3, 4] + p4[0, 0, 1, 2]


def test_backbone_with_fpn_shapes_and_norm():
    body = resnet("resnet18", norm=norm_factory("frozen_bn"), width=16)
    fpn = FeaturePyramidNetwork(body.out_channels, 32, norm=norm_factory("bn"))
    model = BackboneWithFPN(body=body, fpn=fpn).eval()
    assert model.out_channels == 32
    assert isinstance(fpn.inner_blocks[0][1], nn.BatchNorm2d)
    assert fpn.inner_blocks[0][0].bias is None  # v2 layout: no conv bias before a norm
    out = model(torch.randn(2, 3, 96, 128))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "p2": (2, 32, 24, 32),
        "p3": (2, 32, 12, 16),
        "p4": (2, 32, 6, 8),
        "p5": (2, 32, 3, 4),
        "p6": (2, 32, 2, 2),
    }
