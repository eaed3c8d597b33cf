"""Speed of ``maskrcnn predict`` on large photos and on video: prints one JSON object.

    python benchmarks/predict.py [--threads 2] [--images 4] [--repeats 3] [--precisions fp32,auto]

Workload (the fast-inference issue's): a ResNet-50-FPN Mask R-CNN (v1 architecture, 91 classes, randomly
initialised with a fixed seed, frozen BatchNorm) saved as a checkpoint, with its score threshold at 0 so
that every image gets the cap of 100 detections; a folder of ``--images`` synthetic 2048 x 1365 JPEG photos
(smooth colour with grain); a 640 x 480 video of 12 frames.

Reported per precision (``auto`` is named by what it chose):

* ``command_images_per_s``: ``write_predictions`` on the folder, as ``maskrcnn predict DIR`` runs it
  (pictures, ``results.json``), median of ``--repeats`` runs;
* the per-image split, each stage timed on its own in the command's order, medians over the images:
  ``read_s`` (decode), ``model_s`` (the model call), ``postprocess_s`` (selection, pasting the kept masks
  into booleans, COCO RLE, drawing) and ``write_s`` (PNG encoding), and ``postprocess_over_model``;
* ``video_frames_per_s``: the same on the video, at ``--batch-size`` 1 and 4.

The random model's boxes are small (see ``mean_box_area``), and pasting, the RLE and drawing cost grows
with the boxes' area: ``postprocess_large_boxes_s`` is the same postprocess with the model's boxes moved
to 100 fixed boxes of 10-35% of the photo's sides (5% of its area on average, like people or balloons
in a photo).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from timing import median_seconds

HEIGHT, WIDTH = 1365, 2048


def cpu_name() -> str:
    """The processor's model name and its bf16 features (these machines differ)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line), "")
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}
    extra = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(extra) or 'no bf16 instructions'})"


def photo(seed: int) -> np.ndarray:
    """A synthetic ``uint8 [1365, 2048, 3]`` photo: smooth colour and some grain (so JPEG works as on
    real pictures)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 30, 45, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bilinear")[0]
    grain = torch.randn(3, HEIGHT, WIDTH, generator=g) * 0.02
    pixels = ((smooth + grain).clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.permute(1, 2, 0).contiguous().numpy()


def make_inputs(root: Path, images: int) -> tuple[Path, Path, Path]:
    """The checkpoint, the folder of photos and the video."""
    from maskrcnn.engine.video import VideoWriter
    from maskrcnn.modeling import build_model
    from maskrcnn.models import maskrcnn_resnet50_fpn_config
    from maskrcnn.weights import save_checkpoint
    from maskrcnn.weights.coco import COCO_CLASS_NAMES

    cfg = maskrcnn_resnet50_fpn_config(pretrained=True)
    cfg.roi_heads.score_thresh = 0.0
    torch.manual_seed(0)
    checkpoint = save_checkpoint(
        build_model(cfg), root / "r50.safetensors", config=cfg, class_names=COCO_CLASS_NAMES
    )
    folder = root / "photos"
    folder.mkdir()
    for k in range(images):
        Image.fromarray(photo(k)).save(folder / f"photo{k}.jpg", quality=90)
    video = root / "clip.mp4"
    with VideoWriter(video, 10) as writer:
        for k in range(12):
            frame = torch.from_numpy(photo(100 + k)).permute(2, 0, 1).float() / 255
            writer.write(torch.nn.functional.interpolate(frame[None], size=(480, 640), mode="area")[0])
    return checkpoint, folder, video


def large_boxes(n: int) -> torch.Tensor:
    """``[n, 4]`` fixed xyxy boxes of 10-35% of the photo's width and height, anywhere inside it."""
    g = torch.Generator().manual_seed(0)
    size = (torch.rand(n, 2, generator=g) * 0.25 + 0.1) * torch.tensor([WIDTH, HEIGHT])
    corner = torch.rand(n, 2, generator=g) * (torch.tensor([WIDTH, HEIGHT]) - size)
    return torch.cat([corner, corner + size], dim=1)


def split(predictor: Any, files: list[Any], out: Path) -> dict[str, float]:
    """Median seconds per image of each stage of the command, in its order."""
    from maskrcnn.data.image_io import read_image
    from maskrcnn.engine.inference import run_model
    from maskrcnn.engine.prediction_writer import PredictionWriter, _save_png
    from maskrcnn.engine.sources import output_path
    from maskrcnn.io import atomic_write

    writer = PredictionWriter(predictor, out, "predict")
    times: dict[str, list[float]] = {
        "read_s": [],
        "model_s": [],
        "postprocess_s": [],
        "write_s": [],
        "postprocess_large_boxes_s": [],
    }
    areas = []
    for file in files:
        t0 = time.perf_counter()
        image = read_image(file.path)
        t1 = time.perf_counter()
        with torch.inference_mode():
            output = run_model(
                predictor.model,
                [image.to(predictor.device)],
                precision=predictor.precision,
                score_threshold=predictor.score_threshold,
            )[0]
        t2 = time.perf_counter()
        detections = predictor._select(output, (HEIGHT, WIDTH))
        writer.record(file, detections)
        picture = writer.render(image, detections, video=False)
        t3 = time.perf_counter()
        atomic_write(output_path(out, file, "predict"), partial(_save_png, picture))
        t4 = time.perf_counter()
        for name, start, end in (("read_s", t0, t1), ("model_s", t1, t2), ("postprocess_s", t2, t3)):
            times[name].append(end - start)
        times["write_s"].append(t4 - t3)
        large = {**output, "boxes": large_boxes(len(output["boxes"]))}
        t5 = time.perf_counter()
        detections_large = predictor._select(large, (HEIGHT, WIDTH))
        writer.record(file, detections_large)
        writer.render(image, detections_large, video=False)
        times["postprocess_large_boxes_s"].append(time.perf_counter() - t5)
        box = detections.boxes
        areas.append(float(((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])).mean()) / (HEIGHT * WIDTH))
    report = {name: round(statistics.median(values), 4) for name, values in times.items()}
    report["postprocess_over_model"] = round(report["postprocess_s"] / report["model_s"], 3)
    report["large_boxes_over_model"] = round(report["postprocess_large_boxes_s"] / report["model_s"], 3)
    report["detections_per_image"] = len(detections)
    report["mean_box_area"] = round(statistics.median(areas), 5)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from maskrcnn.engine.prediction_writer import PredictionWriter, write_predictions
    from maskrcnn.engine.predictor import Predictor
    from maskrcnn.engine.sources import iter_sources

    report: dict[str, Any] = {
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": args.threads,
        "images": args.images,
        "image": [HEIGHT, WIDTH],
        "video": [480, 640, 12],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint, folder, video = make_inputs(root, args.images)
        files = list(iter_sources(folder))
        clip = list(iter_sources(video))
        for name in args.precisions.split(","):
            predictor = Predictor.from_checkpoint(checkpoint, score_threshold=0.0, precision=name)
            key = predictor.precision.name if name != "auto" else f"auto={predictor.precision.name}"
            out = root / f"out-{predictor.precision.name}"
            seconds = median_seconds(
                lambda p=predictor, o=out: write_predictions(p, files, o, mode="predict"),
                args.repeats,
            )
            entry: dict[str, Any] = {"command_images_per_s": round(len(files) / seconds, 3)}
            entry.update(split(predictor, files, root / f"split-{predictor.precision.name}"))
            for batch in (1, 4):
                predictor.batch_size = batch
                writer = PredictionWriter(predictor, out, "predict")
                frame_s = median_seconds(lambda w=writer: w.video(clip[0]), args.repeats) / 12
                entry[f"video_frames_per_s_batch{batch}"] = round(1 / frame_s, 2)
            report[key] = entry
            print(f"done: {key}", file=sys.stderr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
