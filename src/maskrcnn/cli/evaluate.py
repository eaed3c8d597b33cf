"""TEMPORARY adapter during the redesign (replaced by the evaluation helper)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from maskrcnn.engine.evaluate import add_evaluate_arguments

    add_evaluate_arguments(sub.add_parser("evaluate", help="COCO box and mask AP of a checkpoint on a dataset"))
