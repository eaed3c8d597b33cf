"""Writing any dataset as COCO instance annotations (``maskrcnn convert --from FORMAT SRC --to coco OUT``).

Every instance is written as the mask the dataset's items hold, in compressed RLE: reading the file back
with the COCO reader gives the same masks pixel for pixel, whatever the source format stored (polygons,
label images, mask files). Boxes and areas are those of the masks.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from maskrcnn.data.dataset import DataError, InstanceDataset, stored_items
from maskrcnn.data.formats import load_dataset
from maskrcnn.ops.masks import rle_encode

__all__ = ["convert", "to_coco", "write_coco"]

log = logging.getLogger(__name__)

# Problems logged one by one after a conversion; the rest are counted.
_SHOWN_PROBLEMS = 20


def _file_name(
    dataset: InstanceDataset, index: int, image_id: int, image_root: str | os.PathLike[str] | None
) -> str:
    path = dataset.image_info[index].get("path")
    if path is None:
        return f"image_{image_id}.png"  # no file (synthetic or embedded data): a name to save it under
    absolute = os.path.abspath(path)
    if image_root is not None:
        try:
            return Path(os.path.relpath(absolute, os.path.abspath(image_root))).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            pass
    return Path(absolute).as_posix()


def to_coco(
    dataset: InstanceDataset,
    *,
    image_root: str | os.PathLike[str] | None = None,
    skipped: list[str] | None = None,
) -> dict[str, Any]:
    """The dataset as a COCO instances dict (JSON-ready).

    Reads every item once without augmentation (``dataset.transforms`` is set aside meanwhile).

    Args:
        dataset: any dataset of the project's items, with ``class_names`` and, optionally,
            ``category_ids`` (the category id of each label; default ``label``).
        image_root: write ``file_name`` relative to this folder (use it as the COCO reader's
            ``image_dir``); default: absolute paths. Images without a path get ``image_<id>.png``.
        skipped: when given, images that cannot be read (``DataError`` / ``ImageError``) are left out
            and their messages appended here; otherwise the error propagates.

    Returns:
        ``{"info", "images", "categories", "annotations"}``: images with ``id`` (the target's
        ``image_id``), ``file_name``, ``height``, ``width``; annotations with ``id`` 1.., ``image_id``,
        ``category_id``, ``segmentation`` (compressed RLE, ``counts`` a str), ``area`` (mask pixels),
        ``bbox`` ``[x, y, w, h]`` (the mask's pixel extent) and ``iscrowd``.

    Raises:
        DataError: two items with the same ``image_id``; an unreadable item (without ``skipped``).
    """
    category_ids = list(getattr(dataset, "category_ids", None) or range(1, len(dataset.class_names) + 1))
    if len(category_ids) != len(dataset.class_names):
        raise DataError(f"{len(category_ids)} category ids for {len(dataset.class_names)} classes")
    categories = [{"id": int(c), "name": n} for c, n in zip(category_ids, dataset.class_names, strict=True)]
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    for index, image, target in stored_items(dataset, skipped=skipped):
        image_id = int(target["image_id"])
        if image_id in seen:
            raise DataError(
                f"{dataset.image_reference(index)} and {dataset.image_reference(seen[image_id])} "
                f"share image_id {image_id}; COCO needs distinct ids"
            )
        seen[image_id] = index
        height, width = (int(v) for v in image.shape[-2:])
        images.append(
            {
                "id": image_id,
                "file_name": _file_name(dataset, index, image_id, image_root),
                "height": height,
                "width": width,
            }
        )
        masks = target["masks"]
        if not len(masks):
            continue
        rles = rle_encode(masks)
        areas = masks.flatten(1).sum(1).tolist()
        for rle, area, box, label, crowd in zip(
            rles,
            areas,
            target["boxes"].tolist(),
            target["labels"].tolist(),
            target["iscrowd"].tolist(),
            strict=True,
        ):
            x0, y0, x1, y1 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(category_ids[label - 1]),
                    "segmentation": rle,
                    "area": int(area),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": int(crowd),
                }
            )
    source = getattr(dataset, "source", "") or type(dataset).__name__
    return {
        "info": {"description": f"converted by maskrcnn from {source}"},
        "images": images,
        "categories": categories,
        "annotations": annotations,
    }


def write_coco(
    dataset: InstanceDataset,
    out_json: str | os.PathLike[str],
    *,
    image_root: str | os.PathLike[str] | None = None,
    skipped: list[str] | None = None,
) -> Path:
    """Write :func:`to_coco` of ``dataset`` to ``out_json`` (folders created; the file replaced atomically:
    a temporary file in the same folder, renamed over the target, so a crash never leaves half a file).

    Returns:
        the written path.
    """
    out = Path(out_json)
    coco = to_coco(dataset, image_root=image_root, skipped=skipped)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(coco, f, separators=(",", ":"))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def convert(
    format: str,
    source: str | os.PathLike[str],
    out_json: str | os.PathLike[str],
    *,
    image_root: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Path:
    """Read ``source`` in ``format`` and write it as COCO JSON: ``load_dataset`` + :func:`write_coco`.

    The reader's problems are logged (warnings; the first few one by one), and instances or images with
    errors are left out unless ``strict=True`` is among ``options``.

    Args:
        format: a reader name (``maskrcnn.data.formats.FORMATS``).
        source: what the reader reads (file, folder or data YAML).
        out_json: the COCO file to write.
        image_root: see :func:`to_coco`.
        **options: the reader's options (``strict``, ``split``, ``class_map``...).

    Returns:
        the written path.
    """
    dataset = load_dataset(format, source, **options)
    problems = list(getattr(dataset, "problems", []))
    for problem in problems[:_SHOWN_PROBLEMS]:
        log.warning("%s", problem)
    if len(problems) > _SHOWN_PROBLEMS:
        log.warning("... and %d more problems", len(problems) - _SHOWN_PROBLEMS)
    summary = getattr(dataset, "summary", None)
    if callable(summary):
        log.info("%s: %s", source, summary())
    skipped: list[str] | None = None if options.get("strict") else []
    out = write_coco(dataset, out_json, image_root=image_root, skipped=skipped)
    for message in skipped or []:
        log.warning("left out: %s", message)
    return out
