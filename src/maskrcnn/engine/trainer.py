"""The training loop: :class:`Trainer` (build, step, save, resume), which :func:`maskrcnn.engine.train.train`
runs.

The trainer builds the data, model, optimizer, schedule and loader from a :class:`~maskrcnn.config.Config`
(each in a ``build_*`` method a subclass may replace) and runs epochs of :meth:`Trainer.run_step`;
validation, checkpoints, the log, TensorBoard, early stopping and the loss curve are hooks
(:mod:`maskrcnn.engine.hooks`). Files are written atomically: a kill at any moment leaves the previous
version whole. A non-finite loss stops the run naming the step and the losses, without saving the broken
weights; Ctrl-C (or the SIGTERM schedulers send before a kill) saves ``last`` and stops.

Under ``torchrun`` every process runs this loop on its own device with the model wrapped in
``DistributedDataParallel``: each takes every ``world_size``-th batch of the epoch
(:class:`~maskrcnn.engine.data.EpochBatches`), gradients are averaged across processes, and rank 0 alone
prints, logs and writes files; validation is shared out and gathered. The random stream of the RPN and
RoI samplers is reseeded from ``(seed, epoch, batch)`` before each batch, so a batch trains the same way
on whichever process and after whichever resume: two processes with a batch each make the same step as
one process accumulating the same two batches.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from maskrcnn.config import LAYERS, Config, config_to_dict
from maskrcnn.data import Batch, InstanceDataset
from maskrcnn.data.dataset import problem_lines
from maskrcnn.data.loader import mix_seed
from maskrcnn.engine import distributed
from maskrcnn.engine.data import EpochBatches, blank_batch, load_training_data, training_batches
from maskrcnn.engine.distributed import Group
from maskrcnn.engine.errors import TrainingError
from maskrcnn.engine.hooks import Hook, LossMeter, default_hooks
from maskrcnn.engine.model_fit import fit_model_to_data, keypoint_record, load_notes
from maskrcnn.engine.optim import autocast_for, build_optimizer, lr_factor, scaled_lr
from maskrcnn.engine.run_dir import RunDir
from maskrcnn.engine.state import (
    STATE_VERSION,
    TRAINER_KEYS,
    buffers,
    load_state,
    restore_buffers,
    rng_state,
    save_state,
    seed_everything,
    set_rng_state,
)
from maskrcnn.engine.tiling import tiling_record
from maskrcnn.engine.validation import targets_to_device
from maskrcnn.modeling import MaskRCNN, build_model
from maskrcnn.progress import bar as progress_bar
from maskrcnn.weights import build_with_weights, save_checkpoint

__all__ = ["Trainer"]

log = logging.getLogger(__name__)


class Trainer:
    """One training run in one process (see the module docstring).

    Args:
        cfg: the run's config (used as it is: :func:`train` passes a copy).
        run_dir: the run directory.
        group: this process's place in the run (:func:`~maskrcnn.engine.distributed.process_group`).
        say: where messages go (rank 0 prints; the others log at debug level).
        resume: continue from the run directory's training state (the initial weights are not loaded).
        progress: show progress bars (rank 0).
        hooks: run after the default ones (:func:`~maskrcnn.engine.hooks.default_hooks`).
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: RunDir,
        group: Group,
        *,
        say: Callable[[str], None],
        resume: bool = False,
        progress: bool = True,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.cfg, self.run_dir, self.group, self.say = cfg, run_dir, group, say
        self.resuming = resume
        self.progress = progress and group.is_main
        self.device = group.device
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed)
        self.train_data, self.val_data = self.build_data()
        self.class_names = list(self.train_data.class_names)
        # train_model: what the training forward pass goes through (DDP in a distributed run).
        self.model, self.train_model = self.wrap_model(self.build_model())
        t = cfg.train
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(t.ema), use_buffers=True)
            if t.ema is not None
            else None
        )
        self.sampler, self.loader = self.build_loader()
        self.batches_per_epoch = len(self.sampler)
        self.steps_per_epoch = max(1, self.batches_per_epoch // t.accumulate)
        self.total_steps = self.steps_per_epoch * t.epochs
        if t.max_steps is not None:
            self.total_steps = min(self.total_steps, t.max_steps)
        self.global_batch = cfg.data.batch_size * t.accumulate * group.world_size
        self.lr = self.learning_rate()
        self.optimizer = self.build_optimizer()
        self.scheduler = self.build_scheduler()
        self.autocast, self.precision, scaling = autocast_for(t.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=scaling)

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of the current epoch already trained on (this process)
        self.position = 0  # batches of the current epoch seen, trained on or pending
        self.pending = 0  # batches accumulated since the last optimizer step
        self.history: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}
        self.losses = LossMeter()
        self.stopped = "finished"
        self._stop_request: str | None = None
        # The random generators and the model's buffers (BatchNorm statistics move with every forward
        # pass) as they were after the last optimizer step: what a save must record, even when it happens
        # (Ctrl-C) after forward passes of batches whose step never came.
        self.rng_after_step: dict[str, Any] | None = None
        self.buffers_after_step: dict[str, Tensor] | None = None
        self.hooks: list[Hook] = [*default_hooks(self), *hooks]
        if resume:
            self.resume()

    # -- building ------------------------------------------------------------------------------------

    def build_data(self) -> tuple[InstanceDataset, InstanceDataset | None]:
        """The training data (with augmentation) and the validation data; the model's classes and
        keypoints follow the training data's (:func:`~maskrcnn.engine.model_fit.fit_model_to_data`)."""
        cfg = self.cfg
        train_data, val_data = load_training_data(
            cfg.data,
            seed=cfg.train.seed,
            split_file=self.run_dir.split,
            resume=self.resuming,
            main=self.group.is_main,
        )
        fit_model_to_data(cfg, train_data, self.say)
        self.say(f"training data: {train_data.summary()}")
        for line in problem_lines(train_data.problems):
            self.say(line)
        return train_data, val_data

    def build_model(self) -> MaskRCNN:
        """The model of ``model`` (with ``train.layers`` trainable), its initial weights, on the device;
        initial weights bring their architecture (recorded in the config, hence in config.yaml)."""
        t = self.cfg.train
        if t.layers is not None:
            self.cfg.model.backbone.trainable_layers = LAYERS[t.layers]
        if not t.weights or self.resuming:
            return build_model(self.cfg.model).to(self.device)
        model, report, changes = build_with_weights(self.cfg.model, t.weights)
        if changes:
            self.say(f"model architecture from {t.weights}: " + "; ".join(changes))
        self.say(
            f"weights: {len(report.loaded)} tensors from {t.weights} ({report.kind}){load_notes(report)}"
        )
        return model.to(self.device)

    def wrap_model(self, model: MaskRCNN) -> tuple[MaskRCNN, nn.Module]:
        """The model (``SyncBatchNorm``-converted if asked) and, in a run of several processes, its
        data-parallel wrapper (else the model again)."""
        if self.group.world_size == 1:
            return model, model
        return distributed.data_parallel(model, self.device, sync_bn=self.cfg.train.sync_bn, say=self.say)

    def build_loader(self) -> tuple[EpochBatches, torch.utils.data.DataLoader[Batch]]:
        """This process's share of every epoch's batches, and the loader that reads them."""
        return training_batches(
            self.train_data,
            self.cfg.data,
            seed=self.cfg.train.seed,
            rank=self.group.rank,
            world_size=self.group.world_size,
        )

    def learning_rate(self) -> float:
        """``train.lr`` under the linear scaling rule for this run's global batch."""
        t = self.cfg.train
        reference = t.lr_reference_batch or self.cfg.data.batch_size * t.accumulate
        lr = scaled_lr(t.lr, self.global_batch, reference, t.scale_lr)
        if lr != t.lr:
            self.say(
                f"learning rate {lr:.4g} = train.lr {t.lr:g} x global batch {self.global_batch} / "
                f"{reference} (the linear scaling rule; train.scale_lr=false keeps train.lr)"
            )
        return lr

    def build_optimizer(self) -> torch.optim.Optimizer:
        return build_optimizer(self.model, self.lr, self.cfg.train)

    def build_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        # Planned over the run's steps (epochs, or max_steps when it comes first).
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(self.cfg.train, self.total_steps))

    # -- the loop ------------------------------------------------------------------------------------

    def fit(self) -> None:
        """Train until the run's steps or epochs are done, a hook stops it, or Ctrl-C / SIGTERM."""
        t = self.cfg.train
        # max_steps, when it comes before the end of the last epoch, is what ends the run.
        budget = "max_steps" if self.total_steps < self.steps_per_epoch * t.epochs else "finished"
        self.dispatch("before_train")
        try:
            while self.step < self.total_steps and self.epoch < t.epochs:
                if not self.train_epoch():
                    self.stopped = budget
                    break
                self.stopped = budget if self.step >= self.total_steps else "finished"
                self.epoch += 1
                self.batch_in_epoch = 0
                self.dispatch("after_epoch")
                if self._stop_request is not None:
                    self.stopped = self._stop_request
                    break
            self.dispatch("after_train")  # the final validation and checkpoint of a finished run
        except KeyboardInterrupt:
            self.interrupted()
            self.dispatch("after_train")  # with stopped == "interrupted": the loss curve
        finally:
            self.model.eval()

    def train_epoch(self) -> bool:
        """One pass (from ``batch_in_epoch``); ``False`` when the run's steps ran out before its end."""
        self.sampler.set_epoch(self.epoch, skip=self.batch_in_epoch)
        self.batches_per_epoch = len(self.sampler)  # repeat-factor sampling draws a new length each epoch
        self.position, self.pending = self.batch_in_epoch, 0
        self.losses.reset()
        self.model.train()
        self.dispatch("before_epoch")
        bar = progress_bar(
            total=self.batches_per_epoch,
            initial=self.batch_in_epoch,
            desc=f"epoch {self.epoch + 1}/{self.cfg.train.epochs}",
            unit="batch",
            disable=not self.progress,
        )
        with bar:
            for batch in self.loader:
                bar.update(1)
                if not self.run_step(batch):
                    continue
                means = self.losses.means()
                bar.set_postfix(
                    loss=f"{sum(means.values()):.3f}", **{k[5:]: f"{v:.3f}" for k, v in means.items()}
                )
                self.dispatch("after_step")
                if self.step >= self.total_steps and self.position < self.batches_per_epoch:
                    return False
        return True

    def run_step(self, batch: Batch) -> bool:
        """Forward and backward one batch; an optimizer step on the last batch of each accumulation.

        Returns:
            whether an optimizer step was made.
        """
        t, group = self.cfg.train, self.group
        for message in batch.skipped:
            self.say(f"skipped an unreadable image: {message}")
        # The samplers' random draws depend on which batch of the run this is, not on the process or on
        # what came before (see the module docstring). Four values: unlike the items' (seed, epoch, index).
        torch.manual_seed(mix_seed(t.seed, self.epoch, self.position * group.world_size + group.rank, 1))
        self.position += 1
        readable = bool(batch.images)
        if readable:
            images = [image.to(self.device, non_blocking=True) for image in batch.images]
            targets = targets_to_device(batch.targets, self.device)
        elif group.world_size > 1:  # the others wait for this process's gradients: send zeros
            images, targets = blank_batch(self.device, num_keypoints=self.model.roi_heads.num_keypoints)
        else:
            return False
        self.pending += 1
        # Gradients are exchanged once per optimizer step, on its last batch.
        exchange = self.pending == t.accumulate or group.world_size == 1
        with contextlib.nullcontext() if exchange else self.train_model.no_sync():  # type: ignore[operator]
            with self.autocast:
                losses = self.train_model(images, targets)
            values = self._exchange_losses(losses, readable)
            loss = sum(losses.values()) * (1.0 if readable else 0.0)
            self.scaler.scale(loss / t.accumulate).backward()
        self.losses.add(list(losses), values[:-1].tolist(), float(values[-1]))
        if self.pending < t.accumulate:
            return False
        self._optimizer_step()
        return True

    def _exchange_losses(self, losses: dict[str, Tensor], readable: bool) -> Tensor:
        """Every process's losses summed, then the number of batches they come from (for the log, and to
        stop together); raises :class:`TrainingError` when one is not finite."""
        values = torch.stack([v.detach().float() for v in losses.values()]) * float(readable)
        values = distributed.all_reduce_sum(
            torch.cat([values, values.new_tensor([float(readable)])]), "exchanging the losses"
        )
        if not bool(torch.isfinite(values).all()):
            shown = values[:-1] / values[-1].clamp(min=1)
            described = ", ".join(f"{k}={float(v):.4g}" for k, v in zip(losses, shown, strict=True))
            last = self.run_dir.checkpoint("last")
            raise TrainingError(
                f"the loss is not finite at step {self.step + 1} (epoch {self.epoch + 1}): {described}. "
                f"Training stopped; the last good checkpoint is {last if last.exists() else 'none yet'}. "
                "Lower train.lr, enable train.clip_grad_norm, or check the data with maskrcnn check-data."
            )
        return values

    def _optimizer_step(self) -> None:
        t = self.cfg.train
        if t.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        self.batch_in_epoch = self.position
        self.pending = 0
        self.rng_after_step = rng_state()
        self.buffers_after_step = buffers(self.model)

    def interrupted(self) -> None:
        """Ctrl-C / SIGTERM: drop the batches since the last step (resuming redoes them) and what their
        forward passes did to the BatchNorm statistics, save ``last`` and stop."""
        if self.buffers_after_step is not None:
            restore_buffers(self.model, self.buffers_after_step)
        self.save()
        last = self.run_dir.checkpoint("last")
        self.say(f"interrupted: saved {last} at step {self.step}; continue with --resume")
        self.stopped = "interrupted"

    # -- what hooks call -----------------------------------------------------------------------------

    def dispatch(self, event: str, *args: Any) -> None:
        """Call ``event`` (e.g. ``after_step``) on every hook, in order."""
        for hook in self.hooks:
            getattr(hook, event)(self, *args)

    def log(self, record: dict[str, Any]) -> None:
        """Add a record (``kind`` ``train`` / ``validation``, ``step``...) to the run's history and pass it to
        the hooks' ``after_log``."""
        record["time"] = round(time.time(), 3)  # wall clock (Unix seconds): rates between any two records
        self.history.append(record)
        self.dispatch("after_log", record)

    def request_stop(self, reason: str, message: str) -> None:
        """End the run after the current epoch's hooks, with ``stopped = reason``."""
        self._stop_request = reason
        self.say(message)

    def eval_model(self) -> MaskRCNN:
        """The weights to validate and to publish: the moving average when enabled."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def save_checkpoint(self, name: str) -> None:
        """The published weights as ``name.safetensors`` (+ JSON), rank 0 only (they are the same in every
        process)."""
        if self.group.is_main:
            save_checkpoint(
                self.eval_model(),
                self.run_dir.checkpoint(name),
                config=self.cfg.model,
                class_names=self.class_names,
                extra={
                    "step": self.step,
                    "epoch": self.epoch,
                    "metrics": self.metrics,
                    **tiling_record(self.cfg.eval.tile, self.cfg.eval.tile_overlap),
                    **keypoint_record(self.train_data),
                },
            )

    def save(self) -> None:
        """``last``: the weights, then the training state (rank 0)."""
        if not self.group.is_main:
            return
        self.save_checkpoint("last")
        save_state(self.state_dict(), self.run_dir.state)

    def state_dict(self) -> dict[str, Any]:
        """Everything to resume exactly (see :mod:`maskrcnn.engine.state` for the keys)."""
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "step": self.step,
            "epoch": self.epoch,
            # In batches of the whole run (all processes): another number of processes can resume.
            "batch_in_epoch": self.batch_in_epoch * self.group.world_size,
            "history": self.history,
            "rng": self.rng_after_step if self.rng_after_step is not None else rng_state(),
            "config": config_to_dict(self.cfg),
        }
        for hook in self.hooks:
            own = hook.state_dict()
            taken = set(own) & set(state)
            if taken:
                raise TrainingError(f"{type(hook).__name__}'s state keys {sorted(taken)} are taken")
            state.update(own)
        return state

    def resume(self) -> None:
        """Continue from the run directory's training state."""
        path = self.run_dir.state
        state = load_state(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.step, self.epoch = state["step"], state["epoch"]
        done, world = state["batch_in_epoch"], self.group.world_size
        self.batch_in_epoch = done // world
        if done % world:
            self.say(
                f"resuming with {world} processes: {done % world} batch(es) of epoch {self.epoch + 1} will "
                "be trained on again"
            )
        self.history = list(state["history"])
        set_rng_state(state["rng"])
        hook_state = {k: v for k, v in state.items() if k not in TRAINER_KEYS}
        for hook in self.hooks:
            hook.load_state_dict(hook_state)
        self.say(
            f"resumed from {path}: step {self.step}, epoch {self.epoch + 1}, batch {self.batch_in_epoch}"
        )
