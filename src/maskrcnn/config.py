"""Model configuration: nested dataclasses, plain-dict round trip, ``key=value`` overrides.

Configuration stays at the edge: modules take typed keyword arguments, and only
:func:`maskrcnn.modeling.build_model` reads a :class:`ModelConfig`. The defaults are those of
torchvision's ``maskrcnn_resnet50_fpn`` (COCO, 91 classes), so a default config builds the model that
torchvision's COCO checkpoints were trained with, except the backbone normalisation, which is frozen
BatchNorm (what fine-tuning from pretrained weights wants).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "AnchorConfig",
    "BackboneConfig",
    "ModelConfig",
    "RPNConfig",
    "RoIHeadsConfig",
    "TransformConfig",
    "config_from_dict",
    "config_to_dict",
    "override",
]

NORMS = ("frozen_bn", "bn", "syncbn", "gn", "none")
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d", "resnext101_32x8d")


@dataclass
class BackboneConfig:
    """ResNet body + FPN.

    Attributes:
        name: one of ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``resnext50_32x4d``,
            ``resnext101_32x8d``.
        norm: normalisation in the ResNet body: ``frozen_bn`` (fine-tuning from pretrained weights),
            ``bn``, ``syncbn`` (multi-GPU) or ``gn`` (GroupNorm, for training from scratch with small
            batches).
        trainable_layers: how many of the ResNet stages, counted from the top (``layer4``, ``layer3``,
            ``layer2``, ``layer1``, stem), are trained: 0 trains none of the body ("heads"), 5 all of it.
        in_channels: image channels (3 for RGB; 4 for RGB-D, more for multispectral images).
        width: channels of the stem and of the first stage's bottleneck (64 in the standard ResNets);
            each later stage doubles it. Smaller values make a narrow, fast backbone for small problems.
        gn_groups: groups of GroupNorm layers (body, FPN and heads).
        fpn_channels: channels of every FPN output (and of the RPN and RoI heads' inputs).
        fpn_norm: normalisation after the FPN convolutions (``none``; ``bn`` in torchvision's v2 model).
        channels_last: keep feature maps channels-last in memory, the fast layout for CPU convolutions and
            for RoIAlign.
    """

    name: str = "resnet50"
    norm: str = "frozen_bn"
    trainable_layers: int = 3
    in_channels: int = 3
    width: int = 64
    gn_groups: int = 32
    fpn_channels: int = 256
    fpn_norm: str = "none"
    channels_last: bool = True


@dataclass
class AnchorConfig:
    """Anchors of the RPN: one tuple of sizes (pixels) per FPN level P2..P6, and aspect ratios (h/w).

    Smaller objects than the default 32 px want smaller sizes, e.g. ``((8,), (16,), (32,), (64,), (128,))``.
    """

    sizes: tuple[tuple[float, ...], ...] = ((32.0,), (64.0,), (128.0,), (256.0,), (512.0,))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)


@dataclass
class RPNConfig:
    """Region proposal network (torchvision's defaults)."""

    conv_depth: int = 1
    pre_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 1000
    post_nms_top_n_train: int = 2000
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7
    fg_iou_thresh: float = 0.7
    bg_iou_thresh: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    score_thresh: float = 0.0
    min_size: float = 1e-3
    box_loss: str = "smooth_l1"
    smooth_l1_beta: float = 1.0 / 9.0


@dataclass
class RoIHeadsConfig:
    """Box and mask heads (torchvision's defaults).

    Attributes:
        box_head: ``mlp`` (two fully connected layers, the original) or ``conv`` (``box_head_convs``
            3x3 convolutions and one fully connected layer, torchvision's v2).
        head_norm: normalisation in the conv box head and the mask head (``none``; ``bn`` in v2).
        mask_head_channels: output channels of each 3x3 conv of the mask head.
        pool_aligned: half-pixel-aligned RoIAlign (torchvision's Mask R-CNN uses ``False``).
    """

    box_head: str = "mlp"
    box_head_convs: tuple[int, ...] = (256, 256, 256, 256)
    representation_size: int = 1024
    head_norm: str = "none"
    mask_head_channels: tuple[int, ...] = (256, 256, 256, 256)
    mask_dilation: int = 1
    mask_predictor_channels: int = 256
    box_pool_size: int = 7
    mask_pool_size: int = 14
    pool_sampling_ratio: int = 2
    pool_aligned: bool = False
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.5
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    box_loss: str = "smooth_l1"
    smooth_l1_beta: float = 1.0 / 9.0
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100


@dataclass
class TransformConfig:
    """Input normalisation and resizing.

    Attributes:
        min_size: target length of the short side; several values mean a random choice per image in
            training (the last one is used in evaluation).
        max_size: the long side is at most this.
        image_mean: per-channel mean of 0..1 images (ImageNet's for RGB).
        image_std: per-channel standard deviation.
        size_divisible: the batch is padded to a multiple of this.
    """

    min_size: tuple[int, ...] = (800,)
    max_size: int = 1333
    image_mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    image_std: tuple[float, ...] = (0.229, 0.224, 0.225)
    size_divisible: int = 32


@dataclass
class ModelConfig:
    """Everything :func:`maskrcnn.modeling.build_model` needs.

    ``num_classes`` counts the background: 91 for COCO's 90 category ids, ``K + 1`` for ``K`` classes.
    """

    num_classes: int = 91
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: RoIHeadsConfig = field(default_factory=RoIHeadsConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)

    def __post_init__(self) -> None:
        validate(self)


def validate(cfg: ModelConfig) -> None:
    """Raise ``ValueError`` naming the field for values the model cannot be built with."""
    b = cfg.backbone
    problems = []
    if cfg.num_classes < 2:
        problems.append(f"num_classes={cfg.num_classes} (it counts the background: K classes need K + 1)")
    if b.name not in BACKBONES:
        problems.append(f"backbone.name={b.name!r} (choose from {', '.join(BACKBONES)})")
    for key, value in (("backbone.norm", b.norm), ("backbone.fpn_norm", b.fpn_norm)):
        if value not in NORMS:
            problems.append(f"{key}={value!r} (choose from {', '.join(NORMS)})")
    if cfg.roi_heads.head_norm not in NORMS:
        problems.append(f"roi_heads.head_norm={cfg.roi_heads.head_norm!r} (choose from {', '.join(NORMS)})")
    if not 0 <= b.trainable_layers <= 5:
        problems.append(f"backbone.trainable_layers={b.trainable_layers} (0..5)")
    if b.in_channels < 1:
        problems.append(f"backbone.in_channels={b.in_channels}")
    if cfg.roi_heads.box_head not in ("mlp", "conv"):
        problems.append(f"roi_heads.box_head={cfg.roi_heads.box_head!r} (mlp or conv)")
    for key, value in (("rpn.box_loss", cfg.rpn.box_loss), ("roi_heads.box_loss", cfg.roi_heads.box_loss)):
        if value not in ("smooth_l1", "l1"):
            problems.append(f"{key}={value!r} (smooth_l1 or l1)")
    t = cfg.transform
    if len(t.image_mean) != b.in_channels or len(t.image_std) != b.in_channels:
        problems.append(
            f"transform.image_mean / image_std have {len(t.image_mean)} / {len(t.image_std)} values for "
            f"backbone.in_channels={b.in_channels}"
        )
    if not t.min_size or min(t.min_size) < 1 or t.max_size < 1:
        problems.append(f"transform.min_size={t.min_size} / max_size={t.max_size}")
    if len(cfg.anchors.sizes) != 5:
        problems.append(f"anchors.sizes has {len(cfg.anchors.sizes)} levels; the FPN has 5 (P2..P6)")
    if problems:
        raise ValueError("invalid model config: " + "; ".join(problems))


# ----------------------------------------------------------------------------------------------------
# Plain-dict round trip (for JSON / YAML files and checkpoints) and key=value overrides

T = TypeVar("T")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as nested dicts and lists (JSON- and YAML-ready)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(cfg)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a plain value (from JSON, YAML or the command line) to the annotated field type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(annotation, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]  # a single number where a tuple is expected, e.g. min_size: 800
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if annotation is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        try:
            number = annotation(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is int and isinstance(value, float) and value != number:
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _from_dict(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where or 'config'}: unknown keys {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build the dataclass ``cls`` from nested dicts, checking every key and converting types.

    Missing keys keep their defaults; unknown keys raise ``ValueError`` naming them.
    """
    return _from_dict(cls, data, "")


def override(cfg: T, assignments: Mapping[str, Any]) -> T:
    """A copy of ``cfg`` with dotted keys replaced, e.g. ``{"rpn.nms_thresh": 0.6}``.

    Values may be strings (from the command line: ``"0.6"``, ``"[800, 1024]"``, ``"true"``): they are
    parsed as YAML-like literals and converted to the field's type.
    """
    data = config_to_dict(cfg)
    for key, raw in assignments.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"override {key!r}: {part!r} is not a section of the config")
            node = node[part]
        if parts[-1] not in node:
            raise ValueError(f"override {key!r}: no such key; known here: {sorted(node)}")
        node[parts[-1]] = _parse_literal(raw) if isinstance(raw, str) else raw
    return config_from_dict(type(cfg), data)


def _parse_literal(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    return text
