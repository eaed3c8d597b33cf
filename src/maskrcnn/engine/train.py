"""``maskrcnn train`` in Python: :func:`train` runs a :class:`~maskrcnn.engine.trainer.Trainer` in this
process's place of the run (one process, or one of a ``torchrun`` launch) and says what it did.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskrcnn.config import Config, save_config
from maskrcnn.engine import distributed
from maskrcnn.engine.device import resolve_device
from maskrcnn.engine.distributed import DistributedError, Group, process_group
from maskrcnn.engine.errors import TrainingError
from maskrcnn.engine.hooks import BestCheckpoint, Hook
from maskrcnn.engine.run_dir import RunDir
from maskrcnn.engine.signals import StopSignals
from maskrcnn.engine.trainer import Trainer
from maskrcnn.progress import inform

__all__ = ["TrainResult", "TrainingError", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` did; ``config`` is the run's resolved config (classes, layers filled in)."""

    run_dir: Path
    steps: int
    epochs_completed: int
    stopped: str  # "finished", "max_steps", "early_stopping" or "interrupted"
    metrics: dict[str, Any] = field(default_factory=dict)
    best: float | None = None
    config: Config | None = None


def train(
    cfg: Config,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
    announce: Callable[[str], None] | None = None,
    hooks: Sequence[Hook] = (),
) -> TrainResult:
    """Train ``cfg``'s model on its data into the run directory ``out_dir`` (see the module docstring).

    ``cfg`` is not changed: the run works on a copy, returned resolved in :attr:`TrainResult.config`.
    Started by ``torchrun`` with several processes, every process calls this and they train together
    (the run directory must be on a file system they all see for ``resume``).

    Args:
        resume: continue the run saved in ``out_dir`` exactly where it stopped.
        progress: show progress bars (rank 0).
        announce: where messages go besides the log (default: stderr, above the progress bar, unless
            :func:`maskrcnn.progress.set_quiet`; rank 0 only).
        hooks: more hooks, run after the default ones (their state is saved and resumed too).

    Returns:
        a :class:`TrainResult`; raises :class:`TrainingError` for a non-finite loss (after which the last
        good checkpoint is intact), for a run directory that already holds a run without ``resume``, and
        when another process of the run fails or stops answering.
    """
    cfg = copy.deepcopy(cfg)
    if not distributed.launched_with_several_processes():
        try:
            resolve_device(cfg.train.device)
        except ValueError as e:
            raise TrainingError(f"train.device: {e}") from None
    try:
        with (
            StopSignals(),
            process_group(cfg.train.device, timeout_s=cfg.train.dist_timeout) as group,
            # Also what DDP's own gradient exchange raises when a peer is gone.
            distributed.collective("training"),
        ):
            return _train(cfg, RunDir(out_dir), group, resume, progress, announce, hooks)
    except DistributedError as e:
        raise TrainingError(f"the distributed run stopped: {e}") from e


def _train(
    cfg: Config,
    run_dir: RunDir,
    group: Group,
    resume: bool,
    progress: bool,
    announce: Callable[[str], None] | None,
    hooks: Sequence[Hook],
) -> TrainResult:
    def say(message: str) -> None:
        if not group.is_main:
            log.debug("rank %d: %s", group.rank, message)
            return
        log.info(message)
        if announce is not None:
            announce(message)
        else:
            inform(message)

    if not resume and run_dir.holds_run():
        raise TrainingError(
            f"{run_dir.path} already holds a run (last.state.pt): resume it with --resume, or choose "
            "another --out"
        )
    if group.is_main:
        run_dir.path.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, run_dir, group, say=say, resume=resume, progress=progress, hooks=hooks)
    if group.is_main:
        save_config(trainer.cfg, run_dir.config)
    t = trainer.cfg.train
    processes = (
        f" x {group.world_size} processes ({group.backend}), lr {trainer.lr:.4g}"
        if group.world_size > 1
        else ""
    )
    say(
        f"training {trainer.total_steps} steps ({trainer.steps_per_epoch} per epoch, batch "
        f"{trainer.cfg.data.batch_size} x {t.accumulate}{processes}) on {trainer.device} "
        f"(precision {trainer.precision}); run directory {run_dir.path}"
    )
    trainer.fit()
    best = next((h.best for h in trainer.hooks if isinstance(h, BestCheckpoint)), None)
    return TrainResult(
        run_dir.path, trainer.step, trainer.epoch, trainer.stopped, trainer.metrics, best, trainer.cfg
    )
