"""Rectangles with known detections, shared by the evaluation tests (and ``distributed_evaluation``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from maskrcnn.config import ModelConfig
from maskrcnn.data import DataError, InstanceDataset
from maskrcnn.data.keypoints import KeypointSpec
from tests.modeling.helpers import tiny_config

H, W = 40, 50  # not square: a transposed RLE would show

# Rectangles are (y0, y1, x0, x1), end exclusive. Image 2 has no object.
SCENE = [
    [(1, (5, 25, 5, 25)), (2, (10, 30, 30, 45))],
    [(1, (8, 36, 10, 40))],
    [],
]


def small_config() -> ModelConfig:
    """The tiny test model at 64 px: a quarter of the work of the 128 px one."""
    cfg = tiny_config()
    return dataclasses.replace(cfg, transform=dataclasses.replace(cfg.transform, min_size=(64,), max_size=64))


def rect_mask(rect):
    y0, y1, x0, x1 = rect
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


class Rectangles(InstanceDataset):
    """In-memory images of rectangles; image ``i`` is filled with ``i / 10`` so a model can tell them
    apart. ``scene[i]`` lists ``(label, rect)`` or ``(label, rect, iscrowd)``."""

    def __init__(self, scene=SCENE, names=("a", "b"), category_ids=None, bad=(), transforms=None):
        super().__init__(transforms=transforms)
        for name in names:
            self.add_class(name)
        if category_ids is not None:
            self.category_ids = list(category_ids)
        for objects in scene:
            self.add_image(None, height=H, width=W, objects=objects)
        self.bad = set(bad)

    def load_image(self, index):
        if index in self.bad:
            raise DataError(f"image {index}: broken on purpose")
        return torch.full((3, H, W), index / 10)

    def load_masks(self, index):
        objects = self.image_info[index]["objects"]
        masks = torch.from_numpy(
            np.stack([rect_mask(o[1]) for o in objects]) if objects else np.zeros((0, H, W))
        )
        labels = torch.tensor([o[0] for o in objects], dtype=torch.int64)
        crowd = torch.tensor([o[2] if len(o) > 2 else 0 for o in objects], dtype=torch.int64)
        return masks, labels, crowd


def detection(rects, labels, scores):
    """A model output for rectangles: boxes xyxy, masks ``[D, 1, H, W]`` probabilities."""
    masks = torch.zeros(len(rects), 1, H, W)
    for k, rect in enumerate(rects):
        masks[k, 0] = torch.from_numpy(rect_mask(rect)) * 0.9
    boxes = torch.tensor([[x0, y0, x1, y1] for y0, y1, x0, x1 in rects], dtype=torch.float32).reshape(-1, 4)
    return {
        "boxes": boxes,
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "masks": masks,
    }


def perfect(scene=SCENE):
    """One exact detection per object, scores decreasing."""
    out, score = [], 0.9
    for objects in scene:
        rects = [o[1] for o in objects]
        scores = [score - 0.05 * k for k in range(len(rects))]
        out.append(detection(rects, [o[0] for o in objects], scores))
        score -= 0.1
    return out


def with_false_positive():
    dets = perfect()
    dets[2] = detection([(0, 20, 0, 20)], [1], [0.95])  # on the empty image, the highest score
    return dets


class Oracle(nn.Module):
    """Returns the exact rectangles of each image (told apart by their fill value)."""

    def __init__(self, scene=SCENE):
        super().__init__()
        self.dets = perfect(scene)
        self.calls = []

    def forward(self, images):
        self.calls.append((self.training, torch.is_inference_mode_enabled(), len(images)))
        return [self.dets[round(float(image[0, 0, 0]) * 10)] for image in images]


# ----------------------------------------------------------------------------------------------------
# Keypoints: three per rectangle, the last two labelled visible, the middle one labelled hidden.

KEYPOINT_SPEC = KeypointSpec(("corner", "centre", "far"), skeleton=((0, 1), (1, 2)))


def rect_keypoints(rect):
    """``[(x, y, v)] * 3``: near the top-left corner, the centre (hidden), near the bottom-right one."""
    y0, y1, x0, x1 = rect
    return [(x0 + 2.0, y0 + 2.0, 2), ((x0 + x1) / 2, (y0 + y1) / 2, 1), (x1 - 2.0, y1 - 2.0, 2)]


def scene_keypoints(objects):
    """float ``[N, 3, 3]`` of one image's objects."""
    return torch.tensor([rect_keypoints(o[1]) for o in objects], dtype=torch.float32).reshape(-1, 3, 3)


class Landmarks(Rectangles):
    """:class:`Rectangles` with :func:`rect_keypoints` on each object."""

    def __init__(self, scene=SCENE, spec=KEYPOINT_SPEC, **kwargs):
        super().__init__(scene, **kwargs)
        self.keypoint_spec = spec

    def load_keypoints(self, index):
        return scene_keypoints(self.image_info[index]["objects"])


def with_keypoints(dets, scene=SCENE, shift=0.0):
    """``dets`` (one per image of ``scene``, one per object) with the objects' keypoints, ``shift``
    pixels to the right, as a keypoint head gives them: ``(x, y, 1)`` and a score per keypoint."""
    for det, objects in zip(dets, scene, strict=True):
        points = scene_keypoints(objects)
        points[..., 0] += shift
        points[..., 2] = 1.0
        det["keypoints"] = points
        det["keypoints_scores"] = torch.full(points.shape[:2], 3.0)
    return dets


def without_masks(det):
    """A detection as a keypoint-only model gives it: no ``masks``."""
    return {key: value for key, value in det.items() if key != "masks"}


def keypoint_detection(rects, labels, scores):
    """A keypoint-only model's detection of rectangles: boxes, keypoints, no masks."""
    scene = [[(label, rect) for label, rect in zip(labels, rects, strict=True)]]
    return without_masks(with_keypoints([detection(rects, labels, scores)], scene)[0])
