"""Downloading a checkpoint over HTTP(S): whole and verified, or resumable.

:func:`download` writes the body into ``<target>.part`` next to the target, never into the target itself.
Once the whole body is there, its SHA-256 is checked against the published one and only then is the
``.part`` renamed over the target (:func:`maskrcnn.io.move_into_place`), so the target name only ever
holds a complete, verified file. A file that fails the check is deleted.

A connection that breaks midway keeps the ``.part``: the next call asks for the rest with
``Range: bytes=N-`` (N = the ``.part``'s size) and appends it if the server answers ``206`` from byte N. A
server that ignores ranges (``200``) sends the whole file again and the ``.part`` is rewritten; one that
cannot satisfy the range (``416``: the ``.part`` is already as long as the file, or longer) gets one fresh
request without a range.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from maskrcnn import __version__
from maskrcnn.io import move_into_place
from maskrcnn.progress import bar as progress_bar

__all__ = ["DownloadError", "NotFetched", "download", "hash_matches", "sha256_of"]

_HEX = re.compile(r"[0-9a-f]{8,64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-\d+/(\d+|\*)")


class DownloadError(OSError):
    """A download that did not give the expected file (the message says which URL/file and why)."""


class NotFetched(DownloadError):
    """No byte of the file arrived: the server is unreachable or answered with an HTTP error (what an
    offline machine gets; the caller can say how to fetch the file by hand)."""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints do not have to fit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hash_matches(actual: str, expected: str) -> bool:
    """Whether the hex digest ``actual`` matches ``expected``, case-insensitively, as a prefix.

    Args:
        actual: The file's full hex SHA-256.
        expected: A full 64-hex SHA-256 or a published prefix of at least 8 hex digits (torchvision's file
            names carry only the first 8).

    Raises:
        ValueError: ``expected`` is not 8 to 64 hex digits: a shorter prefix would accept almost any file,
            so it is a mistake in the caller's table rather than a failed check.
    """
    expected = expected.lower()
    if not _HEX.fullmatch(expected):
        raise ValueError(f"expected SHA-256 must be 8 to 64 hex digits, got {expected!r}")
    return actual.lower().startswith(expected)


def _one_line(reason: object) -> str:
    # "[Errno 111] Connection refused" -> "Connection refused"; the caller adds its own advice after it.
    text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
    return " ".join(text.split()) or type(reason).__name__


def _open(url: str, start: int, timeout: float) -> http.client.HTTPResponse | None:
    """The server's answer to a GET from byte ``start``; None for ``416`` (range not satisfiable)."""
    headers = {"User-Agent": f"maskrcnn/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and start:
            return None
        raise NotFetched(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise NotFetched(f"cannot reach {url}: {_one_line(e.reason)}") from e
    except (OSError, http.client.HTTPException) as e:  # e.g. the server closed before any answer
        raise NotFetched(f"cannot reach {url}: {type(e).__name__}: {_one_line(e)}") from e


def download(
    url: str,
    target: Path,
    *,
    sha256: str,
    progress: bool = True,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``target`` through ``<target>.part``, resuming that file if it is there.

    An existing ``target`` is replaced only once the new file has been received and verified.

    Args:
        url: An ``http://`` or ``https://`` URL.
        target: Where the file goes; its folder is created.
        sha256: The file's SHA-256, full or a prefix of at least 8 hex digits (see :func:`hash_matches`).
        progress: Show a progress bar on stderr.
        timeout: Seconds to wait for the connection and for each read.
        chunk_size: Bytes read and written at a time.

    Returns:
        ``target``.

    Raises:
        ValueError: ``url`` is not HTTP(S) or ``sha256`` is not 8 to 64 hex digits.
        DownloadError: The host cannot be reached, the server answered an HTTP error, the connection
            broke midway (the ``.part`` is kept: calling again resumes) or the file's hash is wrong (the
            ``.part`` is deleted).
    """
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ValueError(f"only http:// and https:// URLs can be downloaded, got {url!r}")
    hash_matches("", sha256)  # a malformed hash fails now, not after a long download
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")

    start = part.stat().st_size if part.exists() else 0
    response = _open(url, start, timeout)
    if response is not None and response.status == 206 and not _starts_at(response, start):
        response.close()  # a part we did not ask for: of no use
        response = None
    if response is None:  # 416 (the .part is as long as the file or longer) or that: start over, once
        part.unlink(missing_ok=True)
        start = 0
        response = _open(url, 0, timeout)
    assert response is not None  # without a Range header, 416 is an ordinary HTTP error
    with response:
        if response.status != 206:
            start = 0  # the server sends the whole file (no range support): rewrite the .part
        length = response.headers.get("Content-Length", "")
        total = start + int(length) if length.isdigit() else None
        received = start
        with (
            open(part, "ab" if start else "wb") as f,
            progress_bar(
                total=total,
                initial=start,
                desc=target.name,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    block = response.read(chunk_size)
                except (OSError, http.client.HTTPException) as e:  # reset, timeout, chunked body cut short
                    why = f"{type(e).__name__}: {e}"
                    if isinstance(e, http.client.IncompleteRead):  # keep what did arrive, for the next try
                        f.write(e.partial)
                        received += len(e.partial)
                        why = str(e)  # "IncompleteRead(1000 bytes read)"
                    raise _interrupted(target, url, received, total, why) from e
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
    # http.client reports a body that ends before its Content-Length as a normal end: count it ourselves.
    if total is not None and received < total:
        raise _interrupted(target, url, received, total, "the server closed the connection")

    actual = sha256_of(part)
    if not hash_matches(actual, sha256):
        part.unlink()
        raise DownloadError(
            f"{target.name} from {url}: SHA-256 mismatch: expected {sha256}, got {actual} "
            "(the file was deleted; the download is corrupt or the URL serves another file)"
        )
    return move_into_place(part, target)


def _starts_at(response: http.client.HTTPResponse, start: int) -> bool:
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    return match is not None and int(match.group(1)) == start


def _interrupted(target: Path, url: str, received: int, total: int | None, why: str) -> DownloadError:
    size = tqdm.format_sizeof(total, "B", 1024) if total is not None else "an unknown size"
    return DownloadError(
        f"downloading {target.name} from {url} was interrupted after "
        f"{tqdm.format_sizeof(received, 'B', 1024)} of {size} ({_one_line(why)}); "
        "run the same command again to resume"
    )
