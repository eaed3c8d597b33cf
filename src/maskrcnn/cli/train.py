"""The training commands: ``train`` and ``demo``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from maskrcnn.cli.common import (
    CommandError,
    add_set_argument,
    output_folder,
    rank_label,
    resolved_format,
    split_assignments,
)
from maskrcnn.config import LAYERS, PRESETS

__all__ = ["add_parsers", "run_demo", "run_train"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train a model (from scratch or from weights you have)",
        description="Train Mask R-CNN. The run directory (--out) receives config.yaml, log.jsonl, "
        "last/best checkpoints (.safetensors with the config and class names beside them), the training "
        "state for --resume, loss_curve.png and the final validation report (metrics.json).",
    )
    train.add_argument("--preset", choices=list(PRESETS), help="a starting config (default shapes)")
    train.add_argument("--config", help="a YAML config file (e.g. a run's config.yaml)")
    train.add_argument("--data", help="the training data (what the format reads)")
    train.add_argument("--val-data", help="the validation data")
    train.add_argument(
        "--format", help="the data format (default: the preset's; on the shapes preset, a --data path's own)"
    )
    train.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a reader option for the training data, e.g. -o image_dir=images (repeatable; the same as "
        "--set data.train_options.KEY=VALUE)",
    )
    train.add_argument(
        "--val-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a reader option for the validation data (repeatable)",
    )
    train.add_argument(
        "--val-split",
        type=float,
        metavar="F",
        help="no validation data: hold out this fraction of the training images (e.g. 0.2; seeded, by "
        "class, saved as split.json in --out)",
    )
    train.add_argument(
        "--weights",
        help="initial weights: a .safetensors checkpoint, a torchvision .pth, an ImageNet ResNet .pth, "
        "a name (coco, coco-v2, imagenet-r50...: `maskrcnn weights list`), or 'last' to resume the run "
        "in --out",
    )
    train.add_argument(
        "--tile",
        type=int,
        metavar="SIZE",
        help="large images: train on random crops of SIZE pixels and validate on tiles of SIZE (the same "
        "as --set data.augment.crop_size=SIZE --set eval.tile=SIZE); predict and evaluate then tile alike",
    )
    train.add_argument(
        "--tile-overlap",
        type=int,
        metavar="PIXELS",
        help="with --tile: pixels neighbouring validation tiles share (default a quarter of the tile)",
    )
    train.add_argument("--layers", choices=list(LAYERS), help="which layers train")
    train.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out exactly where it stopped"
    )
    add_set_argument(
        train, "override a config value, e.g. --set train.lr=0.01 --set data.batch_size=4 (repeatable)"
    )
    train.add_argument("--out", required=True, help="the run directory")
    train.set_defaults(func=run_train)
    _add_demo_parser(sub)


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="the demo: train a small model on synthetic shapes and evaluate it (CPU, minutes)",
        description="Generate the shapes data, train a small Mask R-CNN from scratch, evaluate it on "
        "held-out shapes and write the model, metrics.json, the loss curve and prediction pictures to --out.",
    )
    demo.add_argument(
        "--out",
        default=None,
        help="the output folder (default runs/demo; runs/demo-keypoints with --keypoints)",
    )
    demo.add_argument(
        "--keypoints",
        action="store_true",
        help="the keypoint demo: the shapes' extreme points as keypoints (the keypoints preset)",
    )
    demo.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    add_set_argument(demo, "override the shapes (or keypoints) preset")
    demo.set_defaults(func=run_demo)


def _run_config(args: argparse.Namespace) -> Any:
    """The run's config: a preset or a file, then the command-line settings, then --set overrides, then
    the reader options."""
    from maskrcnn.config import load_config, override, preset
    from maskrcnn.data.formats import AUTO

    if args.preset and args.config:
        raise CommandError("train: give --preset or --config, not both")
    if args.tile_overlap is not None and args.tile is None:
        raise CommandError("train: --tile-overlap goes with --tile")
    cfg = load_config(args.config) if args.config else preset(args.preset or "shapes")
    if args.format is None and args.data is not None and cfg.data.format == "shapes":
        # The shapes generator reads no files: a --data path is the user's own data, of the format it is.
        args.format = resolved_format(AUTO, args.data)
    if args.format is not None and args.format != cfg.data.format:
        # The reader options of the preset's (or file's) format mean nothing to another reader: --format
        # coco on the default shapes preset must not pass count= to the COCO reader.
        cfg = override(cfg, {"data.train_options": {}, "data.val_options": {}})
    flags = {
        "data.format": args.format,
        "data.train": args.data,
        "data.val": args.val_data,
        "data.val_split": args.val_split,
        "train.weights": args.weights,
        "train.layers": args.layers,
        "train.device": args.device,
        "data.augment.crop_size": args.tile,
        "eval.tile": args.tile,
        "eval.tile_overlap": args.tile_overlap,
    }
    # Flag values are taken as they are (a path stays a path); --set texts are typed by the config.
    assignments: dict[str, Any] = {key: value for key, value in flags.items() if value is not None}
    assignments.update(split_assignments(args.set, "--set"))
    # Reader options are keys of the config's data.*_options (typed as --set types them), set after
    # --set so that a whole --set data.train_options={...} does not drop them.
    for flag, pairs, section in (
        ("--option", args.option, "train_options"),
        ("--val-option", args.val_option, "val_options"),
    ):
        for key, value in split_assignments(pairs, flag).items():
            assignments[f"data.{section}.{key}"] = value
    return override(cfg, assignments)


# What a resumed run may not change: its data (the batches of an exact resumption come from it).
_DATA_FLAGS = {
    "--option": "option",
    "--val-option": "val_option",
    "--val-split": "val_split",
    "--tile": "tile",
}


def run_train(args: argparse.Namespace) -> int:
    from maskrcnn.config import load_config, override
    from maskrcnn.engine.run_dir import RunDir
    from maskrcnn.engine.train import train

    resume = args.resume or args.weights == "last"
    output_folder(args.out)  # a file given as --out is said before the data is read
    if resume:
        given = [flag for flag, value in _DATA_FLAGS.items() if getattr(args, value)]
        if given:
            raise CommandError(
                f"--resume trains on the run's own data: {', '.join(given)} cannot change it (see "
                f"{RunDir(args.out).config})"
            )
        run = RunDir(args.out)
        if not run.config.is_file():
            raise CommandError(f"cannot resume: {run.path} holds no run ({run.config.name} is missing)")
        # The run's own config; --set may still change what is safe to change (e.g. train.epochs).
        cfg = override(load_config(run.config), split_assignments(args.set, "--set"))
    else:
        cfg = _run_config(args)
        if cfg.train.weights:
            from maskrcnn.weights import resolve_weights

            resolve_weights(cfg.train.weights)  # a wrong name or a download before the data is read
    result = train(cfg, args.out, resume=resume)
    if rank_label() == "":
        from maskrcnn.engine.evaluation.report import format_metrics

        print(f"{result.stopped}: {result.steps} steps, run directory {result.run_dir}")
        if result.metrics:
            print(format_metrics(result.metrics, keys=("AP", "AP50", "AP75")))
    return 130 if result.stopped == "interrupted" else 0


def run_demo(args: argparse.Namespace) -> int:
    from maskrcnn.engine.demo import run_demo as demo
    from maskrcnn.engine.distributed import launched_with_several_processes

    if launched_with_several_processes():
        raise CommandError(
            "the demo runs in one process; to train the shapes preset with torchrun use "
            "`torchrun --nproc-per-node N -m maskrcnn train --preset shapes --out DIR`"
        )
    out = Path(args.out or ("runs/demo-keypoints" if args.keypoints else "runs/demo"))
    print(demo(out, split_assignments(args.set, "--set"), resume=args.resume, keypoints=args.keypoints))
    return 0
