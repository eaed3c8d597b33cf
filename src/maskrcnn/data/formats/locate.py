"""Where the images of an annotation file are, when they are not where the file says.

Datasets travel: a COCO JSON moved into ``annotations/``, a VIA export beside an ``images/`` folder, the
official COCO layout (``annotations/instances_train2017.json`` next to ``train2017/``). The readers of
files that name images relative to themselves (COCO, VIA) look in the usual places before giving up, say
where they found them, and when the images are nowhere, say every folder they looked in.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from pathlib import Path

from maskrcnn.data.dataset import DataError, ProblemLog

__all__ = ["image_folders", "locate_images"]

_SAMPLE = 20  # names tried in each folder: enough to tell the right one, cheap on a network drive
_SHOWN = 3  # missing names shown in the error


def image_folders(annotation_file: Path) -> list[Path]:
    """The folders an annotation file's relative image names may be relative to, most likely first.

    The file's own folder, ``images/`` beside it, ``../images/``; and for a file in an ``annotations/``
    folder, that folder's parent and the COCO layout's split folder (``instances_val2017.json`` ->
    ``../val2017/`` and ``../images/val2017/``).
    """
    here = annotation_file.parent
    folders = [here, here / "images", here.parent / "images"]
    if here.name == "annotations":
        split = annotation_file.stem.rsplit("_", 1)[-1]  # instances_train2017 -> train2017
        folders += [here.parent / split, here.parent / "images" / split, here.parent]
    return list(dict.fromkeys(folders))


def locate_images(
    annotation_file: Path,
    names: Sequence[str],
    log: ProblemLog,
    *,
    image_dir: Path | None = None,
    required: bool = True,
    named: Path | None = None,
) -> Path:
    """The folder the image ``names`` (relative file names from ``annotation_file``) are in.

    With ``image_dir`` that folder; else the first of :func:`image_folders` (and after them ``named``)
    holding the most of the first names, with a warning in ``log`` when it is not the file's own folder.

    Args:
        named: a folder the annotation file itself names for its images (a VIA project's
            ``default_filepath``), tried after the usual ones: a dataset that travelled with its images
            beside it is read from there.
        required: raise when no image is found in any folder (else the file's own folder is returned,
            and the readers report each missing image).

    Raises:
        DataError: ``required`` and none of ``names`` exists in any folder looked in; the message names
            the first missing files and every folder.
    """
    folders = [image_dir] if image_dir is not None else image_folders(annotation_file)
    if image_dir is None and named is not None:
        folders = list(dict.fromkeys([*folders, named]))
    unique = list(dict.fromkeys(names))
    if not unique:
        return folders[0]
    sample = unique[:_SAMPLE]
    hits = [sum((folder / name).is_file() for name in sample) for folder in folders]
    best = max(range(len(folders)), key=lambda k: (hits[k], -k))
    if hits[best] == 0:
        # The first names may be the few missing ones: look for any before calling the folder wrong.
        best = next((k for k, f in enumerate(folders) if any((f / n).is_file() for n in unique)), -1)
    if best < 0:
        if not required:
            return folders[0]
        missing = ", ".join(islice(unique, _SHOWN)) + (
            f" ... ({len(unique)} in all)" if len(unique) > _SHOWN else ""
        )
        looked = ", ".join(f"{f}/" for f in folders)
        hint = "check the folder given" if image_dir is not None else "pass image_dir= (-o image_dir=FOLDER)"
        raise DataError(
            f"{annotation_file}: none of the images it lists were found ({missing}); looked in {looked}; "
            + hint
        )
    if best:
        log.report("warning", f"images are not beside the annotation file; found them in {folders[best]}/")
    return folders[best]
