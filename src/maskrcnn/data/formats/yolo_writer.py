"""A YOLO dataset in the Ultralytics layout: ``--to yolo`` and ``predict --save-as yolo``.

Ultralytics trains on it (``yolo segment train data=OUT/data.yaml``, or ``yolo pose train`` with keypoints)
and ``--format yolo`` reads it back (:class:`~maskrcnn.data.formats.yolo.YoloDataset`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from maskrcnn.data.formats.annotation_writer import AnnotationWriter, ImageInstances
from maskrcnn.data.formats.polygons import join_polygons
from maskrcnn.io import atomic_write, write_text

__all__ = ["YoloWriter"]

_SPLIT = "train"


def _number(value: float) -> str:
    """A normalised coordinate as text: 9 decimals (a keypoint of a 10,000 px image comes back within
    1e-5 px, the same float32), trailing zeros dropped."""
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


class YoloWriter(AnnotationWriter):
    """An Ultralytics dataset folder, OUT:

    * ``images/train/<name>``: each image, a hard link of the original (a copy where links fail: another
      drive, a file system without them), or a PNG for an image without a file;
    * ``labels/train/<stem>.txt``: one line per object, ``class x1 y1 x2 y2 ...`` (class index from 0,
      coordinates divided by the image's width and height), one polygon per object (holes and parts joined
      by zero-width cuts); an image without objects gets an empty file (a negative). With keypoints, the
      pose format instead: ``class cx cy w h x1 y1 v1 ...`` (the mask's box, and every keypoint, ``0 0 0``
      when not labelled), without outlines (YOLO pose has none);
    * ``data.yaml`` (at :meth:`close`, which returns its path): ``train`` and ``val`` both
      ``images/train``, ``names``; with keypoints ``kpt_shape: [K, 3]``, ``flip_idx`` and ``kpt_names``.
      It has no ``path``: Ultralytics and the reader then take the YAML's folder as the root, wherever the
      folder is moved (``path: .`` would mean the working folder to Ultralytics).

    Scores are left out (YOLO labels have none).
    """

    def _write(self, item: ImageInstances) -> None:
        suffix = item.image_path.suffix if item.image_path is not None else ".png"
        images = self.out / "images" / _SPLIT
        if item.image_path is None:
            self.image_file(item, images)
        else:
            _place(item.image_path, images / f"{item.stem}{suffix}")
        lines = self._pose_lines(item) if self.keypoint_spec is not None else self._polygon_lines(item)
        write_text(self.out / "labels" / _SPLIT / f"{item.stem}.txt", "".join(f"{line}\n" for line in lines))

    def _polygon_lines(self, item: ImageInstances) -> list[str]:
        lines = []
        for label, parts in zip(item.labels, self.polygons(item), strict=True):
            polygon = join_polygons(parts)
            scaled = [v / (item.width if k % 2 == 0 else item.height) for k, v in enumerate(polygon)]
            lines.append(" ".join([str(label - 1), *map(_number, scaled)]))
        return lines

    def _pose_lines(self, item: ImageInstances) -> list[str]:
        assert item.keypoints is not None  # the writer has a keypoint spec: add() gave every instance some
        lines = []
        for label, box, points in zip(item.labels, item.masks.boxes().tolist(), item.keypoints, strict=True):
            x0, y0, x1, y1 = box
            values = [(x0 + x1) / 2 / item.width, (y0 + y1) / 2 / item.height]
            values += [(x1 - x0) / item.width, (y1 - y0) / item.height]
            fields = [str(label - 1), *map(_number, values)]
            for x, y, v in points:
                labelled = [_number(x / item.width), _number(y / item.height), str(int(v))]
                fields += labelled if v > 0 else ["0", "0", "0"]
            lines.append(" ".join(fields))
        return lines

    def _finish(self) -> Path:
        data: dict[str, Any] = {
            "train": f"images/{_SPLIT}",
            "val": f"images/{_SPLIT}",
            "names": dict(enumerate(self.class_names)),
        }
        spec = self.keypoint_spec
        if spec is not None:
            data["kpt_shape"] = [spec.num_keypoints, 3]
            data["flip_idx"] = spec.flip_permutation()
            data["kpt_names"] = {k: list(spec.names) for k in range(len(self.class_names))}
        (self.out / "images" / _SPLIT).mkdir(parents=True, exist_ok=True)  # the split of an empty run
        header = "# Written by maskrcnn. No 'path': the root is this file's folder.\n"
        text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None)
        return write_text(self.out / "data.yaml", text)


def _place(source: Path, target: Path) -> None:
    """``target`` becomes ``source``'s content: a hard link (no copy of the pixels), else a copy written
    atomically. A link appears whole (``link`` is atomic); one there already from an earlier run is
    replaced."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and os.path.samefile(source, target):
        return
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another drive, or a file system without hard links
        atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
