"""The inference commands: ``predict`` and ``splash`` on images, folders, globs and videos.

``maskrcnn predict SOURCE --weights CKPT --out DIR`` (CKPT: a checkpoint of any kind, or a name such as
``coco``) writes the drawn detections, ``results.json`` and
(``--save-masks``) one PNG per mask; ``maskrcnn splash`` writes the color splash. What is written and
how it is named: :mod:`maskrcnn.engine.prediction_writer` and :mod:`maskrcnn.engine.sources`.
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


def run_predict(args: argparse.Namespace) -> int:
    """``maskrcnn predict``: overlays, ``results.json`` and optional mask PNGs.

    Returns:
        0 when at least one image or frame was processed, else 1. A missing or unsupported source, an
        unreadable checkpoint, an unknown class or an unavailable device raise (said by ``main``).
    """
    return _run(args, "predict", save_masks=args.save_masks)


def run_splash(args: argparse.Namespace) -> int:
    """``maskrcnn splash``: grey pictures and videos with colour kept inside the masks; exit codes as
    :func:`run_predict`."""
    return _run(args, "splash", save_masks=False)


def _run(args: argparse.Namespace, mode: Mode, *, save_masks: bool) -> int:
    """Shared body of ``predict`` and ``splash``: under torchrun each process predicts on its share of
    the inputs and rank 0 writes ``results.json`` and prints (see
    :mod:`maskrcnn.engine.prediction_writer`)."""
    from maskrcnn.data.image_io import pixel_limit
    from maskrcnn.engine.device import resolve_device
    from maskrcnn.engine.distributed import launched_with_several_processes, process_group
    from maskrcnn.engine.sources import iter_sources, overwritten_input

    tiling = tile_settings(args)
    files = list(iter_sources(args.source, recursive=args.recursive))
    if not launched_with_several_processes():
        resolve_device(args.device)  # an unavailable device is said before anything is read
    out = output_folder(args.out)  # before the model runs: no work is lost to a wrong --out
    clash = overwritten_input(files, out, mode)
    if clash is not None:
        raise CommandError(f"the output for {clash.path} would overwrite an input; choose another --out")
    with process_group(args.device) as group, pixel_limit(args.max_pixels):
        return _predict(
            args, files, out, group.device, mode, tiling, save_masks=save_masks, main=group.is_main
        )


def _predict(
    args: argparse.Namespace,
    files: list[MediaFile],
    out: Path,
    device: torch.device,
    mode: Mode,
    tiling: dict[str, Any],
    *,
    save_masks: bool,
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
        predictor, files, out, mode=mode, save_masks=save_masks, overlay_size=args.overlay_size
    )
    if not main:
        return 0
    for line in writer.summary():
        print(line)
    if writer.skipped:
        print(f"skipped {len(writer.skipped)} unreadable files (listed above)", file=sys.stderr)
    return 0 if writer.processed else 1


def _parse_classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    return names or None
