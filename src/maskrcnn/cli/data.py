"""The data commands: ``check-data``, ``inspect data`` and ``convert``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from maskrcnn.cli.common import (
    CommandError,
    add_data_arguments,
    add_set_argument,
    load_data,
    output_folder,
    progress,
    split_assignments,
)
from maskrcnn.io import atomic_write

__all__ = ["add_parsers", "run_check_data", "run_convert", "run_inspect_data"]


_HTML_HELP = (
    "write DIR/index.html: every image with its instances (class filter, order by objects or problems, "
    "full-size view), the per-class counts and check-data's problems, the images with problems outlined; "
    "a self-contained folder to open in a browser"
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser(
        "check-data",
        help="validate a dataset: counts per class, and every problem named",
        description="Read a dataset as training would and report per-class counts, images without objects "
        "and every problem (file, image, annotation, value). Exit code 0 when there is no error, else 1.",
    )
    add_data_arguments(check)
    check.add_argument("path", nargs="?", help="what the format reads (JSON file, folder, data YAML)")
    check.add_argument("--strict", action="store_true", help="stop at the first error")
    check.set_defaults(func=run_check_data)

    inspect = sub.add_parser("inspect", help="pictures of data (and later, of models)")
    inspect_sub = inspect.add_subparsers(dest="what", metavar="WHAT", required=True)
    data = inspect_sub.add_parser(
        "data",
        help="a grid of images with their ground-truth masks, boxes and class names (PNG), or --html: "
        "a page to browse every image",
    )
    add_data_arguments(data)
    data.add_argument("path", nargs="?", help="what the format reads")
    data.add_argument("--out", help="the PNG to write (a grid of --count images)")
    data.add_argument("--html", metavar="DIR", help=_HTML_HELP)
    data.add_argument("--count", type=int, default=16, help="images in the grid (default 16)")
    data.add_argument("--columns", type=int, default=4)
    data.add_argument("--shuffle", action="store_true", help="random images instead of the first ones")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument(
        "--anchors",
        action="store_true",
        help="also write OUT_anchors.png: the model's anchors and the positive ones over the first image",
    )
    add_set_argument(
        data,
        "model config for --anchors, e.g. --set anchors.sizes=[[16],[32],[64],[128],[256]] "
        "--set transform.min_size=128",
    )
    data.set_defaults(func=run_inspect_data)

    convert = sub.add_parser(
        "convert",
        help="convert a dataset to COCO, LabelMe, VIA or YOLO",
        description=(
            "maskrcnn convert --from FORMAT SRC --to {coco,labelme,via,yolo} OUT: any reader's dataset, "
            "written for training elsewhere or for correcting in an annotation tool. "
            "coco: OUT is the JSON file (masks as RLE, exact; boxes from the masks). "
            "labelme: OUT is a folder of <stem>.json files, one per image (open them with "
            "`labelme IMAGES --output OUT`). "
            "via: OUT is a folder holding via_region_data.json, a VIA 2 project (Project > Load). "
            "yolo: OUT is an Ultralytics dataset folder (data.yaml, images/train/, labels/train/; with "
            "keypoints the pose format). "
            "The polygon formats trace each mask, simplified by --tolerance; holes and parts are joined by "
            "zero-width cuts. Problems are listed and their instances left out."
        ),
    )
    add_data_arguments(convert, format_flag="--from")
    convert.add_argument("source", nargs="?", help="what the source format reads")
    convert.add_argument(
        "--to",
        nargs=2,
        required=True,
        metavar=("FORMAT", "OUT"),
        help="coco, labelme, via or yolo, and what to write (coco: a JSON file; the others: a folder)",
    )
    convert.add_argument(
        "--image-root",
        help="coco: write image file names relative to this folder (default: absolute paths)",
    )
    convert.add_argument(
        "--tolerance",
        type=float,
        metavar="PIXELS",
        help="labelme, via, yolo: polygon simplification in pixels (default 0.4: mask IoU of the round trip "
        "about 0.999 with a fifth of the traced vertices; 0: every traced vertex, masks read back exactly)",
    )
    convert.add_argument("--strict", action="store_true", help="stop at the first error")
    convert.set_defaults(func=run_convert)


def run_check_data(args: argparse.Namespace) -> int:
    from maskrcnn.data.check import check_dataset

    dataset = load_data(args.format, args.path, args.option, strict=args.strict)
    report = check_dataset(
        dataset, source=args.path or args.format, progress=progress(len(dataset), "checking")
    )
    print(report.render())
    return 0 if report.trainable else 1


def run_inspect_data(args: argparse.Namespace) -> int:
    from maskrcnn.engine.inspect import anchor_picture, ground_truth_grid

    if args.out is None and args.html is None:
        raise CommandError("inspect data: give --out PICTURE.png, --html DIR, or both")
    if args.anchors and args.out is None:
        raise CommandError("--anchors draws beside the --out picture: give --out")
    html_out = output_folder(args.html, "--html") if args.html is not None else None
    dataset = load_data(args.format, args.path, args.option)
    if len(dataset) == 0:
        raise CommandError("the dataset has no images")
    if html_out is not None:
        _dataset_html(dataset, html_out, args.path or args.format)
    if args.out is None:
        return 0
    grid, indices = ground_truth_grid(
        dataset, count=args.count, columns=args.columns, shuffle=args.shuffle, seed=args.seed
    )
    out = atomic_write(args.out, grid.save)
    print(f"wrote {out} ({len(indices)} images)")
    if args.anchors:
        anchors_out = out.with_name(out.stem + "_anchors" + out.suffix)
        atomic_write(
            anchors_out, anchor_picture(dataset, indices[0], split_assignments(args.set, "--set")).save
        )
        print(f"wrote {anchors_out} (anchors at the centre of each level, positive anchors green)")
    return 0


def _dataset_html(dataset: Any, out: Path, source: str) -> None:
    from maskrcnn.data.check import check_dataset
    from maskrcnn.engine.viewer import dataset_report

    report = check_dataset(dataset, source=source, progress=progress(len(dataset), "checking"))
    index = dataset_report(
        dataset,
        out,
        check=report,
        title=f"maskrcnn inspect data: {source}",
        progress=progress(len(dataset), "report"),
    )
    errors = len(report.errors)
    print(
        f"wrote {index} ({report.images} images, {sum(report.instances.values())} instances, {errors} errors "
        f"and {len(report.warnings)} warnings): open it in a browser"
    )


def run_convert(args: argparse.Namespace) -> int:
    from maskrcnn.data.formats.annotation_writer import DEFAULT_TOLERANCE, SAVE_FORMATS, write_dataset

    target_format, out_path = args.to
    if target_format not in SAVE_FORMATS:
        raise CommandError(f"convert --to {target_format}: choose from {', '.join(SAVE_FORMATS)}")
    if args.image_root is not None and target_format != "coco":
        raise CommandError(f"--image-root is for --to coco; {target_format} names images from its own files")
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if tolerance < 0:
        raise CommandError(f"--tolerance {args.tolerance}: must be 0 or more (pixels)")
    if target_format != "coco":
        output_folder(out_path, "--to")  # a wrong OUT costs nothing
    dataset = load_data(args.format, args.source, args.option, strict=args.strict)
    problems = [str(p) for p in dataset.problems]
    skipped: list[str] | None = None if args.strict else []
    out = write_dataset(
        dataset, target_format, out_path, tolerance=tolerance, image_root=args.image_root, skipped=skipped
    )
    problems += [f"error: {message}" for message in skipped or []]
    for line in problems:
        print(f"  {line}", file=sys.stderr)
    errors = sum(line.startswith("error") for line in problems)
    print(
        f"wrote {out}: {len(dataset) - len(skipped or [])} images, {len(dataset.class_names)} classes"
        + (f" ({errors} instances or images with errors left out, listed above)" if errors else "")
    )
    return 0
