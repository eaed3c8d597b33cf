"""Recognising the model of a state dict without config, from torchvision's layouts (tests/fixtures)."""

import dataclasses

import pytest
import torch

from maskrcnn.config import ModelConfig
from maskrcnn.modeling import build_model
from maskrcnn.models import keypointrcnn_resnet50_fpn_config, maskrcnn_resnet50_fpn_config
from maskrcnn.weights.architecture import adopt_architecture, recognise, recognise_backbone
from tests.synthetic_weights import load_layout

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d", "resnext101_32x8d")


def _shapes(name: str) -> dict[str, torch.Tensor]:
    """A state dict of torchvision's layout ``name`` (values do not matter here: shapes only)."""
    return {key: torch.empty(shape) for key, shape, _ in load_layout(name)}


def _layout_of(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize(
    ("layout", "v2"), [("maskrcnn_resnet50_fpn", False), ("maskrcnn_resnet50_fpn_v2", True)]
)
def test_torchvision_layouts_are_recognised_exactly(layout, v2):
    state = _shapes(layout)
    found = recognise(state, layout)
    assert found.name == layout
    assert found.config.num_classes == 91
    expected = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert _layout_of(build_model(found.config)) == expected
    # The architecture fields are torchvision's own builder's.
    reference = maskrcnn_resnet50_fpn_config(v2=v2, pretrained=True)
    for section in ("rpn", "roi_heads"):
        assert getattr(found.config, section) == getattr(reference, section)
    assert found.config.backbone.fpn_norm == reference.backbone.fpn_norm
    assert found.config.backbone.norm == reference.backbone.norm


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_is_told_apart(name):
    cfg = ModelConfig(num_classes=5)
    cfg.backbone = dataclasses.replace(cfg.backbone, name=name)
    state = build_model(cfg).state_dict()
    found = recognise(state, "model.pth")
    assert found.config.backbone.name == name
    assert found.config.num_classes == 5
    assert _layout_of(build_model(found.config)) == {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize(
    ("layout", "name"),
    [
        ("resnet18_imagenet", "resnet18"),
        ("resnet34_imagenet", "resnet34"),
        ("resnet50_imagenet", "resnet50"),
        ("resnet101_imagenet", "resnet101"),
        ("resnext50_32x4d_imagenet", "resnext50_32x4d"),
    ],
)
def test_imagenet_classifiers_are_recognised(layout, name):
    cfg = recognise_backbone(_shapes(layout), layout)
    assert (cfg.backbone.name, cfg.backbone.width, cfg.backbone.in_channels) == (name, 64, 3)


def test_a_narrow_model_with_other_heads_is_recognised():
    cfg = ModelConfig(num_classes=3)
    cfg.backbone = dataclasses.replace(cfg.backbone, name="resnet18", width=32, fpn_channels=64)
    cfg.roi_heads = dataclasses.replace(
        cfg.roi_heads, representation_size=128, mask_head_channels=(64, 64), mask_predictor_channels=32
    )
    state = build_model(cfg).state_dict()
    found = recognise(state, "narrow.pth")
    assert found.name == "Mask R-CNN resnet18-FPN (v1 heads)"
    assert _layout_of(build_model(found.config)) == {k: tuple(v.shape) for k, v in state.items()}


def test_what_is_not_a_mask_rcnn_is_refused_with_what_it_is():
    v1 = _shapes("maskrcnn_resnet50_fpn")
    faster = {
        k: v for k, v in v1.items() if not k.startswith(("roi_heads.mask_head", "roi_heads.mask_predictor"))
    }
    with pytest.raises(ValueError, match=r"f.pth: a Faster R-CNN: boxes only"):
        recognise(faster, "f.pth")
    with pytest.raises(ValueError, match=r"not a Mask R-CNN \(no roi_heads.mask_predictor.mask_fcn_logits"):
        recognise({"backbone.body.conv1.weight": torch.empty(64, 3, 7, 7)}, "x.pth")


def test_bodies_anchors_and_norms_it_cannot_know_are_refused():
    v1 = _shapes("maskrcnn_resnet50_fpn")
    deeper = {
        **v1,
        **{f"backbone.body.layer3.{i}.conv1.weight": torch.empty(256, 1024, 1, 1) for i in (6, 7)},
    }
    with pytest.raises(ValueError, match=r"bottleneck blocks \[3, 4, 8, 3\].* is none of resnet18"):
        recognise(deeper, "deep.pth")
    anchors = {**v1, "rpn.head.cls_logits.weight": torch.empty(5, 256, 1, 1)}
    with pytest.raises(ValueError, match="predicts 5 anchors per location; the default anchors have 3"):
        recognise(anchors, "a.pth")
    group_norm = {k: v for k, v in v1.items() if "running_" not in k}
    with pytest.raises(ValueError, match="no BatchNorm statistics"):
        recognise(group_norm, "gn.pth")


def test_other_class_counts():
    state = _shapes("maskrcnn_resnet50_fpn")
    for key in list(state):
        if key.startswith(("roi_heads.box_predictor", "roi_heads.mask_predictor.mask_fcn_logits")):
            rows = state[key].shape[0] // 91
            state[key] = torch.empty(rows * 3, *state[key].shape[1:])
    assert recognise(state, "three.pth").config.num_classes == 3


def test_adopting_an_architecture_changes_only_its_fields():
    v2 = recognise(_shapes("maskrcnn_resnet50_fpn_v2"), "v2.pth").config
    target = maskrcnn_resnet50_fpn_config(num_classes=2, pretrained=True)  # v1, frozen BN, 3 layers
    target.backbone.trainable_layers = 0
    changes = adopt_architecture(target, v2)
    assert changes == [
        "backbone.fpn_norm none -> bn",
        "rpn.conv_depth 1 -> 2",
        "roi_heads.box_head mlp -> conv",
        "roi_heads.head_norm none -> bn",
    ]
    assert (target.num_classes, target.backbone.trainable_layers, target.backbone.norm) == (2, 0, "frozen_bn")
    expected = _layout_of(build_model(v2))
    built = _layout_of(build_model(target))
    assert {k for k in built if "predictor" not in k} == {k for k in expected if "predictor" not in k}
    assert adopt_architecture(target, v2) == []

    imagenet = recognise_backbone(_shapes("resnet101_imagenet"), "r101.pth")
    assert adopt_architecture(target, imagenet, kind="backbone") == ["backbone.name resnet50 -> resnet101"]
    assert target.rpn.conv_depth == 2  # a backbone says nothing about the heads


def test_torchvision_keypoint_rcnn_is_recognised_exactly():
    state = _shapes("keypointrcnn_resnet50_fpn")
    found = recognise(state, "k.pth")
    assert found.name == "keypointrcnn_resnet50_fpn"
    assert found.config.num_classes == 2
    assert not found.config.roi_heads.mask_head
    assert found.config.roi_heads.num_keypoints == 17
    expected = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert _layout_of(build_model(found.config)) == expected
    reference = keypointrcnn_resnet50_fpn_config(pretrained=True)
    assert found.config.roi_heads == reference.roi_heads
    assert found.config.rpn == reference.rpn


def test_a_mask_rcnn_with_keypoints_is_recognised():
    cfg = ModelConfig(num_classes=4)
    cfg.roi_heads.num_keypoints = 5
    cfg.roi_heads.keypoint_head_channels = (64, 64)
    state = build_model(cfg).state_dict()
    found = recognise(state, "mk.safetensors")
    assert found.name == "maskrcnn_resnet50_fpn with 5 keypoints"
    assert found.config.roi_heads.mask_head
    assert (found.config.roi_heads.num_keypoints, found.config.roi_heads.keypoint_head_channels) == (
        5,
        (64, 64),
    )
