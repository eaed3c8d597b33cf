"""The ``maskrcnn`` command line (also ``python -m maskrcnn``): the only place with argparse.

Each command family is one module with ``add_parsers(subparsers)``, which declares its commands and sets
each one's handler, ``run_<command>(args) -> int``: :mod:`~maskrcnn.cli.info`, :mod:`~maskrcnn.cli.data`
(check-data, inspect, convert), :mod:`~maskrcnn.cli.train` (train, demo), :mod:`~maskrcnn.cli.evaluate`,
:mod:`~maskrcnn.cli.predict` (predict, splash), :mod:`~maskrcnn.cli.weights` (weights list / download,
convert-weights). :func:`main` turns every problem a handler raises into one
``error: ...`` line and exit code 1 (see :mod:`maskrcnn.cli.common`): no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from maskrcnn import __version__
from maskrcnn.cli import data, evaluate, export, info, predict, train, weights
from maskrcnn.cli.common import CommandError, print_error

__all__ = ["build_parser", "main"]

# In the order `maskrcnn --help` lists them.
_FAMILIES = (info, data, train, evaluate, predict, export, weights)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskrcnn",
        description="Instance segmentation with Mask R-CNN: train, evaluate, predict, color splash.",
    )
    parser.add_argument("--version", action="version", version=f"maskrcnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for family in _FAMILIES:
        family.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 done, 1 a problem said on stderr, 130 interrupted)."""
    from maskrcnn.engine.distributed import DistributedError
    from maskrcnn.engine.errors import TrainingError

    parser = build_parser()
    args = parser.parse_args(argv)
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
        return print_error(
            f"internal error ({type(e).__name__}: {e}); set MASKRCNN_TRACEBACK=1 to see where, and please "
            "report it"
        )
