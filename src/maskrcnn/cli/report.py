"""``maskrcnn report RUN_OR_EVAL_DIR``: the HTML report of an evaluation or a training run.

The folder is one ``maskrcnn evaluate --out`` wrote, or a training run after its final validation. The
pictures come from the image files ``ground_truth.json`` names; for images without files (the demo's
shapes, or files moved since), from the dataset read again: the one given with ``--format`` /
``--data`` / ``-o``, else the one the evaluation recorded in ``evaluation.json``, else the run's
validation data (its ``config.yaml`` and ``split.json``). See :mod:`maskrcnn.engine.viewer`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from maskrcnn.cli.common import CommandError, add_data_arguments, load_data, output_folder, progress

__all__ = ["add_parsers", "run_report"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="an HTML report to browse an evaluation's or a run's images, detections and errors",
        description=(
            "Write RUN_OR_EVAL_DIR/report/index.html (or into --out): a self-contained folder to open in a "
            "browser, without a server or the internet. At the top the metrics, the AP each error kind "
            "costs, per-class figures and the plots (for a training run also its losses and validation "
            "history); then every image with its ground truth and detections drawn: toggle each, filter by "
            "class, a score slider, order by the image's AP50 or by an error kind, and click an image for "
            "the full size with each instance's score, error kind and IoU. The pictures are the image "
            "files the evaluation names; images without files are read again from the dataset (--format, "
            "--data, -o; by default the one the evaluation or the run used)."
        ),
    )
    parser.add_argument(
        "folder", metavar="RUN_OR_EVAL_DIR", help="a training run or a maskrcnn evaluate folder"
    )
    parser.add_argument("--out", metavar="DIR", help="the report's folder (default RUN_OR_EVAL_DIR/report)")
    add_data_arguments(parser)
    parser.add_argument("--data", help="the evaluated dataset, for the pictures of images without files")
    parser.add_argument("--title", help="the page's heading (default: the folder's name)")
    parser.set_defaults(func=run_report)


def _given_data(args: argparse.Namespace) -> bool:
    from maskrcnn.data.formats import AUTO

    return args.data is not None or args.format != AUTO or bool(args.option)


def _recorded_dataset(record: dict[str, Any]) -> Any:
    """The dataset ``evaluation.json``'s ``data`` describes (as ``maskrcnn evaluate`` read it)."""
    dataset = load_data(record.get("format", "auto"), record.get("path"), record.get("options", []))
    if record.get("run") and record.get("split", "all") != "all":
        from maskrcnn.engine.split import run_split_dataset

        dataset = run_split_dataset(dataset, record["run"], record["split"])
    return dataset


def _run_validation_data(folder: Path) -> Any:
    """The validation data of the training run in ``folder`` (its config, and its split)."""
    from maskrcnn.config import load_config
    from maskrcnn.engine.data import load_training_data
    from maskrcnn.engine.run_dir import RunDir

    run = RunDir(folder)
    cfg = load_config(run.config)
    _, val = load_training_data(cfg.data, seed=cfg.train.seed, split_file=run.split, resume=True, main=False)
    if val is None:
        raise CommandError(f"{run.config}: the run has no validation data to take the pictures from")
    return val


def run_report(args: argparse.Namespace) -> int:
    """Returns 0; a folder without an evaluation, or images found nowhere, raise."""
    from maskrcnn.engine.run_dir import RunDir
    from maskrcnn.engine.viewer import evaluation_report, read_evaluation, read_log

    folder = Path(args.folder)
    if not folder.is_dir():
        raise CommandError(f"{folder}: not a folder (give a training run or the --out of maskrcnn evaluate)")
    run = RunDir(folder)
    is_run = run.config.is_file() and run.log.is_file()
    if is_run and not (folder / "ground_truth.json").is_file():
        raise CommandError(
            f"{folder}: the run has no final evaluation (no validation data, not finished, or an older "
            "version): evaluate its weights with maskrcnn evaluate --weights "
            f"{run.checkpoint('best')} ... --out DIR, then maskrcnn report DIR"
        )
    out = output_folder(args.out if args.out is not None else folder / "report")
    files = read_evaluation(folder)
    dataset = None
    if _given_data(args):
        dataset = load_data(args.format, args.data, args.option)
    else:
        _, missing = files.image_files()
        if missing:
            record = (files.evaluation or {}).get("data")
            if record is not None:
                dataset = _recorded_dataset(record)
            elif is_run:
                dataset = _run_validation_data(folder)
            else:
                raise CommandError(
                    f"{folder}: {len(missing)} of {len(files.file_names)} images have no file (the first: "
                    f"{missing[0]}); give the evaluated dataset with --format/--data/-o to read them from"
                )
    total = len(files.ground_truth["images"])
    index = evaluation_report(
        files,
        out,
        dataset=dataset,
        history=read_log(run.log) if is_run else None,
        title=args.title or f"maskrcnn report: {folder.resolve().name}",
        progress=progress(total, "report"),
    )
    print(f"wrote {index} ({total} images, {len(files.results)} detections): open it in a browser")
    return 0
