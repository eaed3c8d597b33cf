"""The ``maskrcnn`` command line (also ``python -m maskrcnn``)."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

from maskrcnn import __version__


def _cmd_info(args: argparse.Namespace) -> int:
    """Print the versions and compute devices this installation sees."""
    import numpy
    import PIL
    import pycocotools  # noqa: F401  (imported to prove it is installed)
    import torch

    print(f"maskrcnn     {__version__}")
    print(f"python       {platform.python_version()} ({sys.executable})")
    print(f"torch        {torch.__version__}  (threads: {torch.get_num_threads()})")
    print(f"numpy        {numpy.__version__}")
    print(f"Pillow       {PIL.__version__}")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        print(f"cuda         available: {names}")
    else:
        print("cuda         not available")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        print("mps          available")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskrcnn",
        description="Instance segmentation with Mask R-CNN: train, evaluate, predict, color splash.",
    )
    parser.add_argument("--version", action="version", version=f"maskrcnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="show versions and the devices torch can use")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
