"""Readers for instance masks stored as image files: label images and folders of binary masks.

* ``instance-png`` (:class:`InstancePngDataset`, Penn-Fudan style): an image folder and a mask folder; each
  image has one mask PNG whose pixel value is the instance id (0 = background; in palette PNGs the palette
  index is the id, in 16-bit PNGs the 16-bit value).
* ``mask-dirs`` (:class:`MaskDirsDataset`, nucleus / Data Science Bowl 2018 style): one folder per sample,
  ``<id>/images/<id>.png`` and ``<id>/masks/*.png``, each mask PNG one instance (its nonzero pixels).

Both read every mask file once while loading (to find the instances, and to report empty masks and size
mismatches naming the file); items rasterise them again on access, so memory holds only paths.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import numpy as np

from maskrcnn.data.dataset import (
    AnnotatedDataset,
    Annotation,
    DataError,
    ImageRecord,
    MaskFile,
    ProblemLog,
    Transform,
    read_mask_file,
)
from maskrcnn.data.image_io import ImageError, is_image_file

__all__ = ["InstancePngDataset", "MaskDirsDataset"]


def _image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name (hidden files, e.g. ``._x.png``, left out)."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and is_image_file(p) and not p.name.startswith(".")
    )


def _folder(root: Path, name: str, what: str) -> Path:
    folder = root / name
    if not folder.is_dir():
        raise DataError(f"{root}: no {what} folder {name!r} (found: {_listing(root)})")
    return folder


def _listing(folder: Path, limit: int = 8) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    return (
        ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")
        or "nothing"
    )


def _few(values: list[int], limit: int = 10) -> str:
    return ", ".join(map(str, values[:limit])) + (
        f", ... ({len(values)} in all)" if len(values) > limit else ""
    )


def _class_list(names: Iterable[str | None]) -> list[str]:
    """Distinct class names in order of first appearance (``None``: ignored, not a class)."""
    out: list[str] = []
    for name in names:
        if name is not None and name not in out:
            out.append(str(name))
    return out


class InstancePngDataset(AnnotatedDataset):
    """Images with one label-image mask each, in two folders of one root (Penn-Fudan pedestrians).

    Reads ``path/<image_dir>/*`` (every image file, sorted by name) and, for an image ``<stem>.<ext>``, the
    mask ``path/<mask_dir>/<stem><mask_suffix>.<any image ext>``, or ``<stem>.<ext>`` when there is no
    suffixed one. A mask holds one value per pixel: 0 is the background and every other value one instance
    (``I;16`` PNGs and palette PNGs are read as values, not colours; RGB masks use the colour
    ``0xRRGGBB`` as the id). Instances are sorted by id; image ``k`` (in sorted name order, counting the
    skipped ones so that ids stay put when a problem is fixed) gets ``image_id = k``.

    Problems: an image without a mask file is an image error (a negative image needs an all-zero mask,
    which reads as an image without objects: a missing file is more likely a mistake); a mask whose size
    differs from the image's, or that cannot be read, is an image error; an id missing from ``class_map``
    is an instance error. Mask files that match no image are reported as warnings.

    Args:
        path: the root folder.
        strict: raise :class:`~maskrcnn.data.dataset.DataError` at the first error instead of skipping.
        transforms: augmentation, ``(image, target) -> (image, target)``.
        image_dir: the image folder under ``path``.
        mask_dir: the mask folder under ``path`` (may equal ``image_dir`` when ``mask_suffix`` is set:
            files whose stem ends with the suffix are then the masks).
        mask_suffix: what a mask's stem adds to its image's stem (``FudanPed00001_mask.png``).
        class_name: the class of every instance, when ``class_map`` is not given.
        class_map: instance id -> class name, for label images whose ids encode the class; a ``None`` name
            ignores that id's pixels (e.g. a 255 "void" border). Class labels follow the order in which
            names first appear in the map.
        ignore_ids: nonzero values that are not instances (e.g. ``(255,)``), with or without ``class_map``.

    Items are ``(image float [3, H, W], target)`` with one ``[H, W]`` mask per instance id.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = False,
        transforms: Transform | None = None,
        image_dir: str = "PNGImages",
        mask_dir: str = "PedMasks",
        mask_suffix: str = "_mask",
        class_name: str = "object",
        class_map: Mapping[int, str | None] | None = None,
        ignore_ids: Collection[int] = (),
    ) -> None:
        root = Path(path)
        if not root.is_dir():
            raise DataError(
                f"{root}: not a folder (instance-png reads a root with {image_dir}/ and {mask_dir}/)"
            )
        images_folder = _folder(root, image_dir, "image")
        masks_folder = _folder(root, mask_dir, "mask")
        shared = images_folder.resolve() == masks_folder.resolve()
        if shared and not mask_suffix:
            raise DataError(
                f"{root}: images and masks share {image_dir}/; set mask_suffix to tell them apart"
            )
        log = ProblemLog(str(root), strict=strict)

        if class_map is not None:
            class_names = _class_list(class_map.values())
            label_of = {
                int(k): (class_names.index(v) + 1 if v is not None else 0) for k, v in class_map.items()
            }
        else:
            class_names = [class_name]
            label_of = {}
        ignored = {int(v) for v in ignore_ids} | {k for k, v in label_of.items() if v == 0}

        masks_by_stem: dict[str, Path] = {}
        for mask in _image_files(masks_folder):
            if shared and not mask.stem.endswith(mask_suffix):
                continue  # an image
            if mask.stem in masks_by_stem:
                # x_mask.png next to x_mask.bmp: the first in name order wins, but say so.
                log.report(
                    "warning", f"two masks for one stem: {masks_by_stem[mask.stem].name} and {mask.name}"
                )
                continue
            masks_by_stem[mask.stem] = mask
        images = _image_files(images_folder)
        if shared:
            images = [p for p in images if not p.stem.endswith(mask_suffix)]

        records: list[ImageRecord] = []
        used: set[str] = set()
        for image_id, image in enumerate(images):
            record = ImageRecord(image_id=image_id, path=image, height=None, width=None, ref=image.name)
            # The suffixed name first: Penn-Fudan's masks folder could hold a same-stem file too.
            candidates = [image.stem + mask_suffix] if mask_suffix else []
            if not shared:
                candidates.append(image.stem)
            stem = next((s for s in candidates if s in masks_by_stem), None)
            if stem is None:
                wanted = " or ".join(f"{mask_dir}/{s}.png" for s in candidates)
                log.report("error", f"no mask file ({wanted})", image=record.ref)
                continue
            used.add(stem)
            mask_path = masks_by_stem[stem]
            record.extra["mask"] = str(mask_path)
            if not log.check_image(record):
                continue
            try:
                array = read_mask_file(mask_path)
            except ImageError as e:
                log.report("error", str(e), image=record.ref)
                continue
            if array.shape != (record.height, record.width):
                log.report(
                    "error",
                    f"mask {mask_dir}/{mask_path.name} is {array.shape[1]}x{array.shape[0]}, "
                    f"the image {record.width}x{record.height}",
                    image=record.ref,
                )
                continue
            for value in np.unique(array).tolist():
                if value == 0 or value in ignored:
                    continue
                ref = f"instance {value}"
                if class_map is not None and value not in label_of:
                    log.report(
                        "error",
                        f"mask {mask_dir}/{mask_path.name}: instance id {value} is not in class_map "
                        f"(mapped ids: {_few(sorted(label_of))})",
                        image=record.ref,
                        annotation=ref,
                    )
                    continue
                label = label_of[value] if class_map is not None else 1
                log.add_annotation(record, Annotation(label, MaskFile(mask_path, int(value)), ref=ref))
            records.append(record)

        for stem, mask in masks_by_stem.items():
            if stem not in used:
                log.report("warning", f"mask {mask_dir}/{mask.name} matches no image in {image_dir}/")

        super().__init__(
            records,
            class_names,
            problems=log.problems,
            source=str(root),
            category_ids=None,
            transforms=transforms,
        )


class MaskDirsDataset(AnnotatedDataset):
    """One folder per sample, an image and a folder of one-instance mask PNGs (Data Science Bowl 2018).

    Reads every sub-folder ``<id>`` of ``path`` (sorted by name, hidden ones left out): the image
    ``<id>/<image_dir>/<id>.*`` (or the only image file there) and each image file in ``<id>/<mask_dir>/``
    (sorted by name), whose nonzero pixels are one instance. Sample ``k`` in sorted order gets
    ``image_id = k`` (counting skipped samples, so that ids stay put when a problem is fixed).

    Problems: a sample without a usable image is an image error; an empty mask (zero-area), a mask whose
    size differs from the image's, or an unreadable one is an instance error; a mask whose name matches no
    ``class_map`` prefix is an instance error. A sample without a mask folder, or with an empty one, is an
    image without objects (a negative).

    Args:
        path: the root folder of the sample folders.
        strict: raise :class:`~maskrcnn.data.dataset.DataError` at the first error instead of skipping.
        transforms: augmentation, ``(image, target) -> (image, target)``.
        image_dir: the image folder inside a sample folder.
        mask_dir: the mask folder inside a sample folder.
        class_name: the class of every instance, when ``class_map`` is not given.
        class_map: mask-file-name prefix -> class name (``{"nucleus": "nucleus", "cell_": "cell"}``); the
            longest matching prefix wins, so ``"cell"`` and ``"cell_large"`` can both be keys. Class labels
            follow the order in which names first appear in the map.

    Items are ``(image float [3, H, W], target)`` with one ``[H, W]`` mask per mask file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = False,
        transforms: Transform | None = None,
        image_dir: str = "images",
        mask_dir: str = "masks",
        class_name: str = "object",
        class_map: Mapping[str, str] | None = None,
    ) -> None:
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"{root}: not a folder (mask-dirs reads <id>/{image_dir}/ and <id>/{mask_dir}/)")
        log = ProblemLog(str(root), strict=strict)
        if class_map is not None:
            class_names = _class_list(class_map.values())
            # Longest prefix first: the first match is then the longest.
            prefixes = sorted(class_map.items(), key=lambda kv: -len(kv[0]))
        else:
            class_names = [class_name]
            prefixes = []

        samples = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not samples:
            raise DataError(f"{root}: no sample folders (found: {_listing(root)})")
        records: list[ImageRecord] = []
        for image_id, sample in enumerate(samples):
            image = self._find_image(sample, image_dir, log)
            if image is None:
                continue
            record = ImageRecord(
                image_id=image_id,
                path=image,
                height=None,
                width=None,
                ref=image.name,
                extra={"sample": sample.name},
            )
            if not log.check_image(record):
                continue
            masks_folder = sample / mask_dir
            masks = _image_files(masks_folder) if masks_folder.is_dir() else []
            for mask in masks:
                ref = f"mask {mask.name}"
                label = 1
                if class_map is not None:
                    label = next(
                        (class_names.index(c) + 1 for p, c in prefixes if mask.name.startswith(p)), 0
                    )
                    if not label:
                        log.report(
                            "error",
                            f"{mask_dir}/{mask.name} starts with none of the class_map prefixes "
                            f"{sorted(class_map)}",
                            image=record.ref,
                            annotation=ref,
                        )
                        continue
                problem = self._check_mask(mask, record)
                if problem:
                    log.report(
                        "error", f"{mask_dir}/{mask.name}: {problem}", image=record.ref, annotation=ref
                    )
                    continue
                log.add_annotation(record, Annotation(label, MaskFile(mask), ref=ref))
            records.append(record)
        super().__init__(
            records,
            class_names,
            problems=log.problems,
            source=str(root),
            category_ids=None,
            transforms=transforms,
        )

    @staticmethod
    def _find_image(sample: Path, image_dir: str, log: ProblemLog) -> Path | None:
        """``<id>/<image_dir>/<id>.*``, else the folder's only image; reports an image error if neither."""
        folder = sample / image_dir
        if not folder.is_dir():
            log.report("error", f"no {image_dir}/ folder in {sample.name}/", image=sample.name)
            return None
        files = _image_files(folder)
        named = [p for p in files if p.stem == sample.name]
        if len(named) == 1 or len(files) == 1:
            return named[0] if len(named) == 1 else files[0]
        found = ", ".join(p.name for p in files) or "no image files"
        log.report(
            "error",
            f"{sample.name}/{image_dir}/ needs {sample.name}.png or a single image; found {found}",
            image=sample.name,
        )
        return None

    @staticmethod
    def _check_mask(mask: Path, record: ImageRecord) -> str:
        """What is wrong with a one-instance mask file, or ``""``."""
        try:
            array = read_mask_file(mask)
        except ImageError as e:
            return str(e).removeprefix(f"{mask}: ")
        if array.shape != (record.height, record.width):
            return f"mask is {array.shape[1]}x{array.shape[0]}, the image {record.width}x{record.height}"
        if not array.any():
            return "zero-area instance (the mask has no nonzero pixel)"
        return ""
