"""Pictures: instances over images (ground truth or detections), grids, anchors, the colour splash, and
the training loss curve.

Everything draws with Pillow on 8-bit RGB images and returns ``PIL.Image.Image`` objects; inputs are the
project's tensors (image float ``[3, H, W]`` in 0..1, boxes xyxy pixels, masks ``[N, H, W]``, keypoints
``[N, K, 3]`` in the boxes' continuous pixel coordinates).
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from maskrcnn.structures import CroppedMasks

__all__ = [
    "KEYPOINT_THRESHOLD",
    "color_splash",
    "draw_anchors",
    "draw_instances",
    "image_grid",
    "loss_curve_figure",
    "random_colors",
    "to_pil",
    "validation_history_figure",
]


KEYPOINT_THRESHOLD = 0.0
"""A detected keypoint is drawn when its score (the heatmap logit at the point, as torchvision's and
detectron2's keypoint heads give it) is above this: detectron2's pictures draw keypoints above 0.05, the
same rule at the precision a picture shows. Ground-truth keypoints are drawn where they are labelled."""


def to_pil(image: Tensor) -> Image.Image:
    """Float ``[3, H, W]`` (0..1) -> 8-bit RGB image."""
    # One float copy, scaled in place, then uint8 in height-width-channel order (a 2048-px picture: 8.4M
    # values, where each temporary costs about 10 ms).
    scaled = image.detach().to("cpu", torch.float32, copy=True).clamp_(0, 1).mul_(255).add_(0.5)
    array = scaled.to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def random_colors(count: int, *, seed: int = 0, bright: bool = True) -> list[tuple[int, int, int]]:
    """``count`` distinct colours: evenly spaced hues, shuffled so that neighbours differ."""
    value = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / max(count, 1), 1.0, value) for i in range(count)]
    order = np.random.default_rng(seed).permutation(count)
    return [tuple(int(c * 255) for c in colors[i]) for i in order]  # type: ignore[misc]


def _outline(mask: Tensor) -> Tensor:
    """Boundary pixels of a ``[H, W]`` binary mask: the mask minus its 3x3 erosion (beyond the array's
    edges counts as inside, so a mask cut by the image's border has no line along it)."""
    inside = mask.bool()
    # The 3x3 erosion as two 3-wide ones, rows then columns: boolean ANDs of shifted views, a few
    # times faster than a max-pool over floats (100 masks of 5% of a 2048-px photo: 25 ms, not 120).
    rows = inside.clone()
    rows[:, 1:] &= inside[:, :-1]
    rows[:, :-1] &= inside[:, 1:]
    eroded = rows.clone()
    eroded[1:] &= rows[:-1]
    eroded[:-1] &= rows[1:]
    return inside & ~eroded


def draw_instances(
    image: Tensor | Image.Image,
    *,
    boxes: Tensor | None = None,
    masks: Tensor | CroppedMasks | None = None,
    labels: Tensor | None = None,
    scores: Tensor | None = None,
    class_names: Sequence[str] = (),
    colors: Sequence[tuple[int, int, int]] | None = None,
    alpha: float = 0.5,
    mask_threshold: float = 0.5,
    keypoints: Tensor | None = None,
    keypoints_scores: Tensor | None = None,
    skeleton: Sequence[tuple[int, int]] = (),
    keypoint_threshold: float = KEYPOINT_THRESHOLD,
) -> Image.Image:
    """Translucent masks with outlines, boxes, keypoints joined by their skeleton, and captions
    ``"class score"`` over an image.

    Args:
        image: float ``[3, H, W]`` in 0..1, or an RGB PIL image (drawn on a copy: a large scene is
            never held as floats).
        boxes: ``[N, 4]`` xyxy pixels.
        masks: ``[N, H, W]`` or ``[N, 1, H, W]``, binary or probabilities (thresholded at
            ``mask_threshold``), or :class:`~maskrcnn.structures.CroppedMasks` (a predictor's).
        labels: ``int64 [N]``, 1-based indices into ``class_names``.
        scores: ``[N]`` detection scores (shown with two decimals).
        class_names: names of labels 1..K.
        colors: one RGB colour per instance (default: :func:`random_colors`).
        alpha: mask opacity.
        keypoints: ``[N, K, 3]`` ``(x, y, v)`` pixels (continuous coordinates: the centre of the
            top-left pixel is ``(0.5, 0.5)``); a keypoint is drawn (a dot in the instance's colour)
            where ``v > 0``: ground truth's visibility, or a detection's ``1``.
        keypoints_scores: ``[N, K]`` detected keypoints' scores: only those above
            ``keypoint_threshold`` are drawn.
        skeleton: 0-based keypoint pairs joined by a line where both ends are drawn.
    """
    n = next((len(t) for t in (boxes, masks, labels, keypoints) if t is not None), 0)
    colors = list(colors) if colors is not None else random_colors(n)
    # The picture as bytes, blended region by region: each mask's region goes to floats and back, so
    # memory is the picture's bytes and not four times them.
    pixels = np.array(image.convert("RGB") if isinstance(image, Image.Image) else to_pil(image))
    extents: list[list[int]] = []
    if masks is not None and n:
        cropped = _cropped(masks, mask_threshold)
        extents = cropped.boxes().to(torch.int64).tolist()
        height, width = cropped.image_size
        for k, (crop, (y0, x0)) in enumerate(cropped):
            if not crop.numel():
                continue  # an empty mask
            # Only the mask's extent and a one-pixel ring (where the outline's erosion looks) are
            # touched: a 2048-px photo with 100 masks is blended in tens of ms, not seconds.
            ys = slice(max(y0 - 1, 0), min(y0 + crop.shape[0] + 1, height))
            xs = slice(max(x0 - 1, 0), min(x0 + crop.shape[1] + 1, width))
            inside = torch.zeros((ys.stop - ys.start, xs.stop - xs.start), dtype=torch.bool)
            top, left = y0 - ys.start, x0 - xs.start
            inside[top : top + crop.shape[0], left : left + crop.shape[1]] = crop.cpu()
            patch = torch.from_numpy(pixels[ys, xs]).float()  # [h, w, 3], 0..255
            color = torch.tensor(colors[k], dtype=torch.float32)
            # One pass over the region, no gathers: pixel + weight * (colour - pixel), weight alpha
            # inside the mask, 1 on its outline and 0 elsewhere.
            weight = inside.float().mul_(alpha).masked_fill_(_outline(inside), 1.0)[..., None]
            patch.lerp_(color.expand_as(patch), weight)
            pixels[ys, xs] = patch.add_(0.5).to(torch.uint8).numpy()
    picture = Image.fromarray(pixels, mode="RGB")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for k in range(n):
        color = tuple(colors[k])
        if boxes is not None:
            x1, y1, x2, y2 = (float(v) for v in boxes[k])
            # The last pixel inside is x2 - 1; a box under a pixel wide (low score thresholds keep
            # such boxes) is drawn as one pixel, not handed to Pillow inverted.
            draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=color, width=1)
            anchor_xy = (x1 + 2, y1 + 1)
        elif extents:
            x0, y0, x1, _ = extents[k]
            anchor_xy = (float(x0), float(y0)) if x1 > x0 else (0.0, 0.0)
        else:
            continue
        caption = []
        if labels is not None:
            label = int(labels[k])
            caption.append(class_names[label - 1] if 0 < label <= len(class_names) else str(label))
        if scores is not None:
            caption.append(f"{float(scores[k]):.2f}")
        if caption:
            text = " ".join(caption)
            left, top, right, bottom = draw.textbbox(anchor_xy, text, font=font)
            draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=(0, 0, 0))
            draw.text(anchor_xy, text, fill=color, font=font)
    # Keypoints last, as detectron2 draws them: a caption at the top of a box must not hide a head.
    if keypoints is not None and n:
        _draw_keypoints(draw, picture.size, keypoints, keypoints_scores, skeleton, keypoint_threshold, colors)
    return picture


def _draw_keypoints(
    draw: ImageDraw.ImageDraw,
    size: tuple[int, int],
    keypoints: Tensor,
    scores: Tensor | None,
    skeleton: Sequence[tuple[int, int]],
    threshold: float,
    colors: Sequence[tuple[int, int, int]],
) -> None:
    """The skeleton's lines, then the keypoints' dots over them, in each instance's colour (see
    :func:`draw_instances`)."""
    points = keypoints.detach().to("cpu", torch.float64)
    shown = points[..., 2] > 0  # [N, K]
    if scores is not None:
        shown &= scores.detach().cpu() > threshold
    # Each keypoint is drawn at the pixel that holds it (continuous coordinates: pixel column x covers
    # x .. x + 1); Pillow takes whole numbers as pixel indices (and would truncate fractions).
    xy = points[..., :2].floor().to(torch.int64).tolist()
    shown_list = shown.tolist()
    # Lines and dots grow with the picture, so that they stay visible on a large photo.
    width = max(1, round(max(size) / 400))
    radius = width + 1
    for k in range(len(points)):
        color = tuple(colors[k])
        for a, b in skeleton:
            if shown_list[k][a] and shown_list[k][b]:
                draw.line([tuple(xy[k][a]), tuple(xy[k][b])], fill=color, width=width)
        for (x, y), visible in zip(xy[k], shown_list[k], strict=True):
            if visible:
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color)


def image_grid(
    pictures: Sequence[Image.Image], *, columns: int = 4, titles: Sequence[str] | None = None, cell: int = 256
) -> Image.Image:
    """Tile pictures (each scaled to fit a ``cell``-pixel square, aspect kept) with optional titles."""
    font = ImageFont.load_default()
    title_height = 14 if titles else 0
    rows = max(1, -(-len(pictures) // columns))
    grid = Image.new("RGB", (columns * cell, rows * (cell + title_height)), (32, 32, 32))
    draw = ImageDraw.Draw(grid)
    for i, pic in enumerate(pictures):
        scale = cell / max(pic.size)
        thumb = pic.resize(
            (max(1, round(pic.width * scale)), max(1, round(pic.height * scale))), Image.BILINEAR
        )
        x, y = (i % columns) * cell, (i // columns) * (cell + title_height)
        grid.paste(thumb, (x + (cell - thumb.width) // 2, y + title_height + (cell - thumb.height) // 2))
        if titles:
            draw.text((x + 2, y + 1), titles[i][: cell // 6], fill=(230, 230, 230), font=font)
    return grid


def draw_anchors(
    image: Tensor,
    anchors: Sequence[Tensor],
    *,
    positive: Tensor | None = None,
    gt_boxes: Tensor | None = None,
) -> Image.Image:
    """Anchors over an image: per level, those at the location nearest the centre (one colour per level),
    the anchors matched to objects (``positive``, green) and the ground-truth boxes (white).

    Args:
        image: float ``[3, H, W]``, in the coordinates of the anchors (the resized image).
        anchors: per level ``[A_l, 4]`` anchors.
        positive: ``[P, 4]`` anchors labelled positive.
        gt_boxes: ``[G, 4]`` ground-truth boxes.
    """
    picture = to_pil(image)
    draw = ImageDraw.Draw(picture)
    h, w = image.shape[-2:]
    centre = torch.tensor([w / 2, h / 2])
    for color, level in zip(random_colors(len(anchors), seed=1), anchors, strict=False):
        centres = (level[:, :2] + level[:, 2:]) / 2
        nearest = (centres - centre).abs().sum(dim=1)
        for box in level[nearest == nearest.min()]:
            draw.rectangle([float(v) for v in box], outline=color, width=1)
    for box in positive if positive is not None else []:
        draw.rectangle([float(v) for v in box], outline=(0, 255, 0), width=1)
    for box in gt_boxes if gt_boxes is not None else []:
        draw.rectangle([float(v) for v in box], outline=(255, 255, 255), width=2)
    return picture


def color_splash(
    image: Tensor | Image.Image, masks: Tensor | CroppedMasks, *, threshold: float = 0.5
) -> Tensor | Image.Image:
    """Grey image with the original colours kept inside the masks (the classic "color splash").

    Args:
        image: float ``[3, H, W]`` in 0..1, or an RGB PIL image.
        masks: ``[N, H, W]`` or ``[N, 1, H, W]`` binary masks or probabilities (thresholded at
            ``threshold``), or :class:`~maskrcnn.structures.CroppedMasks`.

    Returns:
        float ``[3, H, W]`` for a tensor; for a PIL image an RGB PIL image (made region by region in
        bytes: a large scene is never held as floats). Grey is ITU-R 601 luma (0.299 R + 0.587 G +
        0.114 B) either way.
    """
    if isinstance(image, Image.Image):
        colour = np.asarray(image.convert("RGB"))
        out = np.array(image.convert("L").convert("RGB"))
        if len(masks):
            for crop, (y, x) in _cropped(masks, threshold):
                inside = crop.cpu().numpy()
                region = (slice(y, y + inside.shape[0]), slice(x, x + inside.shape[1]))
                out[region][inside] = colour[region][inside]
        return Image.fromarray(out, mode="RGB")
    grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).expand_as(image)
    if not len(masks):
        return grey.clone()
    inside = _cropped(masks, threshold).union().cpu()
    return torch.where(inside, image, grey)


def _cropped(masks: Tensor | CroppedMasks, threshold: float) -> CroppedMasks:
    """Masks of any accepted form as crops: bool as they are, probabilities at ``>= threshold``."""
    if isinstance(masks, CroppedMasks):
        return masks
    masks = masks.detach().cpu()
    masks = masks.reshape(-1, *masks.shape[-2:])
    return CroppedMasks.from_dense(masks if masks.dtype == torch.bool else masks.float() >= threshold)


# The training losses drawn, in this order (the total first, thicker).
_LOSS_KEYS = ("loss", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")


def loss_curve_figure(history: Sequence[Mapping[str, Any]]) -> Any:
    """A matplotlib ``Figure`` of the training losses against the step (log scale), with the
    validation loss as points, from a run's log records (``kind`` ``train`` / ``validation``); ``None``
    when there is no training record. Save it with ``figure.savefig(path)``."""
    steps = [r for r in history if r.get("kind") == "train"]
    if not steps:
        return None
    # The object-oriented API without pyplot: no global backend or figure registry is touched.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), layout="tight")
    ax = figure.subplots()
    x = [r["step"] for r in steps]
    for key in _LOSS_KEYS:
        if key in steps[0]:
            ax.plot(x, [r[key] for r in steps], label=key, linewidth=2 if key == "loss" else 1)
    val = [r for r in history if r.get("kind") == "validation" and "val_loss" in r]
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "ko--", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return figure


def validation_history_figure(history: Sequence[Mapping[str, Any]]) -> Any:
    """A matplotlib ``Figure`` of each validation's AP and AP50 (box, mask, keypoint) against the step,
    from a run's log records; ``None`` without a validation that has metrics."""
    val = [r for r in history if r.get("kind") == "validation" and r.get("metrics")]
    if not val:
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4), layout="tight")
    ax = figure.subplots()
    for iou_type, title in (("bbox", "box"), ("segm", "mask"), ("keypoints", "keypoint")):
        for key, style in (("AP", "o-"), ("AP50", "s--")):
            points = [
                (r["step"], r["metrics"][iou_type][key])
                for r in val
                if r["metrics"].get(iou_type, {}).get(key) is not None
            ]
            if points:
                ax.plot(*zip(*points, strict=True), style, label=f"{title} {key}")
    ax.set_xlabel("step")
    ax.set_ylabel("validation AP")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return figure
