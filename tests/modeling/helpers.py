"""Tiny model configs and synthetic images shared by the model tests."""

from __future__ import annotations

import torch

from maskrcnn.config import (
    AnchorConfig,
    BackboneConfig,
    ModelConfig,
    RoIHeadsConfig,
    RPNConfig,
    TransformConfig,
)
from maskrcnn.ops import masks_to_boxes


def tiny_config(num_classes: int = 4, **backbone: object) -> ModelConfig:
    """A ResNet-18-FPN small enough to train in seconds on 128 px images."""
    return ModelConfig(
        num_classes=num_classes,
        backbone=BackboneConfig(
            **{
                "name": "resnet18",
                "norm": "gn",
                "trainable_layers": 5,
                "width": 32,
                "fpn_channels": 64,
                "gn_groups": 8,
                **backbone,
            }
        ),
        anchors=AnchorConfig(sizes=((16.0,), (32.0,), (64.0,), (128.0,), (256.0,))),
        rpn=RPNConfig(
            pre_nms_top_n_train=300,
            post_nms_top_n_train=100,
            pre_nms_top_n_test=300,
            post_nms_top_n_test=50,
            batch_size_per_image=64,
        ),
        roi_heads=RoIHeadsConfig(
            representation_size=128,
            mask_head_channels=(64, 64),
            mask_predictor_channels=64,
            batch_size_per_image=32,
            detections_per_img=10,
        ),
        transform=TransformConfig(min_size=(128,), max_size=128),
    )


def shapes_sample(seed: int, size: int = 128) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """An image with a square (label 1), a disc (2) and a triangle (3), positions jittered by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    image = torch.ones(3, size, size) * torch.rand(3, 1, 1, generator=g) * 0.5
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = []
    for label, (cy, cx, r) in enumerate([(30, 30, 22), (85, 80, 20), (40, 95, 18)], start=1):
        cy += int(torch.randint(-5, 6, (), generator=g))
        cx += int(torch.randint(-5, 6, (), generator=g))
        if label == 1:
            mask = ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)
        elif label == 2:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            mask = (yy >= cy - r) & (yy <= cy + r) & ((yy - (cy - r)) * 0.5 >= (xx - cx).abs())
        image[:, mask] = (torch.rand(3, generator=g) * 0.5 + 0.5)[:, None]
        masks.append(mask.to(torch.uint8))
    stacked = torch.stack(masks)
    return image, {"boxes": masks_to_boxes(stacked), "labels": torch.tensor([1, 2, 3]), "masks": stacked}


def empty_target(height: int, width: int) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, height, width, dtype=torch.uint8),
    }
