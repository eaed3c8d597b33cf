"""Model-side input transform: normalise, resize, batch; and map detections back to the input images.

The arithmetic is torchvision's ``GeneralizedRCNNTransform`` (normalise, then bilinear resize by one
scale factor, nearest for masks, float32 size ratios for boxes, zero padding to a multiple of 32), so
that the same weights see the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.ops import paste_masks_in_image
from maskrcnn.structures import ImageList

__all__ = ["RCNNTransform", "resize_boxes", "resize_keypoints"]


def resize_boxes(boxes: Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> Tensor:
    """Scale ``[N, 4]`` xyxy boxes from an ``(h, w)`` image to another size.

    The ratios are computed in float32, as the reference implementation does, whatever the boxes' dtype.
    """
    ratio_h, ratio_w = (
        torch.tensor(float(new), dtype=torch.float32, device=boxes.device)
        / torch.tensor(float(old), dtype=torch.float32, device=boxes.device)
        for new, old in zip(new_size, original_size, strict=True)
    )
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


def resize_keypoints(keypoints: Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> Tensor:
    """Scale the ``x, y`` of ``[..., K, 3]`` keypoints from an ``(h, w)`` image to another size (float32
    ratios, as for boxes); the third column (visibility, or 1) is kept."""
    ratio_h, ratio_w = (
        torch.tensor(float(new), dtype=torch.float32, device=keypoints.device)
        / torch.tensor(float(old), dtype=torch.float32, device=keypoints.device)
        for new, old in zip(new_size, original_size, strict=True)
    )
    resized = keypoints.clone()
    resized[..., 0] *= ratio_w
    resized[..., 1] *= ratio_h
    return resized


class RCNNTransform(nn.Module):
    """Normalise, resize and batch images (and their targets); undo the resize on detections.

    Args:
        min_size: short-side lengths; training picks one at random per image, evaluation uses the last.
        max_size: bound on the long side.
        image_mean: per-channel mean subtracted from 0..1 images.
        image_std: per-channel standard deviation divided by.
        size_divisible: the padded batch's height and width are multiples of this (the FPN's coarsest
            stride, so that every level's map aligns with the image).
    """

    def __init__(
        self,
        *,
        min_size: Sequence[int],
        max_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        size_divisible: int = 32,
    ) -> None:
        super().__init__()
        self.min_size = tuple(int(s) for s in min_size)
        self.max_size = int(max_size)
        self.image_mean = tuple(float(m) for m in image_mean)
        self.image_std = tuple(float(s) for s in image_std)
        self.size_divisible = int(size_divisible)

    def extra_repr(self) -> str:
        return (
            f"min_size={self.min_size}, max_size={self.max_size}, "
            f"mean={self.image_mean}, std={self.image_std}"
        )

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        """Normalise and resize each ``[C, H, W]`` image (and its target), then pad them into a batch.

        Returns:
            the batch (``image_sizes`` are the resized sizes before padding) and copies of the targets
            with ``boxes`` and ``keypoints`` scaled and ``masks`` resized (nearest), other fields as they
            were.
        """
        resized, new_targets = [], []
        for i, image in enumerate(images):
            target = dict(targets[i]) if targets is not None else None
            image, target = self.resize(self.normalize(image), target)
            resized.append(image)
            if target is not None:
                new_targets.append(target)
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in resized]
        return ImageList(self.batch_images(resized), sizes), (new_targets if targets is not None else None)

    def normalize(self, image: Tensor) -> Tensor:
        """``(image - mean) / std`` per channel."""
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def choose_min_size(self) -> int:
        if not self.training:
            return self.min_size[-1]
        # torch's RNG (not Python's) so that seeding torch makes the choice reproducible; drawn even for a
        # single size so that the random stream matches the reference implementation's.
        return self.min_size[int(torch.empty(1).uniform_(0.0, float(len(self.min_size))).item())]

    def resize(
        self, image: Tensor, target: dict[str, Tensor] | None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Scale so the short side is ``min_size`` unless the long side would exceed ``max_size``."""
        h, w = image.shape[-2:]
        size = self.choose_min_size()
        scale = min(size / min(h, w), self.max_size / max(h, w))
        # ``F.interpolate(scale_factor=s, recompute_scale_factor=True)`` makes each side floor(side * s);
        # a very thin image (3000 x 8 under max_size 256) would round a side to 0 pixels, which
        # interpolate rejects: such sides become 1 pixel, every other image resizes exactly as before.
        if math.floor(h * scale) >= 1 and math.floor(w * scale) >= 1:
            resize_args: dict = {"scale_factor": scale, "recompute_scale_factor": True}
        else:
            resize_args = {"size": (max(1, math.floor(h * scale)), max(1, math.floor(w * scale)))}
        image = F.interpolate(image[None], mode="bilinear", align_corners=False, **resize_args)[0]
        if target is None:
            return image, None
        target["boxes"] = resize_boxes(target["boxes"], (h, w), image.shape[-2:])
        if "keypoints" in target:
            target["keypoints"] = resize_keypoints(target["keypoints"], (h, w), image.shape[-2:])
        if "masks" in target:
            masks = target["masks"]
            # Nearest keeps masks binary; the same arguments give the image's exact size.
            target["masks"] = F.interpolate(masks[:, None].float(), **resize_args)[:, 0].to(torch.uint8)
        return image, target

    def batch_images(self, images: Sequence[Tensor]) -> Tensor:
        """Zero-pad ``[C, h_i, w_i]`` images into ``[N, C, H, W]``; H, W multiples of ``size_divisible``."""
        stride = self.size_divisible
        channels = max(img.shape[0] for img in images)
        height = int(math.ceil(max(img.shape[1] for img in images) / stride) * stride)
        width = int(math.ceil(max(img.shape[2] for img in images) / stride) * stride)
        batch = images[0].new_zeros((len(images), channels, height, width))
        for slot, img in zip(batch, images, strict=True):
            slot[: img.shape[0], : img.shape[1], : img.shape[2]].copy_(img)
        return batch

    def postprocess(
        self,
        detections: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
        *,
        paste_masks: bool = True,
    ) -> list[dict[str, Tensor]]:
        """Boxes and keypoints back to the input images' pixels; ``[D, 1, M, M]`` mask probabilities
        pasted into ``[D, 1, H, W]`` full-size masks (kept as they are when not ``paste_masks``)."""
        for det, size, original in zip(detections, image_sizes, original_sizes, strict=True):
            det["boxes"] = resize_boxes(det["boxes"], size, original)
            if "keypoints" in det:
                det["keypoints"] = resize_keypoints(det["keypoints"], size, original)
            if paste_masks and "masks" in det:
                det["masks"] = paste_masks_in_image(det["masks"], det["boxes"], original)
        return detections
