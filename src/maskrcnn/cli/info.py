"""``maskrcnn info``: versions, threads and the compute devices this installation sees."""

from __future__ import annotations

import argparse
import platform
import sys

from maskrcnn import __version__

__all__ = ["add_parsers", "run_info"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="show versions and the devices torch can use")
    info.set_defaults(func=run_info)


def run_info(args: argparse.Namespace) -> int:
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
