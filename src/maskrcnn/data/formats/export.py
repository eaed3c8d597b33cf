"""Datasets as COCO instance annotations: :class:`CocoBuilder`, the one place a dataset's items become a
COCO dict (``maskrcnn convert --from FORMAT SRC --to coco OUT`` writes it through :class:`CocoWriter`, the
COCO writer of :mod:`~maskrcnn.data.formats.annotation_writer`; evaluation scores against it).

Every instance is written as the mask the dataset's items hold, in compressed RLE: reading the file back
with the COCO reader gives the same masks pixel for pixel, whatever the source format stored (polygons,
label images, mask files). Boxes and areas are those of the masks. A dataset with keypoints (a
``keypoint_spec``) is written as COCO writes person keypoints, so that it reads back the same: see
:class:`CocoBuilder`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from maskrcnn.data.dataset import DataError, base_dataset, resolve_index, stored_items
from maskrcnn.data.formats import load_dataset
from maskrcnn.data.formats.annotation_writer import (
    DEFAULT_TOLERANCE,
    AnnotationWriter,
    ImageInstances,
    write_dataset,
)
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.io import write_json
from maskrcnn.ops.masks import rle_encode
from maskrcnn.structures import CroppedMasks

__all__ = ["CocoBuilder", "CocoWriter", "convert", "to_coco", "write_coco"]

log = logging.getLogger(__name__)

# Problems logged one by one after a conversion; the rest are counted.
_SHOWN_PROBLEMS = 20


class CocoBuilder:
    """A COCO instances dict, built one image at a time.

    Images get ``id`` (the target's ``image_id``), ``file_name``, ``height``, ``width``; annotations get
    ``id`` 1.., ``image_id``, ``category_id``, ``segmentation`` (compressed RLE, ``counts`` a str),
    ``area`` (mask pixels, an int), ``bbox`` ``[x, y, w, h]`` (the target's box) and ``iscrowd``, and for a
    target with ``scores`` (predictions) ``score``.

    With a ``keypoint_spec``, as COCO's person keypoints: every category gets ``keypoints`` (the names) and
    ``skeleton`` (1-based pairs), and ``flip_index`` (0-based; not COCO's, the COCO reader's) when the
    mirror pairs are not those the names imply (YOLO's ``flip_idx`` for ``kp0, kp1, ...``), so that a
    flip still swaps the right points after a conversion; every annotation gets ``keypoints`` (the
    target's, flat ``[x1, y1, v1, ...]``, ``v`` an int) and ``num_keypoints`` (how many have ``v > 0``).

    Args:
        class_names: names of labels 1..K.
        category_ids: the category id of each label (index 0 for label 1): the ids written out.
        keypoint_spec: the dataset's keypoints (``None``: none).

    Raises:
        DataError: not as many category ids as classes.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        category_ids: Sequence[int],
        *,
        keypoint_spec: KeypointSpec | None = None,
    ) -> None:
        if len(category_ids) != len(class_names):
            raise DataError(f"{len(category_ids)} category ids for {len(class_names)} classes")
        self.class_names = [str(n) for n in class_names]
        self.category_ids = [int(c) for c in category_ids]
        self.keypoint_spec = keypoint_spec
        self.categories = [
            {"id": c, "name": n, **_keypoint_fields(keypoint_spec)}
            for c, n in zip(self.category_ids, self.class_names, strict=True)
        ]
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self._references: dict[int, str] = {}  # image id -> how messages name the image ("": unknown)

    @classmethod
    def for_dataset(cls, dataset: Any) -> CocoBuilder:
        """An empty builder with the classes and category ids of ``dataset`` (or of the dataset under a
        ``Subset``): ``coco_category_ids()``, the annotation file's own ids, and its ``keypoint_spec``."""
        base = base_dataset(dataset)
        return cls(
            base.class_names, base.coco_category_ids(), keypoint_spec=getattr(base, "keypoint_spec", None)
        )

    def add(
        self,
        image_id: int,
        height: int,
        width: int,
        target: Mapping[str, Tensor],
        *,
        file_name: str | None = None,
        reference: str = "",
    ) -> None:
        """Add one image and its instances.

        Args:
            image_id: the image's COCO id (distinct across the builder).
            height, width: the image's size.
            target: ``masks`` uint8 ``[N, H, W]`` (or :class:`~maskrcnn.structures.CroppedMasks`), ``boxes``
                xyxy ``[N, 4]``, ``labels`` ``[N]`` in 1..K and optionally ``iscrowd`` ``[N]`` and
                ``scores`` ``[N]``; with a keypoint spec, ``keypoints`` float ``[N, K, 3]``.
            file_name: default ``image_<id>.png`` (a name to save an image without a file under).
            reference: how messages name the image (its path, say).

        Raises:
            DataError: ``image_id`` is taken; the builder has a keypoint spec and the target no keypoints
                of its shape.
        """
        keypoints = self._keypoints(image_id, target, reference)
        self._claim(image_id, reference)
        self.images.append(
            {
                "id": image_id,
                "file_name": file_name if file_name is not None else f"image_{image_id}.png",
                "height": height,
                "width": width,
            }
        )
        masks = target["masks"]
        if not len(masks):
            return
        crowd = target.get("iscrowd")
        if crowd is None:
            crowd = torch.zeros(len(masks), dtype=torch.int64)
        if isinstance(masks, CroppedMasks):  # a prediction's: encoded from the crops, never made full size
            rles, areas = masks.rle(), masks.areas().tolist()
        else:
            rles, areas = rle_encode(masks), masks.flatten(1).sum(1).tolist()
        scores = target.get("scores")
        for k, (rle, area, box, label, iscrowd) in enumerate(
            zip(rles, areas, target["boxes"].tolist(), target["labels"].tolist(), crowd.tolist(), strict=True)
        ):
            x0, y0, x1, y1 = box
            annotation = {
                "id": len(self.annotations) + 1,  # COCOeval needs ids; 0 would be taken for "none"
                "image_id": image_id,
                "category_id": self.category_ids[int(label) - 1],
                "segmentation": rle,
                "area": int(area),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "iscrowd": int(iscrowd),
            }
            if scores is not None:
                annotation["score"] = round(float(scores[k]), 5)
            if keypoints is not None:
                points = keypoints[k]
                annotation["keypoints"] = [v for x, y, vis in points for v in (x, y, int(vis))]
                annotation["num_keypoints"] = sum(1 for _, _, vis in points if vis > 0)
            self.annotations.append(annotation)

    def _keypoints(
        self, image_id: int, target: Mapping[str, Tensor], reference: str
    ) -> list[list[list[float]]] | None:
        """The target's keypoints as ``[N][K][3]`` lists (``None`` without a keypoint spec).

        Raises:
            DataError: they are missing, or not ``[N, K, 3]``.
        """
        if self.keypoint_spec is None:
            return None
        k, n = self.keypoint_spec.num_keypoints, len(target["masks"])
        keypoints = target.get("keypoints")
        if keypoints is None or tuple(keypoints.shape) != (n, k, 3):
            got = "none" if keypoints is None else list(keypoints.shape)
            raise DataError(
                f"{reference or f'image {image_id}'}: the dataset has {k} keypoints, its target keypoints "
                f"{got}; expected [{n}, {k}, 3]"
            )
        return keypoints.tolist()

    def extend(self, other: CocoBuilder) -> None:
        """Add ``other``'s images and annotations after this builder's (annotations renumbered): e.g. the
        shares of the processes of a distributed evaluation, in rank order."""
        for image in other.images:
            self._claim(image["id"], other._references.get(image["id"], ""))
            self.images.append(image)
        for ann in other.annotations:
            self.annotations.append({**ann, "id": len(self.annotations) + 1})

    def to_dict(self, description: str) -> dict[str, Any]:
        """``{"info", "images", "categories", "annotations"}`` (JSON-ready; the lists are not copied)."""
        return {
            "info": {"description": description},
            "images": self.images,
            "categories": self.categories,
            "annotations": self.annotations,
        }

    def _claim(self, image_id: int, reference: str) -> None:
        previous = self._references.get(image_id)
        if previous is not None:
            which = f"{reference} and {previous}" if reference and previous else "two images"
            raise DataError(f"{which} share image_id {image_id}; COCO needs distinct ids")
        self._references[image_id] = reference


def _keypoint_fields(spec: KeypointSpec | None) -> dict[str, Any]:
    """A category's ``keypoints``, ``skeleton`` (1-based, as COCO's) and, when the names do not imply
    the mirror pairs, ``flip_index``; nothing without keypoints."""
    if spec is None:
        return {}
    fields: dict[str, Any] = {
        "keypoints": list(spec.names),
        "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton],
    }
    if spec.flip_permutation() != KeypointSpec(spec.names).flip_permutation():
        fields["flip_index"] = spec.flip_permutation()
    return fields


def _file_name(path: Path, image_root: str | os.PathLike[str] | None) -> str:
    """An image's ``file_name``: relative to ``image_root``, else absolute (POSIX slashes)."""
    absolute = os.path.abspath(path)
    if image_root is not None:
        try:
            return Path(os.path.relpath(absolute, os.path.abspath(image_root))).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            pass
    return Path(absolute).as_posix()


def to_coco(
    dataset: Any,
    *,
    image_root: str | os.PathLike[str] | None = None,
    skipped: list[str] | None = None,
) -> dict[str, Any]:
    """The dataset as a COCO instances dict (JSON-ready): see :class:`CocoBuilder` for the fields.

    Reads every item once without augmentation (``dataset.transforms`` is set aside meanwhile).

    Args:
        dataset: an ``InstanceDataset`` (or a ``Subset`` of one); category ids from its
            ``coco_category_ids()``.
        image_root: write ``file_name`` relative to this folder (use it as the COCO reader's
            ``image_dir``); default: absolute paths. Images without a path get ``image_<id>.png``.
        skipped: when given, images that cannot be read (``DataError`` / ``ImageError``) are left out
            and their messages appended here; otherwise the error propagates.

    Raises:
        DataError: two items with the same ``image_id``; an unreadable item (without ``skipped``).
    """
    builder = CocoBuilder.for_dataset(dataset)
    for index, image, target in stored_items(dataset, skipped=skipped):
        base, i = resolve_index(dataset, index)
        image_id = int(target["image_id"])
        height, width = (int(v) for v in image.shape[-2:])
        path = base.image_info[i].get("path")
        builder.add(
            image_id,
            height,
            width,
            target,
            # No file (synthetic or embedded data): the builder's image_<id>.png.
            file_name=_file_name(path, image_root) if path is not None else None,
            reference=base.image_reference(i),
        )
    base = base_dataset(dataset)
    return builder.to_dict(f"converted by maskrcnn from {base.source or type(base).__name__}")


def write_coco(
    dataset: Any,
    out_json: str | os.PathLike[str],
    *,
    image_root: str | os.PathLike[str] | None = None,
    skipped: list[str] | None = None,
) -> Path:
    """Write :func:`to_coco` of ``dataset`` to ``out_json`` (compact; folders created; the file replaced
    atomically, see :func:`maskrcnn.io.atomic_write`).

    Returns:
        the written path.
    """
    return write_json(out_json, to_coco(dataset, image_root=image_root, skipped=skipped), indent=None)


class CocoWriter(AnnotationWriter):
    """COCO instances written through :class:`CocoBuilder` (``--to coco``, ``predict --save-as coco``):
    ``out`` is the JSON file, written compact at :meth:`close`.

    Masks are compressed RLE (exact: the tolerance is not used), boxes those of the masks, crowd regions
    kept (``iscrowd``), predictions' scores written as ``score``. ``file_name`` is the image's path relative
    to ``image_root`` when given, else absolute; an image without a file is written as
    ``<out stem>_images/<name>.png`` beside the JSON and named relative to ``image_root``, else to the
    JSON's folder (where the COCO reader looks first).

    Args:
        category_ids: the category id of each label (index 0 for label 1); default 1..K.
        image_root: see above.
        description: the file's ``info.description``.
        (the others: see :class:`~maskrcnn.data.formats.annotation_writer.AnnotationWriter`).
    """

    keeps_crowds = True

    def __init__(
        self,
        out: Path,
        *,
        class_names: Sequence[str],
        keypoint_spec: KeypointSpec | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        category_ids: Sequence[int] | None = None,
        image_root: str | os.PathLike[str] | None = None,
        description: str = "written by maskrcnn",
    ) -> None:
        super().__init__(out, class_names=class_names, keypoint_spec=keypoint_spec, tolerance=tolerance)
        ids = category_ids if category_ids is not None else range(1, len(self.class_names) + 1)
        self.builder = CocoBuilder(self.class_names, list(ids), keypoint_spec=keypoint_spec)
        self.image_root = image_root
        self.description = description

    def _write(self, item: ImageInstances) -> None:
        path = self.image_file(item, self.out.parent / f"{self.out.stem}_images")
        root = self.image_root
        if root is None and item.image_path is None:
            root = self.out.parent  # the PNG just written beside the JSON: named from there
        n = len(item.labels)
        target: dict[str, Any] = {
            "masks": item.masks,
            "boxes": item.masks.boxes(),
            "labels": torch.tensor(item.labels, dtype=torch.int64),
            "iscrowd": torch.tensor(item.iscrowd, dtype=torch.int64),
        }
        if item.scores is not None:
            target["scores"] = torch.tensor(item.scores)
        if item.keypoints is not None:
            target["keypoints"] = torch.tensor(item.keypoints, dtype=torch.float64).reshape(n, -1, 3)
        self.builder.add(
            item.image_id,
            item.height,
            item.width,
            target,
            file_name=_file_name(path, root),
            reference=str(path),
        )

    def _finish(self) -> Path:
        return write_json(self.out, self.builder.to_dict(self.description), indent=None)


def convert(
    format: str,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    to: str = "coco",
    tolerance: float = DEFAULT_TOLERANCE,
    image_root: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Path:
    """Read ``source`` in ``format`` and write it in ``to``: ``load_dataset`` +
    :func:`~maskrcnn.data.formats.annotation_writer.write_dataset`.

    The reader's problems are logged (warnings; the first few one by one), and instances or images with
    errors are left out unless ``strict=True`` is among ``options``.

    Args:
        format: a reader name (``maskrcnn.data.formats.FORMATS``).
        source: what the reader reads (file, folder or data YAML).
        out: what to write: the COCO JSON file, or the folder of the other formats.
        to: one of :data:`~maskrcnn.data.formats.annotation_writer.SAVE_FORMATS`.
        tolerance: polygon simplification in pixels (LabelMe, VIA, YOLO).
        image_root: COCO: see :class:`CocoWriter`.
        **options: the reader's options (``strict``, ``split``, ``class_map``...).

    Returns:
        the written output.
    """
    dataset = load_dataset(format, source, **options)
    problems = list(dataset.problems)
    for problem in problems[:_SHOWN_PROBLEMS]:
        log.warning("%s", problem)
    if len(problems) > _SHOWN_PROBLEMS:
        log.warning("... and %d more problems", len(problems) - _SHOWN_PROBLEMS)
    log.info("%s: %s", source, dataset.summary())
    skipped: list[str] | None = None if options.get("strict") else []
    written = write_dataset(dataset, to, out, tolerance=tolerance, image_root=image_root, skipped=skipped)
    for message in skipped or []:
        log.warning("left out: %s", message)
    return written
