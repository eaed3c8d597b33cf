"""Write the report's folder: ``index.html`` with the summary sections and the image viewer, its script
and style, the data scripts, the thumbnails, the viewing copies and the figures.

The folder is self-contained (relative links only, no network) and opens from disk::

    index.html  viewer.js  masks.js  viewer.css
    data/index.js            every image's name, size, classes, scores and figures (no masks)
    data/images/NNNNNN.js    one image's objects and detections with their masks, loaded when drawn
    thumbs/NNNNNN.jpg        at most 256 px a side
    images/NNNNNN.<ext>      the full-size view's copy
    figures/*.png

It is built in a folder beside the target and moved into place at the end, so that a report
interrupted or failed midway leaves the previous one whole.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from maskrcnn.engine.evaluation.errors import ERROR_KINDS
from maskrcnn.engine.viewer.pictures import THUMB_SIZE, Picture, write_pictures
from maskrcnn.engine.viewer.records import ImageRecord

__all__ = ["PAGE_SIZE", "Section", "write_site"]

PAGE_SIZE = 48
"""Images on one page of the grid."""

_ASSETS = ("masks.js", "viewer.js", "viewer.css")


@dataclass
class Section:
    """A part of the page above the grid.

    Attributes:
        title: its heading.
        html: its body (HTML, the text in it escaped by whoever built it).
        figures: file name -> a PNG file to copy or a matplotlib ``Figure`` to render into
            ``figures/<name>``; shown after ``html``.
    """

    title: str
    html: str
    figures: dict[str, Any] = field(default_factory=dict)


def _check_target(out: Path) -> None:
    """Refuse to replace anything but a previous report (or an empty folder)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out}: a file is there; give a folder for the report")
    if any(out.iterdir()) and not (out / "data" / "index.js").is_file():
        raise ValueError(
            f"{out}: the folder holds files that are not a report; give an empty or new folder (a report "
            "there is replaced)"
        )


def _json(value: Any) -> str:
    # "</" escaped: a name holding "</script>" cannot end the script (the files could be inlined).
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def _render_figure(source: Any, path: Path) -> None:
    if isinstance(source, (str, os.PathLike)):
        shutil.copyfile(source, path)
    else:
        source.savefig(path, format="png", dpi=100)


def _page(title: str, subtitle: str, sections: Sequence[Section], mode: str) -> str:
    parts = []
    for section in sections:
        images = "".join(
            f'<img src="figures/{html.escape(name)}" alt="{html.escape(name)}">' for name in section.figures
        )
        parts.append(
            f"<section><h2>{html.escape(section.title)}</h2>{section.html}"
            + (f'<div class="figures">{images}</div>' if images else "")
            + "</section>"
        )
    browse_title = "Images: ground truth and detections" if mode == "evaluation" else "Images"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="viewer.css">
</head>
<body data-state="loading">
<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>
{"".join(parts)}
<section id="browse">
<h2>{browse_title}</h2>
<div id="controls">
<label><input type="checkbox" id="show-gt" checked> ground truth</label>
<label id="dt-control"><input type="checkbox" id="show-dt" checked> detections</label>
<label>class <select id="class"><option value="">all</option></select></label>
<label id="score-control">score &ge; <input type="range" id="score" min="0" max="1" step="0.01">
<span id="score-value"></span></label>
<label>order <select id="sort"><option value="order">as listed</option></select></label>
<button id="previous">&larr; previous</button><button id="next">next &rarr;</button>
<span id="shown"></span>
</div>
<div id="grid"></div>
</section>
<div id="view" hidden><div>
<button id="close">close (Esc)</button>
<h2></h2><p class="summary"></p>
<canvas></canvas>
<table><thead><tr><th>instance</th><th>class</th><th>score</th><th>outcome</th><th>IoU</th>
<th>box x, y, w, h</th></tr></thead><tbody></tbody></table>
<p class="note">Dashed boxes and light masks: ground truth; solid: detections. Click a row to pick out its
instance. IoU: a detection's with the object its outcome is about (the best with any object for
background and "both" errors); an object's with the detection that found it, or the best any detection
has with it.</p>
</div></div>
<script src="data/index.js"></script>
<script src="masks.js"></script>
<script src="viewer.js"></script>
</body>
</html>
"""


def write_site(
    out: str | os.PathLike[str],
    *,
    title: str,
    subtitle: str,
    mode: str,
    classes: Sequence[str],
    records: Sequence[ImageRecord],
    pictures: Iterable[tuple[int, Picture]],
    sections: Sequence[Section] = (),
    default_score: float = 0.5,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> Path:
    """Write the report into ``out`` (replacing a previous report there); returns ``out/index.html``.

    Args:
        mode: ``"evaluation"`` (detections, scores, error kinds) or ``"dataset"`` (ground truth only).
        records: the images, numbered from 1 in this order.
        pictures: ``(number, picture)`` for the records that have one (see
            :mod:`~maskrcnn.engine.viewer.pictures`); an image without one is drawn on grey. They are
            all consumed before ``records`` is read, so a caller may fill ``records`` while it yields
            the pictures (each dataset item loaded once).
        default_score: where the score slider starts.
        progress: wraps the pictures' iterator (a progress bar).

    Raises:
        ValueError: ``out`` holds something other than a report.
    """
    target = Path(out)
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{target.name}.building-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "data" / "images").mkdir(parents=True)
    (work / "figures").mkdir()
    try:
        for name in _ASSETS:
            (work / name).write_bytes(resources.files(__package__).joinpath("assets", name).read_bytes())
        for section in sections:
            for name, source in section.figures.items():
                _render_figure(source, work / "figures" / name)
        written: Iterator[Any] = write_pictures(pictures, work)
        shown = {result[0]: result[1:] for result in (progress(written) if progress is not None else written)}
        entries = [record.index_entry() for record in records]  # read after the pictures: see above
        for number, result in shown.items():
            if len(result) == 2:
                entries[number - 1]["thumb"], entries[number - 1]["view"] = result
            else:
                entries[number - 1].setdefault("problems", []).append(result[0])
        for number, record in enumerate(records, start=1):
            (work / "data" / "images" / f"{number:06d}.js").write_text(
                f"MASKRCNN_IMAGE({number}, {_json(record.details())});\n", encoding="utf-8"
            )
        index = {
            "mode": mode,
            "classes": list(classes),
            "error_kinds": list(ERROR_KINDS),
            "page_size": PAGE_SIZE,
            "thumb_size": THUMB_SIZE,
            "default_score": default_score,
            "images": entries,
        }
        (work / "data" / "index.js").write_text(
            f"window.MASKRCNN_REPORT = {_json(index)};\n", encoding="utf-8"
        )
        (work / "index.html").write_text(_page(title, subtitle, sections, mode), encoding="utf-8")
        _replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target / "index.html"


def _replace(work: Path, target: Path) -> None:
    """Move the built folder into place: the old report aside first, removed once the new one is in."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    work.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
