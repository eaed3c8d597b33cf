"""Synthetic shapes: the classic toy dataset of squares, circles and triangles on a plain background.

The default scene is the classic one of the Mask R-CNN samples: a 128x128 image of one random colour
with 1 to 4 shapes of random colour, centred at least ``buffer`` (20) pixels from the border, of "size"
``s`` uniform in ``[20, 128 / 4]`` (a square spans ``2s + 1`` pixels, a circle has radius ``s``, a
triangle has its apex ``s`` above the centre and its base ``s`` below, ``2s / sin 60`` wide), with shapes
whose boxes overlap more than ``overlap`` (IoU 0.3) removed, later shapes drawn on top of earlier ones and
masks made to match what is visible. Every scene is a pure function of ``(seed, index)``, so a dataset
is reproducible anywhere and costs no disk; :func:`write_shapes_coco` writes one to disk as COCO JSON.

Beyond the classic scene (all off by default): pixel noise, a textured background, other sizes and
counts. Labels: 1 square, 2 circle, 3 triangle.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from maskrcnn.data.dataset import InstanceDataset, Transform

__all__ = [
    "CLASS_NAMES",
    "Scene",
    "Shape",
    "ShapesDataset",
    "draw_scene",
    "random_scene",
    "write_shapes_coco",
]

CLASS_NAMES = ("square", "circle", "triangle")
_SIN60 = math.sin(math.radians(60))


@dataclass(frozen=True)
class Shape:
    """One shape: its class name, RGB colour (0..255) and centre ``(x, y)`` and size ``s`` in pixels."""

    kind: str
    color: tuple[int, int, int]
    x: int
    y: int
    s: int

    def box(self) -> tuple[int, int, int, int]:
        """``(x1, y1, x2, y2)`` of the square around the shape, used to reject heavy overlaps."""
        return self.x - self.s, self.y - self.s, self.x + self.s, self.y + self.s

    def draw(self, draw: ImageDraw.ImageDraw, fill: int | tuple[int, int, int]) -> None:
        x, y, s = self.x, self.y, self.s
        if self.kind == "square":
            draw.rectangle([x - s, y - s, x + s, y + s], fill=fill)
        elif self.kind == "circle":
            draw.ellipse([x - s, y - s, x + s, y + s], fill=fill)
        else:
            half = s / _SIN60
            draw.polygon([(x, y - s), (x - half, y + s), (x + half, y + s)], fill=fill)


@dataclass(frozen=True)
class Scene:
    """A background colour and the shapes drawn on it, bottom first."""

    background: tuple[int, int, int]
    shapes: tuple[Shape, ...]


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def random_scene(
    rng: np.random.Generator,
    *,
    height: int = 128,
    width: int = 128,
    min_shapes: int = 1,
    max_shapes: int = 4,
    min_size: int = 20,
    max_size: int | None = None,
    buffer: int = 20,
    overlap: float = 0.3,
) -> Scene:
    """Draw a scene's parameters: the classic generator's distribution (see the module docstring).

    Shapes are drawn in order and one whose box overlaps an earlier, higher-ranked one by more than
    ``overlap`` IoU is removed (greedy, like non-maximum suppression with random scores), so objects
    stay mostly visible.
    """
    top = max_size if max_size is not None else height // 4
    background = tuple(int(v) for v in rng.integers(0, 256, size=3))
    count = int(rng.integers(min_shapes, max_shapes + 1))
    candidates = []
    for _ in range(count):
        kind = CLASS_NAMES[int(rng.integers(0, 3))]
        color = tuple(int(v) for v in rng.integers(0, 256, size=3))
        y = int(rng.integers(buffer, max(height - buffer, buffer + 1)))
        x = int(rng.integers(buffer, max(width - buffer, buffer + 1)))
        s = int(rng.integers(min_size, max(top, min_size) + 1))
        candidates.append(Shape(kind, color, x, y, s))  # type: ignore[arg-type]
    # Rank by a random score and keep greedily, as the classic generator's NMS over random scores does.
    order = rng.permutation(len(candidates))
    kept: list[int] = []
    for i in order:
        if all(_iou(candidates[i].box(), candidates[j].box()) <= overlap for j in kept):
            kept.append(int(i))
    return Scene(background, tuple(candidates[i] for i in sorted(kept)))  # type: ignore[arg-type]


def draw_scene(
    scene: Scene,
    *,
    height: int = 128,
    width: int = 128,
    noise: float = 0.0,
    texture: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Render a scene.

    Args:
        noise: standard deviation of Gaussian pixel noise added to the image (0..1 scale).
        texture: amplitude of a smooth random pattern modulating the background (0..1 scale).
        rng: randomness for the noise and texture.

    Returns:
        ``image`` float ``[3, H, W]`` in 0..1, ``masks`` uint8 ``[N, H, W]`` of the visible parts (a shape
        drawn later hides what it covers; shapes hidden entirely are dropped) and ``labels`` int64 ``[N]``.
    """
    canvas = Image.new("RGB", (width, height), scene.background)
    painter = ImageDraw.Draw(canvas)
    masks = []
    for shape in scene.shapes:
        shape.draw(painter, shape.color)
        layer = Image.new("L", (width, height), 0)
        shape.draw(ImageDraw.Draw(layer), 1)
        masks.append(np.asarray(layer, dtype=np.uint8))
    image = torch.from_numpy(np.asarray(canvas, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    if texture > 0 or noise > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        if texture > 0:
            coarse = torch.from_numpy(rng.standard_normal((1, 3, 5, 5))).float()
            pattern = torch.nn.functional.interpolate(
                coarse, size=(height, width), mode="bicubic", align_corners=False
            )[0]
            visible = torch.from_numpy(
                np.stack(masks).max(axis=0) if masks else np.zeros((height, width), np.uint8)
            )
            image = image + texture * pattern * (visible == 0)
        if noise > 0:
            image = image + noise * torch.from_numpy(rng.standard_normal((3, height, width))).float()
        image = image.clamp_(0.0, 1.0)
    # Later shapes occlude earlier ones: each mask keeps only what no later shape covers.
    visible_masks, labels = [], []
    covered = np.zeros((height, width), dtype=bool)
    for shape, mask in zip(reversed(scene.shapes), reversed(masks), strict=True):
        seen = (mask > 0) & ~covered
        covered |= mask > 0
        if seen.any():
            visible_masks.append(seen)
            labels.append(CLASS_NAMES.index(shape.kind) + 1)
    visible_masks.reverse()
    labels.reverse()
    stacked = (
        torch.from_numpy(np.stack(visible_masks).astype(np.uint8))
        if visible_masks
        else torch.zeros((0, height, width), dtype=torch.uint8)
    )
    return image, stacked, torch.tensor(labels, dtype=torch.int64)


class ShapesDataset(InstanceDataset):
    """``count`` synthetic shapes images, generated on the fly; image ``i`` depends only on ``(seed, i)``.

    Args:
        path: must be ``None``: the dataset is generated (``--format shapes`` takes no data path).
        count: number of images.
        seed: base seed; different seeds give disjoint-looking datasets (use one for training and
            another for validation).
        image_size: height and width.
        min_shapes: fewest shapes drawn per image (before overlap removal).
        max_shapes: most shapes per image.
        min_size: smallest shape size ``s``.
        max_size: largest ``s`` (default ``image_size // 4``).
        buffer: shape centres keep this far from the border.
        overlap: shapes overlapping an earlier one beyond this box IoU are not drawn.
        noise: Gaussian pixel noise (0..1 scale).
        texture: amplitude of a smooth background pattern (0..1 scale).
        transforms: augmentation.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        count: int = 500,
        seed: int = 0,
        image_size: int = 128,
        min_shapes: int = 1,
        max_shapes: int = 4,
        min_size: int = 20,
        max_size: int | None = None,
        buffer: int = 20,
        overlap: float = 0.3,
        noise: float = 0.0,
        texture: float = 0.0,
        transforms: Transform | None = None,
    ) -> None:
        super().__init__(transforms=transforms)
        if path is not None:
            raise ValueError(
                f"the shapes dataset is generated and reads no files (got path {path!r}); "
                "set count= and seed= instead"
            )
        if count < 0 or not 1 <= min_shapes <= max_shapes or image_size < 2 * buffer + 1:
            raise ValueError(
                f"shapes: need count >= 0, 1 <= min_shapes <= max_shapes and image_size > 2 * buffer, got "
                f"count={count}, min_shapes={min_shapes}, max_shapes={max_shapes}, image_size={image_size}, "
                f"buffer={buffer}"
            )
        for name in CLASS_NAMES:
            self.add_class(name)
        self.seed = seed
        self.height = self.width = image_size
        self.scene_options: dict[str, Any] = {
            "min_shapes": min_shapes,
            "max_shapes": max_shapes,
            "min_size": min_size,
            "max_size": max_size,
            "buffer": buffer,
            "overlap": overlap,
        }
        self.noise = noise
        self.texture = texture
        self._last: tuple[int, tuple[Tensor, Tensor, Tensor]] | None = None
        for index in range(count):
            self.add_image(None, image_id=index, height=image_size, width=image_size)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index])

    def scene(self, index: int) -> Scene:
        """The parameters of image ``index`` (cheap: nothing is drawn)."""
        return random_scene(self._rng(index), height=self.height, width=self.width, **self.scene_options)

    def _render(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        # load_image and load_masks of one item both need the drawing: keep the last one.
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        rng = self._rng(index)
        scene = random_scene(rng, height=self.height, width=self.width, **self.scene_options)
        drawn = draw_scene(
            scene, height=self.height, width=self.width, noise=self.noise, texture=self.texture, rng=rng
        )
        self._last = (index, drawn)
        return drawn

    def load_image(self, index: int) -> Tensor:
        return self._render(index)[0]

    def load_masks(self, index: int) -> tuple[Tensor, Tensor]:
        _, masks, labels = self._render(index)
        return masks, labels

    def image_reference(self, index: int) -> str:
        return f"shapes image {index} (seed {self.seed})"

    def instance_labels(self, index: int) -> list[int]:
        # Occlusion may hide a shape entirely; the scene's list is what a sampler needs to know.
        return [CLASS_NAMES.index(s.kind) + 1 for s in self.scene(index).shapes]


def write_shapes_coco(out_dir: str | os.PathLike[str], *, count: int, seed: int = 0, **options: Any) -> Path:
    """Write a shapes dataset to disk as a COCO dataset: ``out_dir/images/*.png`` + ``annotations.json``.

    Args:
        out_dir: the folder to write into (created).
        count: number of images.
        seed: the dataset's seed.
        **options: other :class:`ShapesDataset` options.

    Returns:
        the path of the JSON (read it back with ``load_dataset("coco", path)``).
    """
    from maskrcnn.data.formats.export import write_coco
    from maskrcnn.visualize import to_pil

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    dataset = ShapesDataset(count=count, seed=seed, **options)
    for index in range(count):
        path = out / "images" / f"{index:06d}.png"
        to_pil(dataset.load_image(index)).save(path)
        dataset.image_info[index]["path"] = path
    return write_coco(dataset, out / "annotations.json", image_root=out)
