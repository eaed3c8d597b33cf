import pytest
import torch
from torch import nn

from maskrcnn.modeling.layers import ConvNormAct, FrozenBatchNorm2d, conv_norm, make_norm, norm_factory


def _random_bn(channels: int, seed: int) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels).double()
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=g))
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) + 0.1)
    return bn.eval()


def test_frozen_bn_is_batchnorm_in_eval_and_loads_its_state():
    bn = _random_bn(5, seed=0)
    frozen = FrozenBatchNorm2d(5).double()
    # BatchNorm's state dict carries num_batches_tracked, which the frozen layer drops when loading.
    assert "num_batches_tracked" in bn.state_dict()
    frozen.load_state_dict(bn.state_dict())
    assert set(frozen.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(frozen(x), bn(x))
    assert not list(frozen.parameters())  # nothing to train
    converted = FrozenBatchNorm2d.convert(nn.Sequential(nn.Conv2d(5, 5, 1), bn))
    assert isinstance(converted[1], FrozenBatchNorm2d)
    assert converted[1].running_var.dtype == torch.float64  # the BatchNorm's own precision is kept
    torch.testing.assert_close(converted[1](x), bn(x))


@pytest.mark.parametrize("bias", [False, True])
def test_folded_conv_norm_equals_conv_then_norm(bias):
    """The fast path (frozen BN folded into the weights) gives the numbers and gradients of the plain one."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=bias).double()
    frozen = FrozenBatchNorm2d(5).double()
    frozen.load_state_dict(_random_bn(5, seed=1).state_dict())
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    fused = conv_norm(x, conv, frozen)
    (g_fused,) = torch.autograd.grad(fused.square().sum(), conv.weight)
    plain = frozen(conv(x))
    (g_plain,) = torch.autograd.grad(plain.square().sum(), conv.weight)
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(g_fused, g_plain)
    # Any other norm is applied after the convolution.
    gn = nn.GroupNorm(1, 5).double()
    torch.testing.assert_close(conv_norm(x, conv, gn), gn(conv(x)))


def test_conv_norm_act_layout_and_norms():
    block = ConvNormAct(4, 8, kernel_size=3, norm=norm_factory("bn"))
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert block[0].bias is None  # the norm's bias replaces it
    assert set(block.state_dict()) >= {"0.weight", "1.weight", "1.running_var"}
    plain = ConvNormAct(4, 8, kernel_size=1, relu=False)
    assert [type(m) for m in plain] == [nn.Conv2d]
    assert plain[0].bias is not None
    x = torch.randn(1, 4, 6, 6)
    assert block(x).shape == (1, 8, 6, 6)
    assert (block(x) >= 0).all()
    frozen = ConvNormAct(4, 8, norm=norm_factory("frozen_bn"))
    torch.testing.assert_close(frozen(x), torch.relu(frozen[1](frozen[0](x))))


def test_make_norm():
    assert isinstance(make_norm("frozen_bn", 8), FrozenBatchNorm2d)
    assert isinstance(make_norm("syncbn", 8), nn.SyncBatchNorm)
    gn = make_norm("gn", 24, gn_groups=32)
    assert isinstance(gn, nn.GroupNorm)
    assert gn.num_groups == 24  # at most one group per channel
    assert make_norm("gn", 20, gn_groups=8).num_groups == 5  # the largest divisor not above 8
    assert norm_factory("none") is None
    with pytest.raises(ValueError, match="unknown normalisation 'layer'"):
        norm_factory("layer")
