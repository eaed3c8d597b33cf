"""What ``maskrcnn predict`` and ``maskrcnn splash`` write for the files of a source.

:func:`write_predictions` runs a :class:`~maskrcnn.engine.predictor.Predictor` on
:class:`~maskrcnn.engine.sources.MediaFile` s (images in batches, then each video frame by frame) and
writes into the output folder (names: :mod:`maskrcnn.engine.sources`):

* ``predict``: per image a PNG with translucent masks, outlines, boxes, keypoints joined by their
  skeleton (a model with keypoints) and ``"class score"`` captions;
  per video an MP4 with the same drawing on every frame, where each class keeps one colour (per-instance
  colours would flicker as the detection order changes between frames); ``results.json``, the detections
  as a COCO results list (see :func:`detections_to_coco`); with ``save_masks``, one 0/255 PNG of the
  image's size per detection.
* ``splash``: the picture in grey with the original colours kept inside the detected masks.

In ``predict``, also the class and instance maps (``semantic``, ``instance_png``) and the predictions as
annotations (``save_as``): :mod:`maskrcnn.engine.prediction_outputs`. With ``given`` boxes (another
detector's, a person's) the model makes a mask for each of an image's boxes
(:meth:`~maskrcnn.engine.predictor.Predictor.masks_for_boxes`) instead of detecting.

A model without masks (keypoint-only) draws its boxes and keypoints; the splash and ``save_masks`` need
masks and refuse it (:data:`NEEDS_MASKS`) before anything is read.

Every file is written whole or not at all (:mod:`maskrcnn.io`); videos are streamed frame by frame. An
unreadable image or video is skipped with a message on stderr, and counted.

Under ``torchrun`` each process takes a contiguous share of the images and one of the videos and writes
their pictures; rank 0 gathers the results and counts and writes ``results.json``, numbered as one
process numbers them (so the file is the same, whatever the number of processes).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from maskrcnn.data.formats.annotation_writer import DEFAULT_TOLERANCE
from maskrcnn.data.image_io import ImageError, pil_to_rgb, read_image, read_pil_image
from maskrcnn.engine import distributed
from maskrcnn.engine.evaluation.coco import instances_to_results
from maskrcnn.engine.given_boxes import GivenBoxes
from maskrcnn.engine.prediction_merge import merged_predictions
from maskrcnn.engine.prediction_outputs import MapWriter, save_predictions_as
from maskrcnn.engine.predictor import Detections, Predictor
from maskrcnn.engine.sources import MediaFile, Mode, mask_path, output_path
from maskrcnn.engine.video import VideoError, VideoReader, VideoWriter
from maskrcnn.io import atomic_write, write_json
from maskrcnn.progress import bar as progress_bar
from maskrcnn.visualize import color_splash, draw_instances, random_colors, to_pil

__all__ = ["NEEDS_MASKS", "RESULTS_FILE", "PredictionWriter", "detections_to_coco", "write_predictions"]

RESULTS_FILE = "results.json"

NEEDS_MASKS = {
    "splash": "the color splash keeps the colours inside the masks, and this model gives none (a "
    "keypoint-only model): predict draws its boxes and keypoints",
    "save_masks": "save_masks writes each detection's mask, and this model gives none (a keypoint-only "
    "model)",
    "maps": "the class and instance maps are painted from masks, and this model gives none (a "
    "keypoint-only model)",
    "save_as": "the annotation formats hold masks (polygons, RLE), and this model gives none (a "
    "keypoint-only model)",
    "given": "masks for given boxes need a model with a mask head, and this one has none",
}
"""What needs a model with masks: the message when a keypoint-only model is asked for it."""


def _no_masks(what: str) -> ValueError:
    return ValueError(NEEDS_MASKS[what])


def detections_to_coco(detections: Detections, *, image_id: int, **fields: Any) -> list[dict[str, Any]]:
    """One COCO result dict per detection, JSON-ready (the conversion evaluation uses too).

    Each holds ``fields`` first (e.g. ``file_name``, ``frame``), then ``image_id``, ``category_id`` (the
    model's label, 1..K), ``bbox`` ``[x, y, w, h]`` (pixels, rounded to 2 decimals), ``score`` (5
    decimals), ``segmentation`` (compressed RLE of the masks, ``counts`` a string; not from a model
    without masks), ``keypoints`` (from a model with keypoints: COCO's flat ``[x1, y1, s1, ...]``,
    ``x, y`` pixels rounded to 2 decimals, ``s`` the keypoint's score to 5) and ``category`` (the class
    name).
    """
    # category_id is the model's label itself: the identity map over the labels present.
    labels = range(1, int(detections.labels.max()) + 1) if len(detections) else range(0)
    results = instances_to_results(
        image_id,
        detections.boxes,
        detections.labels,
        detections.scores,
        detections.mask_crops,
        labels,
        keypoints=detections.keypoints,
        keypoints_scores=detections.keypoints_scores,
        **fields,
    )
    for result, name in zip(results, detections.class_names, strict=True):
        # Rounded for a readable file: 0.01 px and 1e-5 are far below what the model resolves.
        result["bbox"] = [round(v, 2) for v in result["bbox"]]
        result["score"] = round(result["score"], 5)
        if "keypoints" in result:
            values = result["keypoints"]
            result["keypoints"] = [round(v, 5 if i % 3 == 2 else 2) for i, v in enumerate(values)]
        result["category"] = name
    return results


def _save_png(picture: Image.Image, path: Path) -> None:
    # zlib's fastest level: a 2048 x 1365 overlay is written in 0.28 s instead of 0.42 s (level 6, Pillow's
    # default), for a file about 10% larger.
    picture.save(path, format="PNG", compress_level=1)


@dataclass
class PredictionWriter:
    """What one ``predict`` / ``splash`` run renders and writes, and what it counted.

    Args:
        predictor: the model and its thresholds.
        out: the output folder.
        mode: ``"predict"`` (overlays, results, masks) or ``"splash"``.
        save_masks: in ``predict``, also write each detection's mask as a PNG.
        overlay_size: write the pictures (overlays, splashes; not the masks) downscaled to at most this
            many pixels on their long side (``None``: at the image's size).
        maps: in ``predict``, writes each prediction's class and instance maps (``None``: none).
        given: masks for these boxes instead of detections (images only; ``None``: detect).

    Attributes:
        results: the COCO results so far (``predict``).
        images_done, frames_done: images and video frames that went through the model.
        videos: videos opened or tried.
        detections, masks_written, maps_written: detections found, mask and map PNGs written.
        sizes: ``(file_name, height, width)`` of each image predicted on, in order.
        written: the pictures and videos written, in order.
        annotations: the ``save_as`` annotations written (rank 0), or ``None``.
        skipped: one message per unreadable image or video (also said on stderr as it happens).
    """

    predictor: Predictor
    out: Path
    mode: Mode
    save_masks: bool = False
    overlay_size: int | None = None
    maps: MapWriter | None = None
    given: GivenBoxes | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    sizes: list[tuple[str, int, int]] = field(default_factory=list)
    images_done: int = 0
    videos: int = 0
    frames_done: int = 0
    detections: int = 0
    masks_written: int = 0
    maps_written: int = 0
    written: list[Path] = field(default_factory=list)
    annotations: Path | None = None
    skipped: list[str] = field(default_factory=list)

    def render(self, image: Tensor | Image.Image, detections: Detections, *, video: bool) -> Image.Image:
        """The picture written for ``image`` (float ``[3, H, W]``, or a PIL image from a tiled run): the
        drawn detections, or the color splash, downscaled to ``overlay_size``."""
        boxes, masks, keypoints = detections.boxes, detections.mask_crops, detections.keypoints
        height, width = detections.image_size
        if self.overlay_size is not None and max(height, width) > self.overlay_size:
            scale = self.overlay_size / max(height, width)
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            picture = to_pil(image) if isinstance(image, Tensor) else pil_to_rgb(image)
            # Box filtering: each output pixel averages the input pixels it covers.
            image = picture.resize((size[1], size[0]), Image.Resampling.BOX)
            boxes = boxes * torch.tensor([size[1] / width, size[0] / height] * 2)
            masks = masks.resized(size) if masks is not None else None
            if keypoints is not None:
                keypoints = keypoints * torch.tensor([size[1] / width, size[0] / height, 1.0])
        elif isinstance(image, Image.Image):
            image = pil_to_rgb(image)
        if self.mode == "splash":
            if masks is None:
                raise _no_masks("splash")
            splash = color_splash(image, masks)
            return splash if isinstance(splash, Image.Image) else to_pil(splash)
        colors = None
        if video:  # one colour per class, steady from frame to frame
            palette = random_colors(max(len(self.predictor.class_names), 1))
            colors = [palette[(int(label) - 1) % len(palette)] for label in detections.labels]
        spec = self.predictor.keypoint_spec
        return draw_instances(
            image,
            boxes=boxes,
            masks=masks,
            labels=detections.labels,
            scores=detections.scores,
            class_names=self.predictor.class_names,
            colors=colors,
            keypoints=keypoints,
            keypoints_scores=detections.keypoints_scores,
            skeleton=spec.skeleton if spec is not None else (),
        )

    def record(self, file: MediaFile, detections: Detections, frame: int | None = None) -> None:
        """Count the detections; in ``predict``, add them to the results and write their masks."""
        self.detections += len(detections)
        if self.mode != "predict":
            return
        fields: dict[str, Any] = {"file_name": file.path.as_posix()}
        if frame is not None:
            fields["frame"] = frame
        image_id = self.images_done + self.frames_done + 1
        self.results.extend(detections_to_coco(detections, image_id=image_id, **fields))
        if self.save_masks:
            crops = detections.mask_crops
            if crops is None:
                raise _no_masks("save_masks")
            for k, name in enumerate(detections.class_names):
                picture = Image.fromarray(crops.mask(k).numpy().astype(np.uint8) * 255)
                atomic_write(mask_path(self.out, file, k, name, frame), partial(_save_png, picture))
                self.masks_written += 1
        if self.maps is not None:
            self.maps_written += self.maps.write(file, detections, frame)

    def images(self, files: Sequence[MediaFile]) -> None:
        """Read (skipping unreadable files), predict in batches, draw and save each image."""
        if not files:
            return
        bar = progress_bar(
            total=len(files),
            desc=self.mode,
            unit="img",
            leave=False,
            disable=distributed.rank() != 0,
        )

        # Tiles are cut from the decoded file in its own mode (a large scene is never held as floats).
        read = read_pil_image if self.predictor.tile is not None else read_image

        def readable() -> Iterator[tuple[MediaFile, Tensor | Image.Image]]:
            for file in files:
                try:
                    yield file, read(file.path)
                except ImageError as e:
                    self.skipped.append(str(e))
                    tqdm.write(f"skipped {e}", file=sys.stderr)
                    bar.update(1)

        with bar:
            pending = readable()
            while batch := list(islice(pending, self.predictor.batch_size)):
                found = self._detect(batch)
                for (file, image), detections in zip(batch, found, strict=True):
                    self.sizes.append((file.path.as_posix(), *detections.image_size))
                    picture = self.render(image, detections, video=False)
                    path = atomic_write(output_path(self.out, file, self.mode), partial(_save_png, picture))
                    self.written.append(path)
                    self.record(file, detections)
                    self.images_done += 1
                    bar.update(1)

    def _detect(self, batch: list[tuple[MediaFile, Any]]) -> list[Detections]:
        """The model's detections of a batch of images, or its masks for their given boxes."""
        if self.given is None:
            return self.predictor.predict_batch([image for _, image in batch])
        names = self.predictor.class_names
        return [
            self.predictor.masks_for_boxes(
                image, **self.given.arguments(file, tuple(image.shape[-2:]), names)
            )
            for file, image in batch
        ]

    def video(self, file: MediaFile) -> None:
        """Predict on every frame (in batches), writing the drawn frames into an MP4 as they come.

        A video that fails part-way keeps the frames written so far (and counts them).
        """
        path = output_path(self.out, file, self.mode)
        self.videos += 1
        frame_index = 0
        try:
            with VideoReader(file.path) as reader, VideoWriter(path, reader.info.fps) as writer:
                bar = progress_bar(
                    total=reader.info.frames,
                    desc=file.path.name,
                    unit="frame",
                    leave=False,
                    disable=distributed.rank() != 0,
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

    def write_results(self) -> Path:
        """Write ``results.json`` (compact: it holds an RLE per detection)."""
        return write_json(self.out / RESULTS_FILE, self.results, indent=None)

    @property
    def processed(self) -> int:
        """Images and video frames that went through the model."""
        return self.images_done + self.frames_done

    def summary(self) -> list[str]:
        """What was done, in lines for the user (the skipped files were reported as they came)."""
        what = []
        if self.images_done:
            what.append(f"{self.images_done} image{'s' * (self.images_done != 1)}")
        if self.frames_done:
            what.append(f"{self.videos} video{'s' * (self.videos != 1)} ({self.frames_done} frames)")
        where = f"{self.predictor.device}, {self.predictor.precision.name}"
        found = "masks for given boxes" if self.given is not None else "detections"
        lines = [f"{self.mode}: {' and '.join(what) or 'nothing'} on {where}: {self.detections} {found}"]
        if self.written:
            shown = ", ".join(str(p.relative_to(self.out)) for p in self.written[:3])
            more = f" and {len(self.written) - 3} more" if len(self.written) > 3 else ""
            lines.append(f"wrote {shown}{more} into {self.out}")
        if self.mode == "predict":
            lines.append(f"wrote {self.out / RESULTS_FILE} ({len(self.results)} detections)")
        if self.masks_written:
            lines.append(f"wrote {self.masks_written} masks into {self.out / 'masks'}")
        if self.annotations is not None:
            lines.append(f"wrote the predictions as annotations: {self.annotations}")
        if self.maps_written:
            folders = [self.out / kind for kind in ("semantic", "instances") if (self.out / kind).is_dir()]
            lines.append(f"wrote {self.maps_written} maps into {', '.join(map(str, folders))}")
        return lines


def write_predictions(
    predictor: Predictor,
    files: Sequence[MediaFile],
    out: str | Path,
    *,
    mode: Mode,
    save_masks: bool = False,
    overlay_size: int | None = None,
    semantic: bool = False,
    instance_png: bool = False,
    given: GivenBoxes | None = None,
    save_as: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> PredictionWriter:
    """Predict on ``files`` (the images first, then each video) and write the outputs into ``out``.

    Args:
        semantic, instance_png: in ``predict``, also write each prediction's class / instance map.
        given: make masks for these boxes instead of detecting (images only).
        save_as: in ``predict``, also write the image predictions as annotations of this format (see
            :func:`~maskrcnn.engine.prediction_outputs.save_predictions_as`; images only), polygons
            simplified by ``tolerance`` pixels.

    Returns:
        the writer, with its counts (``processed``, ``skipped``...) and :meth:`PredictionWriter.summary`.

    Raises:
        ValueError: what needs masks (the splash, ``save_masks``, the maps, ``save_as``, ``given``) with
            a model without them, or ``given`` / ``save_as`` with videos (before anything is read).
    """
    needs = {
        "splash": mode == "splash",
        "save_masks": save_masks,
        "maps": semantic or instance_png,
        "save_as": save_as is not None,
        "given": given is not None,
    }
    missing = next((what for what, needed in needs.items() if needed), None)
    if not predictor.has_masks and missing is not None:
        raise _no_masks(missing)
    images = [f for f in files if f.kind == "image"]
    videos = [f for f in files if f.kind == "video"]
    for what, wanted in (("given boxes", given is not None), ("save_as", save_as is not None)):
        if wanted and videos:
            raise ValueError(f"{what}: for images only, and the source has videos ({videos[0].path}...)")
    maps = None
    if mode == "predict" and (semantic or instance_png):
        maps = MapWriter(Path(out), len(predictor.class_names), semantic=semantic, instances=instance_png)
    writer = PredictionWriter(
        predictor,
        Path(out),
        mode,
        save_masks=save_masks,
        overlay_size=overlay_size,
        maps=maps,
        given=given,
    )
    writer.out.mkdir(parents=True, exist_ok=True)
    writer.images([images[k] for k in distributed.shard(len(images))])
    for k in distributed.shard(len(videos)):
        writer.video(videos[k])
    if distributed.world_size() > 1:
        writer = merged_predictions(writer)
    if mode == "predict" and distributed.rank() == 0:
        writer.write_results()
        if save_as is not None:
            writer.annotations = save_predictions_as(
                save_as,
                writer.out,
                writer.results,
                writer.sizes,
                class_names=predictor.class_names,
                keypoint_spec=predictor.keypoint_spec,
                tolerance=tolerance,
            )
    return writer
