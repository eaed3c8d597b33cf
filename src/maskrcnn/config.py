"""Configuration: nested dataclasses, presets, YAML files, ``key=value`` overrides.

A run's :class:`Config` has four sections: ``model`` (:class:`ModelConfig`), ``data``, ``train`` and
``eval``. Configuration stays at the edge: modules take typed keyword arguments, only
:func:`maskrcnn.modeling.build_model` reads a :class:`ModelConfig` and only the training engine reads the
rest. The model defaults are those of torchvision's ``maskrcnn_resnet50_fpn`` (COCO, 91 classes), so a
default config builds the model that torchvision's COCO checkpoints were trained with, except the backbone
normalisation, which is frozen BatchNorm (what fine-tuning from pretrained weights wants).

Presets (:data:`PRESETS`, ``maskrcnn train --preset NAME``): ``shapes`` (the demo: a small model trained
from scratch on synthetic shapes, on a CPU), ``coco`` (torchvision's ResNet-50-FPN recipe) and ``balloon``
(fine-tuning COCO weights on a small dataset of one class, as in the classic balloon sample).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "PRESETS",
    "AnchorConfig",
    "AugmentConfig",
    "BackboneConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "RPNConfig",
    "RoIHeadsConfig",
    "TrainConfig",
    "TransformConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "override",
    "parse_value",
    "preset",
    "save_config",
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
    """Box, mask and keypoint heads (torchvision's defaults).

    Attributes:
        box_head: ``mlp`` (two fully connected layers, the original) or ``conv`` (``box_head_convs``
            3x3 convolutions and one fully connected layer, torchvision's v2).
        head_norm: normalisation in the conv box head and the mask head (``none``; ``bn`` in v2).
        mask_head_channels: output channels of each 3x3 conv of the mask head.
        pool_aligned: half-pixel-aligned RoIAlign (torchvision's Mask R-CNN uses ``False``).
        mask_head: whether the model predicts masks (torchvision's keypoint R-CNN does not).
        num_keypoints: keypoints per object; 0 (the default): no keypoint head.
        keypoint_head_channels: output channels of each 3x3 conv of the keypoint head (eight of 512 in
            the paper and torchvision).
        keypoint_pool_size: RoIAlign size of the keypoint head (14; the heatmaps are 4x: 56x56).
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
    mask_head: bool = True
    num_keypoints: int = 0
    keypoint_head_channels: tuple[int, ...] = (512,) * 8
    keypoint_pool_size: int = 14


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
    if cfg.roi_heads.num_keypoints < 0:
        problems.append(f"roi_heads.num_keypoints={cfg.roi_heads.num_keypoints} (0: no keypoint head)")
    if not cfg.roi_heads.mask_head and cfg.roi_heads.num_keypoints == 0:
        problems.append(
            "roi_heads.mask_head=false and roi_heads.num_keypoints=0: the model would predict boxes only"
        )
    if cfg.roi_heads.num_keypoints and not cfg.roi_heads.keypoint_head_channels:
        problems.append("roi_heads.keypoint_head_channels is empty")
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
# Data, training and evaluation

LAYERS = {"heads": 0, "5+": 1, "4+": 2, "3+": 3, "all": 5}
"""``train.layers`` (the classic samples' names) -> backbone stages trained: ``heads`` trains the FPN,
RPN and RoI heads only; ``3+`` also ResNet stages 3-5 (``layer2``-``layer4``); ``all`` everything."""


@dataclass
class AugmentConfig:
    """Training augmentation (see ``maskrcnn.data.transforms``); all off but horizontal flips by default.

    Attributes:
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip (for top-down imagery: microscopy, aerial).
        rot90: probability of a 90-degree rotation.
        scale_jitter: ``(min, max)`` factor of a random resize before the model's own resizing.
        large_scale_jitter: output size of large-scale jitter (resize by 0.1..2 and crop or pad to it).
        crop: smallest side fraction of a random crop (instances cut by it are clipped).
        crop_size: instead of ``crop``, random square crops of this many pixels (clamped to the image):
            training on large images at the scale tiled inference (``eval.tile``, ``--tile``) applies the
            model at. ``maskrcnn train --tile SIZE`` sets both.
        color_jitter: strength of brightness, contrast and saturation jitter (hue: a quarter of it).
        copy_paste: probability of pasting another training image's objects on top.
    """

    hflip: float = 0.5
    vflip: float = 0.0
    rot90: float = 0.0
    scale_jitter: tuple[float, float] | None = None
    large_scale_jitter: int | None = None
    crop: float | None = None
    crop_size: int | None = None
    color_jitter: float = 0.0
    copy_paste: float = 0.0


@dataclass
class DataConfig:
    """Where the data comes from and how it is batched.

    Attributes:
        format: a reader name (``coco``, ``via``, ``labelme``, ``instance-png``, ``mask-dirs``, ``yolo``,
            ``shapes``).
        train: what the reader reads for training (JSON, folder, data YAML; nothing for ``shapes``).
        val: the same for validation (optional: without it, no validation).
        val_split: instead of ``val``, hold out this fraction of the training images (in (0, 1), e.g.
            0.2) for validation: by image, seeded by ``train.seed``, stratified by class, saved in the
            run directory (``split.json``) so that ``--resume`` keeps it.
        train_options: reader options for the training data (e.g. ``{"image_dir": "images"}``).
        val_options: reader options for the validation data.
        batch_size: images per optimizer step (before gradient accumulation), per process.
        num_workers: data-loading processes.
        aspect_ratio_grouping: batch portrait and landscape images apart (less padding).
        repeat_factor_threshold: oversample images of rare classes (LVIS repeat-factor sampling, e.g. 0.1).
        strict: stop at the first data error instead of skipping (and counting) bad instances and images.
    """

    format: str = "coco"
    train: str | None = None
    val: str | None = None
    val_split: float | None = None
    train_options: dict[str, Any] = field(default_factory=dict)
    val_options: dict[str, Any] = field(default_factory=dict)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 2
    num_workers: int = 0
    aspect_ratio_grouping: bool = True
    repeat_factor_threshold: float | None = None
    strict: bool = False


@dataclass
class TrainConfig:
    """The optimisation.

    Attributes:
        epochs: passes over the training data.
        max_steps: stop after this many optimizer steps (smoke runs, tests), whatever ``epochs`` says.
        optimizer: ``sgd`` (with momentum) or ``adamw``.
        lr: peak learning rate for a global batch of ``lr_reference_batch`` images.
        lr_reference_batch: the global batch (images per optimizer step, all processes together) that
            ``lr`` is meant for; ``None``: one process's batch, ``data.batch_size * accumulate``. With
            ``scale_lr`` the run uses ``lr * global_batch / lr_reference_batch`` (the linear scaling rule
            of Goyal et al., 2017: 0.02 for 16 images is torchvision's recipe), so the same config on N
            processes trains with N times the batch and N times the learning rate.
        scale_lr: apply that rule (off: ``lr`` as given, whatever the batch).
        momentum: SGD momentum (AdamW: beta1).
        weight_decay: decoupled for AdamW, L2 for SGD; not applied to norms and biases.
        schedule: ``multistep`` (``lr * gamma`` at each milestone), ``cosine`` (to ``lr * min_lr``) or
            ``constant``, after a linear warmup from ``lr * warmup_factor`` over ``warmup_steps``.
        milestones: fractions of the total steps where ``multistep`` decays.
        gamma: the decay of ``multistep``.
        min_lr: the final fraction of ``cosine``.
        warmup_steps: steps of linear warmup.
        warmup_factor: the fraction of ``lr`` warmup starts from.
        clip_grad_norm: clip the global gradient norm to this (``None``: no clipping).
        accumulate: batches whose gradients add up to one optimizer step.
        ema: decay of an exponential moving average of the weights (e.g. 0.999; ``None``: off), used
            for validation and the saved checkpoints.
        amp: mixed precision: ``off``, ``bf16``, ``fp16`` (CUDA, with loss scaling) or ``auto`` (bf16 on
            CUDA devices that support it, else fp16 on CUDA; bf16 on CPUs that compute it in hardware,
            AVX-512 BF16 or AMX, where a training step is faster than in float32: 1.3x for the shapes
            demo, 3x for ResNet-50-FPN on 2 images of 800 px on an Intel Xeon with AMX; otherwise off).
        layers: which backbone stages train (``heads``, ``5+``, ``4+``, ``3+``, ``all``), overriding
            ``model.backbone.trainable_layers``; ``None`` keeps it.
        weights: initial weights: a project checkpoint, a torchvision detection ``.pth``, an ImageNet
            ResNet ``.pth`` or a registry name (``coco``, ``imagenet-r50``); the model takes their
            architecture (backbone, v1/v2 heads) and keeps the config's classes, norms and layers.
        seed: seeds the initialisation, the data order and the augmentation.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        threads: CPU threads for torch (``None``: torch's default).
        log_every: steps between log lines.
        patience: stop after this many validations without improving ``best_metric`` (``None``: never).
        best_metric: validation metric that picks the ``best`` checkpoint (``segm.AP``, ``bbox.AP50``,
            ... or ``val_loss``).
        checkpoint_every: also save ``last`` every this many steps (``None``: at the end of each epoch).
        sync_bn: under ``torchrun`` on GPUs, compute BatchNorm statistics over the global batch
            (``SyncBatchNorm``) instead of each process's own (for ``model.backbone.norm=bn`` with small
            per-GPU batches).
        dist_timeout: seconds a process waits for the others (in any collective) before the run stops
            with an error, so that a failed or hung process does not make the others wait forever.
    """

    epochs: int = 12
    max_steps: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.02
    lr_reference_batch: int | None = None
    scale_lr: bool = True
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "multistep"
    milestones: tuple[float, ...] = (8 / 12, 11 / 12)
    gamma: float = 0.1
    min_lr: float = 0.01
    warmup_steps: int = 500
    warmup_factor: float = 0.001
    clip_grad_norm: float | None = None
    accumulate: int = 1
    ema: float | None = None
    amp: str = "auto"
    layers: str | None = None
    weights: str | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    log_every: int = 20
    patience: int | None = None
    best_metric: str = "segm.AP"
    checkpoint_every: int | None = None
    sync_bn: bool = False
    dist_timeout: float = 1800.0


@dataclass
class EvalConfig:
    """Validation during training (and ``maskrcnn evaluate``).

    Attributes:
        batch_size: images per model call.
        every_epochs: validate every this many epochs (and after the last).
        max_images: validate on the first this many validation images only (``None``: all).
        loss: also compute the validation loss.
        tile: cut each validation image into tiles of this many pixels and merge their detections
            (:mod:`maskrcnn.engine.tiling`); ``None``: whole images. Checkpoints record it, and
            ``predict`` / ``evaluate`` tile as the model was validated unless told otherwise.
        tile_overlap: pixels shared by neighbouring tiles (``None``: a quarter of the tile).
    """

    batch_size: int = 2
    every_epochs: int = 1
    max_images: int | None = None
    loss: bool = True
    tile: int | None = None
    tile_overlap: int | None = None


@dataclass
class Config:
    """A whole run: the model, its data, the optimisation and the validation."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        validate_run(self)


MIN_TILE = 32
"""The smallest tile of tiled inference (the FPN's coarsest stride)."""


def tiling_problem(size: int, overlap: int | None) -> str | None:
    """What is wrong with a tile ``size`` and ``overlap`` (``None``: the default), or ``None``."""
    if size < MIN_TILE:
        return f"tiles must be at least {MIN_TILE} pixels"
    if overlap is not None and not 0 <= overlap <= size // 2:
        return f"the overlap must be between 0 and half the tile ({size // 2} pixels)"
    return None


def validate_run(cfg: Config) -> None:
    """Raise ``ValueError`` naming the field for settings the trainer cannot use."""
    t, d = cfg.train, cfg.data
    problems = []
    if t.optimizer not in ("sgd", "adamw"):
        problems.append(f"train.optimizer={t.optimizer!r} (sgd or adamw)")
    if t.schedule not in ("multistep", "cosine", "constant"):
        problems.append(f"train.schedule={t.schedule!r} (multistep, cosine or constant)")
    if t.amp not in ("auto", "off", "bf16", "fp16"):
        problems.append(f"train.amp={t.amp!r} (auto, off, bf16 or fp16)")
    if t.layers is not None and t.layers not in LAYERS:
        problems.append(f"train.layers={t.layers!r} (one of {', '.join(LAYERS)})")
    if t.lr <= 0 or t.epochs < 1 or t.accumulate < 1 or d.batch_size < 1:
        problems.append(
            f"train.lr={t.lr}, train.epochs={t.epochs}, train.accumulate={t.accumulate}, "
            f"data.batch_size={d.batch_size} must be positive"
        )
    if t.max_steps is not None and t.max_steps < 0:
        problems.append(f"train.max_steps={t.max_steps}")
    if t.lr_reference_batch is not None and t.lr_reference_batch < 1:
        problems.append(f"train.lr_reference_batch={t.lr_reference_batch} (images, at least 1)")
    if t.dist_timeout <= 0:
        problems.append(f"train.dist_timeout={t.dist_timeout} (seconds, positive)")
    if t.ema is not None and not 0 < t.ema < 1:
        problems.append(f"train.ema={t.ema} (a decay in (0, 1), e.g. 0.999)")
    a, e = d.augment, cfg.eval
    if a.crop_size is not None:
        if a.crop_size < 1:
            problems.append(f"data.augment.crop_size={a.crop_size} (pixels, at least 1)")
        if a.crop is not None:
            problems.append(f"data.augment.crop={a.crop} and data.augment.crop_size={a.crop_size}: give one")
    if e.tile is not None:
        problem = tiling_problem(e.tile, e.tile_overlap)
        if problem:
            problems.append(f"eval.tile={e.tile}, eval.tile_overlap={e.tile_overlap}: {problem}")
    elif e.tile_overlap is not None:
        problems.append(f"eval.tile_overlap={e.tile_overlap} without eval.tile")
    if d.val_split is not None:
        if not 0 < d.val_split < 1:
            problems.append(f"data.val_split={d.val_split} (a fraction in (0, 1), e.g. 0.2)")
        if d.val is not None:
            problems.append(f"data.val_split={d.val_split} and data.val={d.val!r}: give one of them")
        elif d.format == "shapes" and d.val_options:
            problems.append(
                f"data.val_split={d.val_split} and the generated validation shapes (data.val_options): "
                "set data.val_options={} to split the training shapes instead"
            )
    if problems:
        raise ValueError("invalid config: " + "; ".join(problems))


# ----------------------------------------------------------------------------------------------------
# Presets


def _shapes() -> Config:
    """The demo: a narrow ResNet-18-FPN trained from scratch on 128 px synthetic shapes, on a CPU."""
    model = ModelConfig(
        num_classes=4,
        # BatchNorm: batches of 8 synthetic images give good statistics, and it beats GroupNorm here
        # (mask AP 0.86 against 0.81 after 600 steps).
        backbone=BackboneConfig(name="resnet18", norm="bn", trainable_layers=5, width=32, fpn_channels=64),
        anchors=AnchorConfig(sizes=((16.0,), (32.0,), (64.0,), (128.0,), (256.0,))),
        rpn=RPNConfig(
            pre_nms_top_n_train=300,
            post_nms_top_n_train=150,
            pre_nms_top_n_test=300,
            post_nms_top_n_test=100,
            batch_size_per_image=64,
        ),
        roi_heads=RoIHeadsConfig(
            representation_size=256,
            mask_head_channels=(64, 64, 64, 64),
            mask_predictor_channels=64,
            batch_size_per_image=64,
            detections_per_img=20,
        ),
        transform=TransformConfig(min_size=(128,), max_size=128),
    )
    # 600 steps of 8 images: about 4 minutes on 2 CPU cores (see benchmarks/demo.py and the README).
    data = DataConfig(
        format="shapes",
        train_options={"count": 4800, "seed": 0},
        val_options={"count": 200, "seed": 1},
        batch_size=8,
        num_workers=0,
    )
    train = TrainConfig(
        epochs=1,
        optimizer="adamw",
        lr=2e-3,
        weight_decay=1e-4,
        schedule="cosine",
        warmup_steps=100,
        clip_grad_norm=10.0,
        amp="auto",
        log_every=10,
    )
    return Config(model=model, data=data, train=train, eval=EvalConfig(batch_size=8))


def _coco() -> Config:
    """torchvision's ResNet-50-FPN recipe (26 epochs, lr decays at 16 and 22, 0.02 for 16 images), with
    2 images per process and the learning rate scaled to the global batch."""
    return Config(
        model=ModelConfig(),
        data=DataConfig(format="coco", batch_size=2, num_workers=4, augment=AugmentConfig(hflip=0.5)),
        train=TrainConfig(
            epochs=26,
            optimizer="sgd",
            lr=0.02,  # for 16 images per step: 0.0025 on one process with 2, 0.02 on 8 GPUs with 2 each
            lr_reference_batch=16,
            momentum=0.9,
            weight_decay=1e-4,
            schedule="multistep",
            milestones=(16 / 26, 22 / 26),
            warmup_steps=1000,
            warmup_factor=0.001,
        ),
    )


def _balloon() -> Config:
    """Fine-tuning COCO weights on a small one-class dataset annotated in VIA (the classic balloon
    sample): from torchvision's COCO weights (``coco``, downloaded once; ``--weights`` gives others), heads
    only, SGD at 0.001, images up to 1024 px."""
    model = ModelConfig(num_classes=2, transform=TransformConfig(min_size=(800,), max_size=1024))
    return Config(
        model=model,
        data=DataConfig(
            format="via", train_options={"class_name": "balloon"}, val_options={"class_name": "balloon"}
        ),
        train=TrainConfig(
            epochs=30,
            optimizer="sgd",
            lr=1e-3,
            momentum=0.9,
            weight_decay=1e-4,
            schedule="constant",
            warmup_steps=100,
            layers="heads",
            weights="coco",
            best_metric="segm.AP",
        ),
    )


def _keypoints() -> Config:
    """The keypoint demo: the shapes preset with a keypoint head, trained on the synthetic shapes with
    their four extreme points (top, left, right, bottom) as keypoints (``maskrcnn.data.shapes``,
    ``keypoints=True``), on a CPU. Horizontal flips only: the names are the picture's (top is up)."""
    cfg = _shapes()
    # Four 64-channel convolutions instead of the paper's eight of 512: the objects are 15-60 px, and
    # the head's cost (at 14x14 per RoI) would otherwise dominate a CPU step.
    cfg.model.roi_heads.keypoint_head_channels = (64, 64, 64, 64)
    cfg.model.roi_heads.num_keypoints = 0  # set from the data's keypoints when training starts
    cfg.data.train_options = {**cfg.data.train_options, "keypoints": True}
    cfg.data.val_options = {**cfg.data.val_options, "keypoints": True}
    cfg.train.best_metric = "keypoints.AP"
    return cfg


PRESETS = {"shapes": _shapes, "keypoints": _keypoints, "coco": _coco, "balloon": _balloon}


def preset(name: str) -> Config:
    """A fresh :class:`Config` of a preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]()


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


def _text_value(text: str, annotation: Any) -> Any:
    """A command-line text for a field of type ``annotation``: :func:`parse_value` of it, except that a
    field that takes strings keeps the text as typed when it would parse to something else
    (``train.weights=123``); an optional field takes ``none`` (or ``null``) for ``None``."""
    value = parse_value(text)
    accepted = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    if isinstance(value, str):
        # ``none`` as well as YAML's ``null`` for an optional field (train.max_steps=none).
        return None if value.lower() == "none" and type(None) in accepted else value
    if str in accepted and not (value is None and type(None) in accepted):
        return text
    return value


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a plain value (from JSON, YAML or the command line) to the annotated field type."""
    if isinstance(value, str) and annotation is not str:
        value = _text_value(value, annotation)
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
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if _is_union(annotation):
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
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(1e309), an infinity
            raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is int and isinstance(value, float) and value != number:
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        # No setting means anything at NaN or an infinity: a NaN threshold compares false with
        # everything, and would run a whole training to an empty model without a word.
        if not math.isfinite(number):
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
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
    read by :func:`parse_value` and converted to the field's type (a string field keeps its text).
    """
    data = config_to_dict(cfg)
    for key, raw in assignments.items():
        node, section = data, cfg
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node.get(part), str):  # set whole by an earlier assignment: "{a: 1}"
                node[part] = parse_value(node[part])
            if not isinstance(node.get(part), dict):
                raise ValueError(f"override {key!r}: {part!r} is not a section of the config")
            node = node[part]
            section = getattr(section, part) if dataclasses.is_dataclass(section) else None
        if dataclasses.is_dataclass(section):
            if parts[-1] not in node:
                raise ValueError(f"override {key!r}: no such key; known here: {sorted(node)}")
            node[parts[-1]] = raw  # typed by the field when the config is rebuilt
        else:  # a free-form mapping (reader options): new keys, values as parse_value reads them
            node[parts[-1]] = parse_value(raw) if isinstance(raw, str) else raw
    return config_from_dict(type(cfg), data)


# ----------------------------------------------------------------------------------------------------
# The one reading of values written by people: config files, --set and reader options (-o)


def _yaml_loader() -> type:
    """PyYAML's safe loader with YAML 1.2's scalars: only ``true``/``false`` are booleans (YAML 1.1's
    ``off``, ``no``, ``y`` stay strings: ``train.amp: off`` means the string), ``1e-3`` is a number,
    and dates stay strings (JSON has no dates)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    replaced = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:float", "tag:yaml.org,2002:null"}
    replaced.add("tag:yaml.org,2002:timestamp")
    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in replaced]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            # YAML 1.2's: a digit at least (a lone "." or "-." is a string, which float() would refuse).
            r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        list("-+0123456789."),
    )
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
    )
    return Loader


_LOADER: type | None = None


def _load_yaml(text: str) -> Any:
    import yaml

    global _LOADER
    if _LOADER is None:
        _LOADER = _yaml_loader()
    return yaml.load(text, Loader=_LOADER)


def parse_value(text: str) -> Any:
    """A value typed on the command line (``--set``, ``-o``): a YAML flow literal in the dialect of the
    config files (see :func:`load_config`): ``20`` -> 20, ``1e-3`` -> 0.001, ``[640, 800]`` -> a list,
    ``{1: person}`` -> a dict, ``true`` -> True, ``null`` -> None; the empty text and anything else
    (``off``, ``none``, ``images/train``) -> the text itself (an optional config field also takes
    ``none`` for ``None``)."""
    import yaml

    if not text:
        return ""
    try:
        return _load_yaml(text)
    except yaml.YAMLError:
        return text


def save_config(cfg: Any, path: str | os.PathLike[str]) -> Path:
    """Write a config as YAML (atomically)."""
    import yaml

    from maskrcnn.io import write_text

    return write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def load_config(path: str | os.PathLike[str], cls: type[T] = Config) -> T:  # type: ignore[assignment]
    """Read a YAML (or JSON) config; missing keys keep their defaults, unknown keys are errors.

    YAML is read with 1.2's plain scalars (see :func:`parse_value`): ``amp: off`` is the string.
    """
    import yaml

    path = Path(path)
    try:
        data = _load_yaml(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist") from None
    except (yaml.YAMLError, ValueError) as e:  # ValueError: a scalar its constructor refuses
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return config_from_dict(cls, data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
