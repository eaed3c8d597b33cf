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

Keypoints (``ShapesDataset(keypoints=True)``, :data:`KEYPOINT_SPEC`): four per shape, whatever its class,
its extreme points: ``top``, ``left``, ``right``, ``bottom``, each the middle of the shape's extreme edge
where an edge is extreme. For a square and a circle they are the middles of the four sides of its box;
for a triangle, the apex, the two base corners and the middle of the base. Each lies at the centre of a
pixel of the drawn shape (the drawing's own vertices: Pillow draws at pixel centres and truncates a
triangle's corners to whole pixels), so a keypoint is exactly where the picture shows it. Visibility:
2 where the shape is on top, 1 where a later shape covers the point (hidden, still labelled), 0 (not
labelled, ``(0, 0, 0)``) where the point is outside the image. The names are the picture's own (top is
up), which horizontal flips keep true by swapping left and right (the spec's mirror pairs); vertical flips
and quarter turns would make "top" mean another point of a same-looking shape: leave them off with these
keypoints.
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
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.structures import CroppedMasks

__all__ = [
    "CLASS_NAMES",
    "KEYPOINT_SPEC",
    "Scene",
    "Shape",
    "ShapesDataset",
    "draw_large_scene",
    "draw_scene",
    "random_scene",
    "scene_keypoints",
    "write_shapes_coco",
]

CLASS_NAMES = ("square", "circle", "triangle")
_SIN60 = math.sin(math.radians(60))

KEYPOINT_SPEC = KeypointSpec(
    names=("top", "left", "right", "bottom"),
    # The outline through the extremes: a diamond in squares and circles, the triangle itself.
    skeleton=((0, 1), (1, 3), (3, 2), (2, 0)),
)
"""The shapes' keypoints (see the module docstring); mirror pairs from the names: left <-> right."""


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

    def _base(self) -> tuple[int, int]:
        """The columns of a triangle's base corners, ``x -+ s / sin 60`` as Pillow draws them: truncated
        towards zero to whole pixels."""
        half = self.s / _SIN60
        return int(self.x - half), int(self.x + half)

    def draw(self, draw: ImageDraw.ImageDraw, fill: int | tuple[int, int, int]) -> None:
        x, y, s = self.x, self.y, self.s
        if self.kind == "square":
            draw.rectangle([x - s, y - s, x + s, y + s], fill=fill)
        elif self.kind == "circle":
            draw.ellipse([x - s, y - s, x + s, y + s], fill=fill)
        else:
            left, right = self._base()
            draw.polygon([(x, y - s), (left, y + s), (right, y + s)], fill=fill)

    def keypoint_pixels(self) -> tuple[tuple[int, int], ...]:
        """The pixel ``(column, row)`` of each of :data:`KEYPOINT_SPEC`'s keypoints (top, left, right,
        bottom): their coordinates are the pixels' centres, ``column + 0.5, row + 0.5``. May lie outside
        an image the shape reaches past."""
        x, y, s = self.x, self.y, self.s
        if self.kind == "triangle":
            left, right = self._base()
            return (x, y - s), (left, y + s), (right, y + s), (x, y + s)
        return (x, y - s), (x - s, y), (x + s, y), (x, y + s)


@dataclass(frozen=True)
class Scene:
    """A background colour and the shapes drawn on it, bottom first."""

    background: tuple[int, int, int]
    shapes: tuple[Shape, ...]


def _ious(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of an ``(x1, y1, x2, y2)`` integer box with each of ``boxes`` ``[N, 4]`` (integer areas)."""
    ix = np.maximum(0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]))
    iy = np.maximum(0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]))
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = union - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


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
    boxes = np.array([shape.box() for shape in candidates], dtype=np.int64).reshape(-1, 4)
    kept: list[int] = []
    for i in order:
        if not kept or (_ious(boxes[i], boxes[kept]) <= overlap).all():
            kept.append(int(i))
    return Scene(background, tuple(candidates[i] for i in sorted(kept)))  # type: ignore[arg-type]


def _visible_parts(scene: Scene, height: int, width: int) -> list[tuple[Shape, np.ndarray, np.ndarray]]:
    """The shapes with a visible pixel, bottom first, each with its visible pixels and the pixels the
    shapes drawn after it cover (both bool ``[H, W]``): later shapes occlude earlier ones."""
    layers = []
    for shape in scene.shapes:
        layer = Image.new("L", (width, height), 0)
        shape.draw(ImageDraw.Draw(layer), 1)
        layers.append(np.asarray(layer, dtype=np.uint8) > 0)
    parts = []
    covered = np.zeros((height, width), dtype=bool)
    for shape, layer in zip(reversed(scene.shapes), reversed(layers), strict=True):
        seen = layer & ~covered
        if seen.any():
            parts.append((shape, seen, covered))
        covered = covered | layer  # a new array: the one kept above stays what covered this shape
    parts.reverse()
    return parts


def _part_keypoints(parts: list[tuple[Shape, np.ndarray, np.ndarray]], height: int, width: int) -> Tensor:
    """``float32 [N, 4, 3]`` keypoints of :func:`_visible_parts`' shapes (see the module docstring)."""
    out = np.zeros((len(parts), KEYPOINT_SPEC.num_keypoints, 3), dtype=np.float32)
    for i, (shape, _, covered) in enumerate(parts):
        for k, (col, row) in enumerate(shape.keypoint_pixels()):
            if 0 <= col < width and 0 <= row < height:  # else not labelled: (0, 0, 0)
                out[i, k] = (col + 0.5, row + 0.5, 1.0 if covered[row, col] else 2.0)
    return torch.from_numpy(out)


def _draw(
    scene: Scene, height: int, width: int, noise: float, texture: float, rng: np.random.Generator | None
) -> tuple[Tensor, list[tuple[Shape, np.ndarray, np.ndarray]]]:
    """The image of :func:`draw_scene` and the scene's :func:`_visible_parts`."""
    canvas = Image.new("RGB", (width, height), scene.background)
    painter = ImageDraw.Draw(canvas)
    for shape in scene.shapes:
        shape.draw(painter, shape.color)
    parts = _visible_parts(scene, height, width)
    image = torch.from_numpy(np.asarray(canvas, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    if texture > 0 or noise > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        if texture > 0:
            coarse = torch.from_numpy(rng.standard_normal((1, 3, 5, 5))).float()
            pattern = torch.nn.functional.interpolate(
                coarse, size=(height, width), mode="bicubic", align_corners=False
            )[0]
            visible = np.zeros((height, width), dtype=bool)
            for _, seen, _ in parts:
                visible |= seen
            image = image + texture * pattern * torch.from_numpy(~visible)
        if noise > 0:
            image = image + noise * torch.from_numpy(rng.standard_normal((3, height, width))).float()
        image = image.clamp_(0.0, 1.0)
    return image, parts


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
    image, parts = _draw(scene, height, width, noise, texture, rng)
    return (image, *_masks_and_labels(parts, height, width))


def _masks_and_labels(
    parts: list[tuple[Shape, np.ndarray, np.ndarray]], height: int, width: int
) -> tuple[Tensor, Tensor]:
    masks = (
        torch.from_numpy(np.stack([seen for _, seen, _ in parts]).astype(np.uint8))
        if parts
        else torch.zeros((0, height, width), dtype=torch.uint8)
    )
    labels = torch.tensor([CLASS_NAMES.index(shape.kind) + 1 for shape, _, _ in parts], dtype=torch.int64)
    return masks, labels


def scene_keypoints(scene: Scene, *, height: int = 128, width: int = 128) -> Tensor:
    """The keypoints of the instances :func:`draw_scene` gives (same order), ``float32 [N, 4, 3]``
    ``(x, y, v)``: :data:`KEYPOINT_SPEC`'s, as the module docstring says."""
    return _part_keypoints(_visible_parts(scene, height, width), height, width)


def draw_large_scene(scene: Scene, *, height: int, width: int) -> tuple[Image.Image, CroppedMasks, Tensor]:
    """Render a scene of any size (a 20,000-pixel canvas of thousands of shapes) without a full-size layer
    per shape: what :func:`draw_scene` draws, as a picture and crops.

    Returns:
        ``image``: an RGB PIL image (bytes: 1.2 GB at 20,000 x 20,000, where floats would be 4.8 GB),
        ``masks``: the visible part of each shape (a shape drawn later hides what it covers; shapes hidden
        entirely are dropped) as :class:`~maskrcnn.structures.CroppedMasks`, and ``labels`` int64 ``[N]``.
    """
    canvas = Image.new("RGB", (width, height), scene.background)
    painter = ImageDraw.Draw(canvas)
    regions, layers = [], []
    for shape in scene.shapes:
        shape.draw(painter, shape.color)
        # The pixels a shape can touch (a triangle's base is wider than 2s), clipped to the canvas.
        reach = math.ceil(shape.s / _SIN60) + 2
        x0, y0 = max(shape.x - reach, 0), max(shape.y - reach, 0)
        x1, y1 = min(shape.x + reach + 1, width), min(shape.y + reach + 1, height)
        layer = Image.new("L", (max(x1 - x0, 1), max(y1 - y0, 1)), 0)
        Shape(shape.kind, shape.color, shape.x - x0, shape.y - y0, shape.s).draw(ImageDraw.Draw(layer), 1)
        regions.append((y0, x0, y1, x1))
        layers.append(np.asarray(layer, dtype=bool)[: max(y1 - y0, 0), : max(x1 - x0, 0)].copy())
    bounds = np.array(regions, dtype=np.int64).reshape(-1, 4)
    crops, origins, labels = [], [], []
    for i, (shape, layer) in enumerate(zip(scene.shapes, layers, strict=True)):
        y0, x0, y1, x1 = regions[i]
        later = np.arange(i + 1, len(layers))
        meets = later[
            (bounds[later, 0] < y1)
            & (bounds[later, 2] > y0)
            & (bounds[later, 1] < x1)
            & (bounds[later, 3] > x0)
        ]
        visible = layer.copy()
        for j in meets:  # later shapes occlude this one
            oy0, ox0, oy1, ox1 = regions[j]
            ys, xs = slice(max(y0, oy0), min(y1, oy1)), slice(max(x0, ox0), min(x1, ox1))
            visible[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] &= ~layers[j][
                ys.start - oy0 : ys.stop - oy0, xs.start - ox0 : xs.stop - ox0
            ]
        if visible.any():
            crops.append(torch.from_numpy(visible))
            origins.append((y0, x0))
            labels.append(CLASS_NAMES.index(shape.kind) + 1)
    masks = CroppedMasks.from_regions(crops, origins, (height, width))
    return canvas, masks, torch.tensor(labels, dtype=torch.int64)


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
        keypoints: give each shape :data:`KEYPOINT_SPEC`'s four keypoints (targets then have
            ``keypoints`` ``[N, 4, 3]``; see the module docstring). The pictures are the same either way.
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
        keypoints: bool = False,
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
        self.keypoint_spec = KEYPOINT_SPEC if keypoints else None
        self._last: tuple[int, tuple[Tensor, Tensor, Tensor, Tensor]] | None = None
        for index in range(count):
            self.add_image(None, image_id=index, height=image_size, width=image_size)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index])

    def scene(self, index: int) -> Scene:
        """The parameters of image ``index`` (cheap: nothing is drawn)."""
        return random_scene(self._rng(index), height=self.height, width=self.width, **self.scene_options)

    def _render(self, index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        # load_image, load_masks and load_keypoints of one item all need the drawing: keep the last one.
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        rng = self._rng(index)
        scene = random_scene(rng, height=self.height, width=self.width, **self.scene_options)
        image, parts = _draw(scene, self.height, self.width, self.noise, self.texture, rng)
        drawn = (image, *_masks_and_labels(parts, self.height, self.width), self._keypoints(parts))
        self._last = (index, drawn)
        return drawn

    def _keypoints(self, parts: list[tuple[Shape, np.ndarray, np.ndarray]]) -> Tensor:
        if self.keypoint_spec is None:
            return torch.zeros((len(parts), 0, 3))
        return _part_keypoints(parts, self.height, self.width)

    def load_image(self, index: int) -> Tensor:
        return self._render(index)[0]

    def load_masks(self, index: int) -> tuple[Tensor, Tensor]:
        _, masks, labels, _ = self._render(index)
        return masks, labels

    def load_keypoints(self, index: int) -> Tensor:
        """``float32 [N, 4, 3]``: see the module docstring (only with ``keypoints=True``)."""
        if self.keypoint_spec is None:
            raise ValueError(
                f"{self.image_reference(index)}: no keypoints (make the dataset with keypoints=True)"
            )
        return self._render(index)[3]

    def image_reference(self, index: int) -> str:
        return f"shapes image {index} (seed {self.seed})"

    def instance_labels(self, index: int) -> list[int]:
        # Occlusion may hide a shape entirely; the scene's list is what a sampler needs to know.
        return [CLASS_NAMES.index(s.kind) + 1 for s in self.scene(index).shapes]


def write_shapes_coco(out_dir: str | os.PathLike[str], *, count: int, seed: int = 0, **options: Any) -> Path:
    """Write a shapes dataset to disk as a COCO dataset: ``out_dir/images/*.png`` + ``annotations.json``.

    With ``keypoints=True`` the JSON is a COCO person-keypoints file as well: each category names
    :data:`KEYPOINT_SPEC`'s ``keypoints`` and its ``skeleton`` (1-based), each annotation has
    ``keypoints`` (flat ``[x1, y1, v1, ...]``) and ``num_keypoints``; the COCO reader gives back the same
    targets.

    Args:
        out_dir: the folder to write into (created).
        count: number of images.
        seed: the dataset's seed.
        **options: other :class:`ShapesDataset` options (``keypoints=True``, ``image_size``...).

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
