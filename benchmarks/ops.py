"""Speed of the pure-PyTorch detection ops on CPU: prints one JSON object of median milliseconds.

    python benchmarks/ops.py [--threads 2] [--repeats 7]

Workloads (those of the ops issue):
  * MultiScaleRoIAlign: 1,000 RoIs over a 4-level FPN pyramid (P2-P5) of one 800x1216 image, 256
    channels, 7x7 output, sampling_ratio 2; and 100 RoIs to 14x14 (the mask head), forward and
    forward+backward. RoI sizes are log-uniform from 32 to 800 px so that every level gets RoIs.
  * nms of 4,000 and 10,000 boxes (IoU 0.7, as for RPN proposals) and batched_nms of 1,000 and 10,000
    boxes over 80 classes (IoU 0.5, as for detections). Boxes: centres uniform over the image, sides
    log-uniform from 16 to 512 px, uniform scores. Such boxes rarely overlap (most are kept), the case
    the reference figures were taken on; proposals of a trained RPN pile up around objects instead, so
    nms of 4,000 and 10,000 boxes jittered around 20 and 50 objects is timed too ("clustered").
  * paste_masks_in_image: 100 28x28 masks into 800x1216.
Each figure is the median of --repeats timed runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
from collections.abc import Callable

import torch

from maskrcnn.ops import MultiScaleRoIAlign, batched_nms, nms, paste_masks_in_image
from timing import median_seconds

IMAGE_H, IMAGE_W = 800, 1216


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    return round(median_seconds(fn, repeats) * 1000, 2)


def random_rois(n: int, g: torch.Generator, lo: float = 32, hi: float = 800) -> torch.Tensor:
    centre = torch.rand(n, 2, generator=g) * torch.tensor([IMAGE_W, IMAGE_H])
    side = torch.exp(torch.rand(n, 1, generator=g) * math.log(hi / lo)) * lo
    aspect = torch.exp((torch.rand(n, 1, generator=g) - 0.5) * math.log(4.0))  # h/w from 1/2 to 2
    wh = torch.cat([side / aspect.sqrt(), side * aspect.sqrt()], dim=1)
    return torch.cat([centre - wh / 2, centre + wh / 2], dim=1)


def random_boxes(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    centre = torch.rand(n, 2, generator=g) * torch.tensor([IMAGE_W, IMAGE_H])
    size = torch.exp(torch.rand(n, 2, generator=g) * math.log(512 / 16)) * 16
    return torch.cat([centre - size / 2, centre + size / 2], dim=1), torch.rand(n, generator=g)


def clustered_boxes(n: int, objects: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` boxes jittered (15% of their size) around ``objects`` boxes of 16 to 480 px."""
    centres = torch.rand(objects, 2, generator=g) * torch.tensor([IMAGE_W, IMAGE_H])
    sizes = torch.exp(torch.rand(objects, 2, generator=g) * math.log(30)) * 16
    which = torch.randint(0, objects, (n,), generator=g)
    centre = centres[which] + torch.randn(n, 2, generator=g) * sizes[which] * 0.15
    size = sizes[which] * torch.exp(torch.randn(n, 2, generator=g) * 0.15)
    return torch.cat([centre - size / 2, centre + size / 2], dim=1), torch.rand(n, generator=g)


def time_pooler(
    features: dict[str, torch.Tensor], n: int, size: int, repeats: int, g: torch.Generator
) -> tuple[float, float]:
    """Median (forward, forward+backward) ms of MultiScaleRoIAlign for ``n`` random RoIs."""
    pooler = MultiScaleRoIAlign(list(features), size, sampling_ratio=2)
    boxes = [random_rois(n, g)]
    shapes = [(IMAGE_H, IMAGE_W)]
    forward = median_ms(lambda: pooler(features, boxes, shapes), repeats)
    leaves = {k: v.detach().clone().requires_grad_() for k, v in features.items()}

    def forward_backward() -> None:
        pooler(leaves, boxes, shapes).sum().backward()
        for t in leaves.values():
            t.grad = None

    return forward, median_ms(forward_backward, repeats)


def bench_roi_align(repeats: int, g: torch.Generator) -> dict[str, float]:
    features = {
        name: torch.randn(1, 256, IMAGE_H // s, IMAGE_W // s, generator=g)
        for name, s in [("p2", 4), ("p3", 8), ("p4", 16), ("p5", 32)]
    }
    # The model keeps its features channels-last, which spares RoIAlign a layout copy per call.
    channels_last = {k: v.contiguous(memory_format=torch.channels_last) for k, v in features.items()}
    results: dict[str, float] = {}
    for layout, feats in [("nchw", features), ("channels_last", channels_last)]:
        for n, size in [(1000, 7), (100, 14)]:
            fwd, fwd_bwd = time_pooler(feats, n, size, repeats, g)
            results[f"roi_align_fpn_{n}rois_{size}x{size}_{layout}_fwd_ms"] = fwd
            results[f"roi_align_fpn_{n}rois_{size}x{size}_{layout}_fwd_bwd_ms"] = fwd_bwd
    return results


def bench_nms(repeats: int, g: torch.Generator) -> dict[str, float]:
    results: dict[str, float] = {}
    for n in (4000, 10_000):
        boxes, scores = random_boxes(n, g)
        results[f"nms_{n}_ms"] = median_ms(lambda b=boxes, s=scores: nms(b, s, 0.7), repeats)
        results[f"nms_{n}_kept"] = int(nms(boxes, scores, 0.7).numel())
    for n, objects in ((4000, 20), (10_000, 50)):
        boxes, scores = clustered_boxes(n, objects, g)
        results[f"nms_{n}_clustered_ms"] = median_ms(lambda b=boxes, s=scores: nms(b, s, 0.7), repeats)
        results[f"nms_{n}_clustered_kept"] = int(nms(boxes, scores, 0.7).numel())
    for n in (1000, 10_000):
        boxes, scores = random_boxes(n, g)
        classes = torch.randint(0, 80, (n,), generator=g)
        results[f"batched_nms_{n}_80cls_ms"] = median_ms(
            lambda b=boxes, s=scores, c=classes: batched_nms(b, s, c, 0.5), repeats
        )
    return results


def bench_paste(repeats: int, g: torch.Generator) -> dict[str, float]:
    masks = torch.rand(100, 1, 28, 28, generator=g)
    boxes = random_rois(100, g, lo=32, hi=400)
    return {
        "paste_masks_100_ms": median_ms(
            lambda: paste_masks_in_image(masks, boxes, (IMAGE_H, IMAGE_W)), repeats
        )
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    report: dict[str, object] = {
        "torch": torch.__version__,
        "threads": args.threads,
        "repeats": args.repeats,
        "cpu": platform.processor() or platform.machine(),
    }
    report.update(bench_roi_align(args.repeats, g))
    report.update(bench_nms(args.repeats, g))
    report.update(bench_paste(args.repeats, g))
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
