"""Small objects in a large image: the whole image, our tiles, and SAHI's slices; prints one JSON object.

    python benchmarks/tiling.py [--size 4096] [--objects 3000] [--tile 128] [--overlap 48]
                                [--batch-size 16] [--repeat 3] [--methods whole,tiles,sahi]
                                [--precision auto] [--weights tests/fixtures/tiling/shapes-128.safetensors]

Workload: one synthetic ``--size`` x ``--size`` scene (:func:`maskrcnn.data.shapes.random_scene`, seed
``--seed``) of ``--objects`` squares, circles and triangles of size 20..32 (40 to 74 pixels across) drawn
anywhere, heavy overlaps removed (3000 drawn leave about 2500), later shapes hiding earlier ones; and the
small model of the tiling tests (``tools/make_tiling_model.py``: trained on 128-pixel crops of such
scenes, its transform works at 128 pixels). Three ways of detecting the objects:

* ``whole``: the image given to the model at once; its transform shrinks it to 128 pixels, where the
  objects are a pixel or two across (the baseline that shows why one tiles);
* ``tiles``: ``Predictor(tile=--tile, tile_overlap=--overlap, batch_size=--batch-size)``, our tiled
  inference and its mask merge (:mod:`maskrcnn.engine.tiling`);
* ``sahi``: SAHI's ``get_sliced_prediction`` with its defaults (merge GREEDYNMM, IOS 0.5, per class; a
  whole-image prediction added, ``perform_standard_pred``), slices of the same size and overlap ratio
  (``--overlap / --tile``) and ``--batch-size`` slices per model call, through an adapter that runs
  ``Predictor(tile=None)`` on each slice and hands SAHI its masks as polygons (SAHI's own mask form).
  SAHI switches to NMS below a confidence of 0.1; the AP run keeps GREEDYNMM
  (``force_postprocess_type``), so that both runs measure one merge. Its boxes mark pixel centres
  (from polygons through them) and are widened by one pixel to COCO's pixel edges; its masks are
  rasterised from its polygons as SAHI does (``cv2.fillPoly``). Needs ``pip install sahi`` (skipped
  with a note in the JSON when it is missing).
* ``sahi_slices`` (not run unless asked for in ``--methods``): the same without the whole-image
  prediction (``perform_standard_pred=False``), whose few coarse detections SAHI merges into the slices'.

The default overlap, 48 pixels, is where AP stops rising: the objects are up to 65 pixels tall and 74
wide, and at 32 a third of them lie whole in no tile (on a 2048-pixel scene: segm AP 0.805 at 32, 0.815
at 48, 0.813 at 64, the last with half as many tiles again and more false positives).

Each method runs in a fresh process of this script (``--worker METHOD``), so that ``peak_rss_mb``, the
peak resident memory of that process when its detections are done (before the evaluation), is that
method's alone: the scene, the model and the detection. ``rss_before_mb`` is the resident memory before
the first detection (scene drawn, model loaded, libraries imported).

Per method, first one untimed run at ``--ap-threshold`` (0.05, the model's own score threshold), for the
COCO scores: ``segm`` and ``bbox`` AP (IoU 0.50:0.95) and AP50 from pycocotools' ``COCOeval``, with no cap
on detections per image (its default of 100 would keep 4% of the scene's objects; ``summarize`` reads
the first AP at 100 detections whatever ``maxDets`` says, so the APs are read from ``eval["precision"]``);
then ``--repeat`` timed runs at ``--score-threshold`` (0.5), the threshold one uses; ``seconds`` is their
median (the detection alone: from the image in memory to the detections with masks, each method's own
form; no drawing, no evaluation). ``at_score_threshold`` has the COCO scores of the last timed run (a
merge of views depends on which scores are kept: SAHI's GREEDYNMM merges low-scoring detections into
confident ones, so its AP differs between the two runs). The counts come from that run too:

* ``detections``;
* ``matched``: detections whose mask has IoU >= 0.5 with an object of their class not matched yet, in
  order of score (the objects are disjoint, so a detection can have IoU >= 0.5 with one object at most);
* ``duplicates``: detections with IoU >= 0.5 with an object of their class that a higher-scoring detection
  already matched;
* ``unmatched``: the other detections, and in ``unmatched_kinds`` what they are: ``wrong_class`` (IoU >=
  0.5 with an object of another class), ``inside_an_object`` (>= 50% of their pixels in one object: a
  piece of it), ``across_objects`` (overlapping objects, none of them enough), ``background``;
* ``missed``: objects that no detection of their class matches;
* ``split_objects``: objects that no detection (of any class) covers with IoU >= 0.5, but that two or more
  detections each lie in (>= 50% of their pixels inside the object) and together cover for >= 50% of its
  pixels: an object cut in pieces;
* ``cut_objects``: the same counts for the objects that no single tile (slice) holds whole, which only a
  merge across tiles can find whole: ``objects``, and their ``missed``, ``split_objects``, ``duplicates``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import io
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from predict import cpu_name
from timing import median_seconds

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "tests" / "fixtures" / "tiling" / "shapes-128.safetensors"
METHODS = ("whole", "tiles", "sahi", "sahi_slices")
DEFAULT_METHODS = "whole,tiles,sahi"
# The shapes the model was trained on (tools/make_tiling_model.py): sizes 20..32, centres anywhere.
MIN_SIZE, MAX_SIZE = 20, 32
MATCH_IOU = 0.5
INSTALL_SAHI = "pip install sahi (into this environment: .venv/bin/pip install sahi)"


@dataclass
class Found:
    """One method's detections, in COCO's conventions: boxes ``[D, 4]`` xyxy on pixel edges, labels
    ``[D]`` 1..K, scores ``[D]``, highest first, and the masks."""

    boxes: Tensor
    labels: Tensor
    scores: Tensor
    masks: Any  # CroppedMasks


# ----------------------------------------------------------------------------------------------------
# The scene and the three methods


def make_scene(args: argparse.Namespace) -> tuple[Any, Any, Tensor]:
    """``(PIL image, CroppedMasks of the visible objects, labels [N])``."""
    from maskrcnn.data.shapes import draw_large_scene, random_scene

    scene = random_scene(
        np.random.default_rng(args.seed),
        height=args.size,
        width=args.size,
        min_shapes=args.objects,
        max_shapes=args.objects,
        min_size=MIN_SIZE,
        max_size=MAX_SIZE,
        buffer=0,
    )
    return draw_large_scene(scene, height=args.size, width=args.size)


def predictor_detector(predictor_for: Callable[[float], Any]) -> Callable[[Any, float], Found]:
    """``whole`` and ``tiles``: a :class:`Predictor` per threshold, its :class:`Detections` as they are."""

    def detect(image: Any, threshold: float) -> Found:
        found = predictor_for(threshold)(image)
        return Found(found.boxes, found.labels, found.scores, found.mask_crops)

    return detect


def sahi_adapter(model: torch.nn.Module, class_names: list[str], options: dict[str, Any]) -> Any:
    """A SAHI ``DetectionModel`` whose inference is ``Predictor(tile=None)`` on each slice (a numpy
    ``[H, W, 3]`` uint8 array), with its detections as ``ObjectPrediction`` s with polygon masks."""
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction
    from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list
    from sahi.utils.cv import get_coco_segmentation_from_bool_mask

    from maskrcnn.engine.predictor import Predictor

    # SAHI's slices are read-only views of its image; the predictor only reads them.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    class MaskRCNNDetectionModel(DetectionModel):
        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model
            self.category_mapping = {str(k + 1): name for k, name in enumerate(class_names)}
            self._predictors: dict[float, Predictor] = {}

        def _predictor(self) -> Predictor:
            # SAHI changes confidence_threshold for a call (get_sliced_prediction(confidence_threshold=)).
            threshold = float(self.confidence_threshold)
            if threshold not in self._predictors:
                self._predictors[threshold] = Predictor(
                    self.model, class_names, score_threshold=threshold, **options
                )
            return self._predictors[threshold]

        def perform_inference(self, image: np.ndarray) -> None:
            self._original_predictions = [self._predictor()(image)]

        def perform_batch_inference(self, images: list[np.ndarray]) -> None:
            # One model call per batch of slices, as our tiles get (the base class would run them one by one).
            self._original_predictions = self._predictor().predict_batch(list(images))

        def _create_object_prediction_list_from_original_predictions(
            self,
            shift_amount_list: list[list[int | float]] | None = [[0, 0]],  # noqa: B006 (SAHI's signature)
            full_shape_list: list[list[int | float]] | None = None,
        ) -> None:
            shifts = fix_shift_amount_list(shift_amount_list)
            shapes = fix_full_shape_list(full_shape_list)
            per_image = []
            for k, found in enumerate(self._original_predictions):
                predictions = []
                for j, (crop, (y, x)) in enumerate(found.mask_crops):
                    if not crop.numel():
                        continue
                    polygons = get_coco_segmentation_from_bool_mask(crop.numpy())
                    if not polygons:  # a line of pixels has no polygon of three points
                        continue
                    label = int(found.labels[j])
                    predictions.append(
                        ObjectPrediction(
                            segmentation=[
                                [v + (x if i % 2 == 0 else y) for i, v in enumerate(p)] for p in polygons
                            ],
                            category_id=label,
                            category_name=class_names[label - 1],
                            score=float(found.scores[j]),
                            shift_amount=list(shifts[k]),
                            full_shape=None if shapes is None else list(shapes[k]),
                        )
                    )
                per_image.append(predictions)
            self._object_prediction_list_per_image = per_image

    return MaskRCNNDetectionModel(model=model, device=str(options["device"]), confidence_threshold=0.5)


def sahi_to_found(predictions: list[Any], image_size: tuple[int, int]) -> Found:
    """SAHI's merged ``ObjectPrediction`` s as :class:`Found`: masks rasterised from the polygons in
    their own extents (what ``Mask.bool_mask`` gives at full size), boxes widened to pixel edges."""
    from sahi.utils.cv import get_bool_mask_from_coco_segmentation

    from maskrcnn.structures import CroppedMasks

    height, width = image_size
    predictions = sorted(predictions, key=lambda p: -p.score.value)
    boxes, labels, scores, crops, origins = [], [], [], [], []
    for p in predictions:
        polygons = p.mask.segmentation
        points = np.concatenate([np.asarray(q, dtype=np.float64).reshape(-1, 2) for q in polygons])
        (x0, y0), (x1, y1) = np.floor(points.min(0)).astype(int), np.ceil(points.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        local = [
            (np.asarray(q, dtype=np.float64).reshape(-1, 2) - (x0, y0)).ravel().tolist() for q in polygons
        ]
        crop = get_bool_mask_from_coco_segmentation(local, width=max(x1 - x0, 1), height=max(y1 - y0, 1))
        crops.append(torch.from_numpy(crop))
        origins.append((y0, x0))
        bx0, by0, bx1, by1 = p.bbox.to_xyxy()
        boxes.append([bx0, by0, bx1 + 1, by1 + 1])
        labels.append(int(p.category.id))
        scores.append(float(p.score.value))
    return Found(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(scores, dtype=torch.float32),
        CroppedMasks.from_regions(crops, origins, image_size),
    )


def sahi_detector(
    model: torch.nn.Module,
    class_names: list[str],
    options: dict[str, Any],
    args: argparse.Namespace,
    standard_pred: bool,
) -> tuple[Callable[[Any, float], Any], Callable[[Any, tuple[int, int]], Found]]:
    """``sahi`` (``standard_pred``: SAHI's default) and ``sahi_slices``: the detection (returns SAHI's own
    result) and its conversion for the evaluation."""
    from sahi.predict import get_sliced_prediction

    adapter = sahi_adapter(model, class_names, options)
    ratio = args.overlap / args.tile

    def detect(image: Any, threshold: float) -> Any:
        return get_sliced_prediction(
            image,
            adapter,
            slice_height=args.tile,
            slice_width=args.tile,
            overlap_height_ratio=ratio,
            overlap_width_ratio=ratio,
            batch_size=args.batch_size,
            confidence_threshold=threshold,
            force_postprocess_type=True,
            perform_standard_pred=standard_pred,
            verbose=0,
        )

    def convert(result: Any, image_size: tuple[int, int]) -> Found:
        return sahi_to_found(result.object_prediction_list, image_size)

    return detect, convert


def windows(method: str, args: argparse.Namespace) -> np.ndarray:
    """int64 ``[T, 4]`` ``(y0, x0, y1, x1)``: the tiles (slices) the method looks through."""
    if method == "whole":
        return np.array([[0, 0, args.size, args.size]], dtype=np.int64)
    if method == "tiles":
        from maskrcnn.engine.tiling import tile_windows

        tiles = tile_windows(args.size, args.size, size=args.tile, overlap=args.overlap)
        return np.array([(w.top, w.left, w.bottom, w.right) for w in tiles], dtype=np.int64)
    from sahi.slicing import get_slice_bboxes

    ratio = args.overlap / args.tile
    slices = get_slice_bboxes(
        args.size,
        args.size,
        slice_height=args.tile,
        slice_width=args.tile,
        overlap_height_ratio=ratio,
        overlap_width_ratio=ratio,
    )
    return np.array([(y0, x0, y1, x1) for x0, y0, x1, y1 in slices], dtype=np.int64)


# ----------------------------------------------------------------------------------------------------
# Evaluation


def extents(masks: Any) -> np.ndarray:
    """int64 ``[N, 4]`` ``(y0, x0, y1, x1)`` of each crop, ends exclusive."""
    rows = [(y, x, y + c.shape[0], x + c.shape[1]) for c, (y, x) in masks]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def coco_ap(gt_masks: Any, gt_labels: Tensor, found: Found, class_names: list[str]) -> dict[str, Any]:
    """``{"segm": {"AP", "AP50"}, "bbox": {...}}`` from pycocotools, no cap on detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from maskrcnn.engine.evaluation.coco import instances_to_results

    height, width = gt_masks.image_size
    annotations = []
    for k, (rle, area, box, label) in enumerate(
        zip(
            gt_masks.rle(),
            gt_masks.areas().tolist(),
            gt_masks.boxes().tolist(),
            gt_labels.tolist(),
            strict=True,
        )
    ):
        x0, y0, x1, y1 = box
        annotations.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": int(label),
                "segmentation": rle,
                "area": int(area),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "iscrowd": 0,
            }
        )
    category_ids = list(range(1, len(class_names) + 1))
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "height": height, "width": width}],
        "categories": [{"id": c, "name": n} for c, n in zip(category_ids, class_names, strict=True)],
        "annotations": annotations,
    }
    results = instances_to_results(1, found.boxes, found.labels, found.scores, found.masks, category_ids)
    scores: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        for iou_type in ("segm", "bbox"):
            if not results:
                scores[iou_type] = {"AP": 0.0, "AP50": 0.0}
                continue
            # The segm evaluation sees no box, so that a detection's area is its mask's (as COCO's server).
            drop = "bbox" if iou_type == "segm" else "segmentation"
            dt = gt.loadRes([{k: v for k, v in r.items() if k != drop} for r in results])
            coco_eval = COCOeval(gt, dt, iou_type)
            coco_eval.params.maxDets = [1, 100, max(10_000, len(results))]
            # Only the "all" area range: each range is another pass of COCOeval's matching loops.
            coco_eval.params.areaRng = [[0.0, 1e10]]
            coco_eval.params.areaRngLbl = ["all"]
            coco_eval.evaluate()
            coco_eval.accumulate()
            precision = coco_eval.eval["precision"][:, :, :, 0, -1]  # [IoU, recall, class], all detections
            scores[iou_type] = {
                "AP": round(float(precision[precision > -1].mean()), 4),
                "AP50": round(float(precision[0][precision[0] > -1].mean()), 4),
            }
    return scores


def pair_overlaps(gt_masks: Any, masks: Any) -> dict[tuple[int, int], int]:
    """``{(object, detection): shared pixels}`` for the pairs that share a pixel."""
    ge, de = extents(gt_masks), extents(masks)
    gt_crops = [c.numpy() for c in gt_masks.crops]
    crops = [c.numpy() for c in masks.crops]
    shared: dict[tuple[int, int], int] = {}
    for start in range(0, len(ge), 256):
        a = ge[start : start + 256, None]
        lo = np.maximum(a[..., :2], de[None, :, :2])
        hi = np.minimum(a[..., 2:], de[None, :, 2:])
        for g, d in zip(*np.nonzero((lo < hi).all(axis=-1)), strict=True):
            g = int(g) + start
            (y0, x0), (y1, x1) = lo[g - start, d], hi[g - start, d]
            gy, gx = ge[g, :2]
            dy, dx = de[d, :2]
            inter = np.count_nonzero(
                gt_crops[g][y0 - gy : y1 - gy, x0 - gx : x1 - gx]
                & crops[d][y0 - dy : y1 - dy, x0 - dx : x1 - dx]
            )
            if inter:
                shared[(g, int(d))] = int(inter)
    return shared


def counts(gt_masks: Any, gt_labels: Tensor, found: Found, tiles: np.ndarray) -> dict[str, Any]:
    """The counts of the module docstring for detections ``found`` (highest score first)."""
    shared = pair_overlaps(gt_masks, found.masks)
    gt_area = gt_masks.areas().numpy()
    det_area = found.masks.areas().numpy()
    gt_label, det_label = gt_labels.numpy(), found.labels.numpy()
    by_detection: dict[int, list[tuple[int, int]]] = {}
    by_object: dict[int, list[tuple[int, int]]] = {}
    for (g, d), inter in shared.items():
        by_detection.setdefault(d, []).append((g, inter))
        by_object.setdefault(g, []).append((d, inter))

    def iou(g: int, d: int, inter: int) -> float:
        return inter / (gt_area[g] + det_area[d] - inter)

    matched_by: dict[int, int] = {}
    duplicates_of: list[int] = []
    for d in range(len(det_area)):  # highest score first
        hits = [(iou(g, d, i), g) for g, i in by_detection.get(d, []) if gt_label[g] == det_label[d]]
        hits = [(v, g) for v, g in hits if v >= MATCH_IOU]
        if not hits:
            continue
        g = max(hits)[1]
        if g in matched_by:
            duplicates_of.append(g)
        else:
            matched_by[g] = d
    split = []
    for g in range(len(gt_area)):
        overlapping = by_object.get(g, [])
        if any(iou(g, d, i) >= MATCH_IOU for d, i in overlapping):
            continue
        pieces = [d for d, i in overlapping if i >= 0.5 * det_area[d]]
        if len(pieces) < 2:
            continue
        if piece_cover(gt_masks, found.masks, g, pieces) >= 0.5 * gt_area[g]:
            split.append(g)
    # What the detections that match nothing are: an object of another class, a part of one object (a
    # piece), a mask across several objects or too large, or nothing at all.
    kinds = {"wrong_class": 0, "inside_an_object": 0, "across_objects": 0, "background": 0}
    claimed = set(matched_by.values())
    duplicates = len(duplicates_of)
    for d in range(len(det_area)):
        hits = by_detection.get(d, [])
        if d in claimed or any(iou(g, d, i) >= MATCH_IOU and gt_label[g] == det_label[d] for g, i in hits):
            continue
        if any(iou(g, d, i) >= MATCH_IOU for g, i in hits):
            kinds["wrong_class"] += 1
        elif any(i >= 0.5 * det_area[d] for _, i in hits):
            kinds["inside_an_object"] += 1
        elif hits:
            kinds["across_objects"] += 1
        else:
            kinds["background"] += 1
    ge = extents(gt_masks)
    whole_in_a_tile = (
        (ge[:, None, :2] >= tiles[None, :, :2]).all(-1) & (ge[:, None, 2:] <= tiles[None, :, 2:]).all(-1)
    ).any(axis=1)
    cut = ~whole_in_a_tile
    missed = np.ones(len(gt_area), dtype=bool)
    missed[list(matched_by)] = False
    return {
        "detections": len(det_area),
        "matched": len(matched_by),
        "duplicates": len(duplicates_of),
        "unmatched": len(det_area) - len(matched_by) - duplicates,
        "unmatched_kinds": kinds,
        "missed": int(missed.sum()),
        "split_objects": len(split),
        "cut_objects": {
            "objects": int(cut.sum()),
            "missed": int((missed & cut).sum()),
            "split_objects": int(cut[split].sum()) if split else 0,
            "duplicates": int(cut[duplicates_of].sum()) if duplicates_of else 0,
        },
    }


def piece_cover(gt_masks: Any, masks: Any, g: int, pieces: list[int]) -> int:
    """Pixels of object ``g`` inside the union of detections ``pieces``."""
    crop, (gy, gx) = gt_masks.crops[g].numpy(), gt_masks.origins[g]
    covered = np.zeros_like(crop)
    for d in pieces:
        piece, (dy, dx) = masks.crops[d].numpy(), masks.origins[d]
        y0, x0 = max(gy, dy), max(gx, dx)
        y1, x1 = min(gy + crop.shape[0], dy + piece.shape[0]), min(gx + crop.shape[1], dx + piece.shape[1])
        if y0 < y1 and x0 < x1:
            covered[y0 - gy : y1 - gy, x0 - gx : x1 - gx] |= piece[y0 - dy : y1 - dy, x0 - dx : x1 - dx]
    return int(np.count_nonzero(covered & crop))


# ----------------------------------------------------------------------------------------------------
# One method in its own process


def rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def as_found(found: Found, _size: tuple[int, int]) -> Found:
    """``whole`` and ``tiles`` detect in :class:`Found` form already."""
    return found


def worker(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one method as the module docstring says; its JSON entry."""
    from maskrcnn.engine.predictor import Predictor
    from maskrcnn.weights import load_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    image, gt_masks, gt_labels = make_scene(args)
    checkpoint = load_checkpoint(args.weights)
    model, class_names = checkpoint.model, list(checkpoint.class_names)
    options = {"device": args.device, "precision": args.precision}
    convert: Callable[[Any, tuple[int, int]], Found] = as_found
    if method.startswith("sahi"):
        detect, convert = sahi_detector(model, class_names, options, args, method == "sahi")
    else:
        tiling = (
            {"tile": args.tile, "tile_overlap": args.overlap, "batch_size": args.batch_size}
            if method == "tiles"
            else {}
        )
        detect = predictor_detector(
            lambda threshold: Predictor(model, class_names, score_threshold=threshold, **options, **tiling)
        )
    report: dict[str, Any] = {"rss_before_mb": rss_mb("VmRSS")}
    size = (args.size, args.size)

    start = time.perf_counter()
    ap_found = convert(detect(image, args.ap_threshold), size)
    print(f"[{method}] run at {args.ap_threshold}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    last: list[Any] = []
    runs: list[float] = []

    def timed() -> None:
        last[:] = [None]  # the previous run's detections go before the next run starts
        begin = time.perf_counter()
        last[:] = [detect(image, args.score_threshold)]
        runs.append(round(time.perf_counter() - begin, 2))  # each run too: these machines are shared

    seconds = median_seconds(timed, args.repeat, warmup=0)  # the run above warmed up
    report["peak_rss_mb"] = rss_mb("VmHWM")
    report["seconds"] = round(seconds, 2)
    report["runs_seconds"] = runs
    print(f"[{method}] {args.repeat} runs at {args.score_threshold}: median {seconds:.1f} s", file=sys.stderr)
    found = convert(last[0], size)
    del last[:]

    start = time.perf_counter()
    report["detections_ap_run"] = len(ap_found.scores)
    report.update(coco_ap(gt_masks, gt_labels, ap_found, class_names))
    del ap_found
    report["at_score_threshold"] = coco_ap(gt_masks, gt_labels, found, class_names)
    report.update(counts(gt_masks, gt_labels, found, windows(method, args)))
    print(f"[{method}] evaluation: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    report["tiles"] = len(windows(method, args))
    report["torch_threads"] = torch.get_num_threads()
    report["precision"] = Predictor(model, class_names, **options).precision.name
    if method.startswith("sahi"):
        report["sahi_version"] = importlib.metadata.version("sahi")
    return report


def run_worker(method: str, argv: list[str]) -> dict[str, Any]:
    """This script as ``--worker METHOD`` in a fresh process; its JSON."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, *argv, "--worker", method],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {"error": f"the worker exited with {done.returncode} (its messages are on stderr)"}
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["process_seconds"] = round(time.perf_counter() - start, 1)
    return report


def git_commit() -> str | None:
    """The checked-out commit (the merge under test changes; the working tree may differ from it)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=4096, help="scene side in pixels")
    parser.add_argument("--objects", type=int, default=3000, help="shapes drawn (before overlap removal)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=48, help="pixels neighbouring tiles share")
    parser.add_argument("--batch-size", type=int, default=16, help="tiles (slices) per model call")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method")
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument(
        "--methods", default=DEFAULT_METHODS, help="comma-separated, of " + ", ".join(METHODS)
    )
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="for the counts and the timing")
    parser.add_argument("--ap-threshold", type=float, default=0.05, help="for the COCO scores")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose among {', '.join(METHODS)}")
    return args


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    if args.worker:
        with contextlib.redirect_stdout(sys.stderr):  # only the JSON goes to stdout
            report = worker(args.worker, args)
        print(json.dumps(report))
        return
    if not args.weights.exists():
        raise SystemExit(
            f"{args.weights}: no such checkpoint; make it with: python tools/make_tiling_model.py"
        )
    start = time.perf_counter()
    from maskrcnn.weights import load_checkpoint

    checkpoint = load_checkpoint(args.weights)
    _, gt_masks, _ = make_scene(args)
    areas = gt_masks.areas().float()
    report: dict[str, Any] = {
        "machine": {
            "cpu": cpu_name(),
            "cpus": len(os.sched_getaffinity(0)),
            "torch": torch.__version__,
            "device": args.device,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        },
        "commit": git_commit(),
        "scene": {
            "size": [args.size, args.size],
            "seed": args.seed,
            "shapes_drawn": args.objects,
            "objects": len(gt_masks),
            "shape_sizes": [MIN_SIZE, MAX_SIZE],
            "object_pixels": {
                "min": int(areas.min()),
                "median": int(areas.median()),
                "max": int(areas.max()),
            },
        },
        "model": {
            "weights": str(args.weights.resolve().relative_to(ROOT))
            if args.weights.resolve().is_relative_to(ROOT)
            else str(args.weights),
            "class_names": list(checkpoint.class_names),
            "input_size": list(checkpoint.model.transform.min_size),
            "trained_steps": checkpoint.extra.get("step"),
            "validation_segm_AP": (checkpoint.extra.get("metrics") or {}).get("segm", {}).get("AP"),
        },
        "tiling": {
            "tile": args.tile,
            "overlap": args.overlap,
            "sahi_overlap_ratio": args.overlap / args.tile,
            "batch_size": args.batch_size,
        },
        "thresholds": {"ap": args.ap_threshold, "counts_and_timing": args.score_threshold},
        "repeat": args.repeat,
        "methods": {},
    }
    del gt_masks
    for method in args.methods.split(","):
        if method.startswith("sahi") and importlib.util.find_spec("sahi") is None:
            report["methods"][method] = {"skipped": f"sahi is not installed: {INSTALL_SAHI}"}
            print(f"[{method}] skipped: not installed; {INSTALL_SAHI}", file=sys.stderr)
            continue
        print(f"[{method}] ...", file=sys.stderr)
        report["methods"][method] = run_worker(method, argv)
    threads = {m.get("torch_threads") for m in report["methods"].values() if "torch_threads" in m}
    report["machine"]["torch_threads"] = threads.pop() if len(threads) == 1 else sorted(threads)
    report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    report["seconds_total"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
