"""``maskrcnn demo``: the whole tool on the embedded default data, in a few minutes on a CPU.

It trains the ``shapes`` preset (a narrow ResNet-18-FPN, from scratch) on synthetic squares, circles and
triangles, validates on held-out shapes (another seed), and leaves in the output folder the model
(``last.safetensors``), the evaluation (``metrics.json`` and its report), the loss curve and pictures of
the model's predictions on shapes it has never seen (``predictions.png``). ``maskrcnn demo --keypoints``
does the same with the ``keypoints`` preset: the shapes' extreme points (top, left, right, bottom) as
keypoints, a keypoint head beside the mask head, and the keypoint AP (OKS) beside the box and mask AP.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from maskrcnn.config import load_config, override, preset
from maskrcnn.data import ShapesDataset
from maskrcnn.engine.errors import TrainingError
from maskrcnn.engine.evaluation import metrics_summary
from maskrcnn.engine.run_dir import RunDir
from maskrcnn.engine.train import train
from maskrcnn.io import atomic_write
from maskrcnn.progress import inform
from maskrcnn.visualize import draw_instances, image_grid
from maskrcnn.weights import load_checkpoint

__all__ = ["prediction_pictures", "run_demo"]

# What a demo folder holds (and a new demo replaces).
_DEMO_SUFFIXES = (".safetensors", ".json", ".jsonl", ".pt", ".png", ".txt", ".yaml")


def prediction_pictures(
    checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], *, count: int = 12, seed: int = 2
) -> Path:
    """A grid of the checkpoint's detections (score >= 0.5) on ``count`` new shapes images (with their
    keypoints and skeleton for a keypoint model)."""
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.model.eval()
    spec = ckpt.extra.get("keypoints")
    data = ShapesDataset(count=count, seed=seed)
    pictures, titles = [], []
    with torch.inference_mode():
        for index in range(count):
            image, target = data[index]
            det = model([image])[0]
            keep = det["scores"] >= 0.5
            optional: dict[str, Any] = {
                key: det[key][keep] for key in ("masks", "keypoints", "keypoints_scores") if key in det
            }
            if spec is not None:
                optional["skeleton"] = [tuple(edge) for edge in spec["skeleton"]]
            pictures.append(
                draw_instances(
                    image,
                    boxes=det["boxes"][keep],
                    labels=det["labels"][keep],
                    scores=det["scores"][keep],
                    class_names=ckpt.class_names,
                    **optional,
                )
            )
            titles.append(f"{int(keep.sum())} found / {len(target['labels'])} drawn")
    return atomic_write(out, image_grid(pictures, columns=4, titles=titles, cell=256).save)


def _previous_run(run: RunDir) -> str | None:
    """``"finished"``, ``"unfinished"`` or ``None`` (no run) for a demo folder; refuses other runs."""
    if not run.holds_run():
        return None
    try:
        cfg = load_config(run.config)
    except ValueError:
        cfg = None
    if cfg is None or cfg.data.format != "shapes":
        raise TrainingError(f"{run.path} holds a run that is not a demo: choose another --out")
    return "finished" if run.predictions.exists() else "unfinished"


def run_demo(
    out_dir: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    *,
    resume: bool = False,
    announce: Any = None,
    keypoints: bool = False,
) -> str:
    """Train and evaluate the shapes preset (the ``keypoints`` preset with ``keypoints``) into
    ``out_dir``; returns a summary to print.

    A demo folder from an earlier run is continued when that run was interrupted (``resume`` forces
    it), and replaced when it was finished: the demo's data is generated, nothing is lost.
    """
    start = time.perf_counter()
    run = RunDir(out_dir)
    out = run.path
    previous = _previous_run(run)
    if previous == "unfinished":
        resume = True
    elif previous == "finished" and not resume:
        for path in out.iterdir():
            if path.is_file() and path.suffix in _DEMO_SUFFIXES:
                path.unlink()
        message = f"replacing the previous demo in {out}"
        if announce is not None:
            announce(message)
        else:
            inform(message)
    name = "keypoints" if keypoints else "shapes"
    cfg = load_config(run.config) if resume else override(preset(name), overrides or {})
    result = train(cfg, out, resume=resume, announce=announce)
    pictures = prediction_pictures(run.checkpoint("last"), run.predictions)
    minutes = (time.perf_counter() - start) / 60
    scores = (
        metrics_summary(
            result.metrics,
            keys=("AP", "AP50", "AP75"),
            sections=[s for s in ("segm", "keypoints", "bbox") if s in result.metrics],
        )
        if result.metrics
        else "no validation"
    )
    lines = [
        f"demo {result.stopped} in {minutes:.1f} min ({result.steps} steps)",
        f"held-out shapes ({cfg.data.val_options.get('count', '?')} images): {scores}",
        f"model       {run.checkpoint('last')}",
        f"metrics     {out / 'metrics.json'} (and per_class.txt, pr_curve.png, confusion_matrix.png)",
        f"loss curve  {run.loss_curve}",
        f"pictures    {pictures}",
    ]
    return "\n".join(lines)
