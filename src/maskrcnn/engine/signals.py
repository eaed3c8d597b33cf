"""Stopping a run cleanly on Ctrl-C and on the SIGTERM that schedulers send before they kill a job."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

__all__ = ["StopSignals"]


class StopSignals:
    """Turns SIGTERM into ``KeyboardInterrupt`` (so that it saves and stops like Ctrl-C) and ignores
    repeated SIGINT / SIGTERM for a few seconds after the first: ``torchrun`` forwards the terminal's
    Ctrl-C to the processes again, and that echo must not cut the final save short (a user who insists
    later still interrupts)."""

    echo_seconds = 10.0

    def __init__(self) -> None:
        self.first: float | None = None
        self.previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.first is not None and now - self.first < self.echo_seconds:
            return
        self.first = now
        raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signals are the main thread's
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
