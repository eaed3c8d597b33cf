"""State dicts: read a checkpoint file's tensors (without unpickling) and load them into a model, strictly.

What loads (a path, or a state dict already in memory):

* a whole detection model: torchvision's ``maskrcnn_resnet50_fpn`` / ``_v2`` ``.pth`` state dicts (also
  the 2019 releases, whose FPN, RPN and mask-head keys had other names; also wrapped as
  ``{"model": ...}`` by training scripts, or with DDP's ``module.`` prefix), and the project's own
  ``.safetensors`` checkpoints;
* an ImageNet classifier ResNet / ResNeXt (torchvision's ``resnet50-*.pth`` and friends) into the
  backbone body alone; its ``fc`` classifier is not used.

Loading is strict: every tensor of the checkpoint is used and every tensor of the part loaded into is
found, with its shape checked. The exceptions are deliberate and logged: the class-dependent layers
are re-initialised when the number of classes differs; the first convolution is adapted to another
number of input channels (extra channels start from the mean of the RGB filters); BatchNorm's
``num_batches_tracked`` counter is dropped by frozen BatchNorm and filled in (0) when absent.

``.pth`` files are read with ``torch.load(..., weights_only=True)``: no arbitrary object is unpickled.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from maskrcnn.weights.cache import resolve_weights

__all__ = [
    "CLASS_DEPENDENT",
    "LoadReport",
    "checkpoint_kind",
    "load_weights",
    "read_state_dict",
    "unwrap_state_dict",
    "upgrade_legacy_keys",
]

log = logging.getLogger(__name__)

# Layers whose shape depends on the number of classes: re-initialised when it changes.
CLASS_DEPENDENT = (
    "roi_heads.box_predictor.cls_score.",
    "roi_heads.box_predictor.bbox_pred.",
    "roi_heads.mask_predictor.mask_fcn_logits.",
)
# The layer with one output per keypoint (a ConvTranspose2d: weight [in, K, 4, 4], bias [K]):
# re-initialised when the number of keypoints changes.
KEYPOINT_DEPENDENT = "roi_heads.keypoint_predictor.kps_score_lowres."
# Optional branches of the RoI heads: a checkpoint without one starts a model's from its initialisation
# (COCO Mask R-CNN weights for a model with masks and keypoints), and one the model does not have is left
# out (torchvision's keypoint R-CNN for a model of masks only), each said in the report.
BRANCHES = {
    "mask": ("roi_heads.mask_head.", "roi_heads.mask_predictor."),
    "keypoint": ("roi_heads.keypoint_head.", "roi_heads.keypoint_predictor."),
}
FIRST_CONV = "backbone.body.conv1.weight"
BODY = "backbone.body."

# torchvision renamed these keys in 2020 (module version 1 -> 2); its 2019 COCO checkpoints still use
# the old names.
_LEGACY_KEYS = (
    (re.compile(r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)$"), r"\1.0.\2"),
    (re.compile(r"^(rpn\.head\.conv)\.(weight|bias)$"), r"\1.0.0.\2"),
    (re.compile(r"^(roi_heads\.mask_head)\.mask_fcn(\d+)\.(weight|bias)$"), None),
)


@dataclass
class LoadReport:
    """What :func:`load_weights` did.

    Attributes:
        kind: ``"detection"`` (a whole model) or ``"backbone"`` (an ImageNet classifier's body).
        loaded: model keys that received a checkpoint tensor.
        reinitialised: model keys left at their initialisation because the class (or keypoint) count
            differs.
        ignored: checkpoint keys deliberately not used (an ImageNet classifier's ``fc``, a head branch
            the model does not have).
        initialised: model keys of a head branch the checkpoint does not have (left as initialised).
        adapted: descriptions of shape adaptations (input channels).
    """

    kind: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a checkpoint file without unpickling objects.

    Returns:
        ``(state_dict, metadata)``: tensors on the CPU, and the safetensors metadata (empty for
        ``.pth``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                return {k: f.get_tensor(k) for k in f.keys()}, metadata  # noqa: SIM118 (safe_open is no dict)
        except SafetensorError as e:  # a truncated or foreign file
            raise ValueError(f"cannot read checkpoint {path}: not a valid safetensors file ({e})") from e
    try:
        with warnings.catch_warnings():
            # Said for any file pickled with a newer protocol (a plain pickle.dump): the file is then
            # read or refused on its own merits, and the warning would only be noise on the terminal.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(
            f"cannot read checkpoint {path}: {e.__class__.__name__}: {first_line} (only state dicts of "
            "tensors are accepted; pickled objects are refused for safety)"
        ) from e
    return unwrap_state_dict(obj, str(path)), {}


def unwrap_state_dict(obj: Any, where: str) -> dict[str, Tensor]:
    """The state dict inside a checkpoint: bare, or under ``model`` / ``state_dict``; no DDP prefix."""
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{where}: no state dict found (got {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    others = sorted(k for k in obj if k not in tensors)
    if others:
        raise ValueError(f"{where}: entries that are not tensors: {others[:5]}")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def upgrade_legacy_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, replacement in _LEGACY_KEYS:
            m = pattern.match(key)
            if m is None:
                continue
            if replacement is None:  # mask_fcn{i} (1-based) -> {i - 1}.0
                key = f"{m.group(1)}.{int(m.group(2)) - 1}.0.{m.group(3)}"
            else:
                key = pattern.sub(replacement, key)
            break
        out[key] = value
    return out


def checkpoint_kind(state: Mapping[str, Tensor], where: str) -> str:
    if any(k.startswith(("backbone.", "rpn.", "roi_heads.")) for k in state):
        return "detection"
    if "conv1.weight" in state and any(k.startswith("layer1.") for k in state):
        return "backbone"
    raise ValueError(
        f"{where}: not a Mask R-CNN or ResNet checkpoint (first keys: {list(state)[:4]}); expected keys "
        "like 'backbone.body.conv1.weight' (a detection model) or 'conv1.weight' and 'layer1.*' (an "
        "ImageNet ResNet)"
    )


def _adapt_first_conv(weight: Tensor, channels: int) -> Tensor:
    """``[O, 3, k, k]`` RGB filters for ``channels`` inputs.

    Extra channels (RGB-D, multispectral) start as the mean of the RGB filters, so they respond to a
    plain intensity; with fewer channels (grey) each one gets the sum of the RGB filters divided among
    them, so a grey image replicated to RGB would give the same response.
    """
    have = weight.shape[1]
    if channels > have:
        extra = weight.mean(dim=1, keepdim=True).expand(-1, channels - have, -1, -1)
        return torch.cat([weight, extra], dim=1)
    return weight.sum(dim=1, keepdim=True).expand(-1, channels, -1, -1) / channels


def _keypoints_differ(found: torch.Size, expected: torch.Size) -> bool:
    """Whether two shapes of the keypoint predictor's layer differ in the number of keypoints only."""
    if len(found) != len(expected):
        return False
    if len(found) == 1:
        return True
    return found[0] == expected[0] and found[2:] == expected[2:]


def load_weights(
    model: nn.Module,
    source: str | os.PathLike[str] | Mapping[str, Tensor],
    *,
    where: str | None = None,
) -> LoadReport:
    """Load a checkpoint into ``model`` (see the module docstring for what loads and how strictly).

    Args:
        model: a model from :func:`maskrcnn.modeling.build_model` or the builders.
        source: a ``.pth`` / ``.safetensors`` path, a registry name (``coco``, ``imagenet-r50``: fetched
            into the cache when needed), or a state dict.
        where: what a state dict was read from, for messages (default ``"state dict"``).

    Returns:
        a :class:`LoadReport`; raises ``ValueError`` listing every unknown, missing or mis-shaped key.
    """
    if isinstance(source, Mapping):
        where = where or "state dict"
        state = unwrap_state_dict(source, where)
    else:
        path = resolve_weights(source).path
        where, state = str(path), read_state_dict(path)[0]
    kind = checkpoint_kind(state, where)
    report = LoadReport(kind)
    if kind == "backbone":
        report.ignored = sorted(k for k in state if k.startswith("fc."))
        state = {BODY + k: v for k, v in state.items() if not k.startswith("fc.")}
    else:
        state = upgrade_legacy_keys(state)

    own = model.state_dict()
    targets = {k for k in own if k.startswith(BODY)} if kind == "backbone" else set(own)
    if kind == "detection":
        for prefixes in BRANCHES.values():
            in_model = {k for k in own if k.startswith(prefixes)}
            in_file = {k for k in state if k.startswith(prefixes)}
            if in_model and not in_file:
                report.initialised.extend(sorted(in_model))
                targets -= in_model
            elif in_file and not in_model:
                report.ignored.extend(sorted(in_file))
                state = {k: v for k, v in state.items() if k not in in_file}
    merged: dict[str, Tensor] = {}
    problems: list[str] = []
    for key, value in state.items():
        if key not in own:
            if key.endswith("num_batches_tracked") and key.rsplit(".", 1)[0] + ".running_mean" in own:
                continue  # a frozen BatchNorm has no counter
            problems.append(f"unexpected key {key} {list(value.shape)}")
            continue
        expected = own[key].shape
        if (
            key == FIRST_CONV
            and value.dim() == 4
            and value.shape[1] != expected[1]
            and value.shape[0] == expected[0]
        ):
            value = _adapt_first_conv(value, expected[1])
            report.adapted.append(f"{key}: {state[key].shape[1]} -> {expected[1]} input channels")
        if value.shape != expected:
            if key.startswith(CLASS_DEPENDENT) and value.shape[1:] == expected[1:]:
                report.reinitialised.append(key)
                continue
            if key.startswith(KEYPOINT_DEPENDENT) and _keypoints_differ(value.shape, expected):
                report.reinitialised.append(key)
                continue
            problems.append(f"shape of {key}: checkpoint {list(value.shape)}, model {list(expected)}")
            continue
        merged[key] = value
    for key in sorted(targets - set(state) - set(report.reinitialised)):
        if key.endswith("num_batches_tracked"):
            merged[key] = torch.zeros((), dtype=torch.int64)
            continue
        problems.append(f"missing key {key} {list(own[key].shape)}")
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{where} does not fit this model ({len(problems)} problems):\n  {shown}{more}")

    model.load_state_dict({**own, **merged}, strict=True)
    report.loaded = sorted(merged)
    what = "detection model" if kind == "detection" else "ImageNet backbone (fc classifier ignored)"
    log.info("loaded %d tensors from %s (%s)", len(merged), where, what)
    if report.reinitialised:
        layers = sorted({k.rsplit(".", 1)[0] for k in report.reinitialised})
        what = "classes" if any(k.startswith(CLASS_DEPENDENT) for k in report.reinitialised) else "keypoints"
        log.info(
            "the number of %s differs from the checkpoint's: re-initialised %s (all other layers loaded)",
            what,
            ", ".join(layers),
        )
    for what, keys in (
        ("starts from its initialisation", report.initialised),
        ("is not used", report.ignored),
    ):
        branches = sorted({k.split(".")[1] for k in keys if k.startswith("roi_heads.")})
        if branches:
            log.info(
                "%s: the %s %s (the checkpoint and the model differ)", where, " and ".join(branches), what
            )
    for line in report.adapted:
        log.info("adapted %s; the extra channels are initialised from the mean of the RGB filters", line)
    return report
