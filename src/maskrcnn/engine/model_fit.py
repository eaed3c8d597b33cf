"""What the training data decides about the model: its classes and its keypoints (and, for a model
without masks, the metric that picks the best checkpoint)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from maskrcnn.config import Config
from maskrcnn.data import InstanceDataset
from maskrcnn.data.dataset import DataError, base_dataset
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.weights import LoadReport

__all__ = ["fit_model_to_data", "keypoint_record", "keypoint_spec_of", "load_notes"]


def keypoint_spec_of(dataset: Any) -> KeypointSpec | None:
    """The keypoints of a dataset, through its subsets and wrappers (``None``: it has none)."""
    return getattr(base_dataset(dataset), "keypoint_spec", None)


def fit_model_to_data(cfg: Config, train_data: InstanceDataset, say: Callable[[str], None]) -> None:
    """Set ``cfg.model.num_classes`` to the training data's classes + background and
    ``roi_heads.num_keypoints`` to its keypoints, saying what changed.

    Raises:
        DataError: the config asks for keypoints that the data does not have.
    """
    wanted = len(train_data.class_names) + 1
    if cfg.model.num_classes != wanted:
        say(
            f"model.num_classes set to {wanted} ({wanted - 1} classes in the training data + "
            f"background; the config said {cfg.model.num_classes})"
        )
        cfg.model.num_classes = wanted
    heads = cfg.model.roi_heads
    spec = keypoint_spec_of(train_data)
    if spec is None:
        if heads.num_keypoints:
            raise DataError(
                f"model.roi_heads.num_keypoints={heads.num_keypoints} but the training data has no keypoints "
                "(COCO keypoints, LabelMe points or YOLO pose labels); set it to 0 for a model without them"
            )
        return
    if heads.num_keypoints != spec.num_keypoints:
        say(
            f"model.roi_heads.num_keypoints set to {spec.num_keypoints} (the training data's keypoints: "
            f"{', '.join(spec.names)})"
        )
        heads.num_keypoints = spec.num_keypoints
    if not heads.mask_head and cfg.train.best_metric.startswith("segm."):
        say(f"train.best_metric set to keypoints.AP (a model without masks has no {cfg.train.best_metric})")
        cfg.train.best_metric = "keypoints.AP"


def keypoint_record(dataset: Any) -> dict[str, Any]:
    """What a checkpoint keeps of the data's keypoints (its ``extra["keypoints"]``): names, skeleton,
    mirror pairs and sigmas, to draw and evaluate with; empty without keypoints."""
    spec = keypoint_spec_of(dataset)
    return {"keypoints": spec.to_dict()} if spec is not None else {}


def load_notes(report: LoadReport) -> str:
    """What of the initial weights did not load as it was, for the line a training prints: the layers
    re-initialised for other classes or keypoints, the head branches new to the model or left out."""
    notes = []
    if report.reinitialised:
        notes.append(f"re-initialised {len(report.reinitialised)} class- or keypoint-dependent tensors")
    for what, keys in (("new (not in the weights)", report.initialised), ("left out", report.ignored)):
        branches = sorted({k.split(".")[1] for k in keys if k.startswith("roi_heads.")})
        if branches:
            notes.append(f"{' and '.join(branches)} {what}")
    return "".join(f"; {n}" for n in notes)
