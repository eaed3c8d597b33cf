"""The demo's accuracy and wall-clock time: prints one JSON object.

    python benchmarks/demo.py [--out runs/bench-demo] [--threads 2] [--set key=value ...]
    python benchmarks/demo.py --checkpoint runs/demo/last.safetensors   # evaluate an existing demo model

Runs ``maskrcnn demo`` (the shapes preset: data generation, training from scratch, validation, pictures)
as a subprocess and times it from start to exit, then evaluates the model it wrote on two held-out sets:

* ``held_out``: the demo's own validation split (its generator, another seed), from its ``metrics.json``;
* ``classic``: 300 images from an independent implementation of the classic shapes generator written
  here with numpy, not with the package's code: 128x128, one random background colour, 1-4 shapes of
  random colour and size (squares and circles of "size" s in [20, 32], triangles with an apex s above the
  centre and a base s below), boxes overlapping more than IoU 0.3 removed with later shapes preferred,
  vertices truncated to integers, circles as the pixels within s of the centre, occlusion respected.
  A model that only learned the package's own rasterisation quirks would fail here.

Targets (the training issue): mask AP50 >= 0.90 and mask AP >= 0.70 on held-out shapes within 15
minutes on a 2-core CPU (stretch: 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from maskrcnn.data import InstanceDataset
from maskrcnn.engine.evaluation import evaluate
from maskrcnn.weights import load_checkpoint

CLASSES = ("square", "circle", "triangle")


class ClassicShapes(InstanceDataset):
    """The classic generator, re-implemented independently (see the module docstring)."""

    def __init__(self, count: int, seed: int, size: int = 128) -> None:
        super().__init__()
        for name in CLASSES:
            self.add_class(name)
        rng = np.random.default_rng(seed)
        self.size = size
        for index in range(count):
            self.add_image(None, image_id=index, height=size, width=size, scene=self._scene(rng))

    def _scene(self, rng: np.random.Generator) -> dict:
        size, buffer = self.size, 20
        background = rng.integers(0, 256, 3)
        shapes, boxes = [], []
        for _ in range(int(rng.integers(1, 5))):
            kind = CLASSES[int(rng.integers(0, 3))]
            color = rng.integers(0, 256, 3)
            y = int(rng.integers(buffer, size - buffer))
            x = int(rng.integers(buffer, size - buffer))
            s = int(rng.integers(buffer, size // 4 + 1))
            shapes.append((kind, color, x, y, s))
            boxes.append((y - s, x - s, y + s, x + s))
        # Greedy suppression with the later shapes ranked higher, at IoU 0.3, original order kept.
        keep: list[int] = []
        for i in sorted(range(len(shapes)), reverse=True):
            if all(_iou(boxes[i], boxes[j]) <= 0.3 for j in keep):
                keep.append(i)
        return {"background": background, "shapes": [shapes[i] for i in sorted(keep)]}

    def _draw(self, index: int) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
        scene = self.image_info[index]["scene"]
        n = self.size
        yy, xx = np.mgrid[0:n, 0:n]
        image = np.empty((n, n, 3), dtype=np.uint8)
        image[:] = scene["background"]
        masks, labels = [], []
        for kind, color, x, y, s in scene["shapes"]:
            if kind == "square":
                mask = (xx >= x - s) & (xx <= x + s) & (yy >= y - s) & (yy <= y + s)
            elif kind == "circle":
                mask = (xx - x) ** 2 + (yy - y) ** 2 <= s * s
            else:
                half = s / math.sin(math.radians(60))
                pts = np.array([(x, y - s), (x - half, y + s), (x + half, y + s)]).astype(np.int32)
                mask = _inside_triangle(xx, yy, pts)
            image[mask] = color
            masks.append(mask)
            labels.append(CLASSES.index(kind) + 1)
        # Later shapes hide earlier ones.
        covered = np.zeros((n, n), dtype=bool)
        for k in range(len(masks) - 1, -1, -1):
            visible = masks[k] & ~covered
            covered |= masks[k]
            masks[k] = visible
        return image, masks, labels

    def load_image(self, index: int) -> torch.Tensor:
        image = self._draw(index)[0]
        return torch.from_numpy(image).permute(2, 0, 1).float() / 255.0

    def load_masks(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        _, masks, labels = self._draw(index)
        return torch.from_numpy(np.stack(masks).astype(np.uint8)), torch.tensor(labels)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _inside_triangle(xx: np.ndarray, yy: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Pixels whose centres lie inside (or on) the triangle ``pts``."""
    (x0, y0), (x1, y1), (x2, y2) = pts.astype(np.float64)
    px, py = xx + 0.5, yy + 0.5

    def side(ax: float, ay: float, bx: float, by: float) -> np.ndarray:
        return (bx - ax) * (py - ay) - (by - ay) * (px - ax)

    d0, d1, d2 = side(x0, y0, x1, y1), side(x1, y1, x2, y2), side(x2, y2, x0, y0)
    return ((d0 >= 0) & (d1 >= 0) & (d2 >= 0)) | ((d0 <= 0) & (d1 <= 0) & (d2 <= 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-demo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", help="evaluate this model instead of running the demo")
    parser.add_argument("--set", action="append", default=[], help="passed to maskrcnn demo")
    parser.add_argument("--classic-images", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, object] = {"threads": args.threads, "torch": torch.__version__}
    out = Path(args.out)
    checkpoint = Path(args.checkpoint) if args.checkpoint else out / "last.safetensors"
    if not args.checkpoint:
        if out.exists() and any(out.iterdir()):
            raise SystemExit(f"{out} is not empty: choose a new --out")
        command = [sys.executable, "-m", "maskrcnn", "demo", "--out", str(out)]
        for assignment in args.set:
            command += ["--set", assignment]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        start = time.perf_counter()
        # The demo talks on stdout; this script prints only its JSON there.
        subprocess.run(command, check=True, env=env, stdout=sys.stderr)
        report["demo_wall_s"] = round(time.perf_counter() - start, 1)
        report["held_out"] = json.loads((out / "metrics.json").read_text())["segm"]
        report["held_out_box"] = json.loads((out / "metrics.json").read_text())["bbox"]
    ckpt = load_checkpoint(checkpoint)
    classic = evaluate(
        ckpt.model, ClassicShapes(args.classic_images, seed=12345), batch_size=8, progress=False
    )
    report["classic"] = classic.metrics["segm"]
    report["classic_box"] = classic.metrics["bbox"]
    held = report.get("held_out", {})
    report["targets_met"] = {
        "held_out_mask_AP50>=0.90": bool(held) and held["AP50"] >= 0.90,  # type: ignore[index]
        "held_out_mask_AP>=0.70": bool(held) and held["AP"] >= 0.70,  # type: ignore[index]
        "classic_mask_AP50>=0.90": report["classic"]["AP50"] >= 0.90,  # type: ignore[index]
        "classic_mask_AP>=0.70": report["classic"]["AP"] >= 0.70,  # type: ignore[index]
        "within_15_min": "demo_wall_s" in report and report["demo_wall_s"] <= 900,  # type: ignore[operator]
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
