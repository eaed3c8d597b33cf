"""Model builders named and behaving like torchvision's (``maskrcnn_resnet50_fpn``, ``..._v2``,
``keypointrcnn_resnet50_fpn``).

``weights`` is a checkpoint: a path to torchvision's ``.pth`` (e.g.
``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``) or one of this project's ``.safetensors``, or a registry
name (``"coco"``, ``"coco-v2"``; ``weights_backbone="imagenet-r50"``), downloaded once into the cache
(:mod:`maskrcnn.weights.cache`). Other backbones and settings are built from a
:class:`~maskrcnn.config.ModelConfig` with :func:`~maskrcnn.modeling.build_model`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from torch import nn

from maskrcnn.config import ModelConfig, override
from maskrcnn.modeling import MaskRCNN, build_model
from maskrcnn.weights import load_weights

__all__ = [
    "keypointrcnn_resnet50_fpn",
    "keypointrcnn_resnet50_fpn_config",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_config",
    "maskrcnn_resnet50_fpn_v2",
]

# torchvision's keyword arguments and the config fields they set.
_KWARGS = {
    "min_size": "transform.min_size",
    "max_size": "transform.max_size",
    "image_mean": "transform.image_mean",
    "image_std": "transform.image_std",
    "size_divisible": "transform.size_divisible",
    "rpn_pre_nms_top_n_train": "rpn.pre_nms_top_n_train",
    "rpn_pre_nms_top_n_test": "rpn.pre_nms_top_n_test",
    "rpn_post_nms_top_n_train": "rpn.post_nms_top_n_train",
    "rpn_post_nms_top_n_test": "rpn.post_nms_top_n_test",
    "rpn_nms_thresh": "rpn.nms_thresh",
    "rpn_fg_iou_thresh": "rpn.fg_iou_thresh",
    "rpn_bg_iou_thresh": "rpn.bg_iou_thresh",
    "rpn_batch_size_per_image": "rpn.batch_size_per_image",
    "rpn_positive_fraction": "rpn.positive_fraction",
    "rpn_score_thresh": "rpn.score_thresh",
    "box_score_thresh": "roi_heads.score_thresh",
    "box_nms_thresh": "roi_heads.nms_thresh",
    "box_detections_per_img": "roi_heads.detections_per_img",
    "box_fg_iou_thresh": "roi_heads.fg_iou_thresh",
    "box_bg_iou_thresh": "roi_heads.bg_iou_thresh",
    "box_batch_size_per_image": "roi_heads.batch_size_per_image",
    "box_positive_fraction": "roi_heads.positive_fraction",
    "bbox_reg_weights": "roi_heads.bbox_reg_weights",
}
# torchvision's keyword arguments that pass a ready-made module, and where it goes in the model.
_MODULES = {
    "rpn_anchor_generator": ("rpn", "anchor_generator"),
    "rpn_head": ("rpn", "head"),
    "box_roi_pool": ("roi_heads", "box_roi_pool"),
    "box_head": ("roi_heads", "box_head"),
    "box_predictor": ("roi_heads", "box_predictor"),
    "mask_roi_pool": ("roi_heads", "mask_roi_pool"),
    "mask_head": ("roi_heads", "mask_head"),
    "mask_predictor": ("roi_heads", "mask_predictor"),
    "keypoint_roi_pool": ("roi_heads", "keypoint_roi_pool"),
    "keypoint_head": ("roi_heads", "keypoint_head"),
    "keypoint_predictor": ("roi_heads", "keypoint_predictor"),
}
_MASK_MODULES = ("mask_roi_pool", "mask_head", "mask_predictor")
_KEYPOINT_MODULES = ("keypoint_roi_pool", "keypoint_head", "keypoint_predictor")


def maskrcnn_resnet50_fpn_config(
    *,
    v2: bool = False,
    num_classes: int = 91,
    pretrained: bool = False,
    trainable_backbone_layers: int | None = None,
) -> ModelConfig:
    """The config of torchvision's ResNet-50-FPN Mask R-CNN (v1, or v2 with ``v2=True``).

    As in torchvision, a model built to receive pretrained weights freezes the two lowest stages
    (``trainable_backbone_layers=3``) and, for v1, uses frozen BatchNorm; one trained from scratch
    trains every stage with ordinary BatchNorm.
    """
    cfg = ModelConfig(num_classes=num_classes)
    layers = trainable_backbone_layers if trainable_backbone_layers is not None else (3 if pretrained else 5)
    cfg.backbone = dataclasses.replace(
        cfg.backbone, norm="frozen_bn" if pretrained and not v2 else "bn", trainable_layers=layers
    )
    if v2:
        cfg.backbone.fpn_norm = "bn"
        cfg.rpn.conv_depth = 2
        cfg.roi_heads.box_head = "conv"
        cfg.roi_heads.head_norm = "bn"
    return cfg


def keypointrcnn_resnet50_fpn_config(
    *,
    num_classes: int = 2,
    num_keypoints: int = 17,
    pretrained: bool = False,
    trainable_backbone_layers: int | None = None,
) -> ModelConfig:
    """The config of torchvision's ResNet-50-FPN Keypoint R-CNN: v1's backbone and box head, no mask
    head, a keypoint head of eight 512-channel convolutions, and training scales 640..800."""
    cfg = maskrcnn_resnet50_fpn_config(
        num_classes=num_classes, pretrained=pretrained, trainable_backbone_layers=trainable_backbone_layers
    )
    cfg.roi_heads.mask_head = False
    cfg.roi_heads.num_keypoints = num_keypoints
    cfg.transform.min_size = (640, 672, 704, 736, 768, 800)
    return cfg


def _build(
    name: str,
    cfg: ModelConfig,
    weights: str | os.PathLike[str] | None,
    weights_backbone: str | os.PathLike[str] | None,
    kwargs: dict[str, Any],
    modules: dict[str, tuple[str, str]],
) -> MaskRCNN:
    unknown = sorted(set(kwargs) - set(_KWARGS) - set(modules))
    if unknown:
        raise TypeError(
            f"{name}: unexpected keyword arguments {unknown}; supported: {sorted(_KWARGS) + sorted(modules)}"
        )
    cfg = override(cfg, {_KWARGS[k]: v for k, v in kwargs.items() if k in _KWARGS})
    model = build_model(cfg)
    for key, (parent, child) in modules.items():
        if key in kwargs:
            module = kwargs[key]
            if not isinstance(module, nn.Module):
                raise TypeError(f"{name}: {key} must be an nn.Module, got {type(module).__name__}")
            setattr(getattr(model, parent), child, module)
    if weights is not None:
        load_weights(model, weights)
    elif weights_backbone is not None:
        load_weights(model, weights_backbone)
    return model


def maskrcnn_resnet50_fpn(
    *,
    weights: str | os.PathLike[str] | None = None,
    weights_backbone: str | os.PathLike[str] | None = None,
    num_classes: int = 91,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> MaskRCNN:
    """Mask R-CNN with a ResNet-50-FPN backbone (He et al., 2017), as torchvision builds it.

    Args:
        weights: a detection checkpoint to load (torchvision ``.pth``, this project's ``.safetensors``,
            or a name such as ``"coco"``); with another ``num_classes`` than the checkpoint's, the
            class-dependent layers are re-initialised (and a log line says so).
        weights_backbone: an ImageNet ResNet-50 state dict for the backbone alone (a path, or
            ``"imagenet-r50"``).
        num_classes: classes including the background (91 for COCO).
        trainable_backbone_layers: 0..5 stages of the ResNet trained (default 3 with weights, else 5).
        **kwargs: torchvision's keyword arguments: ``min_size``, ``max_size``, ``image_mean``,
            ``image_std``, ``rpn_*`` and ``box_*`` settings, ``bbox_reg_weights``, and ready-made modules
            (``rpn_anchor_generator``, ``rpn_head``, ``box_roi_pool``, ``box_head``, ``box_predictor``,
            ``mask_roi_pool``, ``mask_head``, ``mask_predictor``).
    """
    cfg = maskrcnn_resnet50_fpn_config(
        num_classes=num_classes,
        pretrained=weights is not None or weights_backbone is not None,
        trainable_backbone_layers=trainable_backbone_layers,
    )
    return _build("maskrcnn_resnet50_fpn", cfg, weights, weights_backbone, kwargs, _mask_modules())


def maskrcnn_resnet50_fpn_v2(
    *,
    weights: str | os.PathLike[str] | None = None,
    weights_backbone: str | os.PathLike[str] | None = None,
    num_classes: int = 91,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> MaskRCNN:
    """The improved Mask R-CNN of torchvision (Li et al., 2021 recipe): BatchNorm in the FPN and heads,
    two RPN convolutions and a 4-conv + 1-fc box head. Arguments as :func:`maskrcnn_resnet50_fpn`."""
    cfg = maskrcnn_resnet50_fpn_config(
        v2=True,
        num_classes=num_classes,
        pretrained=weights is not None or weights_backbone is not None,
        trainable_backbone_layers=trainable_backbone_layers,
    )
    return _build("maskrcnn_resnet50_fpn_v2", cfg, weights, weights_backbone, kwargs, _mask_modules())


def keypointrcnn_resnet50_fpn(
    *,
    weights: str | os.PathLike[str] | None = None,
    weights_backbone: str | os.PathLike[str] | None = None,
    num_classes: int = 2,
    num_keypoints: int = 17,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> MaskRCNN:
    """Keypoint R-CNN with a ResNet-50-FPN backbone (the Mask R-CNN paper's pose model), as torchvision
    builds it: boxes and ``num_keypoints`` keypoints per object, no masks.

    Args:
        weights: a checkpoint (torchvision's ``keypointrcnn_resnet50_fpn_coco-fc266e95.pth``, the name
            ``"coco-keypoints"``, or this project's ``.safetensors``); with other class or keypoint
            counts than the checkpoint's, the layers depending on them are re-initialised.
        weights_backbone: an ImageNet ResNet-50 for the backbone alone (a path, or ``"imagenet-r50"``).
        num_classes: classes including the background (2: person).
        num_keypoints: keypoints per object (17: COCO's person keypoints).
        trainable_backbone_layers: 0..5 stages of the ResNet trained (default 3 with weights, else 5).
        **kwargs: as :func:`maskrcnn_resnet50_fpn`, with ``keypoint_roi_pool``, ``keypoint_head`` and
            ``keypoint_predictor`` instead of the mask modules.
    """
    cfg = keypointrcnn_resnet50_fpn_config(
        num_classes=num_classes,
        num_keypoints=num_keypoints,
        pretrained=weights is not None or weights_backbone is not None,
        trainable_backbone_layers=trainable_backbone_layers,
    )
    modules = {k: v for k, v in _MODULES.items() if k not in _MASK_MODULES}
    return _build("keypointrcnn_resnet50_fpn", cfg, weights, weights_backbone, kwargs, modules)


def _mask_modules() -> dict[str, tuple[str, str]]:
    return {k: v for k, v in _MODULES.items() if k not in _KEYPOINT_MODULES}
