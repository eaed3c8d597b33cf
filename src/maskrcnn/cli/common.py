"""What every command shares: the error type, ``KEY=VALUE`` lists, the data and device arguments.

A command's handler is ``run_<command>(args) -> int`` (the exit code: 0 done, 1 a problem said on
stderr, 130 interrupted). Problems with what the user gave (a file, a flag, the data) are raised as
:class:`CommandError` or as the library's own errors (``ValueError`` s such as ``DataError``, ``OSError``,
``TrainingError``); :func:`maskrcnn.cli.main` prints them as one line, ``error: ...`` (``error (rank N):
...`` in the other processes of a torchrun launch), and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from maskrcnn.config import parse_value

__all__ = [
    "CommandError",
    "add_data_arguments",
    "add_device_argument",
    "add_precision_argument",
    "add_set_argument",
    "add_weights_argument",
    "checkpoint_error",
    "load_data",
    "output_folder",
    "print_error",
    "probability",
    "progress",
    "rank_label",
    "reader_options",
    "split_assignments",
]


class CommandError(Exception):
    """A problem with the command's input, said to the user as one line (exit code 1)."""


def rank_label() -> str:
    """`` (rank N)`` in the processes of a torchrun launch other than rank 0 (whose output is plain)."""
    # From the environment: the process group may be gone by the time the command reports.
    rank = int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0
    return f" (rank {rank})" if rank else ""


def print_error(message: str) -> int:
    """Say ``error: message`` on stderr; returns the exit code 1."""
    print(f"error{rank_label()}: {message}", file=sys.stderr)
    return 1


def split_assignments(pairs: Iterable[str], flag: str) -> dict[str, str]:
    """``["train.lr=0.01", "data.batch_size=4"]`` -> ``{"train.lr": "0.01", ...}``: the texts as typed
    (the config types them: see :func:`maskrcnn.config.override`)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"{flag} expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def reader_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``-o`` options for a reader: ``{"image_dir": "imgs", "count": 20}``, values read by
    :func:`maskrcnn.config.parse_value` (a reader's keyword arguments have no config type to go by)."""
    return {key: parse_value(value) for key, value in split_assignments(pairs, "--option").items()}


WEIGHTS_HELP = (
    "a checkpoint: one written by training (.safetensors), a torchvision Mask R-CNN .pth, or a name "
    "such as coco or coco-v2 (downloaded once into the cache; `maskrcnn weights list` shows them)"
)


def probability(text: str) -> float:
    """An argparse ``type``: a number in 0..1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in 0..1, got {text}")
    return value


def checkpoint_error(spec: str, error: Exception) -> CommandError:
    """The one line for a checkpoint that cannot be used: the library's message, which names the file
    in most cases, prefixed with the checkpoint only where it does not."""
    message = str(error) or type(error).__name__
    if spec not in message:
        message = f"cannot use checkpoint {spec}: {message}"
    return CommandError(message)


def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    """``--weights CKPT`` (required) for the commands that run a model."""
    parser.add_argument("--weights", required=True, metavar="CKPT", help=WEIGHTS_HELP)


def add_data_arguments(parser: argparse.ArgumentParser, *, format_flag: str = "--format") -> None:
    """``--format`` (or ``--from``) with the readers' names or ``auto`` (the default: told from the path),
    and ``-o KEY=VALUE`` reader options."""
    from maskrcnn.data.formats import AUTO, FORMATS

    parser.add_argument(
        format_flag,
        dest="format",
        default=AUTO,
        choices=[AUTO, *sorted(FORMATS)],
        help="annotation format (default auto: detected from the path, and said on stderr)",
    )
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a reader option, e.g. -o image_dir=images, -o class_attribute=name (repeatable)",
    )


def add_set_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable): config overrides."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_device_argument(parser: argparse.ArgumentParser, *, default: str | None = "auto") -> None:
    parser.add_argument(
        "--device",
        default=default,
        help="auto (CUDA, else MPS, else CPU"
        + ("; default)" if default == "auto" else ")")
        + ", cpu, cuda, cuda:N, mps",
    )


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision auto|fp32|bf16|fp16`` for the commands that run a model (default auto)."""
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="auto (default: bf16 on CPUs that compute it in hardware, AMX or AVX-512 BF16, and on GPUs "
        "that have it; else fp32), fp32, bf16, fp16 (CUDA); boxes, scores and masks are float32 either way",
    )


def _tile_size(text: str) -> int:
    """An argparse ``type`` for ``--tile``: pixels (at least the smallest tile), or 0 / ``off`` for none."""
    from maskrcnn.config import MIN_TILE

    if text.strip().lower() in ("0", "off", "none"):
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of pixels or 'off', got {text!r}") from None
    if value < MIN_TILE:
        raise argparse.ArgumentTypeError(f"tiles must be at least {MIN_TILE} pixels (or 0: off), got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def _pixels(text: str) -> int:
    value = int(float(text)) if "e" in text.lower() else int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def add_tile_arguments(parser: argparse.ArgumentParser, *, reads_images: bool = True) -> None:
    """``--tile SIZE`` and ``--tile-overlap PIXELS`` (and, for the commands that read images,
    ``--max-pixels N``)."""
    parser.add_argument(
        "--tile",
        type=_tile_size,
        metavar="SIZE",
        help="cut large images into overlapping tiles of SIZE pixels, at the model's scale, and merge "
        "their detections (default: as the checkpoint was trained with --tile, else whole images; "
        "0 or off: whole images)",
    )
    parser.add_argument(
        "--tile-overlap",
        type=_non_negative,
        metavar="PIXELS",
        help="pixels neighbouring tiles share, at most half the tile (default a quarter of the tile; "
        "make it at least the size of the largest objects)",
    )
    if reads_images:
        parser.add_argument(
            "--max-pixels",
            type=_pixels,
            metavar="N",
            help="read images of up to N pixels (default Pillow's guard against decompression bombs, "
            "89,478,485: e.g. --max-pixels 4e8 for a 20,000 x 20,000 scene)",
        )


def tile_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``--tile`` / ``--tile-overlap`` as :meth:`Predictor.from_checkpoint` and
    :func:`~maskrcnn.engine.tiling.checkpoint_tiling` take them: ``tile`` ``"checkpoint"`` when not
    given, ``None`` for off."""
    if args.tile is None:
        return {"tile": "checkpoint", "tile_overlap": args.tile_overlap}
    if args.tile == 0:
        if args.tile_overlap is not None:
            raise CommandError("--tile-overlap without tiles (--tile is off)")
        return {"tile": None, "tile_overlap": None}
    if args.tile_overlap is not None and args.tile_overlap > args.tile // 2:
        raise CommandError(f"--tile-overlap {args.tile_overlap}: at most half the tile ({args.tile // 2})")
    return {"tile": args.tile, "tile_overlap": args.tile_overlap}


def load_data(format: str, path: str | None, options: Sequence[str], *, strict: bool = False) -> Any:
    """The dataset ``--format``, the path and ``-o`` options name (an ``InstanceDataset``); an unknown
    option, unreadable data, or (with ``strict``) any problem raises ``DataError`` naming it.

    ``format`` ``auto`` is detected from the path, and the format found said in one line on stderr.
    """
    from maskrcnn.data import load_dataset

    kwargs = reader_options(options)
    if strict:
        kwargs["strict"] = True
    return load_dataset(resolved_format(format, path), path, **kwargs)


def resolved_format(format: str, path: str | None) -> str:
    """``format`` itself, or for ``auto`` the format detected from ``path``, said in one line on stderr
    (once per launch, not once per torchrun process)."""
    from maskrcnn.data.formats import AUTO, resolve_format

    if format != AUTO:
        return format
    format = resolve_format(format, path)
    if not rank_label():
        print(f"data: detected format {format} ({path})", file=sys.stderr)
    return format


def progress(total: int, desc: str) -> Callable[[Iterable[Any]], Iterable[Any]]:
    """A progress bar on stderr around an iterable of ``total`` images (see :mod:`maskrcnn.progress`)."""
    from maskrcnn.progress import bar

    return lambda it: bar(it, total=total, desc=desc, unit="img", leave=False)


def output_folder(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """``path`` as a folder the command can write into (it need not exist yet), checked before any work
    is done so that a wrong ``--out`` costs nothing: a file there, a file where a parent folder should be,
    or a folder that refuses a file raise :class:`CommandError` naming the flag and the path."""
    import tempfile

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CommandError(f"{flag} {out} is a file; give a folder")
    existing = out
    while not existing.exists():  # the deepest part that exists: where the folders will be created
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"{flag} {out}: {existing} is a file, so the folder cannot be created there")
    try:  # a real file, not os.access: that says yes to root, and knows nothing of read-only mounts
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise CommandError(f"{flag} {out}: cannot write into {existing} ({e.strerror or e})") from None
    return out
