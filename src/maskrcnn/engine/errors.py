"""The error of a training run that cannot go on."""

from __future__ import annotations

__all__ = ["TrainingError"]


class TrainingError(RuntimeError):
    """A run that cannot go on (a non-finite loss, a run directory in the way), with what to do."""
