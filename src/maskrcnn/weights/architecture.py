"""Which Mask R-CNN a state dict holds: the :class:`~maskrcnn.config.ModelConfig` that builds a model its
tensors fit, read off the key names and shapes.

A file that is not one of the project's checkpoints carries no config (torchvision's ``.pth`` files,
a model fine-tuned with torchvision's scripts), so the model is recognised from what the tensors say:

* the backbone from the ResNet body: block type (``conv3`` present: bottleneck), blocks per stage, the
  groups and width of the 3x3 convolutions (ResNet-18/34/50/101, ResNeXt-50 32x4d / 101 32x8d), the stem's
  width and input channels (its BatchNorm statistics must be there: a GroupNorm model's groups cannot be
  read off its tensors, so such a file needs its config);
* the FPN's channels and whether a BatchNorm follows its convolutions (torchvision's v2);
* the RPN's number of 3x3 convolutions (v1: 1, v2: 2) and anchors per location;
* the box head (``fc6``/``fc7``: v1's two fully connected layers; ``box_head.<i>.0``: v2's convolutions
  and one fully connected layer), the mask head's convolutions and the number of classes;
* the keypoint head's convolutions and the number of keypoints (``keypoint_predictor.kps_score_lowres``):
  a Keypoint R-CNN (torchvision's has no mask head) or a Mask R-CNN with keypoints.

Anything else (a Faster R-CNN with neither masks nor keypoints, a classifier) is refused with a message
that says what the file looks like. The config is only a proposal: :func:`~maskrcnn.weights.load_weights`
then loads the tensors strictly, so a state dict that matches none of these layouts fails naming its
unexpected keys, never loads partially.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from maskrcnn.config import ModelConfig
from maskrcnn.modeling.backbone import ARCHITECTURES, Bottleneck

__all__ = ["ARCHITECTURE_FIELDS", "Architecture", "adopt_architecture", "recognise", "recognise_backbone"]

_BODY = "backbone.body."

# The config fields that decide a detection state dict's keys and shapes (besides the classes, whose
# layers are re-initialised, and the input channels, which are adapted): what a model built to receive
# a checkpoint must take from it.
ARCHITECTURE_FIELDS = (
    "backbone.name",
    "backbone.width",
    "backbone.fpn_channels",
    "backbone.fpn_norm",
    "rpn.conv_depth",
    "roi_heads.box_head",
    "roi_heads.box_head_convs",
    "roi_heads.representation_size",
    "roi_heads.head_norm",
    "roi_heads.mask_head_channels",
    "roi_heads.mask_predictor_channels",
    "roi_heads.keypoint_head_channels",
)
# Not among them: whether the model has a mask head and how many keypoints it has (its training data
# decides: a branch the checkpoint lacks starts from its initialisation, see load_weights).
_BACKBONE_FIELDS = ("backbone.name", "backbone.width")


@dataclass
class Architecture:
    """What :func:`recognise` found.

    Attributes:
        config: builds a model whose state dict has the same keys and shapes (``num_classes`` included).
        name: torchvision's builder name when the model is one of its two (``maskrcnn_resnet50_fpn``,
            ``maskrcnn_resnet50_fpn_v2``), else a description (``Mask R-CNN resnet101-FPN (v1 heads)``).
    """

    config: ModelConfig
    name: str


def _indices(state: Mapping[str, Tensor], pattern: str) -> list[int]:
    """The sorted distinct integers ``i`` of keys matching ``pattern`` (a regex with one ``(\\d+)``)."""
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for key in state if (m := regex.match(key))})


def _refuse(where: str, what: str) -> ValueError:
    return ValueError(
        f"{where}: {what}; only Mask R-CNN and Keypoint R-CNN checkpoints (a box head with a mask "
        "and/or keypoint head) can be used here"
    )


def _require(state: Mapping[str, Tensor], where: str, *keys: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(
            f"{where}: not a Mask R-CNN layout this project knows (no {', '.join(missing[:3])}); first "
            f"keys: {list(state)[:4]}"
        )


def _backbone(state: Mapping[str, Tensor], where: str, cfg: ModelConfig) -> None:
    _require(state, where, _BODY + "conv1.weight", _BODY + "layer1.0.conv1.weight")
    stem = state[_BODY + "conv1.weight"]
    cfg.backbone.width, cfg.backbone.in_channels = int(stem.shape[0]), int(stem.shape[1])
    counts = tuple(len(_indices(state, rf"^backbone\.body\.layer{i}\.(\d+)\.")) for i in range(1, 5))
    bottleneck = _BODY + "layer1.0.conv3.weight" in state
    conv2 = state[_BODY + "layer1.0.conv2.weight"]  # [width, width / groups, 3, 3]
    groups = int(conv2.shape[0]) // int(conv2.shape[1])
    width_per_group = int(conv2.shape[0]) // groups * 64 // cfg.backbone.width
    for name, (block, blocks, arch_groups, arch_width) in ARCHITECTURES.items():
        same_groups = not bottleneck or (arch_groups, arch_width) == (groups, width_per_group)
        if (block is Bottleneck) == bottleneck and blocks == counts and same_groups:
            cfg.backbone.name = name
            break
    else:
        kind = "bottleneck" if bottleneck else "basic"
        raise ValueError(
            f"{where}: a ResNet body of {kind} blocks {list(counts)} (groups {groups}, width per group "
            f"{width_per_group}) is none of {', '.join(ARCHITECTURES)}"
        )
    if _BODY + "bn1.running_mean" not in state:
        # GroupNorm (or none): the tensors do not tell the number of groups, and a wrong one would give
        # wrong outputs without any error.
        raise ValueError(
            f"{where}: the backbone has no BatchNorm statistics (GroupNorm?): a model whose normalisation "
            "the tensors cannot tell; use the checkpoint with its config (this project's .safetensors)"
        )
    cfg.backbone.norm = "frozen_bn"


def _fpn(state: Mapping[str, Tensor], where: str, cfg: ModelConfig) -> None:
    _require(state, where, "backbone.fpn.inner_blocks.0.0.weight")
    cfg.backbone.fpn_channels = int(state["backbone.fpn.inner_blocks.0.0.weight"].shape[0])
    if "backbone.fpn.inner_blocks.0.1.running_mean" in state:
        cfg.backbone.fpn_norm = "bn"


def _rpn(state: Mapping[str, Tensor], where: str, cfg: ModelConfig) -> None:
    _require(state, where, "rpn.head.cls_logits.weight")
    cfg.rpn.conv_depth = len(_indices(state, r"^rpn\.head\.conv\.(\d+)\.0\.weight$")) or 1
    anchors = int(state["rpn.head.cls_logits.weight"].shape[0])
    expected = len(cfg.anchors.aspect_ratios) * len(cfg.anchors.sizes[0])
    if anchors != expected:
        raise ValueError(
            f"{where}: the RPN predicts {anchors} anchors per location; the default anchors have "
            f"{expected} (3 aspect ratios, one size per level): build the model from a config with its "
            "model.anchors and load the file with load_weights"
        )


def _box_head(state: Mapping[str, Tensor], where: str, cfg: ModelConfig) -> None:
    heads = cfg.roi_heads
    if "roi_heads.box_head.fc6.weight" in state:
        heads.box_head = "mlp"
        heads.representation_size = int(state["roi_heads.box_head.fc6.weight"].shape[0])
        return
    convs = _indices(state, r"^roi_heads\.box_head\.(\d+)\.0\.weight$")
    linear = _indices(state, r"^roi_heads\.box_head\.(\d+)\.weight$")
    if not convs or not linear:
        raise ValueError(f"{where}: the box head is neither fc6/fc7 (v1) nor convolutions + fc (v2)")
    heads.box_head = "conv"
    heads.box_head_convs = tuple(int(state[f"roi_heads.box_head.{i}.0.weight"].shape[0]) for i in convs)
    heads.representation_size = int(state[f"roi_heads.box_head.{linear[-1]}.weight"].shape[0])
    if "roi_heads.box_head.0.1.running_mean" in state:
        heads.head_norm = "bn"


def _mask_head(state: Mapping[str, Tensor], where: str, cfg: ModelConfig) -> None:
    heads = cfg.roi_heads
    convs = _indices(state, r"^roi_heads\.mask_head\.(\d+)\.0\.weight$")
    _require(state, where, "roi_heads.mask_predictor.conv5_mask.weight")
    heads.mask_head_channels = tuple(int(state[f"roi_heads.mask_head.{i}.0.weight"].shape[0]) for i in convs)
    # ConvTranspose2d weights are [in, out, 2, 2].
    heads.mask_predictor_channels = int(state["roi_heads.mask_predictor.conv5_mask.weight"].shape[1])
    if "roi_heads.mask_head.0.1.running_mean" in state:
        heads.head_norm = "bn"


def _keypoint_head(state: Mapping[str, Tensor], where: str, cfg: ModelConfig) -> None:
    heads = cfg.roi_heads
    _require(state, where, "roi_heads.keypoint_predictor.kps_score_lowres.weight")
    convs = _indices(state, r"^roi_heads\.keypoint_head\.(\d+)\.weight$")
    if not convs:
        raise ValueError(f"{where}: a keypoint predictor without keypoint head convolutions")
    heads.keypoint_head_channels = tuple(
        int(state[f"roi_heads.keypoint_head.{i}.weight"].shape[0]) for i in convs
    )
    # ConvTranspose2d weights are [in, out, 4, 4]: one output map per keypoint.
    heads.num_keypoints = int(state["roi_heads.keypoint_predictor.kps_score_lowres.weight"].shape[1])


def recognise(state: Mapping[str, Tensor], where: str) -> Architecture:
    """The architecture of a detection state dict (torchvision's key names, legacy names upgraded).

    Args:
        state: the tensors, keys as :func:`~maskrcnn.weights.read_state_dict` returns them.
        where: the file, for messages.

    Raises:
        ValueError: not a Mask R-CNN or Keypoint R-CNN (neither mask nor keypoint head, unknown body),
            naming what was found.
    """
    keypoints = any(k.startswith("roi_heads.keypoint_") for k in state)
    masks = "roi_heads.mask_predictor.mask_fcn_logits.weight" in state
    if not masks and not keypoints:
        if "roi_heads.box_predictor.cls_score.weight" in state:
            raise _refuse(
                where, "a Faster R-CNN: boxes only, no mask or keypoint head (roi_heads.mask_predictor.*)"
            )
        raise ValueError(
            f"{where}: not a Mask R-CNN (no roi_heads.mask_predictor.mask_fcn_logits or keypoint head); "
            "first keys: "
            f"{list(state)[:4]}"
        )
    _require(state, where, "roi_heads.box_predictor.cls_score.weight")
    num_classes = int(state["roi_heads.box_predictor.cls_score.weight"].shape[0])
    cfg = ModelConfig(num_classes=num_classes)
    _backbone(state, where, cfg)
    _fpn(state, where, cfg)
    _rpn(state, where, cfg)
    _box_head(state, where, cfg)
    cfg.roi_heads.mask_head = masks
    if masks:
        _mask_head(state, where, cfg)
    if keypoints:
        _keypoint_head(state, where, cfg)
    v2 = cfg.backbone.fpn_norm == "bn" and cfg.rpn.conv_depth == 2 and cfg.roi_heads.box_head == "conv"
    if v2 and cfg.backbone.norm == "frozen_bn":
        cfg.backbone.norm = "bn"  # torchvision's v2 trains the body's BatchNorm (same inference)
    standard = cfg.backbone.width == 64 and cfg.backbone.fpn_channels == 256 and cfg.backbone.in_channels == 3
    if not masks:
        if cfg.backbone.name == "resnet50" and standard and not v2:
            name = "keypointrcnn_resnet50_fpn"
        else:
            name = f"Keypoint R-CNN {cfg.backbone.name}-FPN ({'v2' if v2 else 'v1'} heads)"
    elif cfg.backbone.name == "resnet50" and standard:
        name = "maskrcnn_resnet50_fpn_v2" if v2 else "maskrcnn_resnet50_fpn"
    else:
        name = f"Mask R-CNN {cfg.backbone.name}-FPN ({'v2' if v2 else 'v1'} heads)"
    if masks and keypoints:
        name += f" with {cfg.roi_heads.num_keypoints} keypoints"
    return Architecture(cfg, name)


def recognise_backbone(state: Mapping[str, Tensor], where: str) -> ModelConfig:
    """The backbone of an ImageNet classifier's state dict (``conv1.weight``, ``layer1.*``...): a
    config whose ``backbone.name``, ``width`` and ``in_channels`` fit it (the rest is default)."""
    cfg = ModelConfig()
    _backbone({_BODY + k: v for k, v in state.items()}, where, cfg)
    return cfg


def _get(cfg: ModelConfig, dotted: str) -> object:
    section, name = dotted.split(".")
    return getattr(getattr(cfg, section), name)


def adopt_architecture(target: ModelConfig, source: ModelConfig, *, kind: str = "detection") -> list[str]:
    """Set ``target``'s architecture fields to ``source``'s, in place: the model built from ``target``
    then fits the checkpoint ``source`` was read from.

    Args:
        kind: ``detection`` (every field of :data:`ARCHITECTURE_FIELDS`) or ``backbone`` (an ImageNet
            classifier: the body's name and width only).

    Returns:
        the changes, as ``"backbone.name resnet50 -> resnet101"`` (empty: ``target`` already fitted).
    """
    fields = ARCHITECTURE_FIELDS if kind == "detection" else _BACKBONE_FIELDS
    changes = []
    for dotted in fields:
        before, after = _get(target, dotted), _get(source, dotted)
        if before != after:
            section, name = dotted.split(".")
            setattr(getattr(target, section), name, after)
            changes.append(f"{dotted} {before} -> {after}")
    # BatchNorm (frozen or not) and GroupNorm have different tensors: only that difference must follow
    # (gn_groups too, from a checkpoint with its config).
    if (target.backbone.norm == "gn") != (source.backbone.norm == "gn"):
        changes.append(f"backbone.norm {target.backbone.norm} -> {source.backbone.norm}")
        target.backbone.norm = source.backbone.norm
        target.backbone.gn_groups = source.backbone.gn_groups
    return changes
