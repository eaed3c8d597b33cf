"""Running as one of several processes (``torchrun``): the process group and the few collectives we use.

``torchrun`` (``python -m torch.distributed.run``) starts the processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment; :func:`process_group` reads
them, gives each process its device (``cuda:LOCAL_RANK`` on GPUs, else the CPU) and joins the group with
NCCL on GPUs and gloo on CPUs. Every collective here runs under the group's timeout, so a process that
died or stopped answering makes the others fail with :class:`DistributedError` instead of hanging.

Outside a group (one process) every helper is the identity: rank 0 of 1.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from maskrcnn.engine.device import resolve_device
from maskrcnn.engine.errors import TrainingError

__all__ = [
    "DistributedError",
    "Group",
    "all_reduce_sum",
    "broadcast_object",
    "collective",
    "data_parallel",
    "gather_objects",
    "is_communication_error",
    "launched_with_several_processes",
    "process_group",
    "rank",
    "shard",
    "world_size",
]


class DistributedError(RuntimeError):
    """Another process of the run failed, or the group could not be formed or timed out."""


@dataclass(frozen=True)
class Group:
    """This process's place in the run.

    Attributes:
        rank: 0 .. world_size - 1; rank 0 prints, logs and writes files.
        world_size: processes in the run (1 without ``torchrun``).
        local_rank: the process's index on its machine (its GPU).
        device: where this process computes.
        backend: ``nccl``, ``gloo``, or ``None`` for a single process.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_with_several_processes() -> bool:
    """Whether the environment (``torchrun``) says this process is one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None:
        raise DistributedError(
            f"WORLD_SIZE is {os.environ.get('WORLD_SIZE')} but {name} is not set: start the processes with "
            "torchrun (python -m torch.distributed.run), which sets RANK, LOCAL_RANK, MASTER_ADDR and "
            "MASTER_PORT"
        )
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name}={value!r} is not an integer") from None


def _process_device(name: str, local_rank: int) -> torch.device:
    """The device of process ``local_rank`` on its machine: ``cuda:LOCAL_RANK`` for ``auto``/``cuda``
    where CUDA is available, the CPU for ``cpu`` (and for ``auto`` without CUDA)."""
    text = str(name).strip().lower()
    if text in ("auto", "cuda") and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DistributedError(
                f"process with LOCAL_RANK {local_rank} has no GPU: this machine has {count} "
                f"(use --nproc-per-node {count} or fewer)"
            )
        return torch.device("cuda", local_rank)
    if text == "auto" or text == "cpu":
        return torch.device("cpu")
    if text == "cuda":
        return resolve_device(text)  # raises: no CUDA here
    raise DistributedError(
        f"device {name!r} under torchrun: each process takes cuda:LOCAL_RANK; use auto, cuda or cpu"
    )


@contextlib.contextmanager
def process_group(device: str | torch.device, *, timeout_s: float = 1800.0) -> Iterator[Group]:
    """This process's :class:`Group` for the duration of the block.

    Under ``torchrun`` with several processes, joins the process group (and leaves it at the end);
    when the caller already formed one, uses it as it is; otherwise a single process on ``device``.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` (``cuda:LOCAL_RANK`` per process), or for a single process
            anything :func:`~maskrcnn.engine.device.resolve_device` takes.
        timeout_s: how long a collective waits for the other processes before failing.

    Raises:
        DistributedError: the environment is incomplete, a device is missing, or the group cannot form.
        ValueError: an unknown or unavailable device for a single process.
    """
    if dist.is_available() and dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        backend = str(dist.get_backend())
        target = _process_device(str(device), local_rank) if backend == "nccl" else resolve_device(device)
        yield Group(dist.get_rank(), dist.get_world_size(), local_rank, target, backend)
        return
    if not launched_with_several_processes():
        yield Group(0, 1, 0, resolve_device(device), None)
        return
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed: run one process")
    rank, world, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    target = _process_device(str(device), local_rank)
    backend = "nccl" if target.type == "cuda" else "gloo"
    if target.type == "cuda":
        torch.cuda.set_device(target)
    try:
        dist.init_process_group(
            backend,
            timeout=timedelta(seconds=timeout_s),
            device_id=target if target.type == "cuda" else None,
        )
    except (RuntimeError, ValueError) as e:
        raise DistributedError(
            f"rank {rank} of {world} could not join the process group ({backend}, "
            f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}): {e}"
        ) from e
    try:
        yield Group(rank, world, local_rank, target, backend)
    finally:
        # Leaving after a failure must not wait on the others: destroy without a barrier.
        dist.destroy_process_group()


def data_parallel(
    model: nn.Module, device: torch.device, *, sync_bn: bool, say: Callable[[str], None]
) -> tuple[nn.Module, nn.Module]:
    """``model`` for data-parallel training in this process group: converted to ``SyncBatchNorm`` when
    ``sync_bn`` (GPUs only), and its ``DistributedDataParallel`` wrapper; returns both."""
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn:
        if device.type != "cuda":
            raise TrainingError(
                "train.sync_bn needs GPUs (SyncBatchNorm runs on CUDA only); on CPUs use "
                "model.backbone.norm=gn or frozen_bn, or larger per-process batches"
            )
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            say("train.sync_bn: the model has no BatchNorm layer that trains; nothing to sync")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def rank() -> int:
    """This process's rank (0 outside a group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Processes in the group (1 outside one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def shard(length: int) -> range:
    """This process's contiguous share of ``range(length)``: concatenating the shares of ranks 0, 1, ...
    gives back the whole range in order (so gathered results keep the single-process order)."""
    r, w = rank(), world_size()
    return range(length * r // w, length * (r + 1) // w)


def is_communication_error(error: BaseException) -> bool:
    """Whether ``error`` comes from the process group (a peer gone, a timeout) rather than from this
    process's own work: DDP's gradient exchange raises gloo's and NCCL's failures as plain
    ``RuntimeError`` s, recognisable only by their text."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        mark in text for mark in ("gloo", "NCCL", "Connection", "Timed out", "timed out", "Timeout")
    )


@contextlib.contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn communication failures inside the block into :class:`DistributedError` naming ``what`` (in a
    process group; a single process's errors pass unchanged)."""
    try:
        yield
    except RuntimeError as e:
        if world_size() == 1 or not is_communication_error(e) or isinstance(e, DistributedError):
            raise
        raise DistributedError(
            f"rank {rank()}: {what} failed: another process of the run failed or stopped answering "
            f"(its own messages say why): {e}"
        ) from e


def all_reduce_sum(tensor: torch.Tensor, what: str = "summing across processes") -> torch.Tensor:
    """Sum ``tensor`` over the processes, in place (on the group's device: CUDA for NCCL, CPU for gloo)."""
    if world_size() > 1:
        with collective(what):
            dist.all_reduce(tensor)
    return tensor


def gather_objects(obj: Any, what: str = "gathering results") -> list[Any] | None:
    """Every process's ``obj`` (picklable) in rank order on rank 0; ``None`` on the others."""
    if world_size() == 1:
        return [obj]
    out: list[Any] | None = [None] * world_size() if rank() == 0 else None
    with collective(what):
        dist.gather_object(obj, out, dst=0)
    return out


def broadcast_object(obj: Any, what: str = "sharing results") -> Any:
    """Rank 0's ``obj`` on every process (the others' argument is ignored)."""
    if world_size() == 1:
        return obj
    box = [obj if rank() == 0 else None]
    with collective(what):
        dist.broadcast_object_list(box, src=0)
    return box[0]
