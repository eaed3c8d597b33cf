"""Progress bars and informational lines: the one place that decides how they look, and whether they show.

On a terminal a bar is tqdm's, redrawn in place. Anywhere else (a log file, CI, a pipe) a redrawn bar
would leave one line per step, joined by carriage returns; there a bar writes its state as a plain line
when it starts, at most every :data:`LOG_INTERVAL_S` seconds, and when it ends.

``maskrcnn --quiet`` (:func:`set_quiet`) turns off the bars and the informational lines said through
:func:`inform`; errors, warnings and the results a command prints on stdout are not affected. The flag
lives here, in the bottom layer, so that the downloads of :mod:`maskrcnn.weights` obey it as well as the
engine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["LOG_INTERVAL_S", "bar", "inform", "is_quiet", "set_quiet"]

# Seconds between the lines of a bar that is not on a terminal: a 10-minute epoch says 60 lines, not 10,000.
LOG_INTERVAL_S = 10.0

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Turn the progress bars and :func:`inform` lines off (``True``) or back on, for the whole process."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    """Whether :func:`set_quiet` turned the bars and informational lines off."""
    return _quiet


def inform(message: str) -> None:
    """An informational line on stderr (printed above any bar on a terminal); nothing when quiet."""
    if not _quiet:
        tqdm.write(message, file=sys.stderr)


def _on_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str | None = None,
    unit: str = "it",
    disable: bool = False,
    file: TextIO | None = None,
    **options: Any,
) -> tqdm:
    """A progress bar on ``file`` (default stderr): tqdm's on a terminal, plain lines elsewhere (see the
    module docstring); ``disable`` or quiet gives a bar that shows nothing.

    Args:
        iterable: what the bar wraps (or ``None``, and ``update`` it).
        total: the expected count.
        desc: the text before the bar.
        unit: what is counted (``img``, ``batch``, ``B``).
        disable: show nothing (e.g. on the ranks other than 0).
        options: more tqdm arguments (``initial``, ``leave``, ``unit_scale``...).
    """
    stream = file if file is not None else sys.stderr
    common = {"total": total, "desc": desc, "unit": unit, "disable": disable or _quiet, **options}
    if _on_terminal(stream):
        return tqdm(iterable, file=stream, dynamic_ncols=True, **common)
    return _LineBar(iterable, file=_NoRedraw(stream), mininterval=LOG_INTERVAL_S, **common)


class _NoRedraw:
    """A stream that drops what tqdm writes to move the cursor or blank a line (only ``\\r``, spaces and
    newlines): in a log they are empty lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if text.strip("\r\n "):
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class _LineBar(tqdm):  # type: ignore[misc]
    """A tqdm bar that writes one plain line per display: at the start, when ``update`` finds that
    ``mininterval`` passed since the last line, and once at the end (with what happened since)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._shown: tuple[float, float] | None = None  # (n, time) of the last line; set before tqdm draws
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # a request to blank the line: nothing to take back in a log
            return True
        now = self._time()  # tqdm's clock, which decides when update() redraws
        if self._shown is not None and (self._shown[0] == self.n or now - self._shown[1] < self.mininterval):
            return True  # e.g. the redraw after a tqdm.write: nothing new to say yet
        self._shown = (self.n, now)
        self.fp.write(self.__str__() + "\n")
        self.fp.flush()
        return True

    def clear(self, nolock: bool = False) -> None:
        pass  # nothing is redrawn, so nothing to clear

    def close(self) -> None:
        if not self.disable and self._shown is not None and self._shown[0] != self.n:
            self._shown = (self._shown[0], float("-inf"))  # the last state, however soon after the one before
            self.display()
        super().close()


class StepsBar:
    """A progress callback ``(done, total)`` for work reported in steps (the tiles of one large image): a
    bar opens at the first report of a ``total`` of at least ``min_total`` and closes at ``done ==
    total``; smaller totals show nothing (a bar per small image would only flicker).

    Args:
        desc: the text before the bar.
        unit: what is counted.
        min_total: the smallest total shown.
        disable: show nothing (e.g. on the ranks other than 0).
    """

    def __init__(self, *, desc: str, unit: str, min_total: int = 16, disable: bool = False) -> None:
        self.desc, self.unit, self.min_total, self.disable = desc, unit, min_total, disable
        self._bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if total < self.min_total or self.disable:
                return
            self._bar = bar(total=total, desc=self.desc, unit=self.unit, leave=False)
        self._bar.update(done - self._bar.n)
        if done >= total:
            self._bar.close()
            self._bar = None
