"""Optimisation settings of a run: parameter groups, optimizers, schedules, the linear scaling rule and
the numeric precision (autocast)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from maskrcnn.config import TrainConfig
from maskrcnn.engine.errors import TrainingError

__all__ = [
    "OPTIMIZERS",
    "autocast_for",
    "build_optimizer",
    "cpu_has_native_bf16",
    "lr_factor",
    "param_groups",
    "scaled_lr",
]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The trainable parameters in two groups: weight decay on weights only (decaying norms' scales and
    biases only hurts)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ``train.optimizer`` -> how to build it from the parameter groups, the learning rate and ``train``.
OPTIMIZERS: dict[str, Callable[[list[dict[str, Any]], float, TrainConfig], torch.optim.Optimizer]] = {
    "sgd": lambda params, lr, t: torch.optim.SGD(params, lr=lr, momentum=t.momentum),
    "adamw": lambda params, lr, t: torch.optim.AdamW(params, lr=lr, betas=(t.momentum, 0.999)),
}


def build_optimizer(model: nn.Module, lr: float, t: TrainConfig) -> torch.optim.Optimizer:
    """``train.optimizer`` (checked by the config) over ``model``'s trainable parameters."""
    return OPTIMIZERS[t.optimizer](param_groups(model, t.weight_decay), lr, t)


def lr_factor(t: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """The learning-rate multiplier at each step: linear warmup, then ``train.schedule`` (multistep at
    fractions ``train.milestones`` of the run, cosine down to ``train.min_lr``, or constant), planned
    over the run's ``total_steps``."""
    milestones = [round(m * total_steps) for m in t.milestones]

    def factor(step: int) -> float:
        warm = 1.0
        if step < t.warmup_steps:
            alpha = step / max(1, t.warmup_steps)
            warm = t.warmup_factor * (1 - alpha) + alpha
        if t.schedule == "multistep":
            return warm * t.gamma ** sum(step >= m for m in milestones)
        if t.schedule == "cosine":
            progress = min(step / max(1, total_steps), 1.0)
            return warm * (t.min_lr + (1 - t.min_lr) * 0.5 * (1 + math.cos(math.pi * progress)))
        return warm

    return factor


def scaled_lr(lr: float, global_batch: int, reference_batch: int, scale: bool) -> float:
    """The linear scaling rule: ``lr`` is for ``reference_batch`` images per step."""
    return lr * global_batch / reference_batch if scale else lr


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX), where bf16 autocast pays:
    elsewhere it is emulated and slower than float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers of torch.cpu: absent in some versions
        return False


def autocast_for(mode: str, device: torch.device) -> tuple[contextlib.AbstractContextManager[Any], str, bool]:
    """What ``train.amp`` means on ``device``: the autocast context, the precision's name (``float32``,
    ``torch.bfloat16``, ``torch.float16``) and whether fp16 loss scaling is needed. ``auto`` takes bf16 on
    GPUs that have it (else fp16) and on CPUs that compute it natively, float32 elsewhere."""
    if mode == "auto":
        if device.type == "cuda":
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and cpu_has_native_bf16():
            mode = "bf16"
        else:
            mode = "off"
    if mode == "off":
        return contextlib.nullcontext(), "float32", False
    if mode == "fp16" and device.type != "cuda":
        raise TrainingError("train.amp=fp16 needs a CUDA device (use bf16 on the CPU, or off)")
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype), str(dtype), mode == "fp16"
