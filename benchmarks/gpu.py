"""Mask R-CNN speed on a GPU (or any device): prints one JSON object.

    python benchmarks/gpu.py [--device cuda] [--batches 1,8] [--precisions fp32,bf16,fp16]
                             [--train-batch 8] [--repeats 10] [--torchvision]

The fast-inference issue's GPU figures, in one run of a few minutes: ResNet-50-FPN Mask R-CNN (v1, 91
classes, random weights with a fixed seed, frozen BatchNorm, score threshold 0 so that every image gets
100 detections) on 800 x 1333 synthetic images (``benchmarks/inference.py``'s):

* ``inference``: images/s of the whole call (pasted masks included) per precision and batch size, the
  model under ``torch.inference_mode`` and autocast (:mod:`maskrcnn.engine.precision`);
* ``train``: images/s of a training step (forward under autocast, backward, SGD step; fp16 with loss
  scaling, as ``train.amp`` does) at ``--train-batch`` images, per reduced precision;
* ``peak_memory_gb``: the most the device held, per entry.

``--torchvision`` runs the same workload on torchvision's model when it is installed (not a dependency).
Each figure is the median of ``--repeats`` timed calls after two warm-up calls, the device synchronised
around each one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import torch

from inference import build_ours, build_torchvision, synthetic_image, synthetic_target
from timing import median_seconds


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn``, the device's queue drained before the clock stops."""

    def call() -> None:
        fn()
        synchronize(device)

    synchronize(device)
    return median_seconds(call, repeats, warmup=2)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def measure(
    build: Callable[[str], torch.nn.Module], device: torch.device, args: argparse.Namespace
) -> dict[str, Any]:
    from maskrcnn.engine.precision import resolve_precision

    batches = [int(b) for b in args.batches.split(",")]
    images = [synthetic_image(i).to(device) for i in range(max([*batches, args.train_batch]))]
    targets = [{k: v.to(device) for k, v in synthetic_target(i).items()} for i in range(args.train_batch)]
    report: dict[str, Any] = {"inference": {}, "train": {}}
    detector = build("frozen_bn").to(device).eval()
    for name in args.precisions.split(","):
        try:
            precision = resolve_precision(name, device)
        except ValueError as e:
            report["inference"][name] = f"skipped: {e}"
            continue
        for batch in batches:
            reset_peak(device)

            def infer(batch: int = batch, precision: Any = precision, detector: Any = detector) -> None:
                with torch.inference_mode(), precision.autocast():
                    detector(images[:batch])

            seconds = timed(infer, device, args.repeats)
            report["inference"][f"{name}_batch{batch}"] = {
                "images_per_s": round(batch / seconds, 2),
                "peak_memory_gb": peak_gb(device),
            }
            print(f"done: inference {name} batch {batch}", file=sys.stderr)
    del detector
    for name in args.precisions.split(","):
        try:
            precision = resolve_precision(name, device)
        except ValueError as e:
            report["train"][name] = f"skipped: {e}"
            continue
        model = build("frozen_bn").to(device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
        scaler = torch.amp.GradScaler(device.type, enabled=precision.name == "fp16")

        def step(
            model: Any = model, optimizer: Any = optimizer, scaler: Any = scaler, p: Any = precision
        ) -> None:
            with p.autocast():
                losses = model(images[: args.train_batch], targets)
            optimizer.zero_grad()
            scaler.scale(sum(losses.values())).backward()
            scaler.step(optimizer)
            scaler.update()

        reset_peak(device)
        seconds = timed(step, device, max(3, args.repeats // 2))
        report["train"][f"{name}_batch{args.train_batch}"] = {
            "images_per_s": round(args.train_batch / seconds, 2),
            "peak_memory_gb": peak_gb(device),
        }
        print(f"done: train {name}", file=sys.stderr)
        del model, optimizer
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--torchvision", action="store_true", help="also time torchvision's model")
    args = parser.parse_args()
    device = torch.device(args.device)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "torch": torch.__version__,
        "image": [800, 1333],
        "maskrcnn": measure(build_ours, device, args),
    }
    if args.torchvision:
        try:
            import torchvision

            report["torchvision_version"] = torchvision.__version__
            report["torchvision"] = measure(build_torchvision, device, args)
        except ImportError as e:
            report["torchvision"] = f"not measured: {e}"
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
