"""An evaluation of known detections on the rectangles, as a folder (what ``maskrcnn evaluate``
writes), and headless Chromium for the page's tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from maskrcnn.engine.evaluation import evaluate, write_report
from tests.engine.evaluation.helpers import SCENE, Oracle, Rectangles, detection, with_false_positive


def errors_evaluation():
    """The three rectangles: image 0 found exactly, image 1's object taken for the other class (a
    classification error, the object missed), a background detection on the empty image 2."""
    dets = with_false_positive()
    dets[1] = detection([SCENE[1][0][1]], [2], [0.7])
    oracle = Oracle()
    oracle.dets = dets
    return evaluate(oracle, Rectangles(), progress=False)


def evaluation_folder(path: Path, scene=None) -> Path:
    """``path`` holding the evaluation files of :func:`errors_evaluation` (or of exact detections of
    ``scene``, a scene of :class:`Rectangles`)."""
    if scene is None:
        evaluation = errors_evaluation()
    else:
        evaluation = evaluate(Oracle(scene), Rectangles(scene), progress=False)
    write_report(evaluation, path, ["a", "b"])
    return path


def chromium() -> str | None:
    """The Chromium (or Chrome) executable on this machine, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(args: list[str]) -> subprocess.CompletedProcess:
    browser = chromium()
    assert browser is not None
    flags = [
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--virtual-time-budget=20000",  # run the page's scripts and image loads to the end first
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to start its sandbox as root (CI containers)
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


def dump_dom(url: str) -> str:
    """The page's DOM once its scripts have run."""
    return _run(["--dump-dom", url]).stdout


def screenshot(url: str, path: Path, size: tuple[int, int] = (1280, 900)) -> Path:
    _run([f"--window-size={size[0]},{size[1]}", f"--screenshot={path}", url])
    return path
