"""The training state file (``last.state.pt``), the random generators and the buffers it records.

The file is a dict read with ``torch.load(weights_only=True)`` (nothing is unpickled), written atomically
after the weights. Its keys (version 1; runs written by earlier versions of the project resume):

* ``version``; ``config`` (the run's config as a plain dict);
* ``model``, ``optimizer``, ``scheduler``, ``scaler``, ``ema`` (``None`` without a moving average);
* ``step`` (optimizer steps done), ``epoch`` (epochs completed), ``batch_in_epoch`` (batches of the
  current epoch trained on, counted over all processes), ``history`` (every log record);
* ``rng``: the torch, CUDA, numpy and Python generators after the last optimizer step;
* each hook's own keys (:meth:`maskrcnn.engine.hooks.Hook.state_dict`): ``best`` and
  ``bad_validations`` for the best checkpoint, and those of a user's hooks.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskrcnn.engine.errors import TrainingError
from maskrcnn.io import atomic_write

__all__ = [
    "STATE_VERSION",
    "TRAINER_KEYS",
    "load_state",
    "rng_state",
    "save_state",
    "seed_everything",
    "set_rng_state",
]

STATE_VERSION = 1
# The keys the trainer itself writes (a hook's keys must differ from them).
TRAINER_KEYS = frozenset(
    {"version", "config", "model", "optimizer", "scheduler", "scaler", "ema", "step", "epoch"}
    | {"batch_in_epoch", "history", "rng"}
)


def seed_everything(seed: int) -> None:
    """Seed torch's, numpy's and Python's global generators (a user's dataset may draw from any)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """The global generators' states, as plain tensors and lists (``weights_only`` refuses numpy)."""
    np_state = np.random.get_state()  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            str(np_state[0]),
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "python": [list(v) if isinstance(v, tuple) else v for v in random.getstate()],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` recorded."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the model's buffers (BatchNorm statistics: every forward pass in training moves them)."""
    return {name: b.detach().clone() for name, b in model.named_buffers()}


def restore_buffers(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Put back what :func:`buffers` copied."""
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(saved[name])


def save_state(state: dict[str, Any], path: Path) -> None:
    """Write the state file atomically (a kill while saving leaves the previous one whole)."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict[str, Any]:
    """Read a state file written by :func:`save_state`.

    Raises:
        TrainingError: there is none, or it is of an unknown version.
    """
    if not path.is_file():
        raise TrainingError(f"cannot resume: {path} does not exist (start the run without --resume)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("version") != STATE_VERSION:
        raise TrainingError(f"{path}: unsupported training state version {state.get('version')}")
    return state
