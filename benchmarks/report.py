"""The HTML report of a COCO val-sized evaluation: build time and size; prints one JSON object.

    python benchmarks/report.py [--images 5000] [--repeat 3]

Workload: the evaluation of ``benchmarks/errors.py`` (``--images`` images of 640 x 480, about 7 objects
and 20 detections with RLE masks each; COCO val2017 has 5,000 images and 36,781 objects), written as an
evaluation folder (``ground_truth.json``, ``results.json``, ``metrics.json``, ``errors.json``) whose
images are JPEG files on disk (drawn rectangles over a gradient, quality 90, about the size of a COCO
photo's file). Not timed: making the workload. Timed (median of ``--repeat``): ``build_s``, what
``maskrcnn report EVAL_DIR`` does after parsing its arguments: read the folder, classify every
detection (by mask), write every image's thumbnail, viewing copy and details, the index and the page.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from errors import HEIGHT, WIDTH, workload
from maskrcnn.engine.evaluation.analysis import error_report
from maskrcnn.engine.viewer import evaluation_report, read_evaluation
from timing import median_seconds


def _images(folder: Path, ground_truth: dict) -> None:
    """A JPEG for each image of ``ground_truth``, its objects drawn over a gradient."""
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 255, WIDTH, dtype=np.float32)
    by_image: dict[int, list] = {}
    for ann in ground_truth["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann["bbox"])
    for image in ground_truth["images"]:
        base = np.empty((HEIGHT, WIDTH, 3), np.uint8)
        shade = rng.uniform(0.3, 1.0, 3)
        base[:] = (ramp[None, :, None] * shade[None, None, :]).astype(np.uint8)
        picture = Image.fromarray(base)
        draw = ImageDraw.Draw(picture)
        for x, y, w, h in by_image.get(image["id"], []):
            draw.rectangle([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        path = folder / image["file_name"]
        picture.save(path, quality=90)
        image["file_name"] = str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        ground_truth, results = workload(args.images, 7.0, 20.0)
        (root / "images").mkdir()
        _images(root / "images", ground_truth)
        folder = root / "eval"
        folder.mkdir()
        metrics = {
            t: {"AP": None, "AP50": None, "APs": None, "APm": None, "APl": None} for t in ("bbox", "segm")
        }
        names = [c["name"] for c in ground_truth["categories"]]
        per_class = [{"class": n, "instances": 0} for n in names]
        errors = error_report(
            ground_truth, results, metrics, per_class, np.zeros((4, 4), int).tolist(), names
        )
        for name, value in (
            ("ground_truth.json", ground_truth),
            ("results.json", results),
            ("metrics.json", metrics),
            ("errors.json", errors),
        ):
            (folder / name).write_text(json.dumps(value))
        made = time.perf_counter() - start
        out = root / "report"

        def build() -> None:
            shutil.rmtree(out, ignore_errors=True)
            evaluation_report(read_evaluation(folder), out, title="benchmark")

        seconds = median_seconds(build, args.repeat, 0)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        images_size = sum(p.stat().st_size for p in (root / "images").iterdir())
        figures = {
            "images": args.images,
            "objects": len(ground_truth["annotations"]),
            "detections": len(results),
            "workload_s": round(made, 1),
            "build_s": round(seconds, 2),
            "report_mb": round(size / 2**20, 1),
            "index_js_mb": round((out / "data" / "index.js").stat().st_size / 2**20, 2),
            "image_files_mb": round(images_size / 2**20, 1),
            "repeat": args.repeat,
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
