"""Train the small model the tiling tests and ``benchmarks/tiling.py`` use, and store it as a fixture.

The shapes preset's model made narrower (a ResNet-18-FPN of a quarter of the usual width whose
transform works at 128 pixels: 1.2 M parameters, stored in float16 in 2.5 MB), trained from scratch on
random 128-pixel crops of 384-pixel scenes crowded with shapes at the demo's scale (shapes cut by the
scene's border included): the model tiled inference applies to large scenes, at the scale it was
trained at. About 8 minutes on 2 CPU cores::

    .venv/bin/python tools/make_tiling_model.py            # -> tests/fixtures/tiling/shapes-128.*
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from maskrcnn.config import override, preset
from maskrcnn.engine.train import train
from maskrcnn.weights import load_checkpoint, save_checkpoint

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tiling" / "shapes-128"

# A crowded scene at the demo's scale: shape sizes 20..32 (40..65 pixels across), centres anywhere.
SCENE = {"image_size": 384, "min_shapes": 15, "max_shapes": 30, "min_size": 20, "max_size": 32, "buffer": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=FIXTURE, help="checkpoint path without suffix")
    args = parser.parse_args()
    cfg = override(
        preset("shapes"),
        {
            "data.train_options": {"count": 8 * args.steps, "seed": 0, **SCENE},
            "data.val_options": {"count": 8, "seed": 1, **SCENE},
            "data.augment.crop_size": 128,
            "data.augment.vflip": 0.5,
            "eval.tile": 128,
            "model.backbone.width": 16,
            "model.backbone.fpn_channels": 32,
            "model.roi_heads.representation_size": 128,
            "model.roi_heads.mask_head_channels": (32, 32, 32, 32),
            "model.roi_heads.mask_predictor_channels": 32,
            "train.max_steps": args.steps,
            "train.seed": 0,
        },
    )
    with tempfile.TemporaryDirectory() as run:
        result = train(cfg, run)
        # float16 storage halves the file; the model computes in float32 once loaded.
        trained = load_checkpoint(Path(run) / "last.safetensors")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(
            trained.model.half(),
            args.out.with_suffix(".safetensors"),
            config=trained.config,
            class_names=trained.class_names,
            extra=trained.extra,
        )
    print(f"{result.steps} steps; validation: {result.metrics.get('segm', {})}; wrote {args.out}.*")


if __name__ == "__main__":
    main()
