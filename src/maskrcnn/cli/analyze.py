"""``maskrcnn analyze EVAL_DIR``: the error report of an evaluation folder, again, from its files.

``maskrcnn evaluate --out EVAL_DIR`` writes the report with the metrics; ``analyze`` rebuilds
``errors.json`` and ``errors.png`` from the folder's ``ground_truth.json``, ``results.json``,
``metrics.json``, ``per_class.json`` and ``confusion_matrix.json`` (results edited or filtered by hand,
or a folder of an older version), without the model or the images. See
:mod:`maskrcnn.engine.evaluation.analysis`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskrcnn.cli.common import CommandError, output_folder

__all__ = ["add_parsers", "run_analyze"]

_NEEDED = ("ground_truth.json", "results.json", "metrics.json", "per_class.json", "confusion_matrix.json")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "analyze",
        help="the AP each kind of error costs, per image, class, size and visibility, of an evaluation",
        description=(
            "Rebuild the error report of an evaluation folder (maskrcnn evaluate --out DIR): the AP50 each "
            "error kind costs (classification, localisation, both, duplicate, background, missed; TIDE's "
            "oracles), AP by object size with the object counts, the share of objects found by how much "
            "of them other objects cover, each image's AP50 and errors (the worst listed), and the classes "
            "each class is taken for. Writes DIR/errors.json and DIR/errors.png (or into --out)."
        ),
    )
    parser.add_argument("eval_dir", metavar="EVAL_DIR", help="a folder maskrcnn evaluate wrote")
    parser.add_argument(
        "--out", metavar="DIR", help="write errors.json and errors.png here (default EVAL_DIR)"
    )
    parser.set_defaults(func=run_analyze)


def run_analyze(args: argparse.Namespace) -> int:
    """Returns 0; a folder without the evaluation's files, or files that do not fit together, raise."""
    from maskrcnn.data.formats.coco import read_json
    from maskrcnn.engine.evaluation.analysis import error_report, format_errors, write_error_report

    folder = Path(args.eval_dir)
    if not folder.is_dir():
        raise CommandError(f"{folder}: not a folder (give the --out folder of maskrcnn evaluate)")
    missing = [name for name in _NEEDED if not (folder / name).is_file()]
    if missing:
        raise CommandError(
            f"{folder}: no {', '.join(missing)}; maskrcnn evaluate writes them (evaluate again with this "
            "version to analyze an older folder)"
        )
    data = {name: read_json(folder / name, f"the evaluation's {name}") for name in _NEEDED}
    ground_truth, results = data["ground_truth.json"], data["results.json"]
    confusion = data["confusion_matrix.json"]
    class_names = [c["name"] for c in ground_truth.get("categories", [])]
    if confusion.get("labels", [])[1:] != class_names or len(data["per_class.json"]) != len(class_names):
        raise CommandError(
            f"{folder}: the classes of ground_truth.json, per_class.json and confusion_matrix.json differ"
        )
    images = {image["id"] for image in ground_truth.get("images", [])}
    strays = sorted({r.get("image_id") for r in results} - images, key=str)
    if strays:
        raise CommandError(f"{folder}/results.json: image ids not in ground_truth.json: {strays[:5]}")
    try:
        report = error_report(
            ground_truth,
            results,
            data["metrics.json"],
            data["per_class.json"],
            confusion["matrix"],
            class_names,
        )
    except (KeyError, TypeError) as e:
        raise CommandError(
            f"{folder}: the evaluation's files are not as maskrcnn evaluate writes them ({e!r})"
        ) from None
    out = output_folder(args.out) if args.out is not None else folder
    paths = write_error_report(report, out)
    for line in format_errors(report):
        print(line)
    for iou_type in ("segm", "bbox"):
        if iou_type in report:
            worst = report[iou_type]["worst_images"][:5]
            shown = ", ".join(f"{row['file_name']} ({100 * row['AP50']:.0f})" for row in worst)
            print(f"worst images by AP50: {shown}")
            break
    print(f"wrote {paths['errors.json']} and {paths['errors.png']}")
    return 0
