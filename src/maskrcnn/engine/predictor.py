"""The :class:`Predictor`: a trained model, ready to detect objects in images of any common form.

``Predictor`` wraps a model and its class names: it takes an image (tensor, array, PIL image or path;
see :func:`to_image_tensor`), runs the model under ``torch.inference_mode()`` on its device, and returns
:class:`Detections` on the CPU, above a score threshold and restricted to chosen classes::

    predictor = Predictor.from_checkpoint("last.safetensors", score_threshold=0.7)
    found = predictor("photo.jpg")
    found.boxes, found.masks, found.class_names

A model with keypoints also gives ``found.keypoints`` and ``found.keypoints_scores`` (named by
``predictor.keypoint_spec``); a keypoint-only model (no mask head) gives ``found.masks`` ``None``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from maskrcnn.config import tiling_problem
from maskrcnn.data.image_io import read_pil_image
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.engine.device import resolve_device
from maskrcnn.engine.evaluation.coco import MASK_THRESHOLD
from maskrcnn.engine.image_input import ImageInput, to_image_tensor
from maskrcnn.engine.inference import (
    NO_MASKS_FOR_TILES,
    binary_masks,
    gives_masks,
    keypoint_count,
    run_model,
    select,
    with_binary_masks,
)
from maskrcnn.engine.precision import resolve_precision
from maskrcnn.engine.tile_merge import DECIDING_SCORE
from maskrcnn.engine.tiling import (
    TileImage,
    checkpoint_tiling,
    default_overlap,
    detect_tiled,
    image_size_of,
)
from maskrcnn.modeling import MaskRCNN
from maskrcnn.ops import paste_masks_in_image
from maskrcnn.structures import CroppedMasks
from maskrcnn.weights.coco import UNUSED_CLASS, used_labels

__all__ = ["Detections", "ImageInput", "Predictor", "to_image_tensor"]


@dataclass
class Detections:
    """The detections in one image, on the CPU, highest score first.

    Attributes:
        boxes: float ``[D, 4]`` xyxy, in pixels of the image given.
        labels: int64 ``[D]``, 1..K (0 is the background).
        scores: float ``[D]``.
        mask_crops: the binary masks (mask probabilities above the threshold, 0.5 by default; see
            :func:`maskrcnn.ops.binarize_masks`), each kept as the crop of its extent: what the COCO
            results, the drawing and the splash are made from (:class:`~maskrcnn.structures.CroppedMasks`);
            ``None`` from a model without masks (keypoint-only).
        class_names: ``D`` names, one per detection.
        image_size: ``(H, W)``.
        mask_probs: float ``[D, H, W]`` probabilities, kept when the predictor was asked to
            (``keep_probabilities``); otherwise ``None``.
        keypoints: float ``[D, K, 3]`` ``(x, y, 1)``: each detection's keypoints in pixels of the image
            given (continuous coordinates, as the boxes'), from a model with keypoints; else ``None``.
        keypoints_scores: float ``[D, K]``: each keypoint's score, the heatmap logit at the chosen point
            (pictures draw the keypoints above :data:`maskrcnn.visualize.KEYPOINT_THRESHOLD`), or ``None``.
    """

    boxes: Tensor
    labels: Tensor
    scores: Tensor
    mask_crops: CroppedMasks | None = field(repr=False)
    class_names: list[str]
    image_size: tuple[int, int]
    mask_probs: Tensor | None = field(default=None, repr=False)
    keypoints: Tensor | None = field(default=None, repr=False)
    keypoints_scores: Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.scores)

    @cached_property
    def masks(self) -> Tensor | None:
        """bool ``[D, H, W]``: the binary masks at the image's size, made on first use (100 masks of a
        2048 x 1365 photo are 280 MB). Stored column by column (the order of COCO's RLE); call
        ``.contiguous()`` for a row-major copy. ``None`` from a model without masks."""
        return None if self.mask_crops is None else self.mask_crops.dense()


class Predictor:
    """A model ready to detect: inputs converted, thresholds and class filter applied, results on the CPU.

    Args:
        model: a Mask R-CNN (or any module with its evaluation-mode call: a list of ``[C, H, W]``
            images in, per image a dict of ``boxes``, ``labels``, ``scores``, ``masks [D, 1, H, W]``
            out, and ``keypoints [D, K, 3]`` with ``keypoints_scores [D, K]`` from a model with
            keypoints; a keypoint-only model gives no ``masks``). It is moved to ``device`` and put in
            evaluation mode.
        class_names: the K foreground class names, label 1 first.
        device: see :func:`maskrcnn.engine.device.resolve_device`.
        score_threshold: detections scoring lower are dropped. When it is below a
            :class:`~maskrcnn.modeling.MaskRCNN`'s own ``roi_heads.score_thresh``, it is passed to the
            model's call (``score_thresh=``) so that a low threshold means what it says; the model
            itself is never changed.
        classes: keep only detections of these class names (``None``: all). Labels named ``N/A`` (the
            gaps in COCO's category ids of torchvision's COCO models) are never reported.
        batch_size: images per model call in :meth:`predict_stream`.
        mask_threshold: mask probabilities above it are inside.
        keep_probabilities: also return the mask probabilities (``Detections.mask_probs``; memory:
            4 bytes per pixel per detection).
        precision: ``auto`` (bf16 where the hardware computes it, else fp32), ``fp32``, ``bf16`` or
            ``fp16`` (CUDA): see :mod:`maskrcnn.engine.precision`. Results are float32 either way.
        tile: cut each image into overlapping tiles of this many pixels, run them through the model
            ``batch_size`` tiles at a time and merge their detections (:mod:`maskrcnn.engine.tiling`):
            for images much larger than the model's input. ``None``: whole images.
        tile_overlap: pixels neighbouring tiles share at least (``None``: a quarter of the tile).
        on_tiles: with ``tile``, called with ``(tiles done, tiles of the image)`` as an image's tiles go
            through the model (a progress bar for very large images).
        keypoint_spec: the names and skeleton of the model's keypoints (drawing; a checkpoint keeps
            them); ``None``: :meth:`KeypointSpec.default` for a model with keypoints
            (``model.roi_heads.num_keypoints``).

    Raises:
        ValueError: a bad threshold or batch size; tiles or ``keep_probabilities`` for a model without
            masks; a ``keypoint_spec`` of another number of keypoints than the model's.
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str],
        *,
        device: str | torch.device = "cpu",
        score_threshold: float = 0.5,
        classes: Iterable[str] | None = None,
        batch_size: int = 1,
        mask_threshold: float = MASK_THRESHOLD,
        keep_probabilities: bool = False,
        precision: str = "auto",
        tile: int | None = None,
        tile_overlap: int | None = None,
        on_tiles: Callable[[int, int], None] | None = None,
        keypoint_spec: KeypointSpec | None = None,
    ) -> None:
        self.has_masks = gives_masks(model)
        num_keypoints = keypoint_count(model)
        if keypoint_spec is not None and num_keypoints and keypoint_spec.num_keypoints != num_keypoints:
            named = keypoint_spec.num_keypoints
            raise ValueError(f"keypoint_spec names {named} keypoints; the model gives {num_keypoints}")
        if keypoint_spec is None and num_keypoints:
            keypoint_spec = KeypointSpec.default(num_keypoints)
        self.keypoint_spec = keypoint_spec
        if not self.has_masks and keep_probabilities:
            raise ValueError("keep_probabilities: this model gives no masks (a keypoint-only model)")
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in 0..1, got {score_threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if tile is not None:
            problem = tiling_problem(tile, tile_overlap)
            if problem:
                raise ValueError(f"tile={tile}, tile_overlap={tile_overlap}: {problem}")
            if not self.has_masks:
                raise ValueError(f"tile={tile}: {NO_MASKS_FOR_TILES}")
            if keep_probabilities:
                raise ValueError(
                    "keep_probabilities is not available with tiles (full-size probabilities of a large "
                    "image are what tiling avoids)"
                )
        elif tile_overlap is not None:
            raise ValueError("tile_overlap without tile")
        self.tile = tile
        self.tile_overlap = (
            None if tile is None else (default_overlap(tile) if tile_overlap is None else tile_overlap)
        )
        self.on_tiles = on_tiles
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        self.class_names = list(class_names)
        self.score_threshold = float(score_threshold)
        self.batch_size = int(batch_size)
        self.mask_threshold = float(mask_threshold)
        self.keep_probabilities = keep_probabilities
        self.classes: list[str] | None = None
        self._class_labels: Tensor | None = None
        if classes is not None:
            self.classes = list(classes)
            unknown = [c for c in self.classes if c not in self.class_names or c == UNUSED_CLASS]
            if unknown:
                raise ValueError(
                    f"unknown class {', '.join(map(repr, unknown))}; the model's classes are: "
                    + ", ".join(c for c in self.class_names if c != UNUSED_CLASS)
                )
            self._class_labels = torch.tensor([self.class_names.index(c) + 1 for c in self.classes])
        elif UNUSED_CLASS in self.class_names:
            self._class_labels = torch.tensor(used_labels(self.class_names))

    @classmethod
    def from_checkpoint(
        cls,
        source: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        tile: int | str | None = "checkpoint",
        tile_overlap: int | None = None,
        **options: Any,
    ) -> Predictor:
        """A predictor for any checkpoint :func:`maskrcnn.weights.load_checkpoint` takes: the project's,
        a torchvision ``.pth``, or a registry name such as ``coco`` (fetched into the cache when needed);
        ``options`` are the other keyword arguments of :class:`Predictor` (``score_threshold``...).

        ``tile`` ``"checkpoint"`` (the default) applies a model trained on tiles (``maskrcnn train
        --tile``) on tiles of that size, and others to whole images; a size or ``None`` says which.
        The device is checked before the checkpoint is read. The keypoints' names and skeleton are the
        checkpoint's (``extra["keypoints"]``) unless ``keypoint_spec`` is given.
        """
        from maskrcnn.weights import load_checkpoint

        resolved = resolve_device(device)
        checkpoint = load_checkpoint(source, device=resolved)
        tile, tile_overlap = checkpoint_tiling(tile, tile_overlap, checkpoint.extra)
        if options.get("keypoint_spec") is None and checkpoint.extra.get("keypoints"):
            options["keypoint_spec"] = KeypointSpec.from_dict(checkpoint.extra["keypoints"])
        return cls(
            checkpoint.model,
            checkpoint.class_names,
            device=resolved,
            tile=tile,
            tile_overlap=tile_overlap,
            **options,
        )

    def __call__(self, image: ImageInput) -> Detections:
        """Detections in one image (any form :func:`to_image_tensor` takes)."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageInput]) -> list[Detections]:
        """Detections in several images, all in one model call.

        Sizes may differ: the model pads the batch to the largest. With GroupNorm in the model the
        padding enters the normalisation statistics, so results then differ slightly from one-by-one
        calls; images of one size (video frames) give the same results either way.
        """
        if not len(images):
            return []
        if self.tile is not None:
            return [self._predict_tiled(image) for image in images]
        tensors = [to_image_tensor(image) for image in images]
        with torch.inference_mode():
            outputs = run_model(
                self.model,
                [t.to(self.device) for t in tensors],
                precision=self.precision,
                score_threshold=self.score_threshold,
            )
        return [
            self._select(output, (int(t.shape[-2]), int(t.shape[-1])))
            for output, t in zip(outputs, tensors, strict=True)
        ]

    def predict_stream(self, images: Iterable[ImageInput]) -> Iterator[Detections]:
        """Detections for each image of an iterable, ``batch_size`` images per model call, lazily."""
        iterator = iter(images)
        while batch := list(islice(iterator, self.batch_size)):
            yield from self.predict_batch(batch)

    def masks_for_boxes(
        self,
        image: ImageInput,
        boxes: Tensor | Sequence[Sequence[float]],
        labels: Tensor | Sequence[int] | None = None,
        *,
        scores: Tensor | Sequence[float] | None = None,
    ) -> Detections:
        """The model's masks (and keypoints) for boxes you already have: from another detector (YOLO, a
        tracker) or a person. The region proposals and the box refinement are skipped: each box is used
        as it is, in the order given, whatever its score (no threshold, no class filter).

        Args:
            image: any form :func:`to_image_tensor` takes.
            boxes: ``[B, 4]`` xyxy in the image's pixels.
            labels: ``[B]`` each box's class, a model label ``1..K``; 0 (or ``None`` for all) where the
                class is not known or not one of the model's: the model's most probable class is taken.
            scores: ``[B]`` the boxes' own scores, reported as they are; ``None``: the model's
                probability of each box's class.

        Returns:
            :class:`Detections` of the given boxes, in their order.

        Raises:
            ValueError: a model without masks or without a box-taking call (not a Mask R-CNN), a
                predictor on tiles, or boxes, labels or scores of the wrong shape.
        """
        if not self.has_masks or not isinstance(self.model, MaskRCNN):
            raise ValueError("masks_for_boxes needs a Mask R-CNN with a mask head")
        if self.tile is not None:
            raise ValueError(
                "masks_for_boxes runs on whole images: make the predictor without tiles (tile=None)"
            )
        tensor = to_image_tensor(image)
        given = (
            torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4) if len(boxes) else torch.zeros(0, 4)
        )
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
            if len(labels) != len(given):
                raise ValueError(f"{len(labels)} labels for {len(given)} boxes")
            labels = torch.where((labels >= 1) & (labels <= len(self.class_names)), labels, 0)
        with torch.inference_mode(), self.precision.autocast():
            (output,) = self.model.detect_in_boxes(
                [tensor.to(self.device)], [given.to(self.device)], [labels], paste_masks=False
            )
        output["roi_masks"] = output.pop("masks")
        output["boxes"] = given.to(output["roi_masks"].device)  # exactly as given (no rescaling round trip)
        if scores is not None:
            scores = torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
            if len(scores) != len(given):
                raise ValueError(f"{len(scores)} scores for {len(given)} boxes")
            output["scores"] = scores
        return self._detections(output, (int(tensor.shape[-2]), int(tensor.shape[-1])))

    def _predict_tiled(self, image: ImageInput) -> Detections:
        """Detections in one image, tile by tile (a path is decoded into a PIL image and converted to
        floats one tile at a time: see :mod:`maskrcnn.engine.tiling`)."""
        if isinstance(image, str | os.PathLike):
            source: TileImage = read_pil_image(image)
        elif isinstance(image, Image.Image):
            source = image
        else:
            source = to_image_tensor(image)

        def detect(tiles: list[Tensor]) -> list[dict[str, Any]]:
            outputs = run_model(
                self.model,
                [t.to(self.device) for t in tiles],
                precision=self.precision,
                score_threshold=self.score_threshold,
            )
            return with_binary_masks(outputs, tiles, self.mask_threshold)

        assert self.tile is not None
        with torch.inference_mode():
            merged = detect_tiled(
                detect,
                source,
                size=self.tile,
                overlap=self.tile_overlap,
                batch_size=self.batch_size,
                # What scores under this cannot change a detection kept at the threshold.
                min_score=self.score_threshold * DECIDING_SCORE,
                on_tiles=self.on_tiles,
            )
        return self._select(merged, image_size_of(source))

    def _select(self, output: dict[str, Any], size: tuple[int, int]) -> Detections:
        """The kept detections of one image, highest score first, their masks pasted at ``size``."""
        scores, labels = output["scores"], output["labels"]
        keep = scores >= self.score_threshold
        if self._class_labels is not None:
            keep &= torch.isin(labels, self._class_labels.to(labels.device))
        index = torch.where(keep)[0]
        kept = select(output, index[scores[index].argsort(descending=True, stable=True)])
        return self._detections(kept, size)

    def _detections(self, kept: dict[str, Any], size: tuple[int, int]) -> Detections:
        """The :class:`Detections` of a model output's chosen detections, in their order, masks pasted at
        ``size``."""
        keypoints = {key: kept[key].float().cpu() for key in ("keypoints", "keypoints_scores") if key in kept}
        if isinstance(kept.get("masks"), CroppedMasks):  # merged from tiles: binary already
            labels = kept["labels"]
            return Detections(
                boxes=kept["boxes"].float(),
                labels=labels,
                scores=kept["scores"].float(),
                mask_crops=kept["masks"],
                class_names=[self._name(int(label)) for label in labels],
                image_size=size,
                **keypoints,
            )
        probs = None
        if self.keep_probabilities and ("masks" in kept or "roi_masks" in kept):
            probs = (
                kept["masks"]
                if "masks" in kept
                else paste_masks_in_image(kept["roi_masks"], kept["boxes"], size)
            )
            probs = probs.reshape(len(kept["scores"]), *size).float().cpu()
        labels = kept["labels"].cpu()
        crops = binary_masks(kept, size, self.mask_threshold)
        return Detections(
            boxes=kept["boxes"].float().cpu(),
            labels=labels,
            scores=kept["scores"].float().cpu(),
            mask_crops=None if crops is None else crops.cpu(),
            class_names=[self._name(int(label)) for label in labels],
            image_size=size,
            mask_probs=probs,
            **keypoints,
        )

    def _name(self, label: int) -> str:
        return self.class_names[label - 1] if 0 < label <= len(self.class_names) else str(label)
