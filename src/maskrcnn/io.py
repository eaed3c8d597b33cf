"""Writing files whole or not at all: the one way this project writes a file it may replace.

:func:`atomic_write` writes through a temporary file in the target's folder (a unique name, so two
writers never share it), flushes it to disk (``fsync``), renames it over the target (``os.replace``, atomic
on POSIX and Windows) and flushes the folder entry. A crash, a kill or a full disk at any moment leaves
the previous version of the file whole. The file gets the permissions a plain ``open(path, "w")`` would
give (``0o666`` less the user's umask: ``0644`` usually), not ``tempfile``'s private ``0600``, so that
checkpoints and reports on a shared server stay readable by the group.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "move_into_place", "write_json", "write_text"]

_umask_lock = threading.Lock()


def _umask() -> int:
    """The process's umask (reading it means setting it: done under a lock, and put back at once)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable too (POSIX); folders cannot be opened for this on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Replace ``path`` with what ``write(tmp)`` writes into the temporary file ``tmp``.

    ``tmp`` lies in the same folder (created if needed) and ends in ``path``'s suffix, so writers that
    choose a format by the suffix (Pillow, matplotlib) choose the right one. If ``write`` raises, the
    temporary file is removed and ``path`` is left as it was.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        move_into_place(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def move_into_place(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Rename the finished file ``source`` over ``target`` (same folder), durably and with normal
    permissions: for files written under a name of their own, such as a download's ``.part`` file,
    which must survive between attempts so that the download can resume.
    """
    source, target = Path(source), Path(target)
    os.chmod(source, 0o666 & ~_umask())
    with open(source, "rb") as f:
        os.fsync(f.fileno())
    os.replace(source, target)
    _fsync_folder(target.parent)
    return target


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 1) -> Path:
    """Atomically replace ``path`` with ``data`` as JSON (``indent=None``: compact, for large files)."""
    separators = (",", ":") if indent is None else None
    return write_text(path, json.dumps(data, indent=indent, separators=separators) + "\n")
