"""The ``maskrcnn evaluate`` command: COCO AP of a checkpoint on a dataset, the report files in ``--out``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from maskrcnn.cli.common import (
    CommandError,
    add_data_arguments,
    add_device_argument,
    add_precision_argument,
    add_tile_arguments,
    add_weights_argument,
    load_data,
    probability,
    tile_settings,
)
from maskrcnn.progress import inform
from maskrcnn.weights.coco import UNUSED_CLASS

__all__ = ["add_parsers", "run_evaluate"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="COCO box and mask AP of a checkpoint on a dataset",
        description="Evaluate a checkpoint with the COCO metrics (pycocotools): DIR/metrics.json, "
        "per-class tables, results.json (RLE masks, original category ids), a precision-recall plot and "
        "a confusion matrix; for a model with masks, also the semantic mIoU of the class maps its "
        'detections make (the "semantic" block of metrics.json).',
    )
    add_weights_argument(parser)
    add_data_arguments(parser)  # --format and -o, as for check-data and inspect
    parser.add_argument(
        "--data", help="what the format reads (JSON file, folder, data YAML); none for --format shapes"
    )
    parser.add_argument("--out", required=True, help="folder for metrics.json and the other report files")
    parser.add_argument(
        "--split",
        choices=("all", "val", "train"),
        default="all",
        help="with --run: only the images that run held out with data.val_split (val) or trained on "
        "(train); --data must be the run's training data (default all: every image)",
    )
    parser.add_argument("--run", metavar="DIR", help="the training run whose split.json --split reads")
    add_device_argument(parser)
    add_precision_argument(parser)
    add_tile_arguments(parser)
    parser.add_argument(
        "--batch-size", type=int, default=2, help="images (with --tile: tiles) per forward pass (default 2)"
    )
    parser.add_argument("--num-workers", type=int, default=0, help="data-loading processes (default 0)")
    parser.add_argument(
        "--confusion-score",
        type=float,
        default=0.5,
        help="lowest detection score counted in the confusion matrix (default 0.5)",
    )
    parser.add_argument(
        "--semantic-threshold",
        type=probability,
        default=0.5,
        metavar="T",
        help="lowest detection score painted into the class maps scored for the semantic mIoU: the "
        "predict-time --score-threshold (default 0.5)",
    )
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """``maskrcnn evaluate``: under torchrun, each process evaluates its share of the images and rank 0
    writes the report and prints; returns the exit code 0 (problems are raised, see
    :mod:`maskrcnn.cli.common`)."""
    from maskrcnn.data.image_io import pixel_limit
    from maskrcnn.engine.device import resolve_device
    from maskrcnn.engine.distributed import launched_with_several_processes, process_group

    tile_settings(args)  # contradictory tile flags are said before anything is read
    if args.batch_size < 1 or args.num_workers < 0:
        raise CommandError(
            f"--batch-size must be >= 1 and --num-workers >= 0, got {args.batch_size}, {args.num_workers}"
        )
    if not launched_with_several_processes():
        try:
            resolve_device(args.device)
        except ValueError as e:
            raise CommandError(f"--device: {e}") from None
    with process_group(args.device) as group, pixel_limit(args.max_pixels):
        return _evaluate(args, group.device, main=group.is_main)


def _load(args: argparse.Namespace, device: Any) -> tuple[Any, Any, list[int] | None]:
    """The dataset, the checkpoint, and how the checkpoint's labels map to the dataset's (``None``: the
    same classes in the same order)."""
    from maskrcnn.engine.evaluation import match_classes
    from maskrcnn.weights import load_checkpoint, resolve_weights

    resolve_weights(args.weights)  # a missing file or a download first: the data may take a while
    if (args.split == "all") != (args.run is None):
        raise CommandError(
            "--split val|train and --run DIR go together (the run's split.json names the images)"
        )
    dataset = load_data(args.format, args.data, args.option)
    if args.run is not None:
        from maskrcnn.engine.split import run_split_dataset

        dataset = run_split_dataset(dataset, args.run, args.split)
    try:
        checkpoint = load_checkpoint(args.weights, device=device)
    except (ValueError, KeyError) as e:  # a file that is no checkpoint, or one of another version
        raise CommandError(f"cannot load --weights {args.weights}: {e}") from None
    if len(dataset) == 0:
        raise CommandError(f"the dataset ({args.data or args.format}) has no images")
    dataset_classes, model_classes = list(dataset.class_names), list(checkpoint.class_names)
    if dataset_classes == model_classes:
        return dataset, checkpoint, None
    label_map, unscored = match_classes(model_classes, dataset_classes)
    if len(unscored) == len(dataset_classes):
        raise CommandError(
            f"the checkpoint's classes and the dataset's share no name: the dataset has "
            f"{_names(dataset_classes)}, the checkpoint {_names(model_classes)}"
        )
    if unscored:
        print(
            f"warning: the checkpoint has no class for {len(unscored)} of the dataset's classes "
            f"({_names(unscored)}): they are left out of the AP",
            file=sys.stderr,
        )
    return dataset, checkpoint, label_map


def _names(names: list[str], shown: int = 8) -> str:
    real = [n for n in names if n != UNUSED_CLASS]
    more = f" and {len(real) - shown} more" if len(real) > shown else ""
    return ", ".join(real[:shown]) + more


def _evaluate(args: argparse.Namespace, device: Any, *, main: bool) -> int:
    """``maskrcnn evaluate`` in one process of the run (``main``: the one that writes and prints)."""
    from maskrcnn.data.dataset import problem_lines
    from maskrcnn.data.formats.coco import read_json
    from maskrcnn.engine.evaluation import evaluate, format_metrics, format_semantic, write_report
    from maskrcnn.engine.evaluation.analysis import format_errors
    from maskrcnn.engine.precision import resolve_precision
    from maskrcnn.engine.tiling import TilingError, checkpoint_tiling

    precision = resolve_precision(args.precision, device)
    dataset, checkpoint, label_map = _load(args, device)
    settings = tile_settings(args)
    try:
        tile, overlap = checkpoint_tiling(settings["tile"], settings["tile_overlap"], checkpoint.extra)
    except TilingError as e:
        raise CommandError(f"--tile-overlap {args.tile_overlap}: {e}") from None
    if main:
        inform(f"precision: {precision.describe()}")  # not under --quiet
        if tile is not None:
            trained = " (as the model was trained: --tile 0 for whole images)" if args.tile is None else ""
            inform(f"tiles: {tile} px, overlap {overlap if overlap is not None else tile // 4} px{trained}")
        errors = [p for p in dataset.problems if p.severity == "error"]
        if errors:
            print(f"warning: {len(errors)} annotation problems left out of the evaluation:", file=sys.stderr)
        for line in problem_lines(dataset.problems):
            print(line, file=sys.stderr)
    evaluation = evaluate(
        checkpoint.model,
        dataset,
        batch_size=args.batch_size,
        device=device,
        num_workers=args.num_workers,
        score_threshold_for_confusion=args.confusion_score,
        label_map=label_map,
        precision=precision.name,
        tile=tile,
        tile_overlap=overlap,
        semantic_threshold=args.semantic_threshold,
    )
    if not main:
        return 0
    for message in evaluation.skipped:
        print(f"  error: {message}", file=sys.stderr)
    if evaluation.num_images == 0:
        raise CommandError("no image of the dataset could be read (listed above)")
    data = {
        "format": args.format,
        "path": None if args.data is None else os.path.abspath(args.data),
        "options": list(args.option),
        "run": None if args.run is None else os.path.abspath(args.run),
        "split": args.split,
    }
    paths = write_report(evaluation, args.out, dataset.class_names, data=data)
    skipped = f", {evaluation.num_skipped} unreadable images left out" if evaluation.skipped else ""
    print(
        f"evaluated {evaluation.num_images} images{skipped} in {evaluation.seconds:.1f} s: "
        f"{len(evaluation.results)} detections"
    )
    print(format_metrics(evaluation.metrics))
    if evaluation.semantic is not None:  # a model with masks
        print(format_semantic(evaluation.semantic.to_dict()))
    for line in format_errors(read_json(paths["errors.json"], "the error report")):
        print(line)
    print(
        f"wrote {paths['metrics.json']} and per_class, results, pr_curve, confusion_matrix, errors in "
        f"{args.out}"
    )
    return 0
