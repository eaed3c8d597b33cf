"""Where named weights live on disk, and turning what a user typed after ``--weights`` into a file.

The cache folder is ``$MASKRCNN_HOME`` when set, else the user's cache folder (``$XDG_CACHE_HOME`` or
``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows) + ``maskrcnn``;
weights go to its ``weights/`` subfolder under their published file names. A file torchvision already
downloaded (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``) is used where it
lies, so nobody downloads the same 170 MB twice.

A file found in either place is checked against the registry's SHA-256 before use (reading 170 MB to hash
it costs a fraction of a second; loading a wrong or truncated file would cost much more to understand).
``MASKRCNN_OFFLINE=1`` never tries the network: the message says which URL to fetch by hand and where to
put the file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from maskrcnn.weights.download import NotFetched, download, hash_matches, sha256_of
from maskrcnn.weights.registry import REGISTRY, WeightsEntry, find

__all__ = ["ResolvedWeights", "WeightsUnavailable", "cache_dir", "cached_file", "fetch", "resolve_weights"]

# A spec with one of these suffixes, or a folder separator, is meant as a path, not as a name.
_FILE_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin", ".ckpt")


class WeightsUnavailable(OSError):
    """Named weights that are neither in the cache nor downloadable now (the message says what to do)."""


@dataclass(frozen=True)
class ResolvedWeights:
    """A checkpoint file, and the registry entry it is (``None`` for a file of the user's own)."""

    path: Path
    entry: WeightsEntry | None


def cache_dir() -> Path:
    """The cache folder (see the module docstring); not created here."""
    home = os.environ.get("MASKRCNN_HOME")
    if home:
        return Path(home).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "maskrcnn"


def _torch_hub_checkpoints() -> Path:
    """torch.hub's download folder, by torch's own rule (the same on every platform)."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        return Path(torch_home).expanduser() / "hub" / "checkpoints"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "torch" / "hub" / "checkpoints"


def _target(entry: WeightsEntry) -> Path:
    return cache_dir() / "weights" / entry.file_name


def _verified(path: Path, entry: WeightsEntry) -> Path:
    actual = sha256_of(path)
    if not hash_matches(actual, entry.sha256):
        raise WeightsUnavailable(
            f"{path} is not {entry.name} ({entry.file_name}): SHA-256 {actual}, expected {entry.sha256}; "
            f"delete it and run `maskrcnn weights download {entry.name}`"
        )
    return path


@contextmanager
def _cache_lock(folder: Path) -> Iterator[None]:
    """One process at a time fetches into ``folder``: the processes of a torchrun launch start together,
    and without it they would all write the same ``.part``. The others wait, then find the file. (A lock
    on the folder itself, so that nothing is left behind; POSIX only: no lock on Windows.)"""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # which releases the lock


def cached_file(entry: WeightsEntry) -> Path | None:
    """Where ``entry``'s file already lies (the cache, then torchvision's), unverified; ``None`` if not."""
    for path in (_target(entry), _torch_hub_checkpoints() / entry.file_name):
        if path.is_file():
            return path
    return None


def _by_hand(entry: WeightsEntry) -> str:
    return (
        f"to use it without a connection, fetch {entry.url} on a machine that has one and put it at "
        f"{_target(entry)} (or pass the file's path to --weights)"
    )


def fetch(entry: WeightsEntry, *, progress: bool = True) -> Path:
    """``entry``'s file: from the cache (verified) or downloaded into it.

    Raises:
        WeightsUnavailable: offline (``MASKRCNN_OFFLINE=1``), unreachable, an HTTP error, or a file in the
            cache that is not the published one; the message says which URL to fetch by hand and where to
            put it.
        DownloadError: an interrupted download (run again to resume) or a download with the wrong hash
            (nothing is kept).
    """
    found = cached_file(entry)
    if found is not None:
        return _verified(found, entry)
    with _cache_lock(_target(entry).parent):
        found = cached_file(entry)  # fetched by another process while this one waited
        if found is not None:
            return _verified(found, entry)
        return _download(entry, progress)


def _download(entry: WeightsEntry, progress: bool) -> Path:
    if os.environ.get("MASKRCNN_OFFLINE", "").strip() not in ("", "0"):
        raise WeightsUnavailable(
            f"{entry.name} ({entry.file_name}) is not in the cache and MASKRCNN_OFFLINE is set; "
            + _by_hand(entry)
        )
    try:
        return download(entry.url, _target(entry), sha256=entry.sha256, progress=progress)
    except NotFetched as e:
        what = f"cannot download {entry.name} ({entry.file_name}): {e}; "
        raise WeightsUnavailable(what + _by_hand(entry)) from None


def resolve_weights(spec: str | os.PathLike[str], *, progress: bool = True) -> ResolvedWeights:
    """The file that ``spec`` means: an existing path as it is, else a registry name (see
    :func:`~maskrcnn.weights.registry.find`), found in the cache or downloaded.

    A path whose file name is a registry entry's (``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth`` where the
    user keeps it) is that entry, so its class names are known.

    Raises:
        FileNotFoundError: ``spec`` looks like a path (a suffix such as ``.pth`` or a folder separator)
            but is neither a file nor a name.
        ValueError: ``spec`` is no file and no known name (the message lists the names).
        WeightsUnavailable, DownloadError: see :func:`fetch`.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return ResolvedWeights(path, find(path.name))
    text = str(spec)
    entry = find(text)
    if entry is not None:
        return ResolvedWeights(fetch(entry, progress=progress), entry)
    if path.suffix.lower() in _FILE_SUFFIXES or os.sep in text or "/" in text:
        raise FileNotFoundError(
            f"weights {text}: no such file (nor a known name: `maskrcnn weights list` shows them)"
        )
    raise ValueError(f"weights {text!r}: no such file, and not a known name ({', '.join(REGISTRY)})")
