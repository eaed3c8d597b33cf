"""``maskrcnn demo``: the whole tool on the embedded default data, in a few minutes on a CPU.

It trains the ``shapes`` preset (a narrow ResNet-18-FPN, from scratch) on synthetic squares, circles and
triangles, validates on held-out shapes (another seed), and leaves in the output folder the model
(``last.safetensors``), the evaluation (``metrics.json`` and its report), the loss curve and pictures of
the model's predictions on shapes it has never seen (``predictions.png``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from maskrcnn.config import load_config, override, preset
from maskrcnn.data import ShapesDataset
from maskrcnn.engine.train import TrainingError, train
from maskrcnn.visualize import draw_instances, image_grid
from maskrcnn.weights import load_checkpoint

__all__ = ["prediction_pictures", "run_demo"]

# What a demo folder holds (and a new demo replaces).
_DEMO_SUFFIXES = (".safetensors", ".json", ".jsonl", ".pt", ".png", ".txt", ".yaml")


def prediction_pictures(
    checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], *, count: int = 12, seed: int = 2
) -> Path:
    """A grid of the checkpoint's detections (score >= 0.5) on ``count`` new shapes images."""
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.model.eval()
    data = ShapesDataset(count=count, seed=seed)
    pictures, titles = [], []
    with torch.inference_mode():
        for index in range(count):
            image, target = data[index]
            det = model([image])[0]
            keep = det["scores"] >= 0.5
            pictures.append(
                draw_instances(
                    image,
                    boxes=det["boxes"][keep],
                    masks=det["masks"][keep],
                    labels=det["labels"][keep],
                    scores=det["scores"][keep],
                    class_names=ckpt.class_names,
                )
            )
            titles.append(f"{int(keep.sum())} found / {len(target['labels'])} drawn")
    path = Path(out)
    image_grid(pictures, columns=4, titles=titles, cell=256).save(path)
    return path


def _previous_run(out: Path) -> str | None:
    """``"finished"``, ``"unfinished"`` or ``None`` (no run) for a demo folder; refuses other runs."""
    if not (out / "last.state.pt").exists():
        return None
    try:
        cfg = load_config(out / "config.yaml")
    except ValueError:
        cfg = None
    if cfg is None or cfg.data.format != "shapes":
        raise TrainingError(f"{out} holds a run that is not a demo: choose another --out")
    return "finished" if (out / "predictions.png").exists() else "unfinished"


def run_demo(
    out_dir: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    *,
    resume: bool = False,
    announce: Any = None,
) -> str:
    """Train and evaluate the shapes preset into ``out_dir``; returns a summary to print.

    A demo folder from an earlier run is continued when that run was interrupted (``resume`` forces
    it), and replaced when it was finished: the demo's data is generated, nothing is lost.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    previous = _previous_run(out)
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
            print(message, file=sys.stderr)
    cfg = load_config(out / "config.yaml") if resume else override(preset("shapes"), overrides or {})
    result = train(cfg, out, resume=resume, announce=announce)
    pictures = prediction_pictures(out / "last.safetensors", out / "predictions.png")
    minutes = (time.perf_counter() - start) / 60

    def ap(section: str, key: str) -> float:
        return float(result.metrics.get(section, {}).get(key) or 0.0)

    lines = [
        f"demo {result.stopped} in {minutes:.1f} min ({result.steps} steps)",
        f"held-out shapes ({cfg.data.val_options.get('count', '?')} images): mask AP {ap('segm', 'AP'):.3f}  "
        f"AP50 {ap('segm', 'AP50'):.3f}  AP75 {ap('segm', 'AP75'):.3f}; box AP {ap('bbox', 'AP'):.3f}  "
        f"AP50 {ap('bbox', 'AP50'):.3f}",
        f"model       {out / 'last.safetensors'}",
        f"metrics     {out / 'metrics.json'} (and per_class.txt, pr_curve.png, confusion_matrix.png)",
        f"loss curve  {out / 'loss_curve.png'}",
        f"pictures    {pictures}",
    ]
    return "\n".join(lines)
