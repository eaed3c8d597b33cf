"""Training hooks: the pieces around the loop (validation, checkpoints, the log, early stopping).

A hook is called by the :class:`~maskrcnn.engine.trainer.Trainer` at fixed points, in the order of the
trainer's hook list:

* ``before_train(trainer)``, once the model, data and (on resume) the state are ready;
* ``before_epoch(trainer)``, before each epoch's first batch (of this run: a resumed epoch too);
* ``after_step(trainer)``, after every optimizer step (``trainer.step`` counts them);
* ``after_log(trainer, record)``, after a record (``kind`` ``train`` or ``validation``) joined
  ``trainer.history``;
* ``after_validation(trainer, record)``, after a validation record;
* ``after_epoch(trainer)``, after a complete epoch (``trainer.epoch`` counts the completed ones);
* ``after_train(trainer)``, when the loop ended, with ``trainer.stopped`` saying why (``finished``,
  ``max_steps``, ``early_stopping``, ``interrupted``); not after an error.

A hook with state returns it from ``state_dict()`` (a dict of its own top-level keys, values that
``torch.save`` stores without pickling code: numbers, strings, tensors, lists, dicts); the trainer
writes it into ``last.state.pt`` and hands the file's contents back to ``load_state_dict`` on resume, so
a hook continues where it stopped. Hooks run in every process of a distributed run; writing files is
for rank 0 (``trainer.group.is_main``).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from maskrcnn.engine.evaluation import evaluate, metrics_summary, write_report
from maskrcnn.engine.validation import validation_loss
from maskrcnn.io import atomic_write
from maskrcnn.visualize import loss_curve_figure

if TYPE_CHECKING:
    from maskrcnn.engine.trainer import Trainer

__all__ = [
    "BestCheckpoint",
    "EarlyStopping",
    "Hook",
    "LogWriter",
    "LossCurve",
    "LossMeter",
    "PeriodicCheckpoint",
    "TensorBoard",
    "Validation",
    "default_hooks",
]


class Hook:
    """Base class: every method does nothing; override the ones you need (see the module docstring)."""

    def before_train(self, trainer: Trainer) -> None:
        pass

    def before_epoch(self, trainer: Trainer) -> None:
        pass

    def after_step(self, trainer: Trainer) -> None:
        pass

    def after_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        pass

    def after_validation(self, trainer: Trainer, record: dict[str, Any]) -> None:
        pass

    def after_epoch(self, trainer: Trainer) -> None:
        pass

    def after_train(self, trainer: Trainer) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class LossMeter:
    """Sums of the named losses over the batches since the last :meth:`reset`."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0.0

    def add(self, names: Sequence[str], values: Sequence[float], batches: float) -> None:
        for name, value in zip(names, values, strict=True):
            self.sums[name] += value
        self.count += batches

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1.0) for k, v in self.sums.items()}

    def reset(self) -> None:
        self.sums.clear()
        self.count = 0.0


class LogWriter(Hook):
    """Every ``every`` steps (and at the last), a ``train`` record of the mean losses since the previous
    one (in the epoch), the learning rate and the speed since the epoch began; every record appended to
    ``log.jsonl`` (rank 0)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.start_step, self.start_time = 0, time.perf_counter()

    def before_epoch(self, trainer: Trainer) -> None:
        self.start_step, self.start_time = trainer.step, time.perf_counter()

    def after_step(self, trainer: Trainer) -> None:
        if trainer.step % self.every and trainer.step != trainer.total_steps:
            return
        means = trainer.losses.means()
        elapsed = max(time.perf_counter() - self.start_time, 1e-9)
        steps = trainer.step - self.start_step
        trainer.log(
            {
                "kind": "train",
                "step": trainer.step,
                "epoch": trainer.epoch + 1,
                "lr": trainer.optimizer.param_groups[0]["lr"],
                "loss": sum(means.values()),
                **means,
                "steps_per_s": steps / elapsed,
                "images_per_s": steps * trainer.global_batch / elapsed,
            }
        )
        trainer.losses.reset()

    def after_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.group.is_main:
            with open(trainer.run_dir.log, "a") as f:
                f.write(json.dumps(record) + "\n")


class TensorBoard(Hook):
    """Every number of every record as a TensorBoard scalar (``train/loss``, ``validation/metrics/segm/AP``)
    in ``tensorboard/`` (rank 0), through ``writer`` (a ``SummaryWriter``)."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    @classmethod
    def if_installed(cls, log_dir: Any) -> TensorBoard | None:
        """The hook when the ``tensorboard`` package is installed (it is optional: the log has everything)."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return cls(SummaryWriter(log_dir=str(log_dir)))

    def after_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        kind = record.get("kind", "train")
        for key, value in _scalars(record):
            self.writer.add_scalar(f"{kind}/{key}", value, record["step"])
        self.writer.flush()


def _scalars(record: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """The numbers of a log record, nested keys joined with '/' (``metrics/segm/AP``)."""
    for key, value in record.items():
        if key in ("kind", "step", "time"):
            continue
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", float(value)


class Validation(Hook):
    """Validation loss and COCO metrics of the published weights every ``every_epochs`` epochs, after the
    last epoch, and at the end of a run that stopped between validations; the final one also writes the
    evaluation report into the run directory (rank 0)."""

    def __init__(self, *, every_epochs: int, max_images: int | None, batch_size: int, loss: bool) -> None:
        self.every_epochs = every_epochs
        self.max_images = max_images
        self.batch_size = batch_size
        self.loss = loss

    def after_epoch(self, trainer: Trainer) -> None:
        last = trainer.epoch >= trainer.cfg.train.epochs or trainer.step >= trainer.total_steps
        if trainer.epoch % self.every_epochs == 0 or last:
            self.validate(trainer, final=last)

    def after_train(self, trainer: Trainer) -> None:
        validated = any(r.get("kind") == "validation" and r["step"] == trainer.step for r in trainer.history)
        if trainer.stopped in ("finished", "max_steps") and not validated:
            self.validate(trainer, final=True)

    def validate(self, trainer: Trainer, *, final: bool) -> None:
        dataset = trainer.val_data
        assert dataset is not None
        if self.max_images is not None and self.max_images < len(dataset):
            dataset = torch.utils.data.Subset(dataset, range(self.max_images))  # type: ignore[assignment]
        model = trainer.eval_model()
        # Epochs completed, fractional when max_steps ended the run mid-epoch.
        epochs = round(trainer.epoch + trainer.batch_in_epoch / trainer.batches_per_epoch, 3)
        record: dict[str, Any] = {"kind": "validation", "step": trainer.step, "epoch": epochs}
        # Validation must not disturb the training run's random stream (exact resumption).
        device = trainer.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if self.loss:
                record["val_loss"] = validation_loss(
                    model, dataset, device=device, seed=trainer.cfg.train.seed
                )
            evaluation = evaluate(
                model,
                dataset,
                batch_size=self.batch_size,
                device=device,
                progress=trainer.progress,
                tile=trainer.cfg.eval.tile,
                tile_overlap=trainer.cfg.eval.tile_overlap,
            )
        record["metrics"] = evaluation.metrics
        trainer.metrics = evaluation.metrics
        if final and trainer.group.is_main:
            write_report(evaluation, trainer.run_dir.path, trainer.class_names)
        trainer.log(record)
        loss = f"loss {record['val_loss']:.3f}, " if "val_loss" in record else ""
        trainer.say(
            f"validation after epoch {record['epoch']} (step {record['step']}): {loss}"
            + metrics_summary(evaluation.metrics)
        )
        trainer.dispatch("after_validation", record)


def metric_value(record: Mapping[str, Any], name: str) -> float | None:
    """``train.best_metric`` of a validation record, higher is better (``val_loss`` is negated)."""
    if name == "val_loss":
        return -record["val_loss"] if "val_loss" in record else None
    section, _, key = name.partition(".")
    value = record.get("metrics", {}).get(section, {}).get(key)
    return None if value is None else float(value)


class BestCheckpoint(Hook):
    """Saves ``best`` whenever ``metric`` improves on the best validation so far, and counts the
    validations since it last did (``bad_validations``, for :class:`EarlyStopping`)."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.best: float | None = None
        self.bad_validations = 0

    def after_validation(self, trainer: Trainer, record: dict[str, Any]) -> None:
        score = metric_value(record, self.metric)
        if score is not None and (self.best is None or score > self.best):
            self.best, self.bad_validations = score, 0
            trainer.save_checkpoint("best")
        else:
            self.bad_validations += 1

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_validations": self.bad_validations}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.bad_validations = state.get("best"), int(state.get("bad_validations", 0))


class PeriodicCheckpoint(Hook):
    """Saves ``last`` (weights and training state) every ``every_steps`` steps when set, after every
    epoch, and at the end of a run that finished."""

    def __init__(self, every_steps: int | None) -> None:
        self.every_steps = every_steps

    def after_step(self, trainer: Trainer) -> None:
        if self.every_steps is not None and trainer.step % self.every_steps == 0:
            trainer.save()

    def after_epoch(self, trainer: Trainer) -> None:
        trainer.save()

    def after_train(self, trainer: Trainer) -> None:
        if trainer.stopped in ("finished", "max_steps"):
            trainer.save()


class EarlyStopping(Hook):
    """Stops the run after ``patience`` validations in a row without a new best (after the epoch's
    checkpoint: place it after :class:`PeriodicCheckpoint`)."""

    def __init__(self, best: BestCheckpoint, patience: int) -> None:
        self.best = best
        self.patience = patience

    def after_epoch(self, trainer: Trainer) -> None:
        if self.best.bad_validations >= self.patience:
            trainer.request_stop(
                "early_stopping",
                f"early stopping: {self.best.metric} did not improve in {self.patience} validations",
            )


class LossCurve(Hook):
    """``loss_curve.png`` from the run's records at the end (rank 0)."""

    def after_train(self, trainer: Trainer) -> None:
        figure = loss_curve_figure(trainer.history)
        if figure is not None and trainer.group.is_main:
            atomic_write(trainer.run_dir.loss_curve, lambda tmp: figure.savefig(tmp, format="png", dpi=100))


def default_hooks(trainer: Trainer) -> list[Hook]:
    """The hooks a run's config asks for, in the order they must run."""
    t, e = trainer.cfg.train, trainer.cfg.eval
    hooks: list[Hook] = [LogWriter(t.log_every)]
    if trainer.group.is_main and (board := TensorBoard.if_installed(trainer.run_dir.tensorboard)):
        hooks.append(board)
    if trainer.val_data is not None:
        hooks.append(
            Validation(
                every_epochs=e.every_epochs, max_images=e.max_images, batch_size=e.batch_size, loss=e.loss
            )
        )
    best = BestCheckpoint(t.best_metric)
    hooks += [best, PeriodicCheckpoint(t.checkpoint_every)]
    if t.patience is not None:
        hooks.append(EarlyStopping(best, t.patience))
    hooks.append(LossCurve())
    return hooks
