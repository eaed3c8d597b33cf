"""ResNet and ResNeXt bodies (He et al., 2016; Xie et al., 2017), built here rather than imported.

The module and parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv2``,
``layer1.0.downsample.1``...), so torchvision's ImageNet and COCO checkpoints load by name. The body
returns the outputs of the four stages, C2..C5 (strides 4, 8, 16, 32), for the FPN.
"""

from __future__ import annotations

from torch import Tensor, nn

from maskrcnn.modeling.layers import FrozenBatchNorm2d, NormFactory, conv_norm, init_relu_convs

__all__ = ["ARCHITECTURES", "BasicBlock", "Bottleneck", "ResNet", "resnet"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (ResNet-18/34).

    Args:
        in_channels: input channels.
        planes: output channels.
        stride: stride of the first convolution (2 at the start of a stage).
        norm: ``channels -> norm layer``.
        groups: must be 1 (kept for a common signature with :class:`Bottleneck`).
        width_per_group: must be 64 (ditto).
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        norm: NormFactory,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ValueError("BasicBlock supports only groups=1 and width_per_group=64")
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, planes, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else conv_norm(x, self.downsample[0], self.downsample[1])
        out = self.relu(conv_norm(x, self.conv1, self.bn1))
        out = conv_norm(out, self.conv2, self.bn2)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, carrying the stride: "ResNet v1.5"), 1x1 expand x4.

    Args:
        in_channels: input channels.
        planes: channels of the block before the x4 expansion.
        stride: stride of the 3x3 convolution.
        norm: ``channels -> norm layer``.
        groups: groups of the 3x3 convolution (32 for ResNeXt).
        width_per_group: channels per group at ``planes = 64`` (4 for ResNeXt-50 32x4d).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        norm: NormFactory,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = norm(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else conv_norm(x, self.downsample[0], self.downsample[1])
        out = self.relu(conv_norm(x, self.conv1, self.bn1))
        out = self.relu(conv_norm(out, self.conv2, self.bn2))
        out = conv_norm(out, self.conv3, self.bn3)
        return self.relu(out + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int, norm: NormFactory) -> nn.Sequential | None:
    """Projection shortcut (1x1 conv + norm) when the shape changes, else ``None`` (identity)."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), norm(out_channels)
    )


# name -> (block, blocks per stage, groups, width_per_group)
ARCHITECTURES: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...], int, int]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), 1, 64),
    "resnet34": (BasicBlock, (3, 4, 6, 3), 1, 64),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 1, 64),
    "resnet101": (Bottleneck, (3, 4, 23, 3), 1, 64),
    "resnext50_32x4d": (Bottleneck, (3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": (Bottleneck, (3, 4, 23, 3), 32, 8),
}

STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")


class ResNet(nn.Module):
    """The convolutional body of a ResNet: stem (7x7 conv, norm, ReLU, 3x3 max-pool) and four stages.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks in each of the four stages.
        norm: ``channels -> norm layer``.
        in_channels: image channels.
        width: channels of the stem and of the first stage (64 in the standard networks); each later
            stage doubles it.
        groups: groups of the 3x3 convolutions (ResNeXt).
        width_per_group: channels per group (ResNeXt).

    Attributes:
        out_channels: channels of C2..C5.
    """

    def __init__(
        self,
        *,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, ...],
        norm: NormFactory,
        in_channels: int = 3,
        width: int = 64,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = width
        self.out_channels: list[int] = []
        for index, blocks in enumerate(layers):
            planes = width * 2**index
            stage = []
            for b in range(blocks):
                stage.append(
                    block(
                        channels,
                        planes,
                        stride=2 if (b == 0 and index > 0) else 1,
                        norm=norm,
                        groups=groups,
                        width_per_group=width_per_group,
                    )
                )
                channels = planes * block.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            self.out_channels.append(channels)

        init_relu_convs(self)
        for m in self.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[N, in_channels, H, W]`` -> ``[C2, C3, C4, C5]``.

        Stage ``i`` (0-based) gives ``[N, out_channels[i], H / 2^(i+2), W / 2^(i+2)]`` (sizes rounded up).
        """
        x = self.maxpool(self.relu(conv_norm(x, self.conv1, self.bn1)))
        outputs = []
        for name in STAGES[1:]:
            x = getattr(self, name)(x)
            outputs.append(x)
        return outputs

    def freeze(self, trainable_layers: int) -> None:
        """Train only the top ``trainable_layers`` stages (of ``layer4, layer3, layer2, layer1, stem``).

        The parameters of the other stages stop requiring gradients, and their BatchNorm layers become
        :class:`FrozenBatchNorm2d` so that their statistics do not drift away from the (pretrained)
        weights they normalise while those weights stay fixed.
        """
        if not 0 <= trainable_layers <= 5:
            raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers}")
        frozen = STAGES[: 5 - trainable_layers]
        for name in frozen:
            modules = [self.conv1, self.bn1] if name == "conv1" else [getattr(self, name)]
            for module in modules:
                for p in module.parameters():
                    p.requires_grad_(False)
            if name == "conv1":
                self.bn1 = FrozenBatchNorm2d.convert(self.bn1)
            else:
                FrozenBatchNorm2d.convert(getattr(self, name))


def resnet(
    name: str,
    *,
    norm: NormFactory,
    in_channels: int = 3,
    width: int = 64,
    trainable_layers: int = 5,
) -> ResNet:
    """A ResNet body by name (see :data:`ARCHITECTURES`), frozen below ``trainable_layers``."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(ARCHITECTURES)}")
    block, layers, groups, width_per_group = ARCHITECTURES[name]
    body = ResNet(
        block=block,
        layers=layers,
        norm=norm,
        in_channels=in_channels,
        width=width,
        groups=groups,
        width_per_group=width_per_group,
    )
    body.freeze(trainable_layers)
    return body
