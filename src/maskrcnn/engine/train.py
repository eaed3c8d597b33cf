"""``maskrcnn train``: a flat training loop with validation, checkpoints and exact resumption.

A run directory holds:

* ``config.yaml``: the complete config of the run;
* ``log.jsonl``: one JSON object per logged step (losses, learning rate, speed) and per validation;
* ``last.safetensors`` (+ ``last.json``): the latest weights, with the config and class names;
  ``best.safetensors``: the weights of the best validation so far (``train.best_metric``);
* ``last.state.pt``: everything to resume exactly (weights, optimizer, schedule, loss scaler, moving
  average, step, position in the epoch, random generators), written after the weights;
* ``loss_curve.png`` and, after validation, ``metrics.json`` with the evaluation report of the final model.

Every file is written to a temporary name and renamed, so a crash or a kill at any moment leaves the
previous version whole. A non-finite loss stops the run with a message naming the step and the losses,
without saving the broken weights; Ctrl-C (or SIGTERM, as sent by schedulers such as SLURM before they
kill a job) saves ``last`` and stops.

Under ``torchrun`` every process runs this loop on its own device with the model wrapped in
``DistributedDataParallel``: each takes every ``world_size``-th batch of the epoch
(:class:`~maskrcnn.engine.data.EpochBatches`), gradients are averaged across processes, and rank 0 alone
prints, logs and writes files; validation is shared out and gathered (see
:func:`~maskrcnn.engine.evaluate.evaluate`). The random stream of the RPN and RoI samplers is reseeded
from ``(seed, epoch, batch)`` before each batch, so a batch trains the same way on whichever process and
after whichever resume: two processes with a batch each make the same step as one process
accumulating the same two batches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from maskrcnn.config import LAYERS, Config, config_to_dict, save_config
from maskrcnn.data import InstanceDataset, build_target, drop_crowd
from maskrcnn.engine import distributed
from maskrcnn.engine.data import EpochBatches, build_augmentation, load_split, make_train_loader, mix_seed
from maskrcnn.engine.device import resolve_device
from maskrcnn.engine.distributed import DistributedError, Group, process_group
from maskrcnn.modeling import MaskRCNN, build_model
from maskrcnn.weights import load_weights, save_checkpoint

__all__ = ["TrainResult", "TrainingError", "train"]

log = logging.getLogger(__name__)

STATE_VERSION = 1


class TrainingError(RuntimeError):
    """A run that cannot go on (a non-finite loss, a run directory in the way), with what to do."""


@dataclass
class TrainResult:
    """What :func:`train` did."""

    run_dir: Path
    steps: int
    epochs_completed: int
    stopped: str  # "finished", "max_steps", "early_stopping" or "interrupted"
    metrics: dict[str, Any] = field(default_factory=dict)
    best: float | None = None


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


# The global numpy and Python generators are saved and restored too: a user's own dataset or transform may
# draw from them.


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # Plain lists: the state file is read with weights_only=True, which refuses numpy objects.
        "numpy": [
            str(np_state[0]),
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "python": [list(v) if isinstance(v, tuple) else v for v in random.getstate()],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    random.seed(seed)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights only: decaying norms' scales and biases only hurts."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(cfg: Config, total_steps: int) -> Callable[[int], float]:
    t = cfg.train
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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX), where bf16 autocast pays:
    elsewhere it is emulated and slower than float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers of torch.cpu: absent in some versions
        return False


def _autocast(cfg: Config, device: torch.device) -> tuple[contextlib.AbstractContextManager[Any], bool]:
    """The autocast context for ``train.amp`` and whether fp16 loss scaling is needed."""
    mode = cfg.train.amp
    if mode == "auto":
        if device.type == "cuda":
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and cpu_has_native_bf16():
            mode = "bf16"
        else:
            return contextlib.nullcontext(), False
    if mode == "off":
        return contextlib.nullcontext(), False
    if mode == "fp16" and device.type != "cuda":
        raise TrainingError("train.amp=fp16 needs a CUDA device (use bf16 on the CPU, or off)")
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype), mode == "fp16"


def _to_device(targets: list[dict[str, Tensor]], device: torch.device) -> list[dict[str, Tensor]]:
    return [{k: v.to(device, non_blocking=True) for k, v in drop_crowd(t).items()} for t in targets]


@contextlib.contextmanager
def _norms_frozen(model: nn.Module) -> Iterator[None]:
    """Train mode (the model returns losses) with BatchNorm statistics left alone: for validation losses."""
    was_training = model.training
    model.train()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        model.train(was_training)


class _Run:
    """The state of one training run (kept in one object so that saving and resuming see all of it)."""

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        group: Group,
        *,
        resume: bool,
        progress: bool,
        announce: Callable[[str], None],
    ) -> None:
        self.cfg = cfg
        self.dir = run_dir
        self.group = group
        self.progress = progress and group.is_main
        self.say = announce
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = group.device
        _seed_everything(t.seed)

        self.train_data = load_split(cfg.data, "train")
        assert self.train_data is not None
        self.val_data = load_split(cfg.data, "val")
        self.class_names = list(self.train_data.class_names)
        self._check_classes()
        summary = getattr(self.train_data, "summary", None)
        self.say(f"training data: {summary() if callable(summary) else f'{len(self.train_data)} images'}")
        for problem in getattr(self.train_data, "problems", [])[:20]:
            self.say(f"  {problem}")
        self.train_data.transforms = build_augmentation(cfg.data.augment, self.train_data)

        if t.layers is not None:
            cfg.model.backbone.trainable_layers = LAYERS[t.layers]
        self.model: MaskRCNN = build_model(cfg.model)
        if t.weights and not resume:
            report = load_weights(self.model, t.weights)
            extra = (
                f"; re-initialised {len(report.reinitialised)} class-dependent tensors"
                if report.reinitialised
                else ""
            )
            self.say(f"weights: {len(report.loaded)} tensors from {t.weights} ({report.kind}){extra}")
        self.model.to(self.device)
        self.train_model: nn.Module = self.model  # what the training forward pass goes through
        if group.world_size > 1:
            self._distribute()
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(t.ema), use_buffers=True)
            if t.ema is not None
            else None
        )

        self.sampler = EpochBatches(
            self.train_data,
            batch_size=cfg.data.batch_size,
            seed=t.seed,
            aspect_ratio_grouping=cfg.data.aspect_ratio_grouping,
            repeat_factor_threshold=cfg.data.repeat_factor_threshold,
            rank=group.rank,
            world_size=group.world_size,
        )
        self.loader = make_train_loader(
            self.train_data, self.sampler, seed=t.seed, num_workers=cfg.data.num_workers
        )
        self.batches_per_epoch = len(self.sampler)
        if self.batches_per_epoch == 0:
            raise TrainingError(
                f"the training data ({len(self.train_data)} images) yields no batch of {cfg.data.batch_size}"
                + (f" for each of {group.world_size} processes" if group.world_size > 1 else "")
            )
        self.steps_per_epoch = max(1, self.batches_per_epoch // t.accumulate)
        self.total_steps = self.steps_per_epoch * t.epochs
        if t.max_steps is not None:
            self.total_steps = min(self.total_steps, t.max_steps)

        local_batch = cfg.data.batch_size * t.accumulate
        self.global_batch = local_batch * group.world_size
        reference = t.lr_reference_batch or local_batch
        self.lr = _scaled_lr(t.lr, self.global_batch, reference, t.scale_lr)
        if self.lr != t.lr:
            self.say(
                f"learning rate {self.lr:.4g} = train.lr {t.lr:g} x global batch {self.global_batch} / "
                f"{reference} (the linear scaling rule; train.scale_lr=false keeps train.lr)"
            )
        params = _param_groups(self.model, t.weight_decay)
        if t.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=self.lr, momentum=t.momentum)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=self.lr, betas=(t.momentum, 0.999))
        # The schedule is planned over the run's steps (epochs, or max_steps when it comes first).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg, self.total_steps))
        self.autocast, scaling = _autocast(cfg, self.device)
        self.precision = (
            "float32" if isinstance(self.autocast, contextlib.nullcontext) else str(self.autocast.fast_dtype)
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=scaling)

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of the current epoch already trained on
        self.best: float | None = None
        self.bad_validations = 0
        self.history: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}
        # The random generators as they were after the last optimizer step: what a save must record, even
        # when it happens (Ctrl-C) after forward passes of batches whose step never came. (torch's is
        # reseeded before every batch anyway; numpy's and Python's serve a user's own transforms.)
        self.rng_after_step: dict[str, Any] | None = None
        # Likewise the model's buffers (BatchNorm statistics move with every forward pass).
        self.buffers_after_step: dict[str, Tensor] | None = None
        if resume:
            self._resume()
        self.tensorboard = _tensorboard(run_dir) if group.is_main else None

    # -- setup helpers -------------------------------------------------------------------------------

    def _distribute(self) -> None:
        """Wrap the model for data-parallel training (after ``SyncBatchNorm`` conversion if asked)."""
        from torch.nn.parallel import DistributedDataParallel

        if self.cfg.train.sync_bn:
            if self.device.type != "cuda":
                raise TrainingError(
                    "train.sync_bn needs GPUs (SyncBatchNorm runs on CUDA only); on CPUs use "
                    "model.backbone.norm=gn or frozen_bn, or larger per-process batches"
                )
            if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules()):
                self.say("train.sync_bn: the model has no BatchNorm layer that trains; nothing to sync")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)  # type: ignore[assignment]
        self.train_model = DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
        )

    def _check_classes(self) -> None:
        wanted = len(self.class_names) + 1
        if self.cfg.model.num_classes != wanted:
            self.say(
                f"model.num_classes set to {wanted} ({len(self.class_names)} classes in the training data + "
                f"background; the config said {self.cfg.model.num_classes})"
            )
            self.cfg.model.num_classes = wanted
        if self.val_data is not None and list(self.val_data.class_names) != self.class_names:
            raise TrainingError(
                f"the validation data's classes {list(self.val_data.class_names)} differ from the training "
                f"data's {self.class_names}; give both readers the same class names "
                "(e.g. --set data.val_options.class_names=[...])"
            )

    def _resume(self) -> None:
        path = self.dir / "last.state.pt"
        if not path.is_file():
            raise TrainingError(f"cannot resume: {path} does not exist (start the run without --resume)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("version") != STATE_VERSION:
            raise TrainingError(f"{path}: unsupported training state version {state.get('version')}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.step, self.epoch = state["step"], state["epoch"]
        # Saved in batches of the whole run (all processes); a different number of processes is fine.
        done, world = state["batch_in_epoch"], self.group.world_size
        self.batch_in_epoch = done // world
        if done % world:
            self.say(
                f"resuming with {world} processes: {done % world} batch(es) of epoch {self.epoch + 1} will "
                "be trained on again"
            )
        self.best, self.bad_validations = state["best"], state["bad_validations"]
        self.history = list(state["history"])
        _set_rng_state(state["rng"])
        self.say(
            f"resumed from {path}: step {self.step}, epoch {self.epoch + 1}, batch {self.batch_in_epoch}"
        )

    # -- saving --------------------------------------------------------------------------------------

    def eval_model(self) -> MaskRCNN:
        """The weights to validate and to publish: the moving average when enabled."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def save(self, name: str = "last") -> None:
        """Write a checkpoint (rank 0 only: the weights are the same in every process)."""
        if not self.group.is_main:
            return
        extra = {"step": self.step, "epoch": self.epoch, "metrics": self.metrics}
        save_checkpoint(
            self.eval_model(),
            self.dir / f"{name}.safetensors",
            config=self.cfg.model,
            class_names=self.class_names,
            extra=extra,
        )
        if name != "last":
            return
        state = {
            "version": STATE_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch * self.group.world_size,
            "best": self.best,
            "bad_validations": self.bad_validations,
            "history": self.history,
            "rng": self.rng_after_step if self.rng_after_step is not None else _rng_state(),
            "config": config_to_dict(self.cfg),
        }
        _atomic_torch_save(state, self.dir / "last.state.pt")

    def write_log(self, record: dict[str, Any]) -> None:
        record["time"] = round(time.time(), 3)  # wall clock (Unix seconds): rates between any two records
        self.history.append(record)
        if not self.group.is_main:
            return
        with open(self.dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            kind = record.get("kind", "train")
            for key, value in _scalars(record):
                self.tensorboard.add_scalar(f"{kind}/{key}", value, record["step"])
            self.tensorboard.flush()


def _tensorboard(run_dir: Path) -> Any:
    """A TensorBoard writer into the run directory when the ``tensorboard`` package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: the JSON lines log has everything
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _scalars(record: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """The numbers of a log record, nested keys joined with '/' (``metrics/segm/AP``)."""
    for key, value in record.items():
        if key in ("kind", "step", "time"):
            continue
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", float(value)


def _validate(run: _Run, final: bool) -> dict[str, Any]:
    """Validation loss and COCO metrics of the model being published; a log record."""
    from maskrcnn.engine.evaluate import evaluate, write_report

    assert run.val_data is not None
    model = run.eval_model()
    dataset: InstanceDataset = run.val_data
    if run.cfg.eval.max_images is not None and run.cfg.eval.max_images < len(dataset):
        # evaluate() reads class names and category ids through the Subset.
        dataset = torch.utils.data.Subset(dataset, range(run.cfg.eval.max_images))  # type: ignore[assignment]
    # Epochs completed, fractional when max_steps ended the run mid-epoch.
    epochs = round(run.epoch + run.batch_in_epoch / run.batches_per_epoch, 3)
    record: dict[str, Any] = {"kind": "validation", "step": run.step, "epoch": epochs}
    # Validation must not disturb the training run's random stream (exact resumption).
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        if run.cfg.eval.loss:
            record["val_loss"] = _validation_loss(run, model, dataset)
        evaluation = evaluate(
            model, dataset, batch_size=run.cfg.eval.batch_size, device=run.device, progress=run.progress
        )
    record["metrics"] = evaluation.metrics
    run.metrics = evaluation.metrics
    if final and run.group.is_main:
        write_report(evaluation, run.dir, run.class_names)
    return record


def _validation_loss(run: _Run, model: MaskRCNN, dataset: Any) -> float:
    """The mean loss over the validation images (each process takes its share)."""
    sums = torch.zeros(2, dtype=torch.float64)
    with _norms_frozen(model), torch.no_grad():
        for index in distributed.shard(len(dataset)):
            # The loss samples proposals: the same draws for an image whichever process takes it.
            torch.manual_seed(mix_seed(run.cfg.train.seed, index, 2))
            image, target = dataset[index]
            losses = model([image.to(run.device)], _to_device([target], run.device))
            sums[0] += float(sum(losses.values()))
            sums[1] += 1
    model.eval()
    total, count = distributed.all_reduce_sum(sums.to(run.device), "summing validation losses").tolist()
    return total / max(count, 1)


def _metric(record: dict[str, Any], name: str) -> float | None:
    if name == "val_loss":
        return -record["val_loss"] if "val_loss" in record else None
    section, _, key = name.partition(".")
    value = record.get("metrics", {}).get(section, {}).get(key)
    return None if value is None else float(value)


def _scaled_lr(lr: float, global_batch: int, reference_batch: int, scale: bool) -> float:
    """The linear scaling rule: ``lr`` is for ``reference_batch`` images per step."""
    return lr * global_batch / reference_batch if scale else lr


class _StopSignals:
    """Turns SIGTERM into ``KeyboardInterrupt`` (so that it saves and stops like Ctrl-C) and ignores
    repeated SIGINT / SIGTERM for a few seconds after the first: ``torchrun`` forwards the terminal's
    Ctrl-C to the processes again, and that echo must not cut the final save short (a user who insists
    later still interrupts)."""

    echo_seconds = 10.0

    def __init__(self) -> None:
        self.first: float | None = None
        self.previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.first is not None and now - self.first < self.echo_seconds:
            return
        self.first = now
        raise KeyboardInterrupt

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():  # signals are the main thread's
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def train(
    cfg: Config,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
    announce: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``cfg``'s model on its data into the run directory ``out_dir`` (see the module docstring).

    Started by ``torchrun`` with several processes, every process calls this and they train together
    (the run directory must be on a file system they all see for ``resume``).

    Args:
        resume: continue the run saved in ``out_dir`` exactly where it stopped.
        progress: show progress bars (rank 0).
        announce: where messages go (default: the log and the terminal through tqdm; rank 0 only).

    Returns:
        a :class:`TrainResult`; raises :class:`TrainingError` for a non-finite loss (after which the last
        good checkpoint is intact), for a run directory that already holds a run without ``resume``, and
        when another process of the run fails or stops answering.
    """
    if not distributed.launched_with_several_processes():
        try:
            resolve_device(cfg.train.device)
        except ValueError as e:
            raise TrainingError(f"train.device: {e}") from None
    try:
        with (
            _StopSignals(),
            process_group(cfg.train.device, timeout_s=cfg.train.dist_timeout) as group,
            # Also what DDP's own gradient exchange raises when a peer is gone.
            distributed.collective("training"),
        ):
            return _train(cfg, Path(out_dir), group, resume=resume, progress=progress, announce=announce)
    except DistributedError as e:
        raise TrainingError(f"the distributed run stopped: {e}") from e


def _train(
    cfg: Config,
    run_dir: Path,
    group: Group,
    *,
    resume: bool,
    progress: bool,
    announce: Callable[[str], None] | None,
) -> TrainResult:
    from tqdm import tqdm

    def say(message: str) -> None:
        if not group.is_main:
            log.debug("rank %d: %s", group.rank, message)
            return
        log.info(message)
        if announce is not None:
            announce(message)
        else:
            tqdm.write(message, file=sys.stderr)

    if not resume and (run_dir / "last.state.pt").exists():
        raise TrainingError(
            f"{run_dir} already holds a run (last.state.pt): resume it with --resume, or choose another --out"
        )
    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(cfg, run_dir, group, resume=resume, progress=progress, announce=say)
    if group.is_main:
        save_config(run.cfg, run_dir / "config.yaml")
    t = run.cfg.train
    stopped = "finished"
    model = run.model
    processes = (
        f" x {group.world_size} processes ({group.backend}), lr {run.lr:.4g}" if group.world_size > 1 else ""
    )
    say(
        f"training {run.total_steps} steps ({run.steps_per_epoch} per epoch, batch "
        f"{run.cfg.data.batch_size} x {t.accumulate}{processes}) on {run.device} ({run.precision}); "
        f"run directory {run_dir}"
    )
    # max_steps, when it comes before the end of the last epoch, is what ends the run.
    budget = "max_steps" if run.total_steps < run.steps_per_epoch * t.epochs else "finished"
    try:
        while run.step < run.total_steps and run.epoch < t.epochs:
            if not _train_epoch(run, tqdm):
                stopped = budget
                break
            stopped = budget if run.step >= run.total_steps else "finished"
            run.epoch += 1
            run.batch_in_epoch = 0
            last_epoch = run.epoch >= t.epochs or run.step >= run.total_steps
            if run.val_data is not None and (run.epoch % run.cfg.eval.every_epochs == 0 or last_epoch):
                record = _validate(run, final=last_epoch)
                run.write_log(record)
                say(_validation_line(record))
                score = _metric(record, t.best_metric)
                if score is not None and (run.best is None or score > run.best):
                    run.best, run.bad_validations = score, 0
                    run.save("best")
                else:
                    run.bad_validations += 1
            run.save()
            if t.patience is not None and run.bad_validations >= t.patience:
                stopped = "early_stopping"
                say(f"early stopping: {t.best_metric} did not improve in {t.patience} validations")
                break
        if stopped in ("finished", "max_steps"):
            if run.val_data is not None and not any(
                r.get("kind") == "validation" and r["step"] == run.step for r in run.history
            ):
                record = _validate(run, final=True)
                run.write_log(record)
                say(_validation_line(record))
            run.save()
    except KeyboardInterrupt:
        # The batches since the last optimizer step are dropped (resuming redoes them), and so is what
        # their forward passes did to the BatchNorm statistics.
        if run.buffers_after_step is not None:
            with torch.no_grad():
                for name, buffer in run.model.named_buffers():
                    buffer.copy_(run.buffers_after_step[name])
        run.save()
        say(f"interrupted: saved {run_dir / 'last.safetensors'} at step {run.step}; continue with --resume")
        stopped = "interrupted"
    finally:
        model.eval()
    if group.is_main:
        _plot_losses(run.history, run_dir / "loss_curve.png")
    return TrainResult(run_dir, run.step, run.epoch, stopped, run.metrics, run.best)


def _blank_batch(device: torch.device) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """One black 64x64 image without objects: what a process whose batch could not be read at all
    trains on (with its loss times zero) so that it still takes part in the gradient exchange."""
    image = torch.zeros(3, 64, 64, device=device)
    empty = torch.zeros(0, 64, 64, dtype=torch.uint8)
    return [image], _to_device([build_target(empty, torch.zeros(0, dtype=torch.int64), -1)], device)


def _not_finite(run: _Run, names: list[str], values: Tensor) -> TrainingError:
    """The error for a non-finite loss; ``values``: the losses summed over the processes, then the
    number of batches they come from."""
    shown = values[:-1] / values[-1].clamp(min=1)
    described = ", ".join(f"{k}={float(v):.4g}" for k, v in zip(names, shown, strict=True))
    last = run.dir / "last.safetensors"
    return TrainingError(
        f"the loss is not finite at step {run.step + 1} (epoch {run.epoch + 1}): {described}. "
        f"Training stopped; the last good checkpoint is {last if last.exists() else 'none yet'}. "
        "Lower train.lr, enable train.clip_grad_norm, or check the data with maskrcnn check-data."
    )


def _train_epoch(run: _Run, tqdm: Any) -> bool:
    """One pass (from ``run.batch_in_epoch``); ``False`` when the run's steps ran out before its end."""
    t, model, group = run.cfg.train, run.model, run.group
    several = group.world_size > 1
    run.sampler.set_epoch(run.epoch, skip=run.batch_in_epoch)
    run.batches_per_epoch = len(run.sampler)  # repeat-factor sampling draws a new length each epoch
    model.train()
    sums: dict[str, float] = defaultdict(float)
    count, start, step_start = 0.0, time.perf_counter(), run.step
    bar = tqdm(
        total=run.batches_per_epoch,
        initial=run.batch_in_epoch,
        desc=f"epoch {run.epoch + 1}/{t.epochs}",
        unit="batch",
        disable=not run.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    pending = 0  # batches accumulated since the last optimizer step
    position = run.batch_in_epoch  # batches of this epoch seen (a disabled bar counts nothing)
    try:
        for batch in run.loader:
            for message in batch.skipped:
                run.say(f"skipped an unreadable image: {message}")
            bar.update(1)
            # The samplers' random draws for this batch depend on which batch of the run it is, not on
            # the process or on what came before (see the module docstring). Four values: unlike the
            # items' (seed, epoch, index).
            torch.manual_seed(mix_seed(t.seed, run.epoch, position * group.world_size + group.rank, 1))
            position += 1
            readable = bool(batch.images)
            if readable:
                images = [img.to(run.device, non_blocking=True) for img in batch.images]
                targets = _to_device(batch.targets, run.device)
            elif several:  # the others wait for this process's gradients: send zeros
                images, targets = _blank_batch(run.device)
            else:
                continue
            pending += 1
            # Gradients are exchanged once per optimizer step, on its last batch.
            exchange = pending == t.accumulate or not several
            with contextlib.nullcontext() if exchange else run.train_model.no_sync():  # type: ignore[operator]
                with run.autocast:
                    losses = run.train_model(images, targets)
                loss = sum(losses.values()) * (1.0 if readable else 0.0)
                # Every process learns every process's losses (for the log, and to stop together).
                values = torch.stack([v.detach().float() for v in losses.values()]) * float(readable)
                values = distributed.all_reduce_sum(
                    torch.cat([values, values.new_tensor([float(readable)])]), "exchanging the losses"
                )
                if not bool(torch.isfinite(values).all()):
                    raise _not_finite(run, list(losses), values)
                run.scaler.scale(loss / t.accumulate).backward()
            for k, v in zip(losses, values[:-1].tolist(), strict=True):
                sums[k] += v
            count += float(values[-1])
            if pending < t.accumulate:
                continue
            if t.clip_grad_norm is not None:
                run.scaler.unscale_(run.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad_norm)
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.optimizer.zero_grad(set_to_none=True)
            run.scheduler.step()
            if run.ema is not None:
                run.ema.update_parameters(model)
            run.step += 1
            run.batch_in_epoch = position
            run.rng_after_step = _rng_state()
            run.buffers_after_step = {k: v.detach().clone() for k, v in model.named_buffers()}
            pending = 0
            means = {k: v / max(count, 1.0) for k, v in sums.items()}
            bar.set_postfix(
                loss=f"{sum(means.values()):.3f}", **{k[5:]: f"{v:.3f}" for k, v in means.items()}
            )
            if run.step % t.log_every == 0 or run.step == run.total_steps:
                elapsed = max(time.perf_counter() - start, 1e-9)
                run.write_log(
                    {
                        "kind": "train",
                        "step": run.step,
                        "epoch": run.epoch + 1,
                        "lr": run.optimizer.param_groups[0]["lr"],
                        "loss": sum(means.values()),
                        **means,
                        "steps_per_s": (run.step - step_start) / elapsed,
                        "images_per_s": (run.step - step_start) * run.global_batch / elapsed,
                    }
                )
                sums.clear()
                count = 0.0
            if t.checkpoint_every is not None and run.step % t.checkpoint_every == 0:
                run.save()
            if run.step >= run.total_steps and position < run.batches_per_epoch:
                return False
    finally:
        bar.close()
    return True


def _validation_line(record: dict[str, Any]) -> str:
    m = record.get("metrics", {})
    parts = []
    if "val_loss" in record:
        parts.append(f"loss {record['val_loss']:.3f}")
    for section, name in (("bbox", "box"), ("segm", "mask")):
        values = m.get(section, {})
        if values:
            parts.append(f"{name} AP {values.get('AP') or 0:.3f} AP50 {values.get('AP50') or 0:.3f}")
    return f"validation after epoch {record['epoch']} (step {record['step']}): " + ", ".join(parts)


def _plot_losses(history: list[dict[str, Any]], path: Path) -> None:
    """The training losses (and validation loss) against the step."""
    steps = [r for r in history if r.get("kind") == "train"]
    if not steps:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    x = [r["step"] for r in steps]
    for key in (
        "loss",
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
    ):
        if key in steps[0]:
            ax.plot(x, [r[key] for r in steps], label=key, linewidth=2 if key == "loss" else 1)
    val = [r for r in history if r.get("kind") == "validation" and "val_loss" in r]
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "ko--", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
