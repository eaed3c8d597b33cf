"""A training step of the demo's model in float32 and under bf16 autocast: prints one JSON object.

    python benchmarks/train_precision.py [--threads 2] [--steps 8] [--repeats 3]

What ``train.amp=auto`` should choose on a CPU depends on whether bf16 pays for *training* (the
backward pass too), not only for inference. This times the shapes preset's model (the demo's: its
backbone, sizes and batch of 128 px images, from its own data) on ``--steps`` consecutive batches per
run, median of ``--repeats`` runs, forward under each autocast, backward and SGD step as the trainer
does. For ResNet-50-FPN (2 images of 800 x 1333), see ``benchmarks/inference.py --bf16``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from itertools import islice
from typing import Any

import torch

from predict import cpu_name
from timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from maskrcnn.config import preset
    from maskrcnn.engine.data import load_training_data, training_batches
    from maskrcnn.engine.precision import resolve_precision
    from maskrcnn.modeling import build_model

    cfg = preset("shapes")
    cfg.data.num_workers = 0
    train_data, _ = load_training_data(cfg.data)
    cfg.model.num_classes = len(train_data.class_names) + 1
    sampler, loader = training_batches(train_data, cfg.data, seed=0)
    sampler.set_epoch(0)
    batches = [(b.images, b.targets) for b in islice(loader, args.steps)]

    report: dict[str, Any] = {
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": args.threads,
        "preset": "shapes",
        "batch_size": cfg.data.batch_size,
        "image": list(batches[0][0][0].shape[-2:]),
        "steps": args.steps,
        "auto": resolve_precision("auto", "cpu").name,
    }
    for name in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_model(cfg.model).train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
        autocast = resolve_precision(name, "cpu").autocast

        def run(model: torch.nn.Module = model, optimizer: Any = optimizer, autocast: Any = autocast) -> None:
            for images, targets in batches:
                with autocast() if autocast else contextlib.nullcontext():
                    losses = model(images, targets)
                optimizer.zero_grad()
                sum(losses.values()).backward()
                optimizer.step()

        seconds = median_seconds(run, args.repeats)
        report[f"{name}_step_s"] = round(seconds / args.steps, 4)
        print(f"done: {name}", file=sys.stderr)
    report["bf16_speedup"] = round(report["fp32_step_s"] / report["bf16_step_s"], 3)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
