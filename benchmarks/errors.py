"""The error report on a COCO val-sized evaluation; prints one JSON object.

    python benchmarks/errors.py [--images 5000] [--objects 7] [--detections 20] [--repeat 3]

Workload: ``--images`` synthetic 640 x 480 images with about ``--objects`` objects each (rectangles of 8
to 200 pixels, three classes; COCO val2017 has 5,000 images and 36,781 objects) and about
``--detections`` results per image: noisy copies of the objects (shifted boxes, some with another
class, some repeated) and detections on background, with random scores. Masks are the boxes' RLEs, so
mask IoU runs through pycocotools as it does on real masks. Timed (median of ``--repeat``):

* ``analyze_bbox_s``, ``analyze_segm_s``: :func:`maskrcnn.engine.evaluation.errors.analyze_errors`
  (the classification of every detection and object, and the seven AP50s of TIDE's oracles);
* ``report_s``: :func:`maskrcnn.engine.evaluation.analysis.error_report` for both types (the above,
  the visibility of every object, the per-image rows) and ``write_error_report`` (JSON and figure).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
from pycocotools import mask as mask_utils

from maskrcnn.engine.evaluation.analysis import error_report, write_error_report
from maskrcnn.engine.evaluation.errors import analyze_errors
from timing import median_seconds

HEIGHT, WIDTH = 480, 640


def _rle(box: list[float]) -> dict:
    x, y, w, h = box
    rle = mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], HEIGHT, WIDTH)[0]
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def workload(images: int, objects: int, detections: int, seed: int = 0) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    gt_images, annotations, results = [], [], []
    for image_id in range(1, images + 1):
        gt_images.append(
            {"id": image_id, "height": HEIGHT, "width": WIDTH, "file_name": f"{image_id:012d}.jpg"}
        )
        boxes = []
        for _ in range(rng.poisson(objects)):
            w, h = (float(v) for v in rng.uniform(8, 200, 2))
            x, y = float(rng.uniform(0, WIDTH - w)), float(rng.uniform(0, HEIGHT - h))
            box = [x, y, w, h]
            boxes.append(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 4)),
                    "bbox": box,
                    "area": w * h,
                    "segmentation": _rle(box),
                    "iscrowd": 0,
                }
            )
        for _ in range(rng.poisson(detections)):
            if boxes and rng.random() < 0.7:
                x, y, w, h = boxes[int(rng.integers(len(boxes)))]
                jitter = rng.normal(0, 0.15, 4) * [w, h, w, h]
                box = [x + jitter[0], y + jitter[1], max(w + jitter[2], 2.0), max(h + jitter[3], 2.0)]
            else:
                w, h = (float(v) for v in rng.uniform(8, 150, 2))
                box = [float(rng.uniform(0, WIDTH - w)), float(rng.uniform(0, HEIGHT - h)), w, h]
            box = [float(v) for v in box]
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 4)),
                    "bbox": box,
                    "segmentation": _rle(box),
                    "score": float(rng.random()),
                }
            )
    ground_truth = {
        "images": gt_images,
        "annotations": annotations,
        "categories": [{"id": c, "name": n} for c, n in ((1, "a"), (2, "b"), (3, "c"))],
    }
    return ground_truth, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--objects", type=float, default=7.0)
    parser.add_argument("--detections", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    ground_truth, results = workload(args.images, args.objects, args.detections)
    made = time.perf_counter() - start
    metrics = {t: {"APs": None, "APm": None, "APl": None} for t in ("bbox", "segm")}
    per_class = [{"class": c["name"], "instances": 0} for c in ground_truth["categories"]]
    confusion = np.zeros((4, 4), dtype=int).tolist()

    def report() -> None:
        built = error_report(ground_truth, results, metrics, per_class, confusion, ["a", "b", "c"])
        with tempfile.TemporaryDirectory() as out:
            write_error_report(built, out)

    figures = {
        "images": args.images,
        "objects": len(ground_truth["annotations"]),
        "detections": len(results),
        "workload_s": round(made, 2),
        "analyze_bbox_s": median_seconds(
            lambda: analyze_errors(ground_truth, results, iou_type="bbox"), args.repeat, 0
        ),
        "analyze_segm_s": median_seconds(
            lambda: analyze_errors(ground_truth, results, iou_type="segm"), args.repeat, 0
        ),
        "report_s": median_seconds(report, args.repeat, 0),
        "repeat": args.repeat,
    }
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
