"""A ``torchrun`` predict run's shares, gathered on rank 0 into what one process would have counted and
written (:func:`merged_predictions`): the same ``results.json``, whatever the number of processes."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from maskrcnn.engine import distributed

if TYPE_CHECKING:
    from maskrcnn.engine.prediction_writer import PredictionWriter

__all__ = ["merged_predictions"]

_COUNTS = ("images_done", "videos", "frames_done", "detections", "masks_written", "maps_written")


def merged_predictions(writer: PredictionWriter) -> PredictionWriter:
    """On rank 0, every process's results and counts as one process would have them; the others keep
    their own.

    One process numbers the images 1, 2, ... in order, then the video frames after them; process ``r``
    numbered its share alike from 1, so its image ids move up by the images of the processes before it,
    and its frame ids by all the images and the frames of the processes before it.
    """
    mine = {name: getattr(writer, name) for name in (*_COUNTS, "results", "written", "skipped", "sizes")}
    shares = distributed.gather_objects(mine, "gathering the predictions")
    if shares is None:
        return writer
    # The same settings, the lists filled below.
    counts = {name: sum(share[name] for share in shares) for name in _COUNTS}
    merged = dataclasses.replace(writer, results=[], written=[], skipped=[], sizes=[], **counts)
    images_before = frames_before = 0
    for share in shares:
        for result in share["results"]:
            local = result["image_id"]
            if local <= share["images_done"]:
                result["image_id"] = local + images_before
            else:
                result["image_id"] = local - share["images_done"] + merged.images_done + frames_before
        images_before += share["images_done"]
        frames_before += share["frames_done"]
    # One process writes the image results (and pictures) first, then those of the videos.
    for phase in ("images", "videos"):
        for share in shares:
            in_images = [r["image_id"] <= merged.images_done for r in share["results"]]
            merged.results.extend(
                r
                for r, image in zip(share["results"], in_images, strict=True)
                if image == (phase == "images")
            )
            split = share["images_done"]
            merged.written.extend(share["written"][:split] if phase == "images" else share["written"][split:])
    merged.skipped = [message for share in shares for message in share["skipped"]]
    merged.sizes = [size for share in shares for size in share["sizes"]]  # in order: shares are contiguous
    return merged
