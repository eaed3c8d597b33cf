"""Checkpoints: the project's own, torchvision's, and a registry of named weights.

* :mod:`~maskrcnn.weights.state_dict`: reading a file's tensors without unpickling, and loading them into
  a model strictly (:func:`load_weights`);
* :mod:`~maskrcnn.weights.checkpoint`: the project's ``.safetensors`` checkpoints, and the model any
  checkpoint holds (:func:`load_checkpoint`, :func:`convert_checkpoint`);
* :mod:`~maskrcnn.weights.architecture`: the model a state dict without config fits;
* :mod:`~maskrcnn.weights.registry`, :mod:`~maskrcnn.weights.cache`, :mod:`~maskrcnn.weights.download`:
  named weights (``coco``, ``imagenet-r50``...), where they are kept and how they are fetched;
* :mod:`~maskrcnn.weights.coco`: the COCO category names of torchvision's COCO checkpoints.
"""

from maskrcnn.weights.cache import ResolvedWeights, WeightsUnavailable, cache_dir, resolve_weights
from maskrcnn.weights.checkpoint import (
    Checkpoint,
    build_with_weights,
    convert_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from maskrcnn.weights.download import DownloadError
from maskrcnn.weights.registry import REGISTRY, WeightsEntry, find, register
from maskrcnn.weights.state_dict import CLASS_DEPENDENT, LoadReport, load_weights, read_state_dict

__all__ = [
    "CLASS_DEPENDENT",
    "REGISTRY",
    "Checkpoint",
    "DownloadError",
    "LoadReport",
    "ResolvedWeights",
    "WeightsEntry",
    "WeightsUnavailable",
    "build_with_weights",
    "cache_dir",
    "convert_checkpoint",
    "find",
    "load_checkpoint",
    "load_weights",
    "read_state_dict",
    "register",
    "resolve_weights",
    "save_checkpoint",
]
