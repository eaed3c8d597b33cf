"""The ``maskrcnn`` command line (also ``python -m maskrcnn``): the only place with argparse.

Each command family is one module with ``add_parsers(subparsers)``, which declares its commands and sets
each one's handler, ``run_<command>(args) -> int``: :mod:`~maskrcnn.cli.info`, :mod:`~maskrcnn.cli.data`
(check-data, inspect, convert), :mod:`~maskrcnn.cli.train` (train, demo), :mod:`~maskrcnn.cli.evaluate`,
:mod:`~maskrcnn.cli.analyze`, :mod:`~maskrcnn.cli.report` (the HTML report), :mod:`~maskrcnn.cli.predict`
(predict, splash), :mod:`~maskrcnn.cli.weights` (weights list / download, convert-weights). :func:`main`
turns every problem a handler raises into one
``error: ...`` line and exit code 1 (see :mod:`maskrcnn.cli.common`): no traceback reaches the user.

``-q`` / ``--quiet``, before or after the command, is handled here once for all of them: no progress bars
and no informational lines on stderr (:mod:`maskrcnn.progress`); errors, warnings and what the command
prints on stdout (its results and the paths it wrote) stay.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from maskrcnn import __version__
from maskrcnn.cli import analyze, data, evaluate, export, info, predict, report, train, weights
from maskrcnn.cli.common import CommandError, print_error

__all__ = ["build_parser", "main"]

# In the order `maskrcnn --help` lists them.
_FAMILIES = (info, data, train, evaluate, analyze, report, predict, export, weights)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskrcnn",
        description="Instance segmentation with Mask R-CNN: train, evaluate, predict, color splash.",
    )
    parser.add_argument("--version", action="version", version=f"maskrcnn {__version__}")
    _add_quiet(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for family in _FAMILIES:
        family.add_parsers(sub)
    _add_quiet_to_commands(sub)
    return parser


_QUIET_HELP = "no progress bars or informational lines (errors, warnings and results are still printed)"


def _add_quiet(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help=_QUIET_HELP)


def _add_quiet_to_commands(sub: argparse._SubParsersAction) -> None:
    """``-q`` after the command too (``maskrcnn train ... -q``), in nested commands as well (``weights
    list``). Their default is no attribute at all, so that a ``-q`` given before the command stands."""
    for command in sub.choices.values():
        _add_quiet(command, default=argparse.SUPPRESS)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_quiet_to_commands(action)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 done, 1 a problem said on stderr, 130 interrupted)."""
    from maskrcnn.engine.distributed import DistributedError
    from maskrcnn.engine.errors import TrainingError
    from maskrcnn.progress import set_quiet

    parser = build_parser()
    args = parser.parse_args(argv)
    set_quiet(args.quiet)  # for this command: main() may run several in one process (tests, notebooks)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except (CommandError, TrainingError, DistributedError, ValueError, OSError) as e:
        # ValueError covers the library's input errors: DataError, ImageError, SourceError, VideoError,
        # config validation, unknown devices.
        return print_error(str(e))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line, and the traceback on request
        if os.environ.get("MASKRCNN_TRACEBACK"):
            traceback.print_exc()
        if _out_of_memory(e):  # not a bug: the work is larger than the machine
            return print_error(
                f"out of memory ({str(e).splitlines()[0] if str(e) else type(e).__name__}): smaller images "
                "(--set model.transform.min_size=... model.transform.max_size=...), fewer images at once "
                "(--batch-size, --set data.batch_size=...) or bfloat16 (--precision bf16; for train, --set "
                "train.amp=bf16) need less"
            )
        return print_error(
            f"internal error ({type(e).__name__}: {e}); set MASKRCNN_TRACEBACK=1 to see where, and please "
            "report it"
        )


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure: Python's ``MemoryError``, torch's CUDA
    ``OutOfMemoryError``, or the ``RuntimeError`` of torch's CPU allocator."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
