"""Peak memory of ``maskrcnn predict --tile`` on one very large scene, printed as JSON.

A synthetic scene of shapes at the demo's scale (``--size`` pixels a side, 20,000 by default: 400 million
pixels, 1.2 GB as RGB bytes) is written as a PNG, then ``maskrcnn predict`` runs on it in a child
process with the tiling model of the tests (``tests/fixtures/tiling/shapes-128.safetensors``) and
``--max-pixels`` raised past Pillow's guard. Reported: the child's peak resident memory (``ru_maxrss``),
its wall time, the detections written to ``results.json`` against the objects drawn, and the image's
size in bytes and as float32 (what holding it whole as the model's input would take)::

    .venv/bin/python benchmarks/tiling_memory.py                     # 20,000 px, ~3,000 shapes
    .venv/bin/python benchmarks/tiling_memory.py --size 8000 --shapes 600 --overlay-size 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from maskrcnn.data.shapes import draw_large_scene, random_scene

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "tiling" / "shapes-128.safetensors"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=20_000, help="scene side in pixels")
    parser.add_argument("--shapes", type=int, default=3_500, help="shapes drawn (before overlap removal)")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16, help="tiles per model call")
    parser.add_argument(
        "--overlay-size", type=int, default=4096, help="long side of the overlay written (0: full size)"
    )
    parser.add_argument("--weights", default=str(FIXTURE))
    parser.add_argument("--keep", type=Path, help="keep the scene and outputs here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        layout = random_scene(
            np.random.default_rng(0),
            height=args.size,
            width=args.size,
            min_shapes=args.shapes,
            max_shapes=args.shapes,
            min_size=20,
            max_size=32,
            buffer=0,
        )
        picture, masks, _ = draw_large_scene(layout, height=args.size, width=args.size)
        scene = work / "scene.png"
        picture.save(scene, compress_level=1)
        del picture
        drawn_s = time.perf_counter() - start
        print(f"scene: {len(masks)} objects, written in {drawn_s:.0f} s", file=sys.stderr)
        command = [
            sys.executable, "-m", "maskrcnn", "predict", str(scene),
            "--weights", args.weights,
            "--out", str(work / "out"),
            "--tile", str(args.tile),
            "--tile-overlap", str(args.overlap),
            "--batch-size", str(args.batch_size),
            "--max-pixels", str(args.size * args.size),
        ]  # fmt: skip
        if args.overlay_size:
            command += ["--overlay-size", str(args.overlay_size)]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        detections = len(json.loads((work / "out" / "results.json").read_text()))
        report = {
            "benchmark": "tiling_memory",
            "cpu": cpu_name(),
            "threads": os.environ.get("OMP_NUM_THREADS", "default"),
            "image": [args.size, args.size],
            "image_rgb_mb": round(args.size * args.size * 3 / 2**20),
            "image_float32_mb": round(args.size * args.size * 12 / 2**20),
            "objects": len(masks),
            "tile": args.tile,
            "overlap": args.overlap,
            "batch_size": args.batch_size,
            "overlay_size": args.overlay_size or None,
            "detections": detections,
            "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak_kb / 1024),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
