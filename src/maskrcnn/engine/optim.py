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
from maskrcnn.engine.precision import resolve_precision

__all__ = [
    "OPTIMIZERS",
    "autocast_for",
    "build_optimizer",
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


def autocast_for(mode: str, device: torch.device) -> tuple[contextlib.AbstractContextManager[Any], str, bool]:
    """What ``train.amp`` means on ``device``: the autocast context, the precision in words (``fp32``,
    ``bf16 (auto: this CPU computes bfloat16 in hardware)``...) and whether fp16 loss scaling is needed.
    ``auto`` and the names mean what they mean for inference
    (:func:`maskrcnn.engine.precision.resolve_precision`; ``off`` is ``fp32``)."""
    try:
        precision = resolve_precision("fp32" if mode == "off" else mode, device)
    except ValueError as e:
        raise TrainingError(f"train.amp={mode}: {e}") from None
    return precision.autocast(), precision.describe(), precision.name == "fp16"
