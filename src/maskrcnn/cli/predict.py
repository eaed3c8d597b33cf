"""TEMPORARY adapter during the redesign (replaced by the prediction helper)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from maskrcnn.engine.predict import add_predict_arguments, add_splash_arguments, run_predict, run_splash

    p = sub.add_parser("predict", help="detect objects in images, folders, globs and videos")
    add_predict_arguments(p)
    p.set_defaults(func=run_predict)
    s = sub.add_parser("splash", help="the color splash effect")
    add_splash_arguments(s)
    s.set_defaults(func=run_splash)
