import pytest
import torch
from torch import nn

from maskrcnn.modeling.backbone import ARCHITECTURES, resnet
from maskrcnn.modeling.layers import FrozenBatchNorm2d, norm_factory
from tests.synthetic_weights import load_layout


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d"])
def test_state_dict_layout_is_torchvision_imagenet(name):
    """Key names and shapes equal those of torchvision's ImageNet models, minus the classifier."""
    body = resnet(name, norm=norm_factory("bn"))
    expected = {k: tuple(shape) for k, shape, _ in load_layout(f"{name}_imagenet") if not k.startswith("fc.")}
    assert {k: tuple(v.shape) for k, v in body.state_dict().items()} == expected


def test_resnext101_32x8d_widths():
    # No fixture for this one: check the grouped 3x3 width (32 groups x 8 channels x planes / 64).
    body = resnet("resnext101_32x8d", norm=norm_factory("frozen_bn"), trainable_layers=0)
    assert body.layer1[0].conv2.weight.shape == (256, 8, 3, 3)
    assert body.layer4[0].conv2.weight.shape == (2048, 64, 3, 3)
    assert len(body.layer3) == 23


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_outputs_are_c2_to_c5(name):
    body = resnet(name, norm=norm_factory("gn"), width=16)
    outs = body(torch.randn(1, 3, 70, 97))
    assert [o.shape[1] for o in outs] == body.out_channels
    # Strides 4, 8, 16, 32 with ceil rounding through the stride-2 convolutions and pooling.
    assert [tuple(o.shape[-2:]) for o in outs] == [(18, 25), (9, 13), (5, 7), (3, 4)]
    expansion = 1 if name in ("resnet18", "resnet34") else 4
    assert body.out_channels == [16 * expansion * 2**i for i in range(4)]


@pytest.mark.parametrize(("trainable", "frozen_stages"), [(0, 5), (3, 2), (5, 0)])
def test_freezing_stages(trainable, frozen_stages):
    body = resnet("resnet18", norm=norm_factory("bn"), trainable_layers=trainable)
    stages = ["conv1", "layer1", "layer2", "layer3", "layer4"]
    for index, stage in enumerate(stages):
        modules = [body.conv1, body.bn1] if stage == "conv1" else [getattr(body, stage)]
        params = [p for m in modules for p in m.parameters()]
        norms = [
            n for m in modules for n in m.modules() if isinstance(n, (nn.BatchNorm2d, FrozenBatchNorm2d))
        ]
        frozen = index < frozen_stages
        assert all(p.requires_grad != frozen for p in params), stage
        # Frozen stages keep their statistics: their BatchNorm layers become frozen BatchNorm.
        assert all(isinstance(n, FrozenBatchNorm2d) == frozen for n in norms), stage
    with pytest.raises(ValueError, match=r"0\.\.5"):
        body.freeze(6)


def test_group_norm_stages_freeze_by_requires_grad():
    body = resnet("resnet18", norm=norm_factory("gn", gn_groups=8), trainable_layers=1)
    assert not body.layer3[0].bn1.weight.requires_grad
    assert body.layer4[0].bn1.weight.requires_grad
    assert isinstance(body.layer3[0].bn1, nn.GroupNorm)


def test_input_channels():
    body = resnet("resnet18", norm=norm_factory("frozen_bn"), in_channels=5)
    assert body.conv1.weight.shape == (64, 5, 7, 7)
    assert body(torch.randn(2, 5, 64, 64))[-1].shape == (2, 512, 2, 2)
