"""Training augmentation on ``(image, target)`` pairs in the dataset contract (see ``dataset.py``).

Every transform is a callable ``(image, target) -> (image, target)``: ``image`` float ``[3, H, W]`` in
0..1, ``target`` the contract's dict. Pass one (or a :class:`Compose` of several) as a dataset's
``transforms``. The rules they all follow:

* masks are the truth: after every geometric change, :func:`refresh` recomputes ``boxes`` and ``area``
  from the transformed masks and drops the instances whose masks vanished, so boxes and masks never
  disagree, and ``labels``, ``iscrowd`` and ``keypoints`` travel with their instances;
* keypoints (``[N, K, 3]`` ``(x, y, v)`` in continuous pixel coordinates, when the target has them) move
  with the pixels: a keypoint at the centre of a mask pixel stays inside that pixel wherever the pixel
  goes (resizing scales ``x`` by ``new_width / width``, cropping and padding shift, a horizontal flip
  maps ``x`` to ``W - x``, a quarter turn ``(x, y)`` to ``(y, W - x)``); a mirror (either flip) also
  renames them by the dataset's flip permutation, since it turns a left into a right; after every
  geometric change, those outside the image (border included in it) become ``(0, 0, 0)``, not labelled,
  as do those of visibility 0 (:func:`~maskrcnn.data.dataset.clean_keypoints`); visible keypoints that
  :class:`CopyPaste` covers become hidden (``v = 1``);
* randomness comes from torch's global generator, so ``torch.manual_seed`` (and the per-worker seeding of
  ``maskrcnn.data.loader``) makes a run reproducible;
* inputs are never modified in place: each call returns new tensors and a new dict;
* only the contract's per-instance keys (:data:`INSTANCE_KEYS`) are transformed; other keys
  (``image_id``...) pass through unchanged.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrcnn.data.dataset import DataError, Target, Transform, clean_keypoints
from maskrcnn.data.image_io import ImageError
from maskrcnn.ops import masks_to_boxes

__all__ = [
    "INSTANCE_KEYS",
    "ColorJitter",
    "Compose",
    "CopyPaste",
    "HorizontalFlip",
    "LargeScaleJitter",
    "RandomCrop",
    "RandomItem",
    "RandomRotate90",
    "ScaleJitter",
    "VerticalFlip",
    "crop",
    "hsv_to_rgb",
    "pad",
    "refresh",
    "resize",
    "rgb_to_hsv",
    "select_instances",
]

log = logging.getLogger(__name__)

INSTANCE_KEYS = ("boxes", "labels", "masks", "iscrowd", "area", "keypoints")
"""The target keys holding one entry per instance (first dimension ``N``; ``keypoints`` only in the
targets of datasets with keypoints)."""


# ----------------------------------------------------------------------------------------------------
# Helpers shared by the transforms


def select_instances(target: Target, keep: Tensor) -> Target:
    """The target restricted to some instances.

    Args:
        keep: ``bool [N]`` mask or ``int64 [M]`` indices of the instances to keep (in that order).
    """
    out = dict(target)
    if keep.dtype == torch.bool and bool(keep.all()):
        return out  # nothing to drop: spare copying the masks
    for key in INSTANCE_KEYS:
        if key in out:
            out[key] = out[key][keep]
    return out


def _pixel_counts(masks: Tensor, boxes: Tensor) -> Tensor:
    """``float32 [N]`` nonzero pixels of each ``[N, H, W]`` mask, counted inside its box (which must hold
    it): objects are usually small next to the image, so this is several times faster than summing
    whole masks."""
    counts = [
        masks[k, y0:y1, x0:x1].sum(dtype=torch.int32)
        for k, (x0, y0, x1, y1) in enumerate(boxes.long().tolist())
    ]
    return torch.stack(counts).to(torch.float32) if counts else torch.zeros(0, device=masks.device)


def refresh(target: Target) -> Target:
    """Recompute ``boxes`` (``float32 [N, 4]``) and ``area`` (``float32 [N]``) from ``masks``
    (``uint8 [N, H, W]``), drop the instances whose masks are empty and make ``keypoints`` (if any)
    outside the ``H x W`` image not labelled.

    Every geometric transform ends with this, so boxes and areas always describe the masks and labelled
    keypoints always lie in the image.
    """
    masks = target["masks"]
    boxes = masks_to_boxes(masks)
    area = _pixel_counts(masks, boxes)  # an empty mask has an empty box and counts 0
    out = dict(target)
    if "keypoints" in out:
        out["keypoints"] = clean_keypoints(out["keypoints"], masks.shape[-2], masks.shape[-1])
    if not bool((area > 0).all()):
        keep = area > 0
        out = select_instances(out, keep)
        boxes, area = boxes[keep], area[keep]
    out["boxes"] = boxes
    out["area"] = area
    return out


def _move_keypoints(
    target: Target, *, scale: tuple[float, float] = (1.0, 1.0), shift: tuple[float, float] = (0.0, 0.0)
) -> Target:
    """The target with ``keypoints`` (if any) mapped ``x -> x * scale[0] + shift[0]``, ``y -> y * scale[1]
    + shift[1]`` (visibilities kept; :func:`refresh` then clears what left the image)."""
    keypoints = target.get("keypoints")
    if keypoints is None:
        return target
    factor = keypoints.new_tensor([scale[0], scale[1], 1.0])
    offset = keypoints.new_tensor([shift[0], shift[1], 0.0])
    return {**target, "keypoints": keypoints * factor + offset}


def _mirror_keypoints(
    target: Target, axis: int, extent: int, permutation: Sequence[int] | None, name: str
) -> Target:
    """The target with ``keypoints`` (if any) mirrored: coordinate ``axis`` (0: x, 1: y) becomes
    ``extent - value``, then keypoint ``k`` takes the place of keypoint ``permutation[k]``."""
    keypoints = target.get("keypoints")
    if keypoints is None:
        return target
    k = keypoints.shape[1]
    if permutation is None:
        raise ValueError(
            f"{name}: the target has {k} keypoints but no keypoint_flip was given: pass the dataset's "
            "keypoint_spec.flip_permutation() (a mirror turns left keypoints into right ones)"
        )
    if len(permutation) != k:
        raise ValueError(f"{name}: keypoint_flip has {len(permutation)} entries for {k} keypoints")
    mirrored = keypoints.clone()
    mirrored[..., axis] = extent - keypoints[..., axis]
    return {**target, "keypoints": mirrored[:, list(permutation)]}


def _check_flip(permutation: Sequence[int] | None) -> list[int] | None:
    if permutation is None:
        return None
    values = [int(i) for i in permutation]
    if sorted(values) != list(range(len(values))):
        raise ValueError(f"keypoint_flip {values} must be a permutation of 0..{len(values) - 1}")
    return values


# The pair operations below transform an image and its masks without refreshing the target, so that a
# transform chaining several of them pays for one refresh.


def _resize_pair(image: Tensor, masks: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    if tuple(image.shape[-2:]) == size:
        return image, masks
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)
    if masks.shape[0] == 0:
        masks = masks.new_zeros((0, *size))
    else:
        # "nearest-exact" samples the input pixel under each output pixel's centre, the grid of bilinear
        # with align_corners=False, so masks stay on their objects (the legacy "nearest" shifts them by
        # up to half an input pixel).
        masks = F.interpolate(masks[None], size=size, mode="nearest-exact")[0]
    return image[0].clamp_(0, 1), masks


def _crop_pair(
    image: Tensor, masks: Tensor, top: int, left: int, height: int, width: int
) -> tuple[Tensor, Tensor]:
    rows, cols = slice(top, top + height), slice(left, left + width)
    return image[:, rows, cols], masks[:, rows, cols]


def _pad_pair(
    image: Tensor, masks: Tensor, height: int, width: int, top: int, left: int
) -> tuple[Tensor, Tensor]:
    h, w = image.shape[-2:]
    if (h, w) == (height, width):
        return image, masks
    canvas = image.new_zeros((image.shape[0], height, width))
    canvas[:, top : top + h, left : left + w] = image
    padded = masks.new_zeros((masks.shape[0], height, width))
    padded[:, top : top + h, left : left + w] = masks
    return canvas, padded


def resize(image: Tensor, target: Target, size: tuple[int, int]) -> tuple[Tensor, Target]:
    """Resize to ``size = (height, width)``: the image bilinearly (antialiased, so strong downscaling
    does not alias; clamped to 0..1), the masks by nearest neighbour (they stay binary). Instances too
    thin to survive are dropped.

    Args:
        image: float ``[3, H, W]``.
        target: the contract's dict with ``masks`` ``uint8 [N, H, W]``.

    Returns:
        ``[3, height, width]`` image and the refreshed target.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image, target
    h, w = image.shape[-2:]
    image, masks = _resize_pair(image, target["masks"], (int(size[0]), int(size[1])))
    moved = _move_keypoints(target, scale=(int(size[1]) / w, int(size[0]) / h))
    return image, refresh({**moved, "masks": masks})


def crop(
    image: Tensor, target: Target, top: int, left: int, height: int, width: int
) -> tuple[Tensor, Target]:
    """Cut the window ``[top, top + height) x [left, left + width)`` (inside the image) out of the image
    (``[3, H, W]``) and the masks; instances left without pixels are dropped."""
    image, masks = _crop_pair(image, target["masks"], top, left, height, width)
    return image, refresh({**_move_keypoints(target, shift=(-left, -top)), "masks": masks})


def pad(
    image: Tensor, target: Target, height: int, width: int, top: int = 0, left: int = 0
) -> tuple[Tensor, Target]:
    """Place the image (``[3, h, w]``) and masks at ``(top, left)`` on a zero canvas of ``height x
    width`` (which must hold them)."""
    if tuple(image.shape[-2:]) == (height, width):
        return image, target
    image, masks = _pad_pair(image, target["masks"], height, width, top, left)
    return image, refresh({**_move_keypoints(target, shift=(left, top)), "masks": masks})


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _randint(low: int, high: int) -> int:
    """A uniform integer in ``low..high`` inclusive."""
    return int(torch.randint(low, high + 1, ()))


def _coin(p: float) -> bool:
    return p > 0 and float(torch.rand(())) < p


def _check_probability(p: float, name: str = "p") -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p}")
    return float(p)


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}")
    return pair  # type: ignore[return-value]


class _Repr:
    """A repr listing the constructor's arguments (kept as public attributes)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


# ----------------------------------------------------------------------------------------------------
# Transforms


class Compose(_Repr):
    """Apply transforms one after the other.

    Args:
        transforms: callables ``(image, target) -> (image, target)``.
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


class HorizontalFlip(_Repr):
    """Mirror left-right with probability ``p``: box ``(x1, y1, x2, y2)`` becomes ``(W - x2, y1, W - x1,
    y2)``, a keypoint's ``x`` becomes ``W - x``, and keypoint ``k`` becomes keypoint ``keypoint_flip[k]``
    (the left eye of the mirror image is the right eye of the original).

    Args:
        p: probability of a flip.
        keypoint_flip: for targets with keypoints, the dataset's
            :meth:`~maskrcnn.data.keypoints.KeypointSpec.flip_permutation` (required then: a flip that
            silently kept the names would teach left for right).
    """

    def __init__(self, *, p: float = 0.5, keypoint_flip: Sequence[int] | None = None) -> None:
        self.p = _check_probability(p)
        self.keypoint_flip = _check_flip(keypoint_flip)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if not _coin(self.p):
            return image, target
        width = image.shape[-1]
        mirrored = _mirror_keypoints(target, 0, width, self.keypoint_flip, type(self).__name__)
        return image.flip(-1), refresh({**mirrored, "masks": target["masks"].flip(-1)})


class VerticalFlip(_Repr):
    """Mirror top-bottom with probability ``p`` (for data without a natural up, e.g. aerial or
    microscope images): a keypoint's ``y`` becomes ``H - y`` and keypoint ``k`` becomes keypoint
    ``keypoint_flip[k]``.

    A vertical mirror is a horizontal one turned half a circle, so it turns left into right just the
    same: names relative to the object (a car's left wheel seen from above) swap as in
    :class:`HorizontalFlip`. Names relative to the picture ("top") are not the object's own and no
    permutation keeps them true under vertical flips (or quarter turns): leave those off for such data.

    Args:
        p: probability of a flip.
        keypoint_flip: as for :class:`HorizontalFlip` (required for targets with keypoints).
    """

    def __init__(self, *, p: float = 0.5, keypoint_flip: Sequence[int] | None = None) -> None:
        self.p = _check_probability(p)
        self.keypoint_flip = _check_flip(keypoint_flip)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if not _coin(self.p):
            return image, target
        height = image.shape[-2]
        mirrored = _mirror_keypoints(target, 1, height, self.keypoint_flip, type(self).__name__)
        return image.flip(-2), refresh({**mirrored, "masks": target["masks"].flip(-2)})


class RandomRotate90(_Repr):
    """With probability ``p``, rotate counter-clockwise by ``k * 90`` degrees, ``k`` uniform in 1..3.

    An ``H x W`` image becomes ``W x H`` for odd ``k``; one counter-clockwise quarter turn maps box
    ``(x1, y1, x2, y2)`` to ``(y1, W - x2, y2, W - x1)`` and keypoint ``(x, y)`` to ``(y, W - x)``. A
    rotation is no mirror: keypoints keep their names.
    """

    def __init__(self, *, p: float = 0.5) -> None:
        self.p = _check_probability(p)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if not _coin(self.p):
            return image, target
        k = _randint(1, 3)
        # rot90 on (rows, columns) turns the first axis towards the second: counter-clockwise on screen.
        masks = torch.rot90(target["masks"], k, dims=(-2, -1))
        out = {**target, "masks": masks}
        if "keypoints" in target:
            keypoints = target["keypoints"]
            height, width = image.shape[-2:]
            for _ in range(k):
                x, y, v = keypoints.unbind(-1)
                keypoints = torch.stack((y, width - x, v), dim=-1)
                height, width = width, height
            out["keypoints"] = keypoints
        return torch.rot90(image, k, dims=(-2, -1)), refresh(out)


class ScaleJitter(_Repr):
    """Resize by one factor drawn uniformly from ``[min_scale, max_scale]`` (both sides, rounded; at
    least one pixel): the image bilinearly, the masks by nearest neighbour. Instances too thin to survive
    downscaling are dropped.

    Args:
        min_scale: smallest factor (> 0).
        max_scale: largest factor.
    """

    def __init__(self, min_scale: float, max_scale: float) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale} and {max_scale}")
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        scale = _uniform(self.min_scale, self.max_scale)
        h, w = image.shape[-2:]
        return resize(image, target, (max(1, round(h * scale)), max(1, round(w * scale))))


class LargeScaleJitter(_Repr):
    """Large scale jitter (Ghiasi et al., "Simple Copy-Paste", 2021): resize to fit a random fraction
    of ``output_size``, then crop a random window or zero-pad (bottom and right) to exactly
    ``output_size``.

    The factor ``s`` is uniform in ``[min_scale, max_scale]``; the image keeps its aspect ratio and is
    scaled to fit inside ``s * output_size``. Large factors zoom in (random crop), small ones zoom out
    (padding), giving a wide range of object sizes at a fixed image size.

    Args:
        output_size: ``(height, width)`` of every output image (an int: a square).
        min_scale: smallest factor of ``output_size`` (paper: 0.1).
        max_scale: largest factor (paper: 2.0).
    """

    def __init__(
        self, output_size: int | Sequence[int], *, min_scale: float = 0.1, max_scale: float = 2.0
    ) -> None:
        self.output_size = _pair(output_size, "output_size")
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale} and {max_scale}")
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        out_h, out_w = self.output_size
        h, w = image.shape[-2:]
        scale = _uniform(self.min_scale, self.max_scale)
        factor = min(scale * out_h / h, scale * out_w / w)
        new_h, new_w = max(1, round(h * factor)), max(1, round(w * factor))
        masks = target["masks"]
        image, masks = _resize_pair(image, masks, (new_h, new_w))
        top = left = 0
        if new_h > out_h or new_w > out_w:
            top = _randint(0, max(0, new_h - out_h))
            left = _randint(0, max(0, new_w - out_w))
            image, masks = _crop_pair(image, masks, top, left, min(new_h, out_h), min(new_w, out_w))
        # Padding adds to the bottom and right: nothing moves.
        image, masks = _pad_pair(image, masks, out_h, out_w, 0, 0)
        moved = _move_keypoints(target, scale=(new_w / w, new_h / h), shift=(-left, -top))
        return image, refresh({**moved, "masks": masks})


class RandomCrop(_Repr):
    """Crop a random window; instances are clipped to it and those left without pixels are dropped.

    The window is ``size`` (clamped to the image; no padding) or, without ``size``, has each side drawn
    independently and uniformly between ``min_fraction`` of the image's side and the full side. Its
    position is uniform.

    Args:
        min_fraction: smallest side of the window, as a fraction of the image's side (0 < f <= 1).
        size: fixed ``(height, width)`` window (an int: a square) instead of random fractions.
        min_visible: also drop instances that keep less than this fraction of their mask pixels. The
            default, 0, keeps every instance with at least one visible pixel, as for objects cut by the
            photo's own border; raise it (e.g. to 0.25) to avoid training on small slivers.
    """

    def __init__(
        self,
        *,
        min_fraction: float = 0.5,
        size: int | Sequence[int] | None = None,
        min_visible: float = 0.0,
    ) -> None:
        if not 0 < min_fraction <= 1:
            raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
        self.min_fraction = float(min_fraction)
        self.size = _pair(size, "size") if size is not None else None
        self.min_visible = _check_probability(min_visible, "min_visible")

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        h, w = image.shape[-2:]
        if self.size is not None:
            height, width = min(self.size[0], h), min(self.size[1], w)
        else:
            height = _randint(min(h, math.ceil(self.min_fraction * h)), h)
            width = _randint(min(w, math.ceil(self.min_fraction * w)), w)
        top, left = _randint(0, h - height), _randint(0, w - width)
        image, out = crop(image, target, top, left, height, width)
        if self.min_visible > 0 and out["labels"].numel():
            # refresh kept the order: match the survivors to their areas before the crop.
            before = target["area"][
                target["masks"][:, top : top + height, left : left + width].flatten(1).amax(1) > 0
            ]
            out = select_instances(out, out["area"] >= self.min_visible * before)
        return image, out


def rgb_to_hsv(image: Tensor) -> Tensor:
    """RGB in 0..1 (``[..., 3, H, W]``) to HSV, each channel in 0..1 (hue in turns, ``[0, 1)``).

    The formulas of Python's ``colorsys``; grey pixels (no chroma) get hue 0 and black pixels
    saturation 0.
    """
    r, g, b = image.unbind(-3)
    maxc = image.amax(-3)
    minc = image.amin(-3)
    delta = maxc - minc
    saturation = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, 1.0), 0.0)
    safe = torch.where(delta > 0, delta, 1.0)  # grey pixels: any divisor, their hue is set to 0 below
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(r == maxc, bc - gc, torch.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
    return torch.stack((hue, saturation, maxc), dim=-3)


def hsv_to_rgb(image: Tensor) -> Tensor:
    """HSV (``[..., 3, H, W]``, channels in 0..1, hue in turns and taken modulo 1) back to RGB in 0..1."""
    h, s, v = image.unbind(-3)
    h6 = (h % 1.0) * 6.0
    sector = h6.floor()
    f = h6 - sector
    # Hue just below 0 can round to exactly 1.0 turn: sector 6 is sector 0.
    sector = sector.long() % 6
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    channels = []
    for order in ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q)):
        channels.append(torch.stack(order).gather(0, sector[None]).squeeze(0))
    return torch.stack(channels, dim=-3).clamp_(0, 1)


def _grey(image: Tensor) -> Tensor:
    """Luma (ITU-R 601) of ``[3, H, W]`` RGB, ``[H, W]``."""
    r, g, b = image.unbind(-3)
    return 0.299 * r + 0.587 * g + 0.114 * b


class ColorJitter(_Repr):
    """Random brightness, contrast, saturation and hue, in random order; masks and boxes are untouched
    and the image stays in 0..1.

    Factors are uniform in ``[max(0, 1 - x), 1 + x]`` for brightness (scale), contrast (blend with the
    mean grey) and saturation (blend with the grey image); the hue is rotated by a uniform
    ``[-hue, hue]`` turns in HSV. 0 leaves a property alone (and draws nothing from the generator).

    Args:
        brightness: >= 0.
        contrast: >= 0.
        saturation: >= 0.
        hue: in ``[0, 0.5]`` (0.5 turns reaches every hue).
    """

    def __init__(
        self, *, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0
    ) -> None:
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.saturation = float(saturation)
        self.hue = float(hue)

    def _factor(self, amount: float) -> float:
        return _uniform(max(0.0, 1.0 - amount), 1.0 + amount)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        for op in torch.randperm(4).tolist():
            if op == 0 and self.brightness > 0:
                image = (image * self._factor(self.brightness)).clamp(0, 1)
            elif op == 1 and self.contrast > 0:
                f = self._factor(self.contrast)
                image = (f * image + (1 - f) * _grey(image).mean()).clamp(0, 1)
            elif op == 2 and self.saturation > 0:
                f = self._factor(self.saturation)
                image = (f * image + (1 - f) * _grey(image)[None]).clamp(0, 1)
            elif op == 3 and self.hue > 0:
                hsv = rgb_to_hsv(image)
                hsv[0] = (hsv[0] + _uniform(-self.hue, self.hue)) % 1.0
                image = hsv_to_rgb(hsv)
        return image, target


class RandomItem(_Repr):
    """A :class:`CopyPaste` source: a uniformly random item of ``dataset`` (through its own transforms).

    Picklable, so it works in DataLoader worker processes under any start method.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self) -> tuple[Tensor, Target]:
        return self.dataset[int(torch.randint(len(self.dataset), ()))]


# While a CopyPaste fetches its source item, CopyPaste transforms inside that item's own pipeline (the
# source is often the same dataset) pass through: no recursion, and pasted objects come from one image.
_fetching = threading.local()


class CopyPaste(_Repr):
    """Simple Copy-Paste (Ghiasi et al., 2021): with probability ``p``, paste a random subset of another
    image's instances on top of this one.

    The source item (from ``source()``) is scaled to fit inside this image, keeping its aspect ratio,
    and placed at a random offset (nothing happens to it when the sizes match, as after
    :class:`LargeScaleJitter` on both). Between 1 and ``max_objects`` of its non-crowd instances
    (uniformly many, chosen at random; crowd regions are coarse "ignore" areas and are not pasted) are
    copied with their labels. This image's masks lose the pasted pixels; instances left with less than
    ``min_visible`` of their pixels are dropped (fully hidden ones always are). Pasted objects bring their
    keypoints (scaled and placed with them; the source must have the same keypoints, as another item of
    the same dataset has), and this image's visible keypoints under them become hidden (``v = 1``). A
    source item that fails to load (:class:`DataError` / :class:`ImageError`) is logged and nothing is
    pasted.

    Args:
        source: returns a random ``(image, target)``, e.g. :class:`RandomItem` of a dataset; CopyPaste
            transforms in the source's own pipeline are skipped while it is fetched.
        p: probability of pasting.
        max_objects: most instances pasted at once (None: all of the source's).
        min_visible: fraction of an occluded instance's pixels it must keep to stay. The default, 0.1,
            drops instances hidden by more than 90%: what is left is a sliver whose box and mask no
            longer look like the object (0 keeps every instance with a visible pixel, as the paper).
    """

    def __init__(
        self,
        source: Callable[[], tuple[Tensor, Target]],
        *,
        p: float = 0.5,
        max_objects: int | None = None,
        min_visible: float = 0.1,
    ) -> None:
        if max_objects is not None and max_objects < 1:
            raise ValueError(f"max_objects must be >= 1 or None, got {max_objects}")
        self.source = source
        self.p = _check_probability(p)
        self.max_objects = max_objects
        self.min_visible = _check_probability(min_visible, "min_visible")

    def _fetch(self) -> tuple[Tensor, Target] | None:
        _fetching.active = True
        try:
            return self.source()
        except (DataError, ImageError) as e:
            log.warning("copy-paste: source item skipped: %s", e)
            return None
        finally:
            _fetching.active = False

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if getattr(_fetching, "active", False) or not _coin(self.p):
            return image, target
        item = self._fetch()
        if item is None:
            return image, target
        src_image, src_target = item
        candidates = (src_target["iscrowd"] == 0).nonzero().flatten()
        if candidates.numel() == 0:
            return image, target
        most = candidates.numel() if self.max_objects is None else min(candidates.numel(), self.max_objects)
        chosen = candidates[torch.randperm(candidates.numel())[: _randint(1, most)]]
        src_target = select_instances(src_target, chosen)

        if ("keypoints" in target) != ("keypoints" in src_target) or (
            "keypoints" in target and target["keypoints"].shape[1] != src_target["keypoints"].shape[1]
        ):
            # Objects of another kind of data cannot be pasted: their keypoints would mean nothing here.
            raise ValueError(
                f"copy-paste: the source item has {_keypoint_count(src_target)} and this item "
                f"{_keypoint_count(target)}; paste from the same dataset"
            )
        height, width = image.shape[-2:]
        h, w = src_image.shape[-2:]
        pasted = src_target["masks"]
        if (h, w) != (height, width):
            factor = min(height / h, width / w)
            size = (min(height, max(1, round(h * factor))), min(width, max(1, round(w * factor))))
            src_image, pasted = _resize_pair(src_image, pasted, size)
            top, left = _randint(0, height - size[0]), _randint(0, width - size[1])
            src_image, pasted = _pad_pair(src_image, pasted, height, width, top, left)
            src_target = _move_keypoints(src_target, scale=(size[1] / w, size[0] / h), shift=(left, top))
        pasted = pasted.to(target["masks"])
        alpha = pasted.amax(0) > 0  # bool [H, W]: the pixels taken by pasted objects (any() keeps uint8)
        if not bool(alpha.any()):  # every chosen instance vanished when scaled down
            return image, target

        image = torch.where(alpha, src_image.to(image), image)
        masks = target["masks"].masked_fill(alpha, 0)
        after = _pixel_counts(masks, target["boxes"])  # occlusion only shrinks masks inside their boxes
        # The destination's areas are those of its masks (the contract), so no second count is needed.
        visible = (after > 0) & (after >= self.min_visible * target["area"].to(after.device))
        covered = {**target, "masks": masks}
        if "keypoints" in target:
            covered["keypoints"] = _hide_keypoints(target["keypoints"], alpha)
        kept = select_instances(covered, visible)
        merged = {key: value for key, value in kept.items() if key not in ("boxes", "area")}
        merged["masks"] = torch.cat((kept["masks"], pasted))
        for key in ("labels", "iscrowd", "keypoints"):
            if key in kept:
                merged[key] = torch.cat((kept[key], src_target[key].to(kept[key])))
        # Boxes and areas of both come from refresh, which also drops pasted objects lost to scaling.
        return image, refresh(merged)


def _keypoint_count(target: Target) -> str:
    keypoints = target.get("keypoints")
    return f"{keypoints.shape[1]} keypoints" if keypoints is not None else "no keypoints"


def _hide_keypoints(keypoints: Tensor, cover: Tensor) -> Tensor:
    """``[N, K, 3]`` keypoints with the visible ones (``v = 2``) whose pixel is in ``cover`` (bool
    ``[H, W]``) made hidden (``v = 1``): still labelled, now behind something."""
    height, width = cover.shape
    # A keypoint on the right or bottom border belongs to the last pixel.
    cols = keypoints[..., 0].floor().long().clamp(0, width - 1)
    rows = keypoints[..., 1].floor().long().clamp(0, height - 1)
    hidden = (keypoints[..., 2] == 2) & cover[rows, cols]
    if not bool(hidden.any()):
        return keypoints
    out = keypoints.clone()
    out[..., 2] = torch.where(hidden, 1.0, keypoints[..., 2])
    return out
