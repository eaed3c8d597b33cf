"""The project's checkpoints (``.safetensors`` with the config and class names inside), and the model any
checkpoint holds.

:func:`load_checkpoint` takes what ``--weights`` takes: one of the project's checkpoints, a torchvision
detection checkpoint (``.pth``: v1 or v2 layout, the 2019 key names, ``{"model": ...}`` wrappers, DDP's
``module.`` prefix), or a registry name (``coco``), and rebuilds the model. A file without a config has its
architecture recognised from its tensors (:mod:`maskrcnn.weights.architecture`) and its class names from
the registry (torchvision's COCO files: the 90 COCO names with their ``N/A`` gaps, label == COCO id), or,
for an unknown file, COCO's names when it has COCO's 91 outputs and ``class_1``... otherwise.
:func:`convert_checkpoint` writes such a file as one of the project's, so that later runs read no pickle.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from maskrcnn.config import ModelConfig, config_from_dict, config_to_dict
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.io import atomic_write, write_text
from maskrcnn.weights.architecture import adopt_architecture, recognise, recognise_backbone
from maskrcnn.weights.cache import resolve_weights
from maskrcnn.weights.coco import COCO_CLASS_NAMES
from maskrcnn.weights.registry import WeightsEntry
from maskrcnn.weights.state_dict import (
    LoadReport,
    checkpoint_kind,
    load_weights,
    read_state_dict,
    upgrade_legacy_keys,
)

__all__ = [
    "Checkpoint",
    "build_with_weights",
    "convert_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "maskrcnn-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class Checkpoint:
    """A model loaded from one of the project's checkpoints, with what was saved beside the weights."""

    model: nn.Module
    config: ModelConfig
    class_names: list[str]
    extra: dict[str, Any]


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    config: ModelConfig,
    class_names: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights as ``path`` (``.safetensors``) with the config and class names.

    The config and class names are stored in the file's metadata (so the file alone rebuilds the model)
    and, for people and tools, as JSON in ``<path without suffix>.json``. Both files are written to a
    temporary name and renamed, so a crash never leaves a half-written checkpoint behind.

    Args:
        class_names: the ``num_classes - 1`` foreground class names, in label order (label 1 first).
        extra: more JSON-serialisable information (training step, metrics...).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    if len(class_names) != config.num_classes - 1:
        raise ValueError(
            f"{len(class_names)} class names for num_classes={config.num_classes} "
            "(which counts the background)"
        )
    info = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": config_to_dict(config),
        "class_names": list(class_names),
        "extra": dict(extra or {}),
    }
    text = json.dumps(info, indent=1)
    # safetensors stores contiguous tensors; channels-last weights are made contiguous, values unchanged.
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"maskrcnn": text}))
    write_text(path.with_suffix(".json"), text + "\n")
    return path


def _project_info(path: Path, metadata: Mapping[str, str]) -> dict[str, Any] | None:
    """The metadata of one of the project's checkpoints (``None``: the file is not one)."""
    text = metadata.get("maskrcnn")
    sidecar = path.with_suffix(".json")
    if text is None and path.suffix == ".safetensors" and sidecar.is_file():
        text = sidecar.read_text()
    if text is None:
        return None
    info = json.loads(text)
    if info.get("format") != CHECKPOINT_FORMAT or int(info.get("version", 0)) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: unsupported checkpoint format {info.get('format')!r} v{info.get('version')}"
        )
    return info  # type: ignore[no-any-return]


def _architecture(
    path: Path, state: dict[str, Tensor], metadata: Mapping[str, str]
) -> tuple[str, ModelConfig]:
    """What a checkpoint holds: ``("detection", config)`` for a whole model (its saved config, or the one
    recognised from its tensors), ``("backbone", config)`` for an ImageNet classifier (only the config's
    backbone name, width and input channels are meaningful)."""
    info = _project_info(path, metadata)
    if info is not None:
        return "detection", config_from_dict(ModelConfig, info["config"])
    if checkpoint_kind(state, str(path)) == "backbone":
        return "backbone", recognise_backbone(state, str(path))
    return "detection", recognise(upgrade_legacy_keys(state), str(path)).config


def build_with_weights(
    config: ModelConfig, source: str | os.PathLike[str]
) -> tuple[nn.Module, LoadReport, list[str]]:
    """A model to train from ``source``'s weights: ``config``'s model with ``source``'s architecture.

    ``config`` is changed in place where its architecture differs from the checkpoint's (see
    :func:`~maskrcnn.weights.architecture.adopt_architecture`: a preset of v1 heads given ``coco-v2``
    gets v2 heads, one of ResNet-50 given ``imagenet-r101`` gets ResNet-101); the classes, the
    normalisation and what trains stay ``config``'s.

    Returns:
        ``(model, report, changes)``: the model with the weights loaded, :func:`load_weights`'s report
        and the architecture changes made to ``config``.
    """
    from maskrcnn.modeling import build_model

    path = resolve_weights(source).path
    state, metadata = read_state_dict(path)  # read once: for the architecture and for the weights
    kind, architecture = _architecture(path, state, metadata)
    changes = adopt_architecture(config, architecture, kind=kind)
    model = build_model(config)
    return model, load_weights(model, state, where=str(path)), changes


def load_checkpoint(
    source: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    class_names: Sequence[str] | None = None,
    progress: bool = True,
) -> Checkpoint:
    """The model a checkpoint holds, its weights loaded strictly (see the module docstring).

    Args:
        source: a checkpoint path or a registry name (downloaded into the cache when needed).
        device: where the model goes.
        class_names: names of labels 1..K for a file that carries none (a torchvision ``.pth`` of your
            own classes); a project checkpoint's own names are kept.
        progress: show a download's progress bar.

    Raises:
        FileNotFoundError, ValueError: no such file or name; a file that is no Mask R-CNN (an ImageNet
            backbone, a Faster R-CNN...) or whose tensors do not fit the recognised model.
        WeightsUnavailable, DownloadError: named weights that cannot be fetched now.
    """
    from maskrcnn.modeling import build_model  # the model package imports nothing from here

    resolved = resolve_weights(source, progress=progress)
    path = resolved.path
    state, metadata = read_state_dict(path)
    info = _project_info(path, metadata)
    if info is None:
        return _foreign(path, state, resolved.entry, class_names, device)
    config = config_from_dict(ModelConfig, info["config"])
    model = build_model(config)
    _all_loaded(load_weights(model, state, where=str(path)), state, config, str(path))
    return Checkpoint(model.to(device), config, list(info["class_names"]), dict(info.get("extra", {})))


def _foreign(
    path: Path,
    state: dict[str, Tensor],
    entry: WeightsEntry | None,
    class_names: Sequence[str] | None,
    device: str | torch.device,
) -> Checkpoint:
    """A checkpoint without the project's metadata: its architecture from its tensors."""
    from maskrcnn.modeling import build_model

    where = str(path)
    if checkpoint_kind(state, where) == "backbone":
        raise ValueError(
            f"{where} is an ImageNet classifier, not a detection model: it can start a training "
            "(`maskrcnn train --weights` loads it into the backbone), but it cannot detect anything"
        )
    architecture = recognise(upgrade_legacy_keys(state), where)
    config = architecture.config
    names = _class_names(config.num_classes, entry, class_names, where)
    model = build_model(config)
    _all_loaded(load_weights(model, state, where=where), state, config, where)
    source = entry.name if entry is not None else path.name
    log.info("%s: %s with %d classes", where, architecture.name, config.num_classes - 1)
    extra: dict[str, Any] = {"source": source, "architecture": architecture.name}
    if config.roi_heads.num_keypoints:
        # A foreign file names no keypoints: COCO's person keypoints for 17 (torchvision's), kp0... else.
        extra["keypoints"] = KeypointSpec.default(config.roi_heads.num_keypoints).to_dict()
    return Checkpoint(model.to(device), config, names, extra)


def _all_loaded(report: LoadReport, state: Mapping[str, Tensor], config: ModelConfig, where: str) -> None:
    """A model to run must hold every tensor of its file: the class-dependent layers that
    :func:`load_weights` re-initialises for a training with other classes are an error here."""
    if report.initialised:
        raise ValueError(
            f"{where}: no tensors for {report.initialised[0]} and the rest of its branch, which the "
            "config stored with it has (was the file edited?)"
        )
    if report.reinitialised:
        key = report.reinitialised[0]
        raise ValueError(
            f"{where}: {key} has shape {list(state[key].shape)}, which does not fit the "
            f"{config.num_classes - 1} classes of the config stored with it (was the file edited?)"
        )


def _class_names(
    num_classes: int, entry: WeightsEntry | None, given: Sequence[str] | None, where: str
) -> list[str]:
    if given is not None:
        if len(given) != num_classes - 1:
            raise ValueError(
                f"{where} has {num_classes - 1} classes (num_classes={num_classes} with the background); "
                f"{len(given)} class names were given"
            )
        return list(given)
    if entry is not None and entry.classes:
        return list(entry.classes)
    if num_classes == len(COCO_CLASS_NAMES) + 1:
        log.info("%s: 91 outputs, taken to be COCO's categories (label = COCO category id)", where)
        return list(COCO_CLASS_NAMES)
    return [f"class_{k}" for k in range(1, num_classes)]


def convert_checkpoint(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
) -> Checkpoint:
    """Write the model of ``source`` (any checkpoint :func:`load_checkpoint` takes) as one of the
    project's checkpoints ``out`` (``.safetensors``, config and class names inside, JSON beside).

    Returns:
        the loaded checkpoint (its ``extra`` records where it came from).
    """
    checkpoint = load_checkpoint(source, class_names=class_names, progress=progress)
    if class_names is not None:
        checkpoint.class_names = list(class_names)
    save_checkpoint(
        checkpoint.model,
        out,
        config=checkpoint.config,
        class_names=checkpoint.class_names,
        extra={**checkpoint.extra, "converted_from": str(source)},
    )
    return checkpoint
