"""Pictures for ``maskrcnn inspect data``: a dataset's ground truth, and a model's anchors over an image."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from PIL import Image

from maskrcnn.config import ModelConfig, override
from maskrcnn.data import InstanceDataset
from maskrcnn.modeling import build_model
from maskrcnn.ops import box_iou
from maskrcnn.visualize import draw_anchors, draw_instances, image_grid

__all__ = ["anchor_picture", "ground_truth_grid"]


def ground_truth_grid(
    dataset: InstanceDataset, *, count: int, columns: int, shuffle: bool = False, seed: int = 0
) -> tuple[Image.Image, list[int]]:
    """A grid of ``count`` items (the first ones, or random ones with ``shuffle``) with their masks,
    boxes, class names and labelled keypoints joined by the skeleton (a dataset with a
    ``keypoint_spec``), as stored (no augmentation); returns the picture and the indices shown."""
    count = min(count, len(dataset))
    if shuffle:
        generator = torch.Generator().manual_seed(seed)
        indices = torch.randperm(len(dataset), generator=generator)[:count].tolist()
    else:
        indices = list(range(count))
    spec = dataset.keypoint_spec
    transforms, dataset.transforms = dataset.transforms, None
    try:
        pictures, titles = [], []
        for index in indices:
            image, target = dataset[index]
            pictures.append(
                draw_instances(
                    image,
                    boxes=target["boxes"],
                    masks=target["masks"],
                    labels=target["labels"],
                    class_names=dataset.class_names,
                    keypoints=target.get("keypoints"),  # drawn where labelled (visibility > 0)
                    skeleton=spec.skeleton if spec is not None else (),
                )
            )
            titles.append(f"{dataset.image_reference(index)} ({len(target['labels'])})")
    finally:
        dataset.transforms = transforms
    return image_grid(pictures, columns=columns, titles=titles), indices


def anchor_picture(dataset: InstanceDataset, index: int, assignments: Mapping[str, str]) -> Image.Image:
    """The anchors of the model a config describes, over item ``index`` resized as that model resizes it:
    per FPN level the anchors at the location nearest the centre, the anchors the RPN's matcher labels
    positive for the ground truth (green) and the ground-truth boxes.

    Args:
        assignments: model-config overrides (``--set`` texts, e.g. ``{"anchors.sizes": "[[16], ...]"}``).
    """
    cfg = override(ModelConfig(), assignments)
    model = build_model(cfg).eval()
    image, target = dataset[index]
    # The picture shows the resized image in its own colours; the model sees it normalised and padded.
    resized, resized_target = model.transform.resize(image, dict(target))
    with torch.inference_mode():
        batch, _ = model.transform([image])
        maps = list(model.backbone(batch.tensors).values())
        anchors = model.rpn.anchor_generator(batch, maps)[0]
    counts = [
        m.shape[-2] * m.shape[-1] * n
        for m, n in zip(maps, model.rpn.anchor_generator.num_anchors_per_location(), strict=True)
    ]
    gt = resized_target["boxes"]
    positive = anchors[:0]
    if len(gt):
        matched = model.rpn.proposal_matcher(box_iou(gt, anchors))
        positive = anchors[matched >= 0]
    return draw_anchors(resized, anchors.split(counts), positive=positive, gt_boxes=gt)
