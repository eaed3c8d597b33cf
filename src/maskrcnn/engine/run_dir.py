"""The names of the files in a run directory: the one place they are spelled out.

A training run directory (``maskrcnn train --out DIR``) holds:

* ``config.yaml``: the complete config of the run;
* ``split.json`` with ``data.val_split``: the training images held out for validation;
* ``log.jsonl``: one JSON object per logged step and per validation;
* ``last.safetensors`` + ``last.json``: the latest weights with their config and class names;
  ``best.safetensors`` + ``best.json``: the weights of the best validation so far;
* ``last.state.pt``: everything needed to resume exactly (written after the weights);
* ``loss_curve.png``; ``tensorboard/`` when TensorBoard is installed;
* after the final validation, the evaluation report (``metrics.json`` and the files of
  :data:`maskrcnn.engine.evaluation.report.REPORT_FILES`);
* for the demo, ``predictions.png``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunDir"]


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory's files (nothing is created or read here)."""

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def log(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def state(self) -> Path:
        return self.path / "last.state.pt"

    @property
    def split(self) -> Path:
        """The images ``data.val_split`` held out (see :mod:`maskrcnn.engine.split`)."""
        return self.path / "split.json"

    @property
    def loss_curve(self) -> Path:
        return self.path / "loss_curve.png"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def predictions(self) -> Path:
        """The demo's grid of predictions on new images (written once the demo finished)."""
        return self.path / "predictions.png"

    def checkpoint(self, name: str = "last") -> Path:
        """The weights ``name`` (``last`` or ``best``); their JSON lies beside with the same stem."""
        return self.path / f"{name}.safetensors"

    def holds_run(self) -> bool:
        """Whether a run was started here (its training state exists)."""
        return self.state.exists()
