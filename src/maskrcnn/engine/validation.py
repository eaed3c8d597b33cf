"""The validation loss: the training losses on the validation images, without learning from them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from maskrcnn.data import drop_crowd
from maskrcnn.data.loader import mix_seed
from maskrcnn.engine import distributed

__all__ = ["norms_frozen", "targets_to_device", "validation_loss"]


def targets_to_device(
    targets: list[dict[str, torch.Tensor]], device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Training targets on ``device``, without their crowd regions (not trained as instances)."""
    return [{k: v.to(device, non_blocking=True) for k, v in drop_crowd(t).items()} for t in targets]


@contextlib.contextmanager
def norms_frozen(model: nn.Module) -> Iterator[None]:
    """Train mode (the model returns losses) with BatchNorm statistics left alone; the mode is restored."""
    was_training = model.training
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    try:
        yield
    finally:
        model.train(was_training)


def validation_loss(model: nn.Module, dataset: Any, *, device: torch.device, seed: int) -> float:
    """The mean total loss over ``dataset``'s items (each process of a run takes its share and the sums
    are exchanged). The losses sample proposals: image ``i`` draws from a generator seeded by
    ``(seed, i)``, the same whichever process takes it."""
    sums = torch.zeros(2, dtype=torch.float64)
    with norms_frozen(model), torch.no_grad():
        for index in distributed.shard(len(dataset)):
            torch.manual_seed(mix_seed(seed, index, 2))
            image, target = dataset[index]
            losses = model([image.to(device)], targets_to_device([target], device))
            sums[0] += float(sum(losses.values()))
            sums[1] += 1
    model.eval()
    total, count = distributed.all_reduce_sum(sums.to(device), "summing validation losses").tolist()
    return total / max(count, 1)
