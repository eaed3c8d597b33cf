"""Choosing the precision: names, what auto picks where, and train.amp meaning the same."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from maskrcnn.config import PRESETS, preset
from maskrcnn.engine import precision as precision_module
from maskrcnn.engine.errors import TrainingError
from maskrcnn.engine.optim import autocast_for
from maskrcnn.engine.precision import resolve_precision
from maskrcnn.engine.predictor import Predictor
from maskrcnn.models import maskrcnn_resnet50_fpn
from maskrcnn.ops import box_iou
from maskrcnn.weights import load_weights
from maskrcnn.weights.coco import COCO_CLASS_NAMES
from tests.synthetic_weights import FIXTURES, golden_images, load_layout, synthetic_state_dict


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_the_cpu_follows_the_hardware(monkeypatch, native):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    chosen = resolve_precision("auto", "cpu")
    assert chosen.name == ("bf16" if native else "fp32")
    assert chosen.dtype == (torch.bfloat16 if native else torch.float32)
    assert chosen.describe().startswith(f"{chosen.name} (auto: ")
    # train.amp=auto means the same, and every preset trains so (the ResNet-50 ones too: a bf16 training
    # step is faster there, see benchmarks/inference.py --bf16)
    for name in PRESETS:
        _, described, scaling = autocast_for(preset(name).train.amp, torch.device("cpu"))
        assert described == chosen.describe(), name
        assert not scaling


def test_names_and_errors():
    assert resolve_precision(" FP32 ", "cpu").describe() == "fp32"
    assert isinstance(resolve_precision("fp32", "cpu").autocast(), contextlib.nullcontext)
    bf16 = resolve_precision("bf16", torch.device("cpu"))
    with bf16.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(TrainingError, match=r"train\.amp=fp16: precision fp16 needs a CUDA GPU"):
        autocast_for("fp16", torch.device("cpu"))
    context, name, scaling = autocast_for("off", torch.device("cpu"))
    assert (name, scaling) == ("fp32", False)
    assert isinstance(context, contextlib.nullcontext)


def test_bf16_detections_of_a_resnet50_agree_with_float32():
    """The torchvision-layout ResNet-50 of the parity tests (synthetic weights) on its two images: at
    least 90% of the fp32 detections scoring 0.5 or more have a bf16 twin (same class, box IoU > 0.95;
    the synthetic weights make a few classes nearly tied, and one of those may flip) and twins score
    within 0.15 (measured: up to 0.104); the results are float32. The masks are not compared here: the
    synthetic mask logits are a texture around 0 inside each box, so a box moved by a pixel changes them
    (bf16 masks of a trained model: the demo figures in the README)."""
    golden = json.loads((FIXTURES / "golden_maskrcnn_resnet50_fpn.json").read_text())
    state = synthetic_state_dict(
        load_layout("maskrcnn_resnet50_fpn"), seed=golden["settings"]["weights_seed"]
    )
    model = maskrcnn_resnet50_fpn(**golden["settings"]["build_kwargs"])
    load_weights(model, state)
    images = golden_images()
    fp32 = Predictor(model, COCO_CLASS_NAMES, score_threshold=0.05, precision="fp32").predict_batch(images)
    bf16 = Predictor(model, COCO_CLASS_NAMES, score_threshold=0.05, precision="bf16").predict_batch(images)
    confident = matched = 0
    for exact, reduced in zip(fp32, bf16, strict=True):
        assert reduced.boxes.dtype == reduced.scores.dtype == torch.float32
        assert reduced.masks.dtype == torch.bool
        top = torch.where(exact.scores >= 0.5)[0]
        same_class = exact.labels[top, None] == reduced.labels[None]
        best, twin = torch.where(same_class, box_iou(exact.boxes[top], reduced.boxes), 0.0).max(dim=1)
        found = best > 0.95
        top, twin = top[found], twin[found]
        assert (exact.scores[top] - reduced.scores[twin]).abs().max() < 0.15
        assert reduced.masks.shape[1:] == exact.masks.shape[1:]
        confident += len(found)
        matched += int(found.sum())
    assert confident >= 20
    assert matched >= 0.9 * confident
