"""Evaluating a model on a dataset: the pass over the data, its sharing out under torch.distributed, and
the :class:`Evaluation` it returns.

:func:`evaluate` is what ``maskrcnn evaluate`` runs and what training calls for validation.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Subset

from maskrcnn.config import tiling_problem
from maskrcnn.data.dataset import base_dataset, without_transforms
from maskrcnn.data.formats.export import CocoBuilder
from maskrcnn.engine.evaluation.coco import (
    IOU_TYPES,
    MASK_THRESHOLD,
    CocoScores,
    coco_from_builder,
    coco_scores,
    detections_to_results,
)
from maskrcnn.engine.evaluation.confusion import confusion_matrix
from maskrcnn.engine.evaluation.report import SECTION_TITLES, metrics_summary
from maskrcnn.engine.evaluation.semantic import SemanticScores, semantic_scores
from maskrcnn.engine.inference import (
    NO_MASKS_FOR_TILES,
    binary_masks,
    gives_masks,
    run_model,
    with_binary_masks,
)
from maskrcnn.engine.precision import resolve_precision
from maskrcnn.engine.tiling import detect_tiled
from maskrcnn.progress import bar as progress_bar
from maskrcnn.structures import CroppedMasks
from maskrcnn.weights.coco import UNUSED_CLASS

__all__ = ["Evaluation", "evaluate", "match_classes"]

log = logging.getLogger(__name__)

Metrics = dict[str, dict[str, float | None]]
Result = dict[str, Any]


@dataclass
class Evaluation:
    """What :func:`evaluate` measured.

    Attributes:
        metrics: ``{"bbox": {...}, "segm": {...}, "keypoints": {...}}`` (see
            :func:`~maskrcnn.engine.evaluation.coco_scores`): ``bbox`` always, ``segm`` when the model
            gives masks, ``keypoints`` when it gives keypoints and the dataset has them.
        per_class: one row per class: ``class``, ``category_id``, ``instances`` (non-crowd ground truth),
            ``box_AP``, ``box_AP50``, with masks ``mask_AP``, ``mask_AP50``, with keypoints
            ``keypoint_AP``, ``keypoint_AP50`` (``None`` without ground truth), with ``semantic`` its
            ``semantic_IoU``.
        results: the COCO results (``results.json``), with the dataset's own category ids.
        confusion: ``int64 [K + 1, K + 1]`` confusion counts, by mask IoU (by box IoU for a model
            without masks; see :func:`~maskrcnn.engine.evaluation.confusion_matrix`).
        pr_curves: precision-recall curves (see :class:`~maskrcnn.engine.evaluation.CocoScores`).
        class_names: names of labels 1..K.
        num_images: images evaluated.
        skipped: messages of the images that could not be read (left out of the evaluation).
        score_threshold: detection score from which the confusion matrix counts a detection.
        seconds: wall time of the whole evaluation.
        unscored: the dataset's classes the model has no class for (left out of the AP; see
            :func:`match_classes`).
        semantic: the class maps' pixel IoU (:mod:`~maskrcnn.engine.evaluation.semantic`), when asked
            for and the model gives masks; else ``None``.
        ground_truth: the COCO ground truth scored against (a COCO instances dict; rank 0 only).
    """

    metrics: Metrics
    per_class: list[dict[str, Any]]
    results: list[Result]
    confusion: np.ndarray
    pr_curves: dict[str, Any]
    class_names: list[str]
    num_images: int
    skipped: list[str] = field(default_factory=list)
    score_threshold: float = 0.5
    seconds: float = 0.0
    unscored: list[str] = field(default_factory=list)
    semantic: SemanticScores | None = None
    ground_truth: dict[str, Any] | None = None

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def confusion_type(self) -> str:
        """What the confusion matrix matched by: ``segm`` (masks) or, without masks, ``bbox``."""
        return "segm" if "segm" in self.metrics else "bbox"

    def summary(self) -> str:
        """One line: AP, AP50, AP75 of each type scored (e.g. for the training log)."""
        return metrics_summary(self.metrics, keys=("AP", "AP50", "AP75"))


class _Detected(NamedTuple):
    """What one process's pass over (its share of) the data found: what the processes gather.
    ``outputs``: what the model's detections carried besides boxes (``segm``: masks, ``keypoints``)."""

    ground_truth: CocoBuilder
    results: list[Result]
    skipped: list[str]
    outputs: set[str]


def match_classes(
    model_classes: Sequence[str], dataset_classes: Sequence[str]
) -> tuple[list[int], list[str]]:
    """Which dataset class each of a model's classes is, by name (exactly, else ignoring case).

    Args:
        model_classes: the model's names of labels 1..M (``N/A`` gaps match nothing).
        dataset_classes: the dataset's names of labels 1..K.

    Returns:
        ``(label_map, unscored)``: ``label_map[m - 1]`` is the dataset label of model label ``m`` (0: not
        a dataset class, its detections are dropped); ``unscored`` lists the dataset classes no model
        class matches.
    """
    exact = {name: k for k, name in enumerate(dataset_classes, start=1)}
    folded = {name.casefold(): k for k, name in enumerate(dataset_classes, start=1)}
    label_map = [
        0 if name == UNUSED_CLASS else exact.get(name, folded.get(name.casefold(), 0))
        for name in model_classes
    ]
    matched = set(label_map)
    unscored = [name for k, name in enumerate(dataset_classes, start=1) if k not in matched]
    return label_map, unscored


def evaluate(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 2,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = True,
    score_threshold_for_confusion: float = 0.5,
    label_map: Sequence[int] | None = None,
    precision: str = "fp32",
    tile: int | None = None,
    tile_overlap: int | None = None,
    semantic_threshold: float | None = None,
) -> Evaluation:
    """COCO box, mask and keypoint AP of ``model`` on ``dataset``, with per-class AP, curves and
    confusion.

    What is scored follows the model's detections: boxes always, masks when they carry ``masks`` (a
    keypoint-only model has none), keypoints (OKS AP, with the sigmas of the dataset's
    :class:`~maskrcnn.data.keypoints.KeypointSpec`) when they carry ``keypoints`` and the dataset has a
    ``keypoint_spec``.

    The model runs in evaluation mode under ``torch.inference_mode()`` (its train / eval mode is restored
    afterwards); images go to ``device`` (where the model must already be). The dataset is read once,
    in order and without augmentation; images that cannot be read are left out and listed in
    ``skipped``.

    In a process group (``torchrun``), every process must call this: each runs the model on its
    contiguous share of the dataset, rank 0 gathers the ground truth and the detections in dataset
    order and scores them (the same numbers as one process), and the others receive the evaluation
    without its ``results`` (which can be large).

    Args:
        model: a Mask R-CNN (``model(images)`` -> per image ``boxes``, ``labels``, ``scores``, and
            ``masks`` and / or ``keypoints`` with ``keypoints_scores``).
        dataset: an ``InstanceDataset`` (or a ``Subset`` of one): ``class_names`` and
            ``coco_category_ids()``.
        batch_size: images per forward pass.
        device: where the images go.
        num_workers: data-loading processes.
        progress: show a progress bar (stderr).
        score_threshold_for_confusion: detections scoring below this are left out of the confusion
            matrix (COCO AP uses every detection).
        label_map: when the model's labels are not the dataset's (a COCO model on a dataset of some
            COCO classes): the dataset label of each model label (see :func:`match_classes`); detections
            mapped to 0 are dropped and the dataset classes nothing maps to are left out of the AP.
        precision: ``fp32`` (the default: the exact figures, as training's validation reports them),
            ``auto``, ``bf16`` or ``fp16`` (see :mod:`maskrcnn.engine.precision`).
        tile: detect in tiles of this many pixels, merged per image (:mod:`maskrcnn.engine.tiling`; not
            for a model without masks); ``batch_size`` is then the tiles per forward pass. ``None``:
            whole images.
        tile_overlap: pixels neighbouring tiles share (``None``: a quarter of the tile).
        semantic_threshold: also score the class maps of the detections scoring at least this
            (:attr:`Evaluation.semantic`; a model with masks); ``None``: not.
    """
    from maskrcnn.engine import distributed

    start = time.perf_counter()
    run = partial(run_model, precision=resolve_precision(precision, torch.device(device)))
    if tile is not None:
        problem = tiling_problem(tile, tile_overlap)
        if problem:
            raise ValueError(f"tile={tile}, tile_overlap={tile_overlap}: {problem}")
        if not gives_masks(model):
            raise ValueError(f"tile={tile}: {NO_MASKS_FOR_TILES}")
        run = partial(_run_tiled, run, tile=tile, overlap=tile_overlap, batch_size=batch_size)
        batch_size = 1  # images per loader batch: each is cut into batches of tiles
    lut = None if label_map is None else torch.tensor([0, *label_map], dtype=torch.int64)
    scored = None if label_map is None else sorted({k for k in label_map if k > 0})
    spec = base_dataset(dataset).keypoint_spec
    sigmas = None if spec is None else spec.oks_sigmas()
    thresholds = (score_threshold_for_confusion, semantic_threshold)
    if distributed.world_size() == 1:
        detected = _detect(run, model, dataset, dataset, batch_size, device, num_workers, progress, lut)
        return _score(detected, thresholds, start, scored, sigmas)
    share = Subset(dataset, distributed.shard(len(dataset)))
    detected = _detect(run, model, dataset, share, batch_size, device, num_workers, progress, lut)
    return _gather_and_score(dataset, detected, thresholds, start, scored, sigmas)


def _run_tiled(
    run: Callable[..., list[dict[str, Tensor]]],
    model: nn.Module,
    images: list[Tensor],
    *,
    tile: int,
    overlap: int | None,
    batch_size: int,
) -> list[dict[str, Any]]:
    """``run`` on each image's tiles, merged: per image the detections with ``masks`` as
    :class:`~maskrcnn.structures.CroppedMasks` (binary, at the image's size), and the keypoints of a
    model with keypoints (see :mod:`maskrcnn.engine.tile_merge`)."""
    device = images[0].device if images else torch.device("cpu")

    def detect(tiles: list[Tensor]) -> list[dict[str, Any]]:
        return with_binary_masks(run(model, [t.to(device) for t in tiles]), tiles, MASK_THRESHOLD)

    return [
        detect_tiled(detect, image.cpu(), size=tile, overlap=overlap, batch_size=batch_size)
        for image in images
    ]


def _relabel(detection: dict[str, Tensor], lut: Tensor) -> dict[str, Tensor]:
    """``detection`` with the dataset's labels (``lut[model label]``), those without one dropped."""
    labels = lut.to(detection["labels"].device)[detection["labels"]]
    keep = labels > 0
    out = {key: value[keep] for key, value in detection.items() if key != "labels"}
    out["labels"] = labels[keep]
    return out


def _detect(
    run: Callable[..., list[dict[str, Tensor]]],
    model: nn.Module,
    dataset: Any,
    part: Any,
    batch_size: int,
    device: str | torch.device,
    num_workers: int,
    progress: bool,
    lut: Tensor | None,
) -> _Detected:
    """Run ``model`` (called through ``run``: :func:`~maskrcnn.engine.inference.run_model`) over ``part``
    (``dataset`` itself, or this process's share of it): its ground truth, COCO results, unreadable
    images and what the detections carried."""
    from maskrcnn.data import make_data_loader
    from maskrcnn.engine import distributed

    ground_truth = CocoBuilder.for_dataset(dataset)
    # The images' files, named in the ground truth (the error report lists images by them).
    files = {int(i["image_id"]): str(i["path"]) for i in base_dataset(dataset).image_info if i.get("path")}
    results: list[Result] = []
    skipped: list[str] = []
    outputs: set[str] = set()
    share = f" (rank 0's share of {len(dataset)})" if part is not dataset else ""
    was_training = model.training
    model.eval()
    try:
        with without_transforms(dataset), torch.inference_mode():
            loader = make_data_loader(
                part,
                batch_size=batch_size,
                shuffle=False,
                num_workers=num_workers,
                aspect_ratio_grouping=False,
            )
            bar = progress_bar(
                total=len(part),
                desc="evaluating" + share,
                unit="img",
                leave=False,
                disable=not progress or distributed.rank() != 0,
            )
            with bar:
                for batch in loader:
                    skipped.extend(batch.skipped)
                    if batch.images:
                        detections = run(
                            model, [image.to(device, non_blocking=True) for image in batch.images]
                        )
                        if lut is not None:
                            detections = [_relabel(d, lut) for d in detections]
                        image_ids = [int(t["image_id"]) for t in batch.targets]
                        for image, target, image_id, found in zip(
                            batch.images, batch.targets, image_ids, detections, strict=True
                        ):
                            h, w = (int(v) for v in image.shape[-2:])
                            ground_truth.add(image_id, h, w, target, file_name=files.get(image_id))
                            if "keypoints" in found:
                                outputs.add("keypoints")
                            if "masks" not in found and "roi_masks" not in found:
                                continue  # a keypoint-only model: boxes and keypoints
                            outputs.add("segm")
                            # Merged tiles come with their binary masks already.
                            if not isinstance(found.get("masks"), CroppedMasks):
                                found["masks"] = binary_masks(found, (h, w), MASK_THRESHOLD)
                            found.pop("roi_masks", None)
                        results.extend(
                            detections_to_results(detections, image_ids, ground_truth.category_ids)
                        )
                    bar.update(len(batch.images) + len(batch.skipped))
            del loader  # persistent workers end here, not at the next garbage collection
    finally:
        model.train(was_training)
    return _Detected(ground_truth, results, skipped, outputs)


def _gather_and_score(
    dataset: Any,
    detected: _Detected,
    thresholds: tuple[float, float | None],
    start: float,
    scored: list[int] | None,
    sigmas: list[float] | None,
) -> Evaluation:
    """Rank 0 gathers every process's :class:`_Detected`, scores them and shares the evaluation (without
    its results); the other processes wait for it. An error on rank 0 is shared too, so that the others
    stop with it instead of waiting."""
    from maskrcnn.engine import distributed

    shares = distributed.gather_objects(detected, "gathering detections")
    if shares is None:  # not rank 0: wait for the scores (or rank 0's error)
        shared = distributed.broadcast_object(None, "sharing the evaluation")
        if isinstance(shared, Exception):
            raise shared
        return shared  # type: ignore[no-any-return]
    try:
        # The shares in rank order are the dataset in order (contiguous shards).
        merged = _Detected(CocoBuilder.for_dataset(dataset), [], [], set())
        for share in shares:
            merged.ground_truth.extend(share.ground_truth)
            merged.results.extend(share.results)
            merged.skipped.extend(share.skipped)
            merged.outputs.update(share.outputs)
        evaluation = _score(merged, thresholds, start, scored, sigmas)
    except Exception as e:
        distributed.broadcast_object(e, "sharing the evaluation")  # the others stop with it too
        raise
    shared = dataclasses.replace(evaluation, results=[], ground_truth=None)
    distributed.broadcast_object(shared, "sharing the evaluation")
    return evaluation


# The per-class AP of a class left out of the scoring.
_UNSCORED: dict[str, float | None] = {"AP": None, "AP50": None}


def _per_class(ground_truth: CocoBuilder, scores: CocoScores) -> list[dict[str, Any]]:
    """The rows of :attr:`Evaluation.per_class`."""
    instances: dict[int, int] = defaultdict(int)
    for ann in ground_truth.annotations:
        if not ann["iscrowd"]:
            instances[ann["category_id"]] += 1
    rows = []
    for name, cat in zip(ground_truth.class_names, ground_truth.category_ids, strict=True):
        row: dict[str, Any] = {"class": name, "category_id": cat, "instances": instances[cat]}
        for iou_type, per_class in scores.per_class.items():
            values = per_class.get(cat, _UNSCORED)
            prefix = SECTION_TITLES[iou_type]
            row[f"{prefix}_AP"], row[f"{prefix}_AP50"] = values["AP"], values["AP50"]
        rows.append(row)
    return rows


def _score(
    detected: _Detected,
    thresholds: tuple[float, float | None],
    start: float,
    scored: list[int] | None,
    sigmas: list[float] | None,
) -> Evaluation:
    """The COCO scores, per-class table, confusion matrix and semantic IoU of the results against the
    ground truth; ``thresholds``: the lowest scores of the confusion matrix and the class maps (``None``:
    none); ``scored``: the dataset labels to score (``None``: all); ``sigmas``: the dataset's OKS sigmas
    (``None``: it has no keypoints)."""
    ground_truth, results, skipped, outputs = detected
    score_threshold_for_confusion, semantic_threshold = thresholds
    for message in skipped[:5]:
        log.warning("evaluation: left out unreadable image: %s", message)
    if len(skipped) > 5:
        log.warning("evaluation: %d more unreadable images left out", len(skipped) - 5)
    gt = coco_from_builder(ground_truth)
    category_ids = None if scored is None else [ground_truth.category_ids[k - 1] for k in scored]
    names = ground_truth.class_names
    unscored = [] if scored is None else [n for k, n in enumerate(names, start=1) if k not in scored]
    if "keypoints" in outputs and sigmas is None:
        log.warning("evaluation: the model gives keypoints, the dataset has none: keypoint AP not scored")
    iou_types = [
        t for t in IOU_TYPES if t == "bbox" or (t in outputs and (t != "keypoints" or sigmas is not None))
    ]
    scores = coco_scores(gt, results, category_ids=category_ids, iou_types=iou_types, oks_sigmas=sigmas)
    confusion = confusion_matrix(
        gt,
        results,
        ground_truth.category_ids,
        score_threshold=score_threshold_for_confusion,
        iou_type="segm" if "segm" in iou_types else "bbox",
    )
    semantic, per_class = None, _per_class(ground_truth, scores)
    if semantic_threshold is not None and "segm" in iou_types:
        semantic = semantic_scores(ground_truth, results, score_threshold=semantic_threshold, scored=scored)
        for row, iou in zip(per_class, semantic.iou[1:], strict=True):
            row["semantic_IoU"] = iou
    return Evaluation(
        metrics=scores.metrics,
        per_class=per_class,
        results=results,
        confusion=confusion,
        pr_curves=scores.pr_curves,
        class_names=list(ground_truth.class_names),
        num_images=len(ground_truth.images),
        skipped=skipped,
        score_threshold=score_threshold_for_confusion,
        seconds=time.perf_counter() - start,
        unscored=unscored,
        semantic=semantic,
        ground_truth=ground_truth.to_dict("the ground truth of an evaluation by maskrcnn"),
    )
