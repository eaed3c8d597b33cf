"""The report's pictures: a thumbnail and a viewing copy of each image, from its file or from a dataset.

A picture is given as the image file's path (the usual case: an evaluation of images on disk) or as
pixels (a dataset that makes its images, like the demo's shapes, or reads them from somewhere a browser
cannot open). From a file, the viewing copy is the file itself, copied, when a browser shows it as it is
(JPEG, PNG or WebP, no EXIF rotation, at most :data:`VIEW_SIZE` pixels a side): no decoding and no loss.
Otherwise it is re-encoded, at most :data:`VIEW_SIZE` a side.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from maskrcnn.data.dataset import without_transforms
from maskrcnn.data.image_io import ImageError, read_pil_image
from maskrcnn.visualize import to_pil

__all__ = ["THUMB_SIZE", "VIEW_SIZE", "Picture", "dataset_pictures", "locate_files", "write_pictures"]

THUMB_SIZE = 256
"""The longest side of a thumbnail, in pixels."""

VIEW_SIZE = 1600
"""The longest side of the full-size view's copy, in pixels (larger images are scaled down)."""

Picture = Path | Image.Image
"""An image for the report: its file, or its pixels."""

_AS_IS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}  # formats every browser shows


def locate_files(names: Sequence[str], roots: Sequence[Path]) -> tuple[list[Path | None], list[str]]:
    """Each name as a file: as given (absolute, or from the working folder), else under each of
    ``roots`` in turn; returns the paths (``None`` where not found) and the names not found."""
    paths: list[Path | None] = []
    missing = []
    for name in names:
        found = next((p for p in (Path(name), *(root / name for root in roots)) if p.is_file()), None)
        paths.append(found)
        if found is None:
            missing.append(name)
    return paths, missing


def dataset_pictures(dataset: object, image_ids: Mapping[int, int]) -> Iterator[tuple[int, Picture]]:
    """``(number, pixels)`` of each dataset item whose ``image_id`` is in ``image_ids`` (id -> the
    record's number), as stored (no augmentation); items that fail to load are passed over (the caller
    finds them missing)."""
    from maskrcnn.data.dataset import DataError

    with without_transforms(dataset):
        for index in range(len(dataset)):  # type: ignore[arg-type]
            try:
                image, target = dataset[index]  # type: ignore[index]
            except (DataError, ImageError):
                continue
            number = image_ids.get(int(target["image_id"]))
            if number is not None:
                yield number, to_pil(image)


def _view_copy(path: Path) -> str | None:
    """The extension to copy ``path`` under when a browser shows it as it is, else None."""
    with Image.open(path) as img:
        orientation = img.getexif().get(0x0112, 1) if img.format == "JPEG" else 1
        if img.format in _AS_IS and orientation == 1 and max(img.size) <= VIEW_SIZE:
            return _AS_IS[img.format]
    return None


def _write_one(number: int, picture: Picture, out: Path) -> tuple[int, str, str] | tuple[int, str]:
    """Write the thumbnail and the viewing copy of one picture; returns ``(number, thumb, view)``
    (paths relative to ``out``), or ``(number, message)`` when the file cannot be read."""
    stem = f"{number:06d}"
    try:
        if isinstance(picture, Path):
            extension = _view_copy(picture)
            image = read_pil_image(picture)
        else:
            extension, image = None, picture
        image = image.convert("RGB")
        if extension is not None:
            view = f"images/{stem}{extension}"
            shutil.copyfile(picture, out / view)  # type: ignore[arg-type]
        else:
            view = f"images/{stem}.jpg"
            copy = image.copy()
            copy.thumbnail((VIEW_SIZE, VIEW_SIZE), Image.Resampling.LANCZOS)
            copy.save(out / view, format="JPEG", quality=90)
        thumb = f"thumbs/{stem}.jpg"
        image.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        image.save(out / thumb, format="JPEG", quality=85)
    except (ImageError, OSError, ValueError) as e:  # Pillow's errors of damaged files are OSError
        text = str(e)
        if isinstance(picture, Path) and str(picture) not in text:
            text = f"{picture}: {text}"
        return number, f"cannot show the image: {text}"
    return number, thumb, view


def write_pictures(
    pictures: Iterable[tuple[int, Picture]], out: Path, *, workers: int = 2
) -> Iterator[tuple[int, str, str] | tuple[int, str]]:
    """Write ``out/thumbs/NNNNNN.jpg`` and ``out/images/NNNNNN.<ext>`` for each ``(number, picture)``,
    on ``workers`` threads (Pillow decodes, scales and encodes without the GIL); yields what
    :func:`_write_one` returns, in the pictures' order."""
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if workers <= 1:
        for number, picture in pictures:
            yield _write_one(number, picture, out)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # A bounded window of work in flight: a dataset's pixels are not all held at once.
        window: list = []
        for number, picture in pictures:
            window.append(pool.submit(_write_one, number, picture, out))
            if len(window) >= 4 * workers:
                yield window.pop(0).result()
        for future in window:
            yield future.result()
