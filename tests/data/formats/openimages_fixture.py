"""A small Open Images segmentation download, laid out as Google and CVDF publish it, for the reader tests.

``write_open_images(root)`` writes (for ``split="train"``)::

    root/train-annotations-object-segmentation.csv   MaskPath,ImageID,LabelName,BoxID,...,PredictedIoU,Clicks
    root/class-descriptions-boxable.csv              /m/05zsy,Pumpkin (no header; 30 classes)
    root/train/<ImageID>.jpg                         aws s3 sync s3://open-images-dataset/train train/
    root/masks/train-masks-<digit>/<MaskPath>        train-masks-<digit>.zip unpacked into a folder each

or, with ``masks="flat"``, every PNG in ``root/masks/`` (``unzip train-masks-0.zip -d masks``), with
``masks="beside"`` the ``train-masks-<digit>/`` folders beside the CSV, and with ``v7=True`` the class
names in ``oidv7-class-descriptions.csv`` with its ``LabelName,DisplayName`` header. ``fiftyone=True``
writes FiftyOne's zoo layout instead: ``root/train/labels/segmentations.csv``, ``labels/masks/<DIGIT>/``,
``data/<ImageID>.jpg`` and ``metadata/classes.csv``.

Masks are drawn at their own resolution (twice the image's, an odd size, half of it) and written as
0/255 PNGs ("L", one "1"); :attr:`FixtureMask.expected` is the mask Pillow's nearest-neighbour resize
makes of it at the image's size: the reference the reader's instances must equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

PUMPKIN, MAN, CAR = "/m/05zsy", "/m/04yx4", "/m/0k4j"

# 30 boxable classes (the real file has 600); the reader must pick the CSV's out of them by MID.
CLASSES = [
    ("/m/011k07", "Tortoise"),
    ("/m/014j1m", "Apple"),
    ("/m/0152hh", "Snowman"),
    ("/m/015p6", "Bird"),
    ("/m/0199g", "Bicycle"),
    ("/m/019jd", "Boat"),
    ("/m/01bjv", "Bus"),
    ("/m/01g317", "Person"),
    ("/m/01mzpv", "Chair"),
    ("/m/01yrx", "Cat"),
    ("/m/02crq6", "Couch"),
    ("/m/02p0tk3", "Human body"),
    ("/m/03bt1vf", "Woman"),
    ("/m/03fp41", "Houseplant"),
    ("/m/04bcr3", "Table"),
    (MAN, "Man"),
    ("/m/04h7h", "Lion"),
    ("/m/05zsy", "Pumpkin"),
    ("/m/07j7r", "Tree"),
    ("/m/07r04", "Truck"),
    ("/m/09qck", "Banana"),
    ("/m/0bt9lr", "Dog"),
    ("/m/0c9ph5", "Flower"),
    ("/m/0cmf2", "Airplane"),
    ("/m/0cyhj_", "Orange"),
    ("/m/0dv77", "Squash"),
    ("/m/0dzct", "Human face"),
    ("/m/0fj52s", "Carrot"),
    ("/m/0hkxq", "Broccoli"),
    (CAR, "Car"),
]
NAMES = dict(CLASSES)

# ImageID, image (H, W), masks (H, W): twice the image, an odd size, half, the same, a third odd size.
IMAGES = [
    ("0b6f22c6a5e1a1b2", (48, 64), (96, 128)),
    ("88e582a7b14e34f4", (60, 90), (73, 97)),
    ("f3c0d9e8a7b61234", (100, 70), (50, 35)),
    ("3a9d01e2b4c5d6e7", (64, 64), (64, 64)),
    ("c41d2e3f4a5b6c7d", (56, 80), (81, 113)),
]
# (image index, MID, PredictedIoU) per CSV row, in file order: the two images' Pumpkin rows interleaved
# with other classes, a row below the tests' min_iou=0.6 in an image that keeps another Pumpkin, and an
# image (the last) whose only mask is below it.
ROWS = [
    (0, PUMPKIN, 0.91),
    (0, PUMPKIN, 0.45),
    (0, MAN, 0.80),
    (1, PUMPKIN, 0.77),
    (1, CAR, 0.66),
    (2, PUMPKIN, 0.95),
    (3, CAR, 0.72),
    (4, PUMPKIN, 0.52),
]


@dataclass
class FixtureMask:
    """One CSV row's mask: ``line`` (the CSV's line, header = 1), ``drawn`` at the mask's resolution and
    ``expected`` at the image's (both bool)."""

    line: int
    image_id: str
    mid: str
    name: str
    iou: float
    file: str
    path: Path
    drawn: np.ndarray
    expected: np.ndarray


@dataclass
class OpenImagesFixture:
    root: Path
    csv: Path
    class_csv: Path
    images: dict[str, Path]
    masks: list[FixtureMask] = field(default_factory=list)

    def masks_of(self, image_id: str) -> list[FixtureMask]:
        return [m for m in self.masks if m.image_id == image_id]


def _blob(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An ellipse and a rectangle, at least a fifth of the image across: survives any of the resizes."""
    y, x = np.mgrid[:height, :width]
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    ry, rx = rng.uniform(0.1, 0.25) * height, rng.uniform(0.1, 0.25) * width
    blob = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
    top, left = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
    blob[top : top + height // 5 + 1, left : left + width // 5 + 1] = True
    return blob


def write_mask(path: Path, drawn: np.ndarray, mode: str = "L") -> None:
    """A binary mask PNG as Open Images stores them: 0 and 255 (``mode`` "L", or 1-bit "1")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(drawn.astype(np.uint8) * 255).convert(mode).save(path)


def _expected(drawn: np.ndarray, height: int, width: int) -> np.ndarray:
    resized = Image.fromarray(drawn.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(resized) != 0


def write_open_images(
    root: Path, *, masks: str = "zip-folders", v7: bool = False, fiftyone: bool = False, split: str = "train"
) -> OpenImagesFixture:
    """Write the download into ``root`` (see the module docstring); returns where everything is."""
    rng = np.random.default_rng(17)
    if fiftyone:
        base = root / split
        csv_path, class_csv = base / "labels" / "segmentations.csv", base / "metadata" / "classes.csv"
        image_dir = base / "data"
    else:
        csv_path = root / f"{split}-annotations-object-segmentation.csv"
        class_csv = root / ("oidv7-class-descriptions.csv" if v7 else "class-descriptions-boxable.csv")
        image_dir = root / split
    class_csv.parent.mkdir(parents=True, exist_ok=True)
    header = "LabelName,DisplayName\n" if v7 else ""
    class_csv.write_text(header + "".join(f"{mid},{name}\n" for mid, name in CLASSES))

    images = {}
    for image_id, (h, w), _ in IMAGES:
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        images[image_id] = image_dir / f"{image_id}.jpg"
        images[image_id].parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(images[image_id], quality=95)

    fixture = OpenImagesFixture(root, csv_path, class_csv, images)
    lines = [
        "MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,PredictedIoU,Clicks",
    ]
    for k, (index, mid, iou) in enumerate(ROWS):
        image_id, (h, w), (mh, mw) = IMAGES[index]
        box_id = f"{int(rng.integers(0, 2**32)):08x}"
        name = f"{image_id}_{mid.replace('/', '')}_{box_id}.png"
        digit = image_id[0]
        if fiftyone:
            path = csv_path.parent / "masks" / digit.upper() / name
        elif masks == "flat":
            path = root / "masks" / name
        elif masks == "beside":
            path = root / f"{split}-masks-{digit}" / name
        else:
            path = root / "masks" / f"{split}-masks-{digit}" / name
        drawn = _blob(rng, mh, mw)
        write_mask(path, drawn, "1" if k == 3 else "L")
        ys, xs = drawn.nonzero()
        box = (xs.min() / mw, (xs.max() + 1) / mw, ys.min() / mh, (ys.max() + 1) / mh)
        clicks = " ".join(f"{v:.5f}" for v in rng.uniform(0, 1, 6))
        lines.append(
            f"{name},{image_id},{mid},{box_id},{','.join(f'{v:.6f}' for v in box)},{iou:.5f},{clicks}"
        )
        fixture.masks.append(
            FixtureMask(len(lines), image_id, mid, NAMES[mid], iou, name, path, drawn, _expected(drawn, h, w))
        )
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    csv_path.write_text("\n".join(lines) + "\n")
    return fixture


def replace_line(fixture: OpenImagesFixture, line: int, old: str, new: str) -> None:
    """Edit one line of the fixture's CSV (1-based, the header is line 1)."""
    lines = fixture.csv.read_text().splitlines()
    assert old in lines[line - 1], (old, lines[line - 1])
    lines[line - 1] = lines[line - 1].replace(old, new)
    fixture.csv.write_text("\n".join(lines) + "\n")
