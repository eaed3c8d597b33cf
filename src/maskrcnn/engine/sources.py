"""What ``predict`` and ``splash`` read, and the names of what they write.

A *source* is an image file, a video file, a folder or a glob pattern; :func:`iter_sources` turns it
into :class:`MediaFile` s, each with the ``name`` its outputs take: the file's path relative to the
folder (or the glob's fixed leading folders) without its suffix, so that files in subfolders land in
the same subfolders of the output folder. Two images that differ only in suffix (``a.jpg``, ``a.png``)
become ``a_jpg`` and ``a_png``.

The outputs in the folder ``out`` (:func:`output_path`, :func:`mask_path`):

* ``predict``: ``<name>.png`` per image (PNG whatever the input's format, so that thin outlines and
  captions stay crisp), ``<name>_predictions.mp4`` per video;
* ``splash``: ``<name>_splash.png`` per image, ``<name>_splash.mp4`` per video;
* masks: ``masks/<name>_<k>_<class>.png`` per detection (``k`` counts from 0 in score order), and
  ``masks/<name>_<frame:06d>_<k>_<class>.png`` for video frames;
* maps (:func:`map_path`): ``semantic/<name>.png`` (class ids) and ``instances/<name>.png`` (instance
  ids), ``<name>_<frame:06d>.png`` for video frames.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from maskrcnn.data.image_io import IMAGE_SUFFIXES, is_image_file
from maskrcnn.engine.video import VIDEO_SUFFIXES, is_video_file

__all__ = [
    "MediaFile",
    "Mode",
    "SourceError",
    "iter_sources",
    "map_path",
    "mask_path",
    "output_path",
    "overwritten_input",
]

Kind = Literal["image", "video"]
Mode = Literal["predict", "splash"]
MapKind = Literal["semantic", "instances"]


class SourceError(ValueError):
    """A source that does not exist, is not an image or video, or holds none."""


@dataclass(frozen=True)
class MediaFile:
    """One file of a source.

    Attributes:
        path: the file, as found (relative when the source was).
        kind: ``"image"`` or ``"video"``.
        name: the name its outputs take: the path relative to the source's folder, without suffix.
    """

    path: Path
    kind: Kind
    name: str


def iter_sources(source: str | os.PathLike[str], *, recursive: bool = False) -> Iterator[MediaFile]:
    """The images and videos of a source, sorted by path.

    * an image (``.jpg .png ...``) or video (``.mp4 .avi .mov .mkv .webm``) file;
    * a folder: the images and videos directly inside it, or also in its subfolders with
      ``recursive``; hidden files and folders are skipped, other files ignored;
    * a glob pattern, e.g. ``"photos/*.jpg"`` or ``"data/**/*.png"`` (``**`` spans folders); files that
      are no image or video are ignored.

    The source is resolved when called (errors raise then, not on iteration).

    Raises:
        SourceError: the source does not exist, is a file of another kind, or holds no image or video.
    """
    text = os.fspath(source)
    path = Path(text)
    kinds = f"images ({' '.join(IMAGE_SUFFIXES)}) and videos ({' '.join(VIDEO_SUFFIXES)})"
    if path.is_file():
        kind = _kind(path)
        if kind is None:
            raise SourceError(
                f"{path}: unsupported file (suffix {path.suffix or 'none'!r}); {kinds} are read"
            )
        return iter([MediaFile(path, kind, path.stem)])
    if path.is_dir():
        candidates = path.rglob("*") if recursive else path.iterdir()
        files = [p for p in candidates if p.is_file() and not _is_hidden(p, path)]
        root, what = path, f"folder {path}" + (" (and its subfolders)" if recursive else "")
    elif glob.has_magic(text):
        files = [Path(p) for p in glob.glob(text, recursive=True) if os.path.isfile(p)]
        root, what = _fixed_folders(path), f"pattern {text!r}"
    else:
        raise SourceError(f"{text}: no such file, folder or glob pattern")
    media = sorted((p, k) for p in files if (k := _kind(p)) is not None)
    if not media:
        hint = "" if recursive or not path.is_dir() else " (add --recursive to look into subfolders)"
        raise SourceError(f"no {kinds} in {what}{hint}")
    return iter(_named(media, root))


def _kind(path: Path) -> Kind | None:
    return "image" if is_image_file(path) else "video" if is_video_file(path) else None


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _fixed_folders(pattern: Path) -> Path:
    """The leading folders of a glob pattern before its first wildcard (``Path()`` if none)."""
    fixed = []
    for part in pattern.parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()


def _named(media: list[tuple[Path, Kind]], root: Path) -> list[MediaFile]:
    """Output names: relative path without suffix, made unique per kind by the suffix where needed."""
    bare = [(p, k, p.relative_to(root).with_suffix("").as_posix()) for p, k in media]
    counts: dict[tuple[str, str], int] = {}
    for _, kind, name in bare:
        counts[kind, name] = counts.get((kind, name), 0) + 1
    out, taken = [], set()
    for path, kind, name in bare:
        if counts[kind, name] > 1:
            name = f"{name}_{path.suffix.lstrip('.').lower()}"
        unique, n = name, 1
        while (kind, unique) in taken:  # a.JPG beside a.jpg
            unique, n = f"{name}_{n}", n + 1
        taken.add((kind, unique))
        out.append(MediaFile(path, kind, unique))
    return out


def output_path(out: Path, file: MediaFile, mode: Mode) -> Path:
    """Where ``mode`` writes the picture (or video) of ``file`` in the folder ``out``."""
    if file.kind == "video":
        return out / f"{file.name}_{'predictions' if mode == 'predict' else 'splash'}.mp4"
    return out / (f"{file.name}.png" if mode == "predict" else f"{file.name}_splash.png")


def mask_path(out: Path, file: MediaFile, index: int, class_name: str, frame: int | None = None) -> Path:
    """Where the mask of detection ``index`` (in score order) of ``file`` (or of its ``frame``) goes."""
    stem = file.name if frame is None else f"{file.name}_{frame:06d}"
    return out / "masks" / f"{stem}_{index}_{_safe(class_name)}.png"


def map_path(out: Path, file: MediaFile, kind: MapKind, frame: int | None = None) -> Path:
    """Where the class map (``kind`` ``"semantic"``) or instance map (``"instances"``) of ``file`` (or of
    its ``frame``) goes."""
    stem = file.name if frame is None else f"{file.name}_{frame:06d}"
    return out / kind / f"{stem}.png"


def _safe(text: str) -> str:
    """A class name usable in a file name."""
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "class"


def overwritten_input(files: Iterable[MediaFile], out: Path, mode: Mode) -> MediaFile | None:
    """The first file whose output in ``out`` would replace one of the ``files`` themselves, if any."""
    files = list(files)
    inputs = {f.path.resolve() for f in files}
    return next((f for f in files if output_path(out, f, mode).resolve() in inputs), None)
