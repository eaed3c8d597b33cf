"""The ``maskrcnn evaluate`` command: COCO AP of a checkpoint on a dataset, the report files in ``--out``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from maskrcnn.cli.common import CommandError, add_data_arguments, add_device_argument, load_data

__all__ = ["add_parsers", "run_evaluate"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="COCO box and mask AP of a checkpoint on a dataset",
        description="Evaluate a checkpoint with the COCO metrics (pycocotools): DIR/metrics.json, "
        "per-class tables, results.json (RLE masks, original category ids), a precision-recall plot and "
        "a confusion matrix.",
    )
    parser.add_argument("--weights", required=True, help="a checkpoint saved by training (.safetensors)")
    add_data_arguments(parser)  # --format and -o, as for check-data and inspect
    parser.add_argument(
        "--data", help="what the format reads (JSON file, folder, data YAML); none for --format shapes"
    )
    parser.add_argument("--out", required=True, help="folder for metrics.json and the other report files")
    add_device_argument(parser)
    parser.add_argument("--batch-size", type=int, default=2, help="images per forward pass (default 2)")
    parser.add_argument("--num-workers", type=int, default=0, help="data-loading processes (default 0)")
    parser.add_argument(
        "--confusion-score",
        type=float,
        default=0.5,
        help="lowest detection score counted in the confusion matrix (default 0.5)",
    )
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """``maskrcnn evaluate``: under torchrun, each process evaluates its share of the images and rank 0
    writes the report and prints; returns the exit code 0 (problems are raised, see
    :mod:`maskrcnn.cli.common`)."""
    from maskrcnn.engine.device import resolve_device
    from maskrcnn.engine.distributed import launched_with_several_processes, process_group

    if args.batch_size < 1 or args.num_workers < 0:
        raise CommandError(
            f"--batch-size must be >= 1 and --num-workers >= 0, got {args.batch_size}, {args.num_workers}"
        )
    if not launched_with_several_processes():
        try:
            resolve_device(args.device)
        except ValueError as e:
            raise CommandError(f"--device: {e}") from None
    with process_group(args.device) as group:
        return _evaluate(args, group.device, main=group.is_main)


def _load(args: argparse.Namespace, device: Any) -> tuple[Any, Any]:
    """The dataset and the checkpoint, checked against each other."""
    from maskrcnn.weights import load_checkpoint

    if not Path(args.weights).is_file():  # before reading the data, which may take a while
        raise CommandError(f"--weights {args.weights}: no such file")
    dataset = load_data(args.format, args.data, args.option)
    try:
        checkpoint = load_checkpoint(args.weights, device=device)
    except (OSError, ValueError, KeyError) as e:
        raise CommandError(f"cannot load --weights {args.weights}: {e}") from None
    if list(dataset.class_names) != list(checkpoint.class_names):
        raise CommandError(
            f"the dataset's classes {list(dataset.class_names)} differ from the checkpoint's "
            f"{list(checkpoint.class_names)} (same names in the same order are needed: label k is "
            "class_names[k - 1] for both)"
        )
    if len(dataset) == 0:
        raise CommandError(f"the dataset ({args.data or args.format}) has no images")
    return dataset, checkpoint


def _evaluate(args: argparse.Namespace, device: Any, *, main: bool) -> int:
    """``maskrcnn evaluate`` in one process of the run (``main``: the one that writes and prints)."""
    from maskrcnn.engine.evaluation import evaluate, format_metrics, write_report

    dataset, checkpoint = _load(args, device)
    errors = [p for p in dataset.problems if p.severity == "error"]
    if errors:
        print(
            f"warning: {len(errors)} annotation problems left out of the evaluation (maskrcnn check-data "
            "lists them)",
            file=sys.stderr,
        )
    evaluation = evaluate(
        checkpoint.model,
        dataset,
        batch_size=args.batch_size,
        device=device,
        num_workers=args.num_workers,
        score_threshold_for_confusion=args.confusion_score,
    )
    if not main:
        return 0
    for message in evaluation.skipped:
        print(f"  error: {message}", file=sys.stderr)
    if evaluation.num_images == 0:
        raise CommandError("no image of the dataset could be read (listed above)")
    paths = write_report(evaluation, args.out, checkpoint.class_names)
    skipped = f", {evaluation.num_skipped} unreadable images left out" if evaluation.skipped else ""
    print(
        f"evaluated {evaluation.num_images} images{skipped} in {evaluation.seconds:.1f} s: "
        f"{len(evaluation.results)} detections"
    )
    print(format_metrics(evaluation.metrics))
    print(f"wrote {paths['metrics.json']} and per_class, results, pr_curve, confusion_matrix in {args.out}")
    return 0
