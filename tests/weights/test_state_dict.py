"""Checkpoint loading (torchvision layouts built from the fixtures) and the project's own checkpoints."""

import json
import logging

import pytest
import torch
from safetensors.torch import save_file

import maskrcnn.weights.checkpoint as weights_module
from maskrcnn.config import ModelConfig
from maskrcnn.modeling import build_model
from maskrcnn.models import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from maskrcnn.weights import load_checkpoint, load_weights, save_checkpoint
from tests.modeling.helpers import shapes_sample, tiny_config
from tests.synthetic_weights import load_layout, synthetic_state_dict

CLASS_KEYS = {
    "roi_heads.box_predictor.cls_score.weight",
    "roi_heads.box_predictor.cls_score.bias",
    "roi_heads.box_predictor.bbox_pred.weight",
    "roi_heads.box_predictor.bbox_pred.bias",
    "roi_heads.mask_predictor.mask_fcn_logits.weight",
    "roi_heads.mask_predictor.mask_fcn_logits.bias",
}


@pytest.fixture(scope="module")
def v1_state() -> dict[str, torch.Tensor]:
    return synthetic_state_dict(load_layout("maskrcnn_resnet50_fpn"))


def _assert_loaded(
    model: torch.nn.Module, state: dict[str, torch.Tensor], skip: set[str] = frozenset()
) -> None:
    own = model.state_dict()
    for key, value in state.items():
        if key in skip or (key.endswith("num_batches_tracked") and key not in own):
            continue
        assert torch.equal(own[key], value), key


def test_torchvision_v1_checkpoint_loads_every_tensor(v1_state, tmp_path):
    # Built from scratch, the model has BatchNorm (with num_batches_tracked), as torchvision's does.
    model = maskrcnn_resnet50_fpn()
    report = load_weights(model, v1_state)
    assert report.kind == "detection"
    assert set(report.loaded) == set(v1_state) == set(model.state_dict())
    _assert_loaded(model, v1_state)
    # A .pth file, as downloaded, into a model built for fine-tuning (frozen BatchNorm: no counters).
    path = tmp_path / "maskrcnn_resnet50_fpn_coco.pth"
    torch.save(v1_state, path)
    tuned = maskrcnn_resnet50_fpn(weights=path)
    assert not any(k.endswith("num_batches_tracked") for k in tuned.state_dict())
    _assert_loaded(tuned, v1_state)
    assert not tuned.backbone.body.layer1[0].conv1.weight.requires_grad  # trainable_backbone_layers=3
    assert tuned.backbone.body.layer2[0].conv1.weight.requires_grad


def test_torchvision_v2_checkpoint_loads_every_tensor():
    state = synthetic_state_dict(load_layout("maskrcnn_resnet50_fpn_v2"))
    model = maskrcnn_resnet50_fpn_v2()
    assert set(model.state_dict()) == set(state)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in state.items()
    }
    load_weights(model, state)
    _assert_loaded(model, state)


def test_variants_of_the_same_checkpoint(v1_state):
    model = maskrcnn_resnet50_fpn()
    # Without num_batches_tracked (checkpoints saved from frozen BatchNorm): the counters start at 0.
    bare = {k: v for k, v in v1_state.items() if not k.endswith("num_batches_tracked")}
    assert set(load_weights(model, bare).loaded) == set(model.state_dict())
    # torchvision's 2019 key names (FPN, RPN head and mask head were renamed since).
    legacy = {}
    for key, value in v1_state.items():
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        for block in ("inner_blocks", "layer_blocks"):
            for i in range(4):
                key = key.replace(f"backbone.fpn.{block}.{i}.0.", f"backbone.fpn.{block}.{i}.")
        for i in range(4):
            key = key.replace(f"roi_heads.mask_head.{i}.0.", f"roi_heads.mask_head.mask_fcn{i + 1}.")
        legacy[key] = value
    assert "backbone.fpn.inner_blocks.0.weight" in legacy
    assert "roi_heads.mask_head.mask_fcn4.bias" in legacy
    fresh = maskrcnn_resnet50_fpn()
    load_weights(fresh, legacy)
    _assert_loaded(fresh, v1_state)
    # Wrapped by a training script and saved from DistributedDataParallel.
    fresh = maskrcnn_resnet50_fpn()
    load_weights(fresh, {"model": {f"module.{k}": v for k, v in v1_state.items()}})
    _assert_loaded(fresh, v1_state)


def test_mismatches_are_listed(v1_state):
    model = maskrcnn_resnet50_fpn()
    bad = dict(v1_state)
    bad["backbone.fpn.layer_blocks.0.0.weight"] = torch.zeros(256, 256, 1, 1)
    bad["roi_heads.extra.weight"] = torch.zeros(3)
    del bad["rpn.head.bbox_pred.bias"]
    with pytest.raises(ValueError, match="3 problems") as err:
        load_weights(model, bad)
    text = str(err.value)
    assert (
        "shape of backbone.fpn.layer_blocks.0.0.weight: checkpoint [256, 256, 1, 1], model [256, 256, 3, 3]"
        in text
    )
    assert "unexpected key roi_heads.extra.weight [3]" in text
    assert "missing key rpn.head.bbox_pred.bias [12]" in text
    with pytest.raises(ValueError, match="not a Mask R-CNN or ResNet checkpoint"):
        load_weights(model, {"encoder.weight": torch.zeros(2)})


def test_other_class_count_reinitialises_only_the_class_layers(v1_state, caplog):
    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items() if k in CLASS_KEYS}
    with caplog.at_level(logging.INFO, logger="maskrcnn.weights.state_dict"):
        report = load_weights(model, v1_state)
    assert set(report.reinitialised) == CLASS_KEYS
    _assert_loaded(model, v1_state, skip=CLASS_KEYS)
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value), key  # left as initialised
    assert model.roi_heads.box_predictor.cls_score.weight.shape == (3, 1024)
    assert (
        "re-initialised roi_heads.box_predictor.bbox_pred, roi_heads.box_predictor.cls_score, "
        "roi_heads.mask_predictor.mask_fcn_logits" in caplog.text
    )


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d"])
def test_imagenet_backbone(name):
    state = synthetic_state_dict(load_layout(f"{name}_imagenet"))
    cfg = ModelConfig(num_classes=2)
    cfg.backbone.name = name
    model = build_model(cfg)
    fpn_before = model.backbone.fpn.inner_blocks[0][0].weight.clone()
    report = load_weights(model, state)
    assert report.kind == "backbone"
    assert report.ignored == ["fc.bias", "fc.weight"]
    for key, value in state.items():
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked"):
            assert torch.equal(model.state_dict()[f"backbone.body.{key}"], value), key
    assert torch.equal(model.backbone.fpn.inner_blocks[0][0].weight, fpn_before)


def test_extra_input_channels_start_from_the_mean_rgb_filter(caplog):
    state = synthetic_state_dict(load_layout("resnet18_imagenet"))
    cfg = ModelConfig(num_classes=2)
    cfg.backbone.name = "resnet18"
    cfg.backbone.in_channels = 4
    cfg.transform.image_mean = (0.485, 0.456, 0.406, 0.5)
    cfg.transform.image_std = (0.229, 0.224, 0.225, 0.25)
    model = build_model(cfg)
    with caplog.at_level(logging.INFO, logger="maskrcnn.weights.state_dict"):
        report = load_weights(model, state)
    conv1 = model.backbone.body.conv1.weight
    assert conv1.shape == (64, 4, 7, 7)
    torch.testing.assert_close(conv1[:, :3], state["conv1.weight"])
    torch.testing.assert_close(conv1[:, 3], state["conv1.weight"].mean(dim=1))
    assert report.adapted == ["backbone.body.conv1.weight: 3 -> 4 input channels"]
    assert "mean of the RGB filters" in caplog.text


def test_group_norm_model_refuses_batchnorm_statistics():
    cfg = ModelConfig(num_classes=2)
    cfg.backbone.name = "resnet18"
    cfg.backbone.norm = "gn"
    with pytest.raises(ValueError, match=r"unexpected key backbone\.body\.bn1\.running_mean"):
        load_weights(build_model(cfg), synthetic_state_dict(load_layout("resnet18_imagenet")))


class Payload:
    """Not a tensor: unpickling it could run code, so loading must refuse it."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"conv1.weight": torch.zeros(1)}, "hook": Payload()}, path)
    with pytest.raises(ValueError, match="pickled objects are refused"):
        load_weights(build_model(tiny_config()), path)


def test_own_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg).eval()
    model.roi_heads.score_thresh = 0.0
    path = save_checkpoint(
        model,
        tmp_path / "model.safetensors",
        config=cfg,
        class_names=["square", "circle", "triangle"],
        extra={"step": 7},
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["class_names"] == ["square", "circle", "triangle"]
    assert info["config"]["backbone"]["name"] == "resnet18"
    ckpt = load_checkpoint(path)
    assert ckpt.config == cfg
    assert ckpt.class_names == ["square", "circle", "triangle"]
    assert ckpt.extra == {"step": 7}
    loaded = ckpt.model.eval()
    loaded.roi_heads.score_thresh = 0.0
    image = shapes_sample(0)[0]
    with torch.no_grad():
        a, b = model([image])[0], loaded([image])[0]
    for key in ("boxes", "scores", "labels", "masks"):
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(ValueError, match="2 class names for num_classes=4"):
        save_checkpoint(model, tmp_path / "other.safetensors", config=cfg, class_names=["a", "b"])


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_config()
    model = build_model(cfg)
    path = save_checkpoint(model, tmp_path / "last.safetensors", config=cfg, class_names=["a", "b", "c"])
    good = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(weights_module, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, path, config=cfg, class_names=["a", "b", "c"])
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.safetensors"]  # no temp files
    load_checkpoint(path)


def test_a_safetensors_file_of_foreign_tensors_names_its_keys(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match=r"not a Mask R-CNN or ResNet checkpoint \(first keys: \['x'\]\)"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match=r"missing.safetensors: no such file \(nor a known name"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_a_corrupt_safetensors_file_is_a_value_error_naming_it(tmp_path):
    cfg = tiny_config()
    path = save_checkpoint(
        build_model(cfg), tmp_path / "m.safetensors", config=cfg, class_names=["a", "b", "c"]
    )
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk or an interrupted copy
    with pytest.raises(ValueError, match=r"cannot read checkpoint .*m.safetensors: not a valid safetensors"):
        load_checkpoint(path)


def _heads(mask_head: bool, num_keypoints: int, num_classes: int = 4) -> torch.nn.Module:
    cfg = tiny_config(num_classes)
    cfg.roi_heads.mask_head = mask_head
    cfg.roi_heads.num_keypoints = num_keypoints
    cfg.roi_heads.keypoint_head_channels = (32, 32)
    return build_model(cfg)


def _branch(state: dict[str, torch.Tensor], name: str) -> set[str]:
    return {k for k in state if k.startswith((f"roi_heads.{name}_head.", f"roi_heads.{name}_predictor."))}


def test_head_branches_the_checkpoint_lacks_start_from_their_initialisation(caplog):
    """COCO-style Mask R-CNN weights into a model with masks and keypoints: the keypoint branch is new."""
    torch.manual_seed(0)
    source = _heads(True, 0).state_dict()
    model = _heads(True, 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="maskrcnn.weights.state_dict"):
        report = load_weights(model, source, where="masks.pth")
    new = _branch(before, "keypoint")
    assert set(report.initialised) == new
    assert not report.reinitialised
    assert not report.ignored
    _assert_loaded(model, source)
    for key in new:
        assert torch.equal(model.state_dict()[key], before[key]), key
    assert "masks.pth: the keypoint_head and keypoint_predictor starts from its initialisation" in caplog.text


def test_a_keypoint_rcnn_into_a_model_of_masks_and_other_keypoints():
    """torchvision-style keypoint weights (17 keypoints, 2 classes, no masks) fine-tuned into a model of
    4 classes with masks and 4 keypoints: masks new, class and keypoint layers re-initialised."""
    torch.manual_seed(0)
    source = _heads(False, 17, num_classes=2).state_dict()
    model = _heads(True, 4)
    report = load_weights(model, source, where="kp.pth")
    assert set(report.initialised) == _branch(model.state_dict(), "mask")
    assert set(report.reinitialised) == {
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.keypoint_predictor.kps_score_lowres.weight",
        "roi_heads.keypoint_predictor.kps_score_lowres.bias",
    }
    _assert_loaded(model, source, skip=set(report.reinitialised))


def test_a_branch_the_model_lacks_is_left_out_and_a_partial_one_refused():
    torch.manual_seed(0)
    source = _heads(True, 5).state_dict()
    model = _heads(True, 0)
    report = load_weights(model, source, where="both.pth")
    assert set(report.ignored) == _branch(source, "keypoint")
    _assert_loaded(model, {k: v for k, v in source.items() if k not in report.ignored})
    partial = {k: v for k, v in source.items() if not k.startswith("roi_heads.keypoint_predictor.")}
    with pytest.raises(ValueError, match=r"missing key roi_heads.keypoint_predictor.kps_score_lowres.weight"):
        load_weights(_heads(True, 5), partial, where="partial.pth")


def test_a_checkpoint_to_run_must_hold_every_branch_of_its_config(tmp_path):
    torch.manual_seed(0)
    model = _heads(True, 3)
    cfg = tiny_config(4)
    cfg.roi_heads.num_keypoints, cfg.roi_heads.keypoint_head_channels = 3, (32, 32)
    path = save_checkpoint(model, tmp_path / "k.safetensors", config=cfg, class_names=["a", "b", "c"])
    assert load_checkpoint(path).model.roi_heads.num_keypoints == 3
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if "keypoint" not in k}
    metadata = {"maskrcnn": (tmp_path / "k.json").read_text()}
    save_file(tensors, str(tmp_path / "cut.safetensors"), metadata=metadata)
    with pytest.raises(ValueError, match=r"cut.safetensors: no tensors for roi_heads.keypoint_head.0.bias"):
        load_checkpoint(tmp_path / "cut.safetensors")
