"""load_checkpoint on files without the project's metadata (torchvision's), and convert_checkpoint."""

import json

import pytest
import torch
from safetensors import safe_open

from maskrcnn.engine.predictor import Predictor
from maskrcnn.modeling import build_model
from maskrcnn.models import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from maskrcnn.weights import convert_checkpoint, load_checkpoint
from maskrcnn.weights.coco import COCO_CLASS_NAMES
from tests.modeling.helpers import tiny_config
from tests.synthetic_weights import golden_images, load_layout, synthetic_state_dict

# ResNet-50 at 800 px costs seconds per call; the parity needs the same input, not that size.
SMALL = {"min_size": (320,), "max_size": 533}


@pytest.fixture(scope="module")
def v1_file(tmp_path_factory):
    """torchvision's COCO v1 layout (the parity test's weights) under its published file name."""
    path = tmp_path_factory.mktemp("tv") / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    torch.save(synthetic_state_dict(load_layout("maskrcnn_resnet50_fpn")), path)
    return path


@pytest.fixture(scope="module")
def v1_checkpoint(v1_file):
    checkpoint = load_checkpoint(v1_file)
    checkpoint.model.eval().transform.min_size, checkpoint.model.transform.max_size = SMALL.values()
    return checkpoint


def _bn_model(num_classes=4):
    """A small model with BatchNorm, as torchvision's: its tensors tell its architecture."""
    torch.manual_seed(0)
    return build_model(tiny_config(num_classes, norm="bn")).eval()


def test_a_torchvision_file_brings_its_architecture_and_coco_names(v1_file, v1_checkpoint):
    checkpoint = v1_checkpoint
    assert checkpoint.extra == {"source": "coco", "architecture": "maskrcnn_resnet50_fpn"}
    assert checkpoint.class_names == list(COCO_CLASS_NAMES)
    assert checkpoint.class_names[:3] == ["person", "bicycle", "car"]
    assert checkpoint.class_names[11] == "N/A"
    state = torch.load(v1_file, weights_only=True)
    own = checkpoint.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items() if k in own)
    assert {k for k in state if not k.endswith("num_batches_tracked")} == set(own)
    # The same model as torchvision's builder of that name gives.
    reference = maskrcnn_resnet50_fpn(weights=v1_file, **SMALL).eval()
    image = golden_images()[0]
    with torch.no_grad():
        ours, theirs = checkpoint.model([image])[0], reference([image])[0]
    assert len(ours["scores"]) > 0
    for key in ("boxes", "labels", "scores", "masks"):
        assert torch.equal(ours[key], theirs[key]), key


def test_a_predictor_never_reports_the_unused_coco_labels(v1_checkpoint):
    checkpoint = v1_checkpoint
    predictor = Predictor(checkpoint.model, checkpoint.class_names, score_threshold=0.0, precision="fp32")
    image = golden_images()[0]
    with torch.no_grad():
        raw = checkpoint.model([image], score_thresh=0.0)[0]
    unused = [k for k, name in enumerate(COCO_CLASS_NAMES, start=1) if name == "N/A"]
    assert torch.isin(raw["labels"], torch.tensor(unused)).any()  # the model does output them
    detections = predictor(image)
    assert len(detections) > 0
    assert "N/A" not in detections.class_names
    assert len(detections) == int((~torch.isin(raw["labels"], torch.tensor(unused))).sum())
    with pytest.raises(ValueError, match="unknown class 'N/A'"):
        Predictor(checkpoint.model, checkpoint.class_names, classes=["N/A"])


def test_wrappers_prefixes_and_2019_names_load_the_same(tmp_path):
    model = _bn_model()
    state = model.state_dict()
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": {"module." + k: v for k, v in state.items()}, "epoch": torch.tensor(3)}, wrapped)
    legacy = tmp_path / "legacy.pth"
    renamed = {
        k.replace("backbone.fpn.inner_blocks.0.0.", "backbone.fpn.inner_blocks.0."): v
        for k, v in state.items()
    }
    torch.save({"state_dict": renamed}, legacy)
    image = golden_images()[0]
    outputs = []
    for path in (plain, wrapped, legacy):
        checkpoint = load_checkpoint(path)
        assert checkpoint.class_names == ["class_1", "class_2", "class_3"]
        assert (checkpoint.config.backbone.name, checkpoint.config.num_classes) == ("resnet18", 4)
        with torch.no_grad():
            outputs.append(checkpoint.model.eval()([image])[0])
    for other in outputs[1:]:
        for key in ("boxes", "scores", "masks"):
            assert torch.equal(outputs[0][key], other[key]), key


def test_wrapped_extra_entries_are_refused(tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"model": _bn_model().state_dict(), "epoch": torch.tensor(3)}, path)
    assert load_checkpoint(path).config.num_classes == 4  # the wrapper's other entries are not the model's
    torch.save({**_bn_model().state_dict(), "epoch": 3}, path)
    with pytest.raises(ValueError, match=r"entries that are not tensors: \['epoch'\]"):
        load_checkpoint(path)


def test_class_names_for_a_file_of_other_classes(tmp_path):
    path = tmp_path / "mine.pth"
    torch.save(_bn_model().state_dict(), path)
    assert load_checkpoint(path, class_names=["a", "b", "c"]).class_names == ["a", "b", "c"]
    with pytest.raises(
        ValueError, match=r"has 3 classes \(num_classes=4 with the background\); 2 class names"
    ):
        load_checkpoint(path, class_names=["a", "b"])


def test_an_imagenet_classifier_cannot_detect(tmp_path):
    path = tmp_path / "resnet18.pth"
    state = {k: torch.zeros(s) for k, s, _ in load_layout("resnet18_imagenet")}
    torch.save(state, path)
    with pytest.raises(ValueError, match="is an ImageNet classifier, not a detection model"):
        load_checkpoint(path)


def test_converted_checkpoint_is_the_same_model_without_pickle(tmp_path):
    source = tmp_path / "mine.pth"
    model = _bn_model()
    torch.save(model.state_dict(), source)
    out = tmp_path / "mine.safetensors"
    convert_checkpoint(source, out, class_names=["square", "circle", "triangle"])
    with safe_open(str(out), framework="pt") as f:
        info = json.loads(f.metadata()["maskrcnn"])
    assert info["class_names"] == ["square", "circle", "triangle"]
    assert info["extra"] == {
        "source": "mine.pth",
        "architecture": "Mask R-CNN resnet18-FPN (v1 heads)",
        "converted_from": str(source),
    }
    assert json.loads(out.with_suffix(".json").read_text()) == info
    converted = load_checkpoint(out)
    assert converted.class_names == ["square", "circle", "triangle"]
    original = load_checkpoint(source)
    assert converted.config == original.config
    image = golden_images()[1]
    with torch.no_grad():
        a, b = original.model.eval()([image])[0], converted.model.eval()([image])[0]
    for key in ("boxes", "labels", "scores", "masks"):
        assert torch.equal(a[key], b[key]), key


def test_a_torchvision_v2_file(tmp_path):
    path = tmp_path / "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"
    torch.save(synthetic_state_dict(load_layout("maskrcnn_resnet50_fpn_v2")), path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.extra == {"source": "coco-v2", "architecture": "maskrcnn_resnet50_fpn_v2"}
    model = checkpoint.model.eval()
    model.transform.min_size, model.transform.max_size = SMALL.values()
    reference = maskrcnn_resnet50_fpn_v2(weights=path, **SMALL).eval()
    image = golden_images()[1]
    with torch.no_grad():
        ours, theirs = model([image])[0], reference([image])[0]
    assert len(ours["scores"]) > 0
    for key in ("boxes", "labels", "scores", "masks"):
        assert torch.equal(ours[key], theirs[key]), key


def test_tensors_the_recognised_model_lacks_are_named_not_dropped(tmp_path):
    path = tmp_path / "extra.pth"
    state = _bn_model().state_dict()
    state["roi_heads.attention.weight"] = torch.zeros(8, 8)
    state["backbone.body.layer5.0.conv1.weight"] = torch.zeros(8, 8, 1, 1)
    torch.save(state, path)
    with pytest.raises(ValueError, match=f"{path} does not fit this model") as error:
        load_checkpoint(path)
    assert "unexpected key backbone.body.layer5.0.conv1.weight [8, 8, 1, 1]" in str(error.value)
    assert "unexpected key roi_heads.attention.weight [8, 8]" in str(error.value)
