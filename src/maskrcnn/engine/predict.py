"""Inference: the :class:`Predictor`, the sources it reads, and the ``predict`` and ``splash`` commands.

``Predictor`` wraps a model and its class names: it takes an image in any common form, runs the model
under ``torch.inference_mode()`` on its device, and returns :class:`Detections` on the CPU, above a
score threshold and restricted to chosen classes.

A *source* is an image file, a video file, a folder or a glob pattern (see :func:`iter_sources`).

Outputs of ``maskrcnn predict SOURCE --out DIR``:

* ``DIR/<name>.png`` per image: translucent masks, outlines, boxes and ``"class score"`` captions. PNG
  whatever the input's format, so that the thin outlines and captions stay crisp (JPEG smears them).
* ``DIR/<name>_predictions.mp4`` per video, the same drawing on every frame; there each class keeps one
  colour (per-instance colours would flicker as the detection order changes between frames).
* ``DIR/results.json``: the detections as a COCO results list, one entry per detection with
  ``file_name`` (the path as found), ``image_id`` (1-based, one per image or video frame in the order
  processed), ``frame`` (videos only, 0-based), ``category_id`` (the model's label, 1..K),
  ``category`` (its name), ``bbox`` (``[x, y, width, height]`` pixels), ``score`` and
  ``segmentation`` (compressed RLE with ``counts`` as a string).
* with ``--save-masks``, ``DIR/masks/<name>_<k>_<class>.png`` per detection (0/255, the image's size;
  ``k`` counts from 0 in score order) and ``DIR/masks/<name>_<frame>_<k>_<class>.png`` for video frames.

``maskrcnn splash`` writes ``DIR/<name>_splash.png`` per image and ``DIR/<name>_splash.mp4`` per video:
the picture in grey with the original colours kept inside the detected masks.

``<name>`` is the file's path relative to the folder (or the glob's fixed leading folders) without its
suffix, so files in subfolders land in the same subfolders of ``DIR``; two images that differ only in
suffix (``a.jpg``, ``a.png``) become ``a_jpg`` and ``a_png``. An output that would overwrite one of the
inputs is refused before anything runs.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from maskrcnn.data.image_io import IMAGE_SUFFIXES, ImageError, is_image_file, pil_to_tensor, read_image
from maskrcnn.engine.device import resolve_device
from maskrcnn.engine.video import VIDEO_SUFFIXES, VideoError, VideoReader, VideoWriter, is_video_file
from maskrcnn.ops.masks import rle_encode
from maskrcnn.visualize import color_splash, draw_instances, random_colors, to_pil

__all__ = [
    "Detections",
    "MediaFile",
    "Predictor",
    "SourceError",
    "add_predict_arguments",
    "add_splash_arguments",
    "detections_to_coco",
    "iter_sources",
    "resolve_device",
    "run_predict",
    "run_splash",
    "to_image_tensor",
]

ImageInput = Tensor | np.ndarray | Image.Image | str | os.PathLike
Mode = Literal["predict", "splash"]


# ----------------------------------------------------------------------------------------------------
# Devices and images


def to_image_tensor(image: ImageInput) -> Tensor:
    """Any accepted image form -> float ``[C, H, W]`` in 0..1 (the model's input).

    * float tensor: ``[C, H, W]`` in 0..1, used as it is (the project's image contract);
    * uint8 tensor: ``[H, W, C]`` (numpy's layout) or ``[C, H, W]`` (torchvision's ``read_image``),
      told apart by which end has 1, 3 or 4 channels (``[H, W, C]`` when both do);
    * numpy array: ``[H, W, 3]`` or ``[H, W]``, uint8 0..255 or float 0..1, RGB (convert OpenCV's BGR
      first: ``array[..., ::-1]``); a fourth (alpha) channel is dropped, grey is repeated to RGB;
    * PIL image: any mode, converted to RGB (its EXIF orientation is not applied: the pixels are taken
      as they are in memory);
    * a path: read with :func:`maskrcnn.data.read_image` (EXIF orientation applied).
    """
    if isinstance(image, str | os.PathLike):
        return read_image(image)
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    if isinstance(image, np.ndarray):
        array = torch.from_numpy(np.ascontiguousarray(image))
        if array.dim() == 2:
            array = array[..., None]
        return _from_hwc(array, "array")
    if not isinstance(image, Tensor):
        raise TypeError(
            f"cannot predict on a {type(image).__name__}: pass a tensor, array, PIL image or path"
        )
    if image.is_floating_point():
        if image.dim() != 3:
            raise ValueError(f"a float image tensor must be [C, H, W] in 0..1, got {list(image.shape)}")
        return image.float()  # the model computes in float32 (float64 input would fail in its convs)
    if image.dim() == 2:
        image = image[..., None]
    if image.dim() == 3 and image.shape[-1] not in (1, 3, 4) and image.shape[0] in (1, 3, 4):
        image = image.permute(1, 2, 0)
    return _from_hwc(image, "tensor")


def _from_hwc(image: Tensor, what: str) -> Tensor:
    """``[H, W, C]`` (C in 1, 3, 4) uint8 0..255 or float 0..1 -> float ``[3, H, W]``."""
    if image.dim() != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"an image {what} must be [H, W, 3] (or [H, W], [H, W, 4]), got {list(image.shape)}")
    if image.dtype == torch.uint8:
        image = image.float().div_(255.0)
    elif image.is_floating_point():
        image = image.float()
    else:
        raise ValueError(f"an image {what} must hold uint8 (0..255) or floats (0..1), got {image.dtype}")
    image = image[..., :3] if image.shape[-1] == 4 else image.expand(-1, -1, 3)
    return image.permute(2, 0, 1).contiguous()


# ----------------------------------------------------------------------------------------------------
# Detections and the predictor


@dataclass
class Detections:
    """The detections in one image, on the CPU, highest score first.

    Attributes:
        boxes: float ``[D, 4]`` xyxy, in pixels of the image given.
        labels: int64 ``[D]``, 1..K (0 is the background).
        scores: float ``[D]``.
        masks: bool ``[D, H, W]``: the mask probabilities at or above the threshold (0.5).
        class_names: ``D`` names, one per detection.
        image_size: ``(H, W)``.
        mask_probs: float ``[D, H, W]`` probabilities, kept when the predictor was asked to
            (``keep_probabilities``); otherwise ``None``.
    """

    boxes: Tensor
    labels: Tensor
    scores: Tensor
    masks: Tensor
    class_names: list[str]
    image_size: tuple[int, int]
    mask_probs: Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.scores)


def detections_to_coco(detections: Detections, **fields: Any) -> list[dict[str, Any]]:
    """One COCO result dict per detection, JSON-ready.

    Each holds ``fields`` first (e.g. ``file_name``, ``image_id``, ``frame``), then ``category_id`` (the
    label), ``category`` (its name), ``bbox`` ``[x, y, w, h]`` (pixels, 2 decimals), ``score`` (5
    decimals) and ``segmentation`` (compressed RLE, ``counts`` a string).
    """
    if not len(detections):
        return []
    rles = rle_encode(detections.masks)
    out = []
    for box, label, score, name, rle in zip(
        detections.boxes.tolist(),
        detections.labels.tolist(),
        detections.scores.tolist(),
        detections.class_names,
        rles,
        strict=True,
    ):
        x1, y1, x2, y2 = box
        out.append(
            {
                **fields,
                "category_id": int(label),
                "category": name,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(float(score), 5),
                "segmentation": rle,
            }
        )
    return out


class Predictor:
    """A model ready to detect: inputs converted, thresholds and class filter applied, results on the CPU.

    Args:
        model: a Mask R-CNN (or any module with its evaluation-mode call: a list of ``[C, H, W]``
            images in, per image a dict of ``boxes``, ``labels``, ``scores``, ``masks [D, 1, H, W]``
            out). It is moved to ``device`` and put in evaluation mode.
        class_names: the K foreground class names, label 1 first.
        device: see :func:`resolve_device`.
        score_threshold: detections scoring lower are dropped. When it is below the model's own
            ``roi_heads.score_thresh``, the model's is lowered to it for the duration of each call (and
            restored), so that a low threshold means what it says.
        classes: keep only detections of these class names (``None``: all).
        batch_size: images per model call in :meth:`predict_stream`.
        mask_threshold: mask probabilities at or above it are inside.
        keep_probabilities: also return the mask probabilities (``Detections.mask_probs``; memory:
            4 bytes per pixel per detection).
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
        mask_threshold: float = 0.5,
        keep_probabilities: bool = False,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in 0..1, got {score_threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = resolve_device(device)
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
            unknown = [c for c in self.classes if c not in self.class_names]
            if unknown:
                raise ValueError(
                    f"unknown class {', '.join(map(repr, unknown))}; the model's classes are: "
                    + ", ".join(self.class_names)
                )
            self._class_labels = torch.tensor([self.class_names.index(c) + 1 for c in self.classes])

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        score_threshold: float = 0.5,
        classes: Iterable[str] | None = None,
        batch_size: int = 1,
        mask_threshold: float = 0.5,
        keep_probabilities: bool = False,
    ) -> Predictor:
        """A predictor for one of the project's checkpoints (see :func:`maskrcnn.weights.load_checkpoint`).

        The device is checked before the checkpoint is read.
        """
        from maskrcnn.weights import load_checkpoint

        resolved = resolve_device(device)
        checkpoint = load_checkpoint(path, device=resolved)
        return cls(
            checkpoint.model,
            checkpoint.class_names,
            device=resolved,
            score_threshold=score_threshold,
            classes=classes,
            batch_size=batch_size,
            mask_threshold=mask_threshold,
            keep_probabilities=keep_probabilities,
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
        tensors = [to_image_tensor(image) for image in images]
        with torch.inference_mode(), self._model_threshold():
            outputs = self.model([t.to(self.device) for t in tensors])
        return [
            self._select(output, (int(t.shape[-2]), int(t.shape[-1])))
            for output, t in zip(outputs, tensors, strict=True)
        ]

    def predict_stream(self, images: Iterable[ImageInput]) -> Iterator[Detections]:
        """Detections for each image of an iterable, ``batch_size`` images per model call, lazily."""
        iterator = iter(images)
        while batch := list(islice(iterator, self.batch_size)):
            yield from self.predict_batch(batch)

    @contextlib.contextmanager
    def _model_threshold(self) -> Iterator[None]:
        heads = getattr(self.model, "roi_heads", None)
        own = getattr(heads, "score_thresh", None)
        if own is None or self.score_threshold >= own:
            yield
            return
        heads.score_thresh = self.score_threshold  # type: ignore[union-attr]
        try:
            yield
        finally:
            heads.score_thresh = own  # type: ignore[union-attr]

    def _select(self, output: dict[str, Tensor], size: tuple[int, int]) -> Detections:
        scores, labels = output["scores"], output["labels"]
        keep = scores >= self.score_threshold
        if self._class_labels is not None:
            keep &= torch.isin(labels, self._class_labels.to(labels.device))
        index = torch.where(keep)[0]
        index = index[scores[index].argsort(descending=True, stable=True)]
        probs = output["masks"][index].reshape(len(index), *size)
        labels = labels[index].cpu()
        return Detections(
            boxes=output["boxes"][index].float().cpu(),
            labels=labels,
            scores=scores[index].float().cpu(),
            masks=(probs >= self.mask_threshold).cpu(),
            class_names=[self._name(int(label)) for label in labels],
            image_size=size,
            mask_probs=probs.float().cpu() if self.keep_probabilities else None,
        )

    def _name(self, label: int) -> str:
        return self.class_names[label - 1] if 0 < label <= len(self.class_names) else str(label)


# ----------------------------------------------------------------------------------------------------
# Sources


class SourceError(ValueError):
    """A source that does not exist, is not an image or video, or holds none."""


@dataclass(frozen=True)
class MediaFile:
    """One file of a source.

    Attributes:
        path: the file, as found (relative when the source was).
        kind: ``"image"`` or ``"video"``.
        name: the name its outputs take: the path relative to the source's folder, without suffix.
    """

    path: Path
    kind: Literal["image", "video"]
    name: str


def _kind(path: Path) -> Literal["image", "video"] | None:
    return "image" if is_image_file(path) else "video" if is_video_file(path) else None


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def iter_sources(source: str | os.PathLike[str], *, recursive: bool = False) -> Iterator[MediaFile]:
    """The images and videos of a source, sorted by path.

    * an image (``.jpg .png ...``) or video (``.mp4 .avi .mov .mkv .webm``) file;
    * a folder: the images and videos directly inside it, or also in its subfolders with
      ``recursive``; hidden files and folders are skipped, other files ignored;
    * a glob pattern, e.g. ``"photos/*.jpg"`` or ``"data/**/*.png"`` (``**`` spans folders); files that
      are no image or video are ignored.

    The source is resolved when called (errors raise then, not on iteration).

    Raises:
        SourceError: the source does not exist, is a file of another kind, or holds no image or video.
    """
    text = os.fspath(source)
    path = Path(text)
    kinds = f"images ({' '.join(IMAGE_SUFFIXES)}) and videos ({' '.join(VIDEO_SUFFIXES)})"
    if path.is_file():
        kind = _kind(path)
        if kind is None:
            raise SourceError(
                f"{path}: unsupported file (suffix {path.suffix or 'none'!r}); {kinds} are read"
            )
        return iter([MediaFile(path, kind, path.stem)])
    if path.is_dir():
        candidates = path.rglob("*") if recursive else path.iterdir()
        files = [p for p in candidates if p.is_file() and not _is_hidden(p, path)]
        root, what = path, f"folder {path}" + (" (and its subfolders)" if recursive else "")
    elif glob.has_magic(text):
        files = [Path(p) for p in glob.glob(text, recursive=True) if os.path.isfile(p)]
        fixed = []
        for part in path.parts:
            if glob.has_magic(part):
                break
            fixed.append(part)
        root, what = Path(*fixed) if fixed else Path(), f"pattern {text!r}"
    else:
        raise SourceError(f"{text}: no such file, folder or glob pattern")
    media = sorted((p, k) for p in files if (k := _kind(p)) is not None)
    if not media:
        hint = "" if recursive or not path.is_dir() else " (add --recursive to look into subfolders)"
        raise SourceError(f"no {kinds} in {what}{hint}")
    return iter(_named(media, root))


def _named(media: list[tuple[Path, Literal["image", "video"]]], root: Path) -> list[MediaFile]:
    """Output names: relative path without suffix, made unique per kind by the suffix where needed."""
    bare = [(p, k, p.relative_to(root).with_suffix("").as_posix()) for p, k in media]
    counts: dict[tuple[str, str], int] = {}
    for _, kind, name in bare:
        counts[kind, name] = counts.get((kind, name), 0) + 1
    out, taken = [], set()
    for path, kind, name in bare:
        if counts[kind, name] > 1:
            name = f"{name}_{path.suffix.lstrip('.').lower()}"
        unique, n = name, 1
        while (kind, unique) in taken:  # a.JPG beside a.jpg
            unique, n = f"{name}_{n}", n + 1
        taken.add((kind, unique))
        out.append(MediaFile(path, kind, unique))
    return out


# ----------------------------------------------------------------------------------------------------
# The commands


def _safe(text: str) -> str:
    """A class name usable in a file name."""
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "class"


def _output_path(out: Path, file: MediaFile, mode: Mode) -> Path:
    if file.kind == "video":
        return out / f"{file.name}_{'predictions' if mode == 'predict' else 'splash'}.mp4"
    return out / (f"{file.name}.png" if mode == "predict" else f"{file.name}_splash.png")


@dataclass
class _Run:
    """What one ``predict`` / ``splash`` run renders and writes, and what it counted."""

    predictor: Predictor
    out: Path
    mode: Mode
    save_masks: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)
    images_done: int = 0
    frames_done: int = 0
    detections: int = 0
    masks_written: int = 0
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def render(self, image: Tensor, detections: Detections, *, video: bool) -> Image.Image:
        if self.mode == "splash":
            return to_pil(color_splash(image, detections.masks))
        colors = None
        if video:  # one colour per class, steady from frame to frame
            palette = random_colors(max(len(self.predictor.class_names), 1))
            colors = [palette[(int(label) - 1) % len(palette)] for label in detections.labels]
        return draw_instances(
            image,
            boxes=detections.boxes,
            masks=detections.masks,
            labels=detections.labels,
            scores=detections.scores,
            class_names=self.predictor.class_names,
            colors=colors,
        )

    def record(self, file: MediaFile, detections: Detections, frame: int | None = None) -> None:
        """Count the detections; in ``predict``, add them to the results and write their masks."""
        self.detections += len(detections)
        if self.mode != "predict":
            return
        image_id = self.images_done + self.frames_done + 1
        fields: dict[str, Any] = {"file_name": file.path.as_posix(), "image_id": image_id}
        if frame is not None:
            fields["frame"] = frame
        self.results.extend(detections_to_coco(detections, **fields))
        if self.save_masks:
            stem = file.name if frame is None else f"{file.name}_{frame:06d}"
            for k, (mask, name) in enumerate(zip(detections.masks, detections.class_names, strict=True)):
                path = self.out / "masks" / f"{stem}_{k}_{_safe(name)}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.numpy().astype(np.uint8) * 255).save(path)
                self.masks_written += 1

    def images(self, files: Sequence[MediaFile]) -> None:
        """Read (skipping unreadable files), predict in batches, draw and save each image."""
        if not files:
            return
        bar = tqdm(total=len(files), desc=self.mode, unit="img", leave=False, file=sys.stderr)

        def readable() -> Iterator[tuple[MediaFile, Tensor]]:
            for file in files:
                try:
                    yield file, read_image(file.path)
                except ImageError as e:
                    self.skipped.append(str(e))
                    tqdm.write(f"skipped {e}", file=sys.stderr)
                    bar.update(1)

        with bar:
            pending = readable()
            while batch := list(islice(pending, self.predictor.batch_size)):
                found = self.predictor.predict_batch([image for _, image in batch])
                for (file, image), detections in zip(batch, found, strict=True):
                    path = _output_path(self.out, file, self.mode)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self.render(image, detections, video=False).save(path)
                    self.written.append(path)
                    self.record(file, detections)
                    self.images_done += 1
                    bar.update(1)

    def video(self, file: MediaFile) -> None:
        """Predict on every frame (in batches), writing the drawn frames into an MP4 as they come."""
        path = _output_path(self.out, file, self.mode)
        frame_index = 0
        try:
            with VideoReader(file.path) as reader, VideoWriter(path, reader.info.fps) as writer:
                bar = tqdm(
                    total=reader.info.frames, desc=file.path.name, unit="frame", leave=False, file=sys.stderr
                )
                with bar:
                    frames = iter(reader)
                    while batch := list(islice(frames, self.predictor.batch_size)):
                        for image, detections in zip(batch, self.predictor.predict_batch(batch), strict=True):
                            writer.write(self.render(image, detections, video=True))
                            self.record(file, detections, frame=frame_index)
                            self.frames_done += 1
                            frame_index += 1
                            bar.update(1)
        except VideoError as e:
            after = f" (after {frame_index} frames, kept in {path})" if frame_index else ""
            self.skipped.append(f"{e}{after}")
            print(f"skipped {e}{after}", file=sys.stderr)
            if not frame_index:
                return
        self.written.append(path)


def _parse_classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    return names or None


def _run(args: argparse.Namespace, mode: Mode) -> int:
    """Shared body of ``predict`` and ``splash``: checks, the loop over the sources, the summary."""
    try:
        files = list(iter_sources(args.source, recursive=args.recursive))
        device = resolve_device(args.device)
    except ValueError as e:  # SourceError, or an unknown or unavailable device
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    inputs = {f.path.resolve() for f in files}
    clash = next((f for f in files if _output_path(out, f, mode).resolve() in inputs), None)
    if clash is not None:
        print(
            f"error: the output for {clash.path} would overwrite an input; choose another --out",
            file=sys.stderr,
        )
        return 1
    try:
        predictor = Predictor.from_checkpoint(
            args.weights,
            device=device,
            score_threshold=args.score_threshold,
            classes=_parse_classes(args.classes),
            batch_size=args.batch_size,
        )
    # Reading a checkpoint fails in many ways (missing file, not safetensors, corrupt data, foreign
    # config): each is reported as it is, as one line.
    except Exception as e:
        print(f"error: cannot use checkpoint {args.weights}: {e}", file=sys.stderr)
        return 1

    run = _Run(predictor, out, mode, save_masks=getattr(args, "save_masks", False))
    out.mkdir(parents=True, exist_ok=True)
    run.images([f for f in files if f.kind == "image"])
    for file in files:
        if file.kind == "video":
            run.video(file)
    if mode == "predict":
        results_path = out / "results.json"
        results_path.write_text(json.dumps(run.results) + "\n")
    _summary(run, files, device)
    return 0 if run.images_done + run.frames_done else 1


def _summary(run: _Run, files: Sequence[MediaFile], device: torch.device) -> None:
    what = []
    if run.images_done:
        what.append(f"{run.images_done} image{'s' * (run.images_done != 1)}")
    videos = sum(f.kind == "video" for f in files)
    if run.frames_done:
        what.append(f"{videos} video{'s' * (videos != 1)} ({run.frames_done} frames)")
    print(f"{run.mode}: {' and '.join(what) or 'nothing'} on {device}: {run.detections} detections")
    if run.written:
        shown = ", ".join(str(p.relative_to(run.out)) for p in run.written[:3])
        more = f" and {len(run.written) - 3} more" if len(run.written) > 3 else ""
        print(f"wrote {shown}{more} into {run.out}")
    if run.mode == "predict":
        print(f"wrote {run.out / 'results.json'} ({len(run.results)} detections)")
    if run.masks_written:
        print(f"wrote {run.masks_written} masks into {run.out / 'masks'}")
    if run.skipped:
        print(f"skipped {len(run.skipped)} unreadable files (listed above)", file=sys.stderr)


def run_predict(args: argparse.Namespace) -> int:
    """``maskrcnn predict``: overlays, ``results.json`` and optional mask PNGs (see the module docstring).

    Returns:
        0 when at least one image or frame was processed; 1 with a message for a missing or unsupported
        source, an unreadable checkpoint, an unknown class, an unavailable device, or nothing readable.
    """
    return _run(args, "predict")


def run_splash(args: argparse.Namespace) -> int:
    """``maskrcnn splash``: grey pictures and videos with colour kept inside the masks; exit codes as
    :func:`run_predict`."""
    return _run(args, "splash")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in 0..1, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="an image, a video, a folder, or a quoted glob such as 'photos/*.jpg'")
    parser.add_argument(
        "--weights", required=True, metavar="CKPT", help="a checkpoint written by training (.safetensors)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write into (created)")
    parser.add_argument(
        "--score-threshold",
        type=_probability,
        default=0.5,
        metavar="T",
        help="drop detections scoring lower (default 0.5)",
    )
    parser.add_argument(
        "--classes", metavar="NAMES", help="keep only these classes, by name: --classes cat,dog"
    )
    parser.add_argument(
        "--batch-size", type=_positive, default=1, metavar="N", help="images or frames per model call"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, else MPS, else CPU; default), cpu, cuda, cuda:N, mps"
    )
    parser.add_argument(
        "--recursive", action="store_true", help="with a folder, also read the images in its subfolders"
    )


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``maskrcnn predict``; the command runs :func:`run_predict`."""
    _add_common_arguments(parser)
    parser.add_argument(
        "--save-masks",
        action="store_true",
        help="also write each detection's mask as OUT/masks/<name>_<k>_<class>.png",
    )


def add_splash_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``maskrcnn splash``; the command runs :func:`run_splash`."""
    _add_common_arguments(parser)
