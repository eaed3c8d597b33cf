"""Normalisation layers and the conv + norm (+ ReLU) block shared by the backbone, FPN and heads."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ConvNormAct",
    "FrozenBatchNorm2d",
    "conv_norm",
    "full_precision",
    "full_precision_region",
    "init_relu_convs",
    "make_norm",
    "norm_factory",
]

NormFactory = Callable[[int], nn.Module]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (torchvision's ``FrozenBatchNorm2d``).

    Fine-tuning with a few images per batch cannot estimate batch statistics, so the pretrained ones are
    kept: the layer is the per-channel affine map ``x * scale + shift`` with
    ``scale = weight / sqrt(running_var + eps)`` and ``shift = bias - running_mean * scale``. Its
    tensors are buffers, with BatchNorm's names, so BatchNorm checkpoints load into it; BatchNorm's
    ``num_batches_tracked`` counter, meaningless here, is dropped when loading.

    Args:
        num_features: channels ``C`` of the ``[N, C, H, W]`` input.
        eps: added to the variance, as in BatchNorm.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:
        """``[C]`` scale and shift of the affine map."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_and_shift()
        return x * scale[:, None, None].to(x.dtype) + shift[:, None, None].to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every BatchNorm2d / SyncBatchNorm in ``module`` by a frozen copy (in place for children).

        Used for the frozen stages of a BatchNorm backbone: their statistics must not drift while their
        weights do not train.
        """
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            frozen = cls(module.num_features, module.eps)
            # The copy keeps the original's dtype and device (a float64 or CUDA model stays one).
            like = module.running_mean if module.track_running_stats else module.weight
            if like is not None:
                frozen = frozen.to(device=like.device, dtype=like.dtype)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            new = cls.convert(child)
            if new is not child:
                setattr(module, name, new)
        return module


def make_norm(kind: str, channels: int, *, gn_groups: int = 32) -> nn.Module:
    """A normalisation layer by name: ``frozen_bn``, ``bn``, ``syncbn`` or ``gn``.

    GroupNorm uses ``gn_groups`` groups, or fewer when ``channels`` is not divisible by it (narrow
    layers), so that every width works.
    """
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "syncbn":
        return nn.SyncBatchNorm(channels)
    if kind == "gn":
        groups = min(gn_groups, channels)
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"unknown normalisation {kind!r}; choose from frozen_bn, bn, syncbn, gn")


def norm_factory(kind: str, *, gn_groups: int = 32) -> NormFactory | None:
    """``channels -> norm layer`` for ``kind``, or ``None`` for ``"none"`` (convolutions keep a bias)."""
    if kind == "none":
        return None
    make_norm(kind, gn_groups, gn_groups=gn_groups)  # fail early on an unknown name
    return lambda channels: make_norm(kind, channels, gn_groups=gn_groups)


def conv_norm(x: Tensor, conv: nn.Conv2d, norm: nn.Module) -> Tensor:
    """``norm(conv(x))``, with a frozen BatchNorm folded into the convolution's weights.

    A frozen BatchNorm is an affine map per output channel, so it can scale the ``[O, I, k, k]`` weights
    and become the bias: one pass over the (large) activation map is saved for a little arithmetic on
    the (small) weights. Gradients still reach the convolution's weights through the product.
    """
    if isinstance(norm, FrozenBatchNorm2d):
        scale, shift = norm.scale_and_shift()
        weight = conv.weight * scale.to(conv.weight.dtype)[:, None, None, None]
        bias = shift.to(conv.weight.dtype) if conv.bias is None else conv.bias * scale + shift
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return norm(conv(x))


def full_precision(x: Tensor) -> Tensor:
    """``x`` in float32 when autocast computed it in bfloat16 or float16; float32 and float64 unchanged.

    The heads' outputs become box coordinates, scores and mask probabilities: in bfloat16 (8 bits of
    mantissa) a coordinate near 1000 px would be off by up to 4 px and anchors decoded against it would
    be rounded too. The convolutions and linear layers run in the reduced precision; everything after them
    in at least float32.
    """
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def full_precision_region(x: Tensor) -> contextlib.AbstractContextManager[None]:
    """A region where autocast is off for ``x``'s device (a no-op context when it is not on).

    The box head computes the regression deltas: with its two fully connected layers in bfloat16 the
    decoded boxes of a ResNet-50 move by a few pixels (top detections at IoU 0.7 with their float32
    selves), while in float32 they stay above 0.98, for about 9% more time per image on a CPU with AMX.
    """
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.autocast(device_type=device, enabled=False)
    return contextlib.nullcontext()


def init_relu_convs(module: nn.Module) -> None:
    """He initialisation (fan-out, for ReLU) of every convolution in ``module``, biases zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ConvNormAct(nn.Sequential):
    """Conv2d, optional normalisation, optional ReLU: torchvision's ``Conv2dNormActivation`` layout.

    Children are named ``0`` (conv), ``1`` (norm, if any) and then the ReLU, so checkpoint keys read
    ``<name>.0.weight`` and ``<name>.1.running_mean``. The convolution has a bias only without a norm.
    Padding keeps the spatial size (``dilation * (kernel - 1) / 2``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm: NormFactory | None = None,
        relu: bool = True,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                bias=norm is None,
            )
        ]
        if norm is not None:
            layers.append(norm(out_channels))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:
        conv = self[0]
        if len(self) > 1 and not isinstance(self[1], nn.ReLU):
            x = conv_norm(x, conv, self[1])
            rest = list(self)[2:]
        else:
            x = conv(x)
            rest = list(self)[1:]
        for layer in rest:
            x = layer(x)
        return x
