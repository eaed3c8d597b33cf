"""The inference commands: ``predict`` and ``splash`` on images, folders, globs and videos.

``maskrcnn predict SOURCE --weights CKPT --out DIR`` (CKPT: a checkpoint of any kind, or a name such as
``coco``) writes the drawn detections, ``results.json`` and
(``--save-masks``) one PNG per mask; ``--semantic`` / ``--instance-png`` the class and instance maps,
``--save-as FORMAT`` the predictions as annotations to correct in a labelling tool, and ``--boxes DETS``
makes masks for another detector's boxes instead of detecting. ``maskrcnn splash`` writes the color
splash. What is written and how it is named: :mod:`maskrcnn.engine.prediction_writer`,
:mod:`maskrcnn.engine.prediction_outputs` and :mod:`maskrcnn.engine.sources`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maskrcnn.cli.common import (
    CommandError,
    add_device_argument,
    add_precision_argument,
    add_tile_arguments,
    add_weights_argument,
    checkpoint_error,
    output_folder,
    probability,
    tile_settings,
)
from maskrcnn.progress import inform

if TYPE_CHECKING:
    import torch

    from maskrcnn.engine.given_boxes import GivenBoxes
    from maskrcnn.engine.sources import MediaFile, Mode

__all__ = ["add_parsers", "run_predict", "run_splash"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    predict = sub.add_parser("predict", help="detect objects in images, folders, globs and videos")
    _add_common_arguments(predict)
    predict.add_argument(
        "--save-masks",
        action="store_true",
        help="also write each detection's mask as OUT/masks/<name>_<k>_<class>.png",
    )
    _add_predict_outputs(predict)
    predict.set_defaults(func=run_predict)
    splash = sub.add_parser("splash", help="the color splash effect")
    _add_common_arguments(splash)
    splash.set_defaults(func=run_splash)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="an image, a video, a folder, or a quoted glob such as 'photos/*.jpg'")
    add_weights_argument(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write into (created)")
    parser.add_argument(
        "--score-threshold",
        type=probability,
        default=0.5,
        metavar="T",
        help="drop detections scoring lower (default 0.5)",
    )
    parser.add_argument(
        "--classes", metavar="NAMES", help="keep only these classes, by name: --classes cat,dog"
    )
    parser.add_argument(
        "--batch-size",
        type=_positive,
        default=1,
        metavar="N",
        help="images or frames (with tiles: tiles) per model call",
    )
    add_device_argument(parser)
    add_precision_argument(parser)
    parser.add_argument(
        "--recursive", action="store_true", help="with a folder, also read the images in its subfolders"
    )
    add_tile_arguments(parser)
    parser.add_argument(
        "--overlay-size",
        type=_positive,
        metavar="PIXELS",
        help="write the pictures downscaled to at most PIXELS on their long side (results.json and "
        "--save-masks stay at full resolution)",
    )


def _add_predict_outputs(parser: argparse.ArgumentParser) -> None:
    from maskrcnn.data.formats.annotation_writer import DEFAULT_TOLERANCE, SAVE_FORMATS
    from maskrcnn.engine.prediction_outputs import ANNOTATION_PATHS

    parser.add_argument(
        "--semantic",
        action="store_true",
        help="also write each image's class map, OUT/semantic/<name>.png: pixel value = class id (0 "
        "background; overlapping masks go to the higher score), coloured with the VOC palette",
    )
    parser.add_argument(
        "--instance-png",
        action="store_true",
        help="also write each image's instance map, OUT/instances/<name>.png: 0 background, k the k-th "
        "detection of results.json for the image (Penn-Fudan's PedMasks; --format instance-png reads it)",
    )
    where = ", ".join(f"{name}: OUT/{path}" for name, path in ANNOTATION_PATHS.items())
    parser.add_argument(
        "--save-as",
        choices=SAVE_FORMATS,
        metavar="FORMAT",
        help=f"also write the predictions as annotations to correct in a labelling tool and train on "
        f"({where})",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        metavar="PIXELS",
        help="--save-as labelme, via, yolo: polygon simplification in pixels (default "
        f"{DEFAULT_TOLERANCE:g})",
    )
    parser.add_argument(
        "--boxes",
        metavar="DETS",
        help="masks for these boxes instead of detecting: COCO results JSON (file_name or image_id, bbox "
        "xywh, category_id, score), a COCO instances file, or a folder of YOLO detection txt files (one "
        "<stem>.txt per image); --score-threshold and --classes are not applied to them",
    )
    parser.add_argument(
        "--box-names",
        metavar="NAMES",
        help="with --boxes of YOLO txt files: the names of YOLO's classes 0, 1, ... (comma-separated, or the "
        "detector's data YAML), matched to the model's class names; without it YOLO's class c is the "
        "model's label c + 1",
    )
    parser.add_argument(
        "--box-classes",
        choices=("given", "model"),
        default="given",
        help="with --boxes: each box's class as given when it is one of the model's (default), or always "
        "the model's most probable class",
    )


def run_predict(args: argparse.Namespace) -> int:
    """``maskrcnn predict``: overlays, ``results.json`` and optional mask PNGs.

    Returns:
        0 when at least one image or frame was processed, else 1. A missing or unsupported source, an
        unreadable checkpoint, an unknown class or an unavailable device raise (said by ``main``).
    """
    if args.tolerance < 0:
        raise CommandError(f"--tolerance {args.tolerance:g}: must be 0 or more (pixels)")
    for option, value in (
        ("--box-names", args.box_names),
        ("--box-classes model", args.box_classes != "given"),
    ):
        if value and args.boxes is None:
            raise CommandError(f"{option} is for --boxes")
    outputs = {
        "save_masks": args.save_masks,
        "semantic": args.semantic,
        "instance_png": args.instance_png,
        "save_as": args.save_as,
        "tolerance": args.tolerance,
    }
    return _run(args, "predict", outputs, boxes=args.boxes)


def run_splash(args: argparse.Namespace) -> int:
    """``maskrcnn splash``: grey pictures and videos with colour kept inside the masks; exit codes as
    :func:`run_predict`."""
    return _run(args, "splash", {})


def _run(args: argparse.Namespace, mode: Mode, outputs: dict[str, Any], *, boxes: str | None = None) -> int:
    """Shared body of ``predict`` and ``splash``: under torchrun each process predicts on its share of
    the inputs and rank 0 writes ``results.json`` and prints (see
    :mod:`maskrcnn.engine.prediction_writer`).

    Args:
        outputs: what :func:`~maskrcnn.engine.prediction_writer.write_predictions` writes beside the
            pictures (``save_masks``, ``semantic``...).
        boxes: ``--boxes``: masks for these boxes instead of detections.
    """
    from maskrcnn.data.image_io import pixel_limit
    from maskrcnn.engine.device import resolve_device
    from maskrcnn.engine.distributed import launched_with_several_processes, process_group
    from maskrcnn.engine.sources import iter_sources, overwritten_input

    tiling = tile_settings(args)
    files = list(iter_sources(args.source, recursive=args.recursive))
    given = _given_boxes(args, boxes, files, tiling) if boxes is not None else None
    if given is not None:
        tiling = {"tile": None, "tile_overlap": None}  # whole images, whatever the model was trained on
    if not launched_with_several_processes():
        resolve_device(args.device)  # an unavailable device is said before anything is read
    out = output_folder(args.out)  # before the model runs: no work is lost to a wrong --out
    clash = overwritten_input(files, out, mode)
    if clash is not None:
        raise CommandError(f"the output for {clash.path} would overwrite an input; choose another --out")
    with process_group(args.device) as group, pixel_limit(args.max_pixels):
        return _predict(args, files, out, group.device, mode, tiling, given, outputs, main=group.is_main)


def _given_boxes(
    args: argparse.Namespace, boxes: str, files: list[MediaFile], tiling: dict[str, Any]
) -> GivenBoxes:
    """``--boxes``, read and matched to the source's images before the model is (its errors come first)."""
    from maskrcnn.engine.given_boxes import read_given_boxes

    videos = [f for f in files if f.kind == "video"]
    if videos:
        raise CommandError(f"--boxes: for images only, and the source has videos ({videos[0].path}...)")
    if tiling["tile"] not in (None, "checkpoint"):
        raise CommandError("--boxes runs on whole images: leave --tile out")
    if args.box_names is not None and not Path(boxes).is_dir():
        raise CommandError("--box-names names the classes of YOLO txt files; COCO files name their own")
    given = read_given_boxes(boxes, files, classes=args.box_classes, yolo_names=_box_names(args.box_names))
    inform(f"boxes: {given.count} for {len(given.by_file)} of {len(files)} images from {given.source}")
    if given.unmatched:
        shown = ", ".join(given.unmatched[:3]) + (
            f" and {len(given.unmatched) - 3} more" if len(given.unmatched) > 3 else ""
        )
        count = len(given.unmatched)
        inform(f"warning: {count} image{'s' * (count != 1)} of {given.source} not in {args.source}: {shown}")
    return given


def _predict(
    args: argparse.Namespace,
    files: list[MediaFile],
    out: Path,
    device: torch.device,
    mode: Mode,
    tiling: dict[str, Any],
    given: GivenBoxes | None,
    outputs: dict[str, Any],
    *,
    main: bool,
) -> int:
    """One process's part of ``_run``: the predictor, its share of the files, and (``main``) the summary."""
    from maskrcnn.engine.precision import resolve_precision
    from maskrcnn.engine.prediction_writer import write_predictions
    from maskrcnn.engine.predictor import Predictor
    from maskrcnn.engine.tiling import TilingError
    from maskrcnn.progress import StepsBar

    precision = resolve_precision(args.precision, device)
    try:
        predictor = Predictor.from_checkpoint(
            args.weights,
            device=device,
            score_threshold=args.score_threshold,
            classes=_parse_classes(args.classes),
            batch_size=args.batch_size,
            precision=precision.name,
            on_tiles=StepsBar(desc="tiles", unit="tile", disable=not main),
            **tiling,
        )
    except TilingError as e:
        raise CommandError(f"--tile-overlap {args.tile_overlap}: {e}") from None
    # Reading a checkpoint fails in many ways (missing file, not safetensors, corrupt data, foreign
    # config): each is reported as it is, as one line.
    except Exception as e:
        raise checkpoint_error(args.weights, e) from None
    if main:
        inform(f"precision: {precision.describe()}")
        if predictor.tile is not None:
            trained = " (as the model was trained: --tile 0 for whole images)" if args.tile is None else ""
            inform(f"tiles: {predictor.tile} px, overlap {predictor.tile_overlap} px{trained}")
    writer = write_predictions(
        predictor,
        files,
        out,
        mode=mode,
        overlay_size=args.overlay_size,
        given=given,
        **outputs,
    )
    if not main:
        return 0
    for line in writer.summary():
        print(line)
    if writer.skipped:
        print(f"skipped {len(writer.skipped)} unreadable files (listed above)", file=sys.stderr)
    return 0 if writer.processed else 1


def _box_names(text: str | None) -> list[str] | None:
    """``--box-names``: a data YAML's ``names``, or a comma-separated list."""
    from maskrcnn.data.formats.yolo import read_class_names

    if text is None:
        return None
    if text.lower().endswith((".yaml", ".yml")):
        return read_class_names(Path(text))
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise CommandError(f"--box-names {text!r}: an empty name (give name0,name1,... or a data YAML)")
    return names


def _parse_classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    return names or None
