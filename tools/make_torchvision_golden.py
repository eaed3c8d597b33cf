"""Write the golden outputs of torchvision's Mask R-CNN and Keypoint R-CNN that our implementation is
tested against.

Why this exists: ``maskrcnn`` re-implements torchvision's ``maskrcnn_resnet50_fpn`` (v1),
``maskrcnn_resnet50_fpn_v2`` and ``keypointrcnn_resnet50_fpn`` with the same state-dict keys, and must give
the same detections and training losses for the same weights. The package must not depend on
torchvision, so the reference outputs are computed once, here, and committed as JSON:

    tests/fixtures/torchvision/golden_maskrcnn_resnet50_fpn.json
    tests/fixtures/torchvision/golden_maskrcnn_resnet50_fpn_v2.json
    tests/fixtures/torchvision/golden_keypointrcnn_resnet50_fpn.json

This script is the only place in the repository that imports torchvision. Run it from the repository root
with a Python environment that has torch, torchvision, numpy and pycocotools (not the project's venv):

    /path/to/torchvision-env/bin/python tools/make_torchvision_golden.py

For each model it builds torchvision's model (``weights=None, weights_backbone=None, num_classes=91,
min_size=160, max_size=256``), loads ``tests.synthetic_weights.synthetic_state_dict`` (strict), converts
it to float64 and records:

* eval mode, on ``golden_images(torch.float64)``: per image the boxes, scores and labels, and for the masks
  (``[N, 1, H, W]`` probabilities) the COCO RLE of ``mask > 0.5``, the sum of each mask's probabilities
  and, for the first two masks, the probabilities themselves (rounded to 1e-9, cropped to the region
  where they are non-zero: outside it the pasted mask is exactly 0); for the keypoint model (no masks)
  each detection's ``[17, 3]`` keypoints and ``[17]`` keypoint scores instead;
* train mode, on the same images and ``golden_targets()`` (``golden_keypoint_targets()`` for the keypoint
  model, whose synthetic weights have a lower background bias: with two classes the default one lets
  nothing through the score threshold): the five losses, with ``torch.manual_seed(0)``
  called immediately before the forward pass, plus the log of every draw from torch's generator during
  that pass (torchvision's transform and samplers draw from it, so an implementation that draws
  differently samples other anchors and proposals and gets other losses).

The output is deterministic: running the script twice writes identical files.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import torch
import torchvision
from torch import nn
from torchvision.models.detection import (
    keypointrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)
from torchvision.ops import FrozenBatchNorm2d

ROOT = Path(__file__).resolve().parent.parent
MODELS: dict[str, Callable[..., nn.Module]] = {
    "maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn,
    "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2,
    "keypointrcnn_resnet50_fpn": keypointrcnn_resnet50_fpn,
}
KEYPOINT_MODELS = {"keypointrcnn_resnet50_fpn"}
KEYPOINT_BACKGROUND_BIAS = 9.0  # 24 and 40 detections on the two golden images
BUILD_KWARGS: dict[str, Any] = {
    "weights": None,
    "weights_backbone": None,
    "num_classes": 91,
    "min_size": 160,
    "max_size": 256,
}
SEED = 0  # seed of the synthetic weights
TRAIN_RNG_SEED = 0  # torch.manual_seed right before the training forward pass
NUM_THREADS = 2  # fixed so the float64 BLAS results do not depend on the machine's core count
MASKS_WITH_PROBS = 2  # full probability maps are stored for this many masks per image
PROB_DECIMALS = 9


def _synthetic() -> Any:
    """``tests.synthetic_weights``, imported from the repository root (this script is not installed)."""
    sys.path.insert(0, str(ROOT))
    import tests.synthetic_weights as synthetic

    return synthetic


def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x} in the golden output")
    return x


def _norm_layers(model: nn.Module) -> dict[str, str]:
    """Which normalisation layer each part of the model uses (``"none"`` where it has none)."""
    parts = {
        "backbone.body": model.backbone.body,
        "backbone.fpn": model.backbone.fpn,
        "rpn.head": model.rpn.head,
        "roi_heads.box_head": model.roi_heads.box_head,
    }
    for branch in ("mask_head", "keypoint_head"):
        if getattr(model.roi_heads, branch, None) is not None:
            parts[f"roi_heads.{branch}"] = getattr(model.roi_heads, branch)
    found = {}
    for name, part in parts.items():
        kinds = sorted(
            {
                type(m).__name__
                for m in part.modules()
                if isinstance(m, (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d, nn.GroupNorm))
            }
        )
        found[name] = ", ".join(kinds) if kinds else "none"
    return found


def _build_kwargs(name: str) -> dict[str, Any]:
    return {**BUILD_KWARGS, "num_classes": 2} if name in KEYPOINT_MODELS else BUILD_KWARGS


def _settings(name: str, model: nn.Module) -> dict[str, Any]:
    """The hyper-parameters that decide the outputs, read off the built model."""
    transform, rpn, roi = model.transform, model.rpn, model.roi_heads
    extra = {"background_bias": KEYPOINT_BACKGROUND_BIAS} if name in KEYPOINT_MODELS else {}
    return {
        "build_kwargs": {k: v for k, v in _build_kwargs(name).items() if v is not None},
        **extra,
        "dtype": "float64",
        "weights_seed": SEED,
        "image_mean": list(transform.image_mean),
        "image_std": list(transform.image_std),
        "min_size": list(transform.min_size),
        "max_size": transform.max_size,
        "size_divisible": transform.size_divisible,
        "anchor_sizes": [list(s) for s in model.rpn.anchor_generator.sizes],
        "anchor_aspect_ratios": [list(a) for a in model.rpn.anchor_generator.aspect_ratios],
        "rpn_pre_nms_top_n": dict(rpn._pre_nms_top_n),
        "rpn_post_nms_top_n": dict(rpn._post_nms_top_n),
        "rpn_nms_thresh": rpn.nms_thresh,
        "rpn_score_thresh": rpn.score_thresh,
        "rpn_min_size": rpn.min_size,
        "rpn_fg_iou_thresh": rpn.proposal_matcher.high_threshold,
        "rpn_bg_iou_thresh": rpn.proposal_matcher.low_threshold,
        "rpn_batch_size_per_image": rpn.fg_bg_sampler.batch_size_per_image,
        "rpn_positive_fraction": rpn.fg_bg_sampler.positive_fraction,
        "box_score_thresh": roi.score_thresh,
        "box_nms_thresh": roi.nms_thresh,
        "box_detections_per_img": roi.detections_per_img,
        "box_fg_iou_thresh": roi.proposal_matcher.high_threshold,
        "box_bg_iou_thresh": roi.proposal_matcher.low_threshold,
        "box_batch_size_per_image": roi.fg_bg_sampler.batch_size_per_image,
        "box_positive_fraction": roi.fg_bg_sampler.positive_fraction,
        "bbox_reg_weights": list(roi.box_coder.weights),
    }


def _crop_probs(prob: torch.Tensor) -> dict[str, Any]:
    """The non-zero region of one pasted ``[H, W]`` probability map, rounded to ``PROB_DECIMALS``."""
    ys, xs = torch.nonzero(prob > 0, as_tuple=True)
    if ys.numel() == 0:
        return {"y0": 0, "x0": 0, "values": []}
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    values = [[round(_finite(v), PROB_DECIMALS) for v in row] for row in prob[y0:y1, x0:x1].tolist()]
    return {"y0": y0, "x0": x0, "values": values}


def _rle(binary: torch.Tensor) -> dict[str, Any]:
    """COCO RLE of an ``[H, W]`` bool mask, with ``counts`` as str."""
    rle = mask_utils.encode(np.asfortranarray(binary.numpy().astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _eval_outputs(model: nn.Module, images: list[torch.Tensor]) -> list[dict[str, Any]]:
    model.eval()
    with torch.no_grad():
        batch, _ = model.transform(images)
        outputs = model(images)
    records = []
    for i, (image, out) in enumerate(zip(images, outputs, strict=True)):
        record = {
            "image_size": list(image.shape[-2:]),
            "resized_size": list(batch.image_sizes[i]),
            "num_detections": len(out["scores"]),
            "boxes": [[_finite(v) for v in box] for box in out["boxes"].tolist()],
            "scores": [_finite(v) for v in out["scores"].tolist()],
            "labels": out["labels"].tolist(),
        }
        if "masks" in out:
            probs = out["masks"][:, 0]  # [N, H, W] float64 probabilities pasted into the image
            record["masks_rle"] = [_rle(p > 0.5) for p in probs]
            record["mask_prob_sums"] = [_finite(v) for v in probs.sum(dim=(1, 2)).tolist()]
            record["mask_probs"] = [_crop_probs(p) for p in probs[:MASKS_WITH_PROBS]]
        if "keypoints" in out:
            # float32, as torchvision computes them whatever the model's dtype
            points, scores = out["keypoints"].tolist(), out["keypoints_scores"].tolist()
            record["keypoints"] = [[[_finite(v) for v in kp] for kp in det] for det in points]
            record["keypoints_scores"] = [[_finite(v) for v in det] for det in scores]
        records.append(record)
    return records


@contextmanager
def _log_rng(log: list[list[Any]]) -> Iterator[None]:
    """Record the calls through which torchvision draws from torch's default generator during training:
    ``Tensor.uniform_`` (the transform picks a size per image) and ``torch.randperm`` (the RPN and RoI
    samplers)."""
    uniform, randperm = torch.Tensor.uniform_, torch.randperm

    def logged_uniform(self: torch.Tensor, a: float = 0.0, b: float = 1.0, **kwargs: Any) -> torch.Tensor:
        out = uniform(self, a, b, **kwargs)
        log.append(["uniform_", list(self.shape), str(self.dtype), a, b])
        return out

    def logged_randperm(n: int, *args: Any, **kwargs: Any) -> torch.Tensor:
        log.append(["randperm", int(n)])
        return randperm(n, *args, **kwargs)

    torch.Tensor.uniform_ = logged_uniform  # type: ignore[method-assign]
    torch.randperm = logged_randperm  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.Tensor.uniform_ = uniform  # type: ignore[method-assign]
        torch.randperm = randperm


def _replay_rng(log: list[list[Any]]) -> torch.Tensor:
    """The generator state after replaying ``log`` from the training seed: equal to the state after the
    forward pass if and only if the log holds every draw."""
    torch.manual_seed(TRAIN_RNG_SEED)
    for call in log:
        if call[0] == "uniform_":
            dtype = getattr(torch, call[2].removeprefix("torch."))
            torch.empty(call[1], dtype=dtype).uniform_(call[3], call[4])
        else:
            torch.randperm(call[1])
    return torch.get_rng_state()


def _train_losses(
    model: nn.Module, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
) -> dict[str, Any]:
    model.train()
    log: list[list[Any]] = []
    # The losses do not depend on autograd; no_grad only saves memory.
    with torch.no_grad(), _log_rng(log):
        torch.manual_seed(TRAIN_RNG_SEED)
        losses = model(images, targets)
        state_after = torch.get_rng_state()
    if not torch.equal(_replay_rng(log), state_after):
        raise RuntimeError("the training pass drew from torch's generator through a call that is not logged")
    return {
        "rng_seed": TRAIN_RNG_SEED,
        "rng_calls": log,
        "losses": {name: _finite(float(value)) for name, value in losses.items()},
        # Not all float64: torchvision's RPN labels are float32, and binary_cross_entropy_with_logits of
        # float64 logits and float32 targets returns float32, so loss_objectness is float32-accurate.
        "loss_dtypes": {name: str(value.dtype).removeprefix("torch.") for name, value in losses.items()},
    }


def golden(name: str) -> dict[str, Any]:
    """Build model ``name`` with the synthetic weights and compute its golden record."""
    synthetic = _synthetic()
    keypoints = name in KEYPOINT_MODELS
    bias = {"background_bias": KEYPOINT_BACKGROUND_BIAS} if keypoints else {}
    state = synthetic.synthetic_state_dict(synthetic.load_layout(name), seed=SEED, **bias)
    model = MODELS[name](**_build_kwargs(name))
    model.load_state_dict(state, strict=True)
    model.double()
    images = synthetic.golden_images(torch.float64)
    raw_targets = synthetic.golden_keypoint_targets() if keypoints else synthetic.golden_targets()
    targets = [{**t, "boxes": t["boxes"].double()} for t in raw_targets]
    record: dict[str, Any] = {
        "model": name,
        "note": (
            "torchvision's outputs for synthetic_state_dict(load_layout(model), seed=0) from "
            "tests/synthetic_weights.py (background_bias for the keypoint model), loaded strictly and "
            "converted to float64; "
            "written by tools/make_torchvision_golden.py"
        ),
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "weights_digest": synthetic.state_dict_digest(state),
        "images_digest": [synthetic.tensor_digest(image) for image in images],
        "norm_layers": _norm_layers(model),
        "settings": _settings(name, model),
    }
    record["eval"] = _eval_outputs(model, images)
    record["train"] = _train_losses(model, images, targets)
    return record


def _dumps(value: Any, indent: int = 0) -> str:
    """JSON with short lists and each row of a 2-D list on one line: small files, readable diffs."""
    pad = " " * indent
    if isinstance(value, dict):
        items = [f"{pad} {json.dumps(k)}: {_dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"
    if isinstance(value, list):
        flat = json.dumps(value, separators=(",", ":"))
        nested = any(isinstance(v, (dict, list)) for v in value)
        if not nested or (len(flat) <= 100 and not any(isinstance(v, dict) for v in value)):
            return flat
        rows = [pad + " " + _dumps(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(rows) + "\n" + pad + "]"
    return json.dumps(value)


def main() -> None:
    torch.set_num_threads(NUM_THREADS)
    out_dir = ROOT / "tests" / "fixtures" / "torchvision"
    for name in MODELS:
        record = golden(name)
        path = out_dir / f"golden_{name}.json"
        path.write_text(_dumps(record) + "\n", encoding="utf-8")
        counts = [r["num_detections"] for r in record["eval"]]
        losses = ", ".join(f"{k}={v:.6g}" for k, v in record["train"]["losses"].items())
        print(f"{path.relative_to(ROOT)}: detections per image {counts}; {losses}")


if __name__ == "__main__":
    main()
