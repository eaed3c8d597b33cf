"""Speed and memory of the whole Mask R-CNN on CPU: prints one JSON object.

    python benchmarks/inference.py [--threads 2] [--repeats 5] [--train-repeats 3] [--skip-train]
    python benchmarks/inference.py --torchvision     # the same workload on torchvision's model, if installed

Workload (the model issue's): ResNet-50-FPN Mask R-CNN (v1 architecture, 91 classes, randomly initialised
with a fixed seed, frozen BatchNorm as when fine-tuning) on one 800x1333 image, ``torch.inference_mode``,
forced to return 100 detections (score threshold 0) so that the mask branch always runs on 100 boxes.
Reported: median seconds of the whole call and of each stage (transform, backbone + FPN, RPN, box branch +
postprocess, mask branch, mask pasting), each stage timed on its own by running the stages in sequence
as the model does; and median seconds of a training step (forward, backward, SGD step) on 1 and on 2
images of 800x1333, with frozen BatchNorm (fine-tuning, the default) and with trainable BatchNorm
(``--train-norm bn``: training from scratch). Peak RSS of the process at the end.

``--bf16`` adds the whole call and the 2-image training steps under bf16 autocast (what ``--precision
auto`` and ``train.amp=auto`` choose on CPUs with AMX or AVX-512 BF16).

``--torchvision`` runs torchvision's ``maskrcnn_resnet50_fpn`` on the same image and settings (whole call
and training step only), for a comparison on the same machine; torchvision is not a dependency.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from timing import median_seconds

HEIGHT, WIDTH = 800, 1333


def median_s(fn: Callable[[], object], repeats: int) -> float:
    return round(median_seconds(fn, repeats), 3)


def synthetic_image(seed: int) -> torch.Tensor:
    """A smooth random image (a few blurred blobs of colour), 3 x 800 x 1333, in 0..1."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 25, 42, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bilinear")[0]


def synthetic_target(seed: int) -> dict[str, torch.Tensor]:
    """Ten random boxes with filled-ellipse masks and random COCO labels."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(10, 2, generator=g) * torch.tensor([WIDTH, HEIGHT])
    size = 40 + torch.rand(10, 2, generator=g) * 300
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    boxes = torch.stack(
        [boxes[:, 0].clamp(0, WIDTH - 2), boxes[:, 1].clamp(0, HEIGHT - 2), boxes[:, 2], boxes[:, 3]], dim=1
    )
    boxes[:, 2] = torch.maximum(boxes[:, 2].clamp(max=WIDTH), boxes[:, 0] + 2)
    boxes[:, 3] = torch.maximum(boxes[:, 3].clamp(max=HEIGHT), boxes[:, 1] + 2)
    yy, xx = torch.meshgrid(torch.arange(HEIGHT) + 0.5, torch.arange(WIDTH) + 0.5, indexing="ij")
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    rx, ry = (boxes[:, 2] - boxes[:, 0]) / 2, (boxes[:, 3] - boxes[:, 1]) / 2
    masks = (
        ((xx - cx[:, None, None]) / rx[:, None, None]) ** 2
        + ((yy - cy[:, None, None]) / ry[:, None, None]) ** 2
    ) <= 1
    labels = torch.randint(1, 91, (10,), generator=g)
    return {"boxes": boxes, "labels": labels, "masks": masks.to(torch.uint8)}


def build_ours(norm: str) -> torch.nn.Module:
    from maskrcnn.modeling import build_model
    from maskrcnn.models import maskrcnn_resnet50_fpn_config

    # Frozen BatchNorm: fine-tuning (stem and layer1 frozen); BatchNorm: from scratch, every stage trained.
    cfg = maskrcnn_resnet50_fpn_config(pretrained=norm == "frozen_bn")
    cfg.roi_heads.score_thresh = 0.0
    torch.manual_seed(0)
    return build_model(cfg)


def build_torchvision(norm: str) -> torch.nn.Module:
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, box_score_thresh=0.0)
    if norm == "frozen_bn":
        # torchvision builds frozen BatchNorm only when it downloads weights: swap the layers in.
        def freeze(module: torch.nn.Module) -> None:
            for name, child in module.named_children():
                if isinstance(child, torch.nn.BatchNorm2d):
                    frozen = FrozenBatchNorm2d(child.num_features)
                    setattr(module, name, frozen)
                else:
                    freeze(child)

        freeze(model.backbone.body)
        for name, p in model.backbone.body.named_parameters():
            p.requires_grad_(name.startswith(("layer2", "layer3", "layer4")))
    return model


def stage_times(model: Any, image: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds of each stage, run in sequence exactly as ``MaskRCNN.forward`` runs them."""
    from maskrcnn.modeling.mask_head import mask_probabilities

    times: dict[str, list[float]] = {}

    def tick(name: str, start: float) -> float:
        now = time.perf_counter()
        times.setdefault(name, []).append(now - start)
        return now

    def run() -> int:
        t = time.perf_counter()
        batch, _ = model.transform([image])
        if model.channels_last:
            batch.tensors = batch.tensors.contiguous(memory_format=torch.channels_last)
        t = tick("transform", t)
        features = model.backbone(batch.tensors)
        t = tick("backbone_fpn", t)
        proposals, _ = model.rpn(batch, features)
        t = tick("rpn", t)
        heads = model.roi_heads
        logits, deltas = heads.box_branch(features, proposals, batch.image_sizes)
        detections = heads.postprocess_detections(logits, deltas, proposals, batch.image_sizes)
        t = tick("box_branch_postprocess", t)
        mask_logits = heads.mask_branch(features, [d["boxes"] for d in detections], batch.image_sizes)
        for det, probs in zip(
            detections, mask_probabilities(mask_logits, [d["labels"] for d in detections]), strict=True
        ):
            det["masks"] = probs
        t = tick("mask_branch", t)
        out = model.transform.postprocess(detections, batch.image_sizes, [tuple(image.shape[-2:])])
        tick("mask_paste", t)
        return int(out[0]["boxes"].shape[0])

    run()
    times.clear()
    for _ in range(repeats):
        run()
    return {f"stage_{k}_s": round(statistics.median(v), 3) for k, v in times.items()}


def train_step_s(
    model: torch.nn.Module,
    images: list[torch.Tensor],
    targets: list[dict],
    repeats: int,
    autocast: Any = None,
) -> float:
    """Median seconds of a training step; the forward pass under ``autocast`` when given (as the trainer
    runs it with ``train.amp``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    model.train()

    def step() -> None:
        with autocast if autocast is not None else contextlib.nullcontext():
            losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    return median_s(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--torchvision", action="store_true", help="time torchvision's model instead")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="also time inference and the 2-image training steps under bf16 autocast",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    build = build_torchvision if args.torchvision else build_ours
    image = synthetic_image(0)
    report: dict[str, object] = {
        "implementation": "torchvision" if args.torchvision else "maskrcnn",
        "torch": torch.__version__,
        "threads": args.threads,
        "repeats": args.repeats,
        "cpu": platform.processor() or platform.machine(),
        "image": [HEIGHT, WIDTH],
    }
    model = build("frozen_bn").eval()
    with torch.inference_mode():
        report["detections"] = int(model([image])[0]["boxes"].shape[0])
        report["inference_s"] = median_s(lambda: model([image]), args.repeats)
        if not args.torchvision:
            report.update(stage_times(model, image, args.repeats))
        if args.bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                report["inference_bf16_s"] = median_s(lambda: model([image]), args.repeats)
    if not args.skip_train:
        for norm in ("frozen_bn", "bn"):
            for n in (1, 2):
                model = build(norm)
                images = [synthetic_image(i) for i in range(n)]
                targets = [synthetic_target(i) for i in range(n)]
                report[f"train_step_{n}img_{norm}_s"] = train_step_s(
                    model, images, targets, args.train_repeats
                )
                if args.bf16 and n == 2:
                    report[f"train_step_{n}img_{norm}_bf16_s"] = train_step_s(
                        model,
                        images,
                        targets,
                        args.train_repeats,
                        torch.autocast("cpu", dtype=torch.bfloat16),
                    )
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
