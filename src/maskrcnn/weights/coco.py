"""The COCO category names of torchvision's COCO checkpoints, in label order.

torchvision's detection models trained on COCO have 91 outputs: label 0 is the background and label k is
COCO category id k, so the ten ids COCO never used (12, 26, 29, 30, 45, 66, 68, 69, 71, 83) are outputs
too, named ``N/A`` (torchvision's ``_COCO_CATEGORIES``, the ``categories`` of its ``COCO_V1`` weights'
meta). Keeping the gaps keeps label == category id, so results written with the labels are COCO results.
"""

from __future__ import annotations

__all__ = ["COCO_CATEGORY_IDS", "COCO_CLASS_NAMES", "UNUSED_CLASS", "used_labels"]

# The name of a label that no class was trained for (a gap in COCO's ids): never reported.
UNUSED_CLASS = "N/A"

# Labels 1..90 (label 0, the background, is not a class).
COCO_CLASS_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A",
    "N/A", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

# The COCO category id of each label: the label itself.
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(range(1, len(COCO_CLASS_NAMES) + 1))


def used_labels(class_names: list[str] | tuple[str, ...]) -> list[int]:
    """The labels (1-based) of ``class_names`` that are real classes, not :data:`UNUSED_CLASS` gaps."""
    return [k for k, name in enumerate(class_names, start=1) if name != UNUSED_CLASS]
