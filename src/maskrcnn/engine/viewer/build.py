"""The two reports: of an evaluation (or a training run's final one), and of a dataset alone.

:func:`evaluation_report` reads an evaluation folder's files (``maskrcnn evaluate --out DIR``, or a
run folder after its final validation), puts each detection in its error kind
(:func:`~maskrcnn.engine.evaluation.errors.analyze_errors`, by mask when the results have masks) and
writes the viewer with the images found by their file names, or read again from the dataset.
:func:`dataset_report` shows a dataset's ground truth with check-data's problems.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskrcnn.data.check import CheckReport
from maskrcnn.data.dataset import DataError, without_transforms
from maskrcnn.data.formats.export import CocoBuilder
from maskrcnn.data.image_io import ImageError
from maskrcnn.engine.evaluation.errors import analyze_errors
from maskrcnn.engine.viewer.pictures import Picture, dataset_pictures, locate_files
from maskrcnn.engine.viewer.records import ImageRecord, evaluation_records
from maskrcnn.engine.viewer.sections import dataset_sections, evaluation_sections, run_sections
from maskrcnn.engine.viewer.site import write_site
from maskrcnn.visualize import to_pil

__all__ = ["EvaluationFiles", "dataset_report", "evaluation_report", "read_evaluation", "read_log"]

Progress = Callable[[Iterable[Any]], Iterable[Any]]


@dataclass
class EvaluationFiles:
    """What an evaluation folder holds, read.

    Attributes:
        folder: the folder.
        ground_truth, results, metrics: ``ground_truth.json``, ``results.json``, ``metrics.json``.
        errors, evaluation: ``errors.json`` and ``evaluation.json`` (``None`` where absent).
    """

    folder: Path
    ground_truth: dict[str, Any]
    results: list[dict[str, Any]]
    metrics: dict[str, Any]
    errors: dict[str, Any] | None
    evaluation: dict[str, Any] | None

    @property
    def file_names(self) -> list[str]:
        return [str(image.get("file_name", image["id"])) for image in self.ground_truth["images"]]

    def image_files(self) -> tuple[list[Path | None], list[str]]:
        """The images' files by their names (as written, or inside the folder), and the names not
        found (see :func:`~maskrcnn.engine.viewer.pictures.locate_files`)."""
        return locate_files(self.file_names, [self.folder])


def _read(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_evaluation(folder: str | os.PathLike[str]) -> EvaluationFiles:
    """Read an evaluation folder.

    Raises:
        ValueError: it lacks ``ground_truth.json``, ``results.json`` or ``metrics.json``, or they do
            not fit together (results of images or classes the ground truth does not have).
    """
    folder = Path(folder)
    needed = ("ground_truth.json", "results.json", "metrics.json")
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"{folder}: no {', '.join(missing)}; maskrcnn evaluate --out DIR (or a training run's final "
            "validation) writes them (evaluate again with this version for an older folder)"
        )
    files = EvaluationFiles(
        folder=folder,
        ground_truth=_read(folder / "ground_truth.json"),
        results=_read(folder / "results.json"),
        metrics=_read(folder / "metrics.json"),
        errors=_read(folder / "errors.json") if (folder / "errors.json").is_file() else None,
        evaluation=_read(folder / "evaluation.json") if (folder / "evaluation.json").is_file() else None,
    )
    gt = files.ground_truth
    if not isinstance(gt, dict) or not all(k in gt for k in ("images", "annotations", "categories")):
        raise ValueError(f"{folder / 'ground_truth.json'}: not a COCO instances file")
    images = {image["id"] for image in gt["images"]}
    categories = {c["id"] for c in gt["categories"]}
    for k, result in enumerate(files.results):
        if not isinstance(result, dict) or not all(k in result for k in ("score", "bbox")):
            raise ValueError(f"{folder / 'results.json'}: result {k} has no score or bbox: {result!r:.200}")
        if result.get("image_id") not in images or result.get("category_id") not in categories:
            raise ValueError(
                f"{folder / 'results.json'}: result {k} (image_id {result.get('image_id')!r}, category_id "
                f"{result.get('category_id')!r}) is of an image or class ground_truth.json does not have"
            )
    return files


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A run's ``log.jsonl`` records; a line cut short (a killed run) is passed over."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def evaluation_report(
    files: EvaluationFiles,
    out: str | os.PathLike[str],
    *,
    dataset: Any = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    title: str,
    progress: Progress | None = None,
) -> Path:
    """Write the report of an evaluation into ``out``; returns ``out/index.html``.

    Args:
        files: the evaluation (:func:`read_evaluation`).
        dataset: where the images' pixels come from, matched by ``image_id`` (for data without files,
            like the demo's shapes); ``None``: the files ``ground_truth.json`` names.
        history: a training run's log records: its losses and validation history are shown too.
        title: the page's heading.
    """
    has_masks = "segm" in files.metrics and all("segmentation" in r for r in files.results)
    iou_type = "segm" if has_masks else "bbox"
    analysis = analyze_errors(files.ground_truth, files.results, iou_type=iou_type)
    records = evaluation_records(files.ground_truth, files.results, analysis)
    numbers = {record.image_id: n for n, record in enumerate(records, start=1)}
    pictures: Iterable[tuple[int, Picture]]
    if dataset is not None:
        pictures = dataset_pictures(dataset, numbers)
    else:
        paths, _ = files.image_files()
        pictures = ((n, path) for n, path in enumerate(paths, start=1) if path is not None)
    sections = run_sections(history) if history is not None else []
    sections += evaluation_sections(files.folder, files.metrics, files.errors, files.evaluation)
    detections = len(files.results)
    what = "masks" if has_masks else "boxes"
    subtitle = (
        f"{len(records)} images, {detections} detections; error kinds by {what} at IoU 0.5. "
        "Built by maskrcnn report from " + str(files.folder)
    )
    return write_site(
        out,
        title=title,
        subtitle=subtitle,
        mode="evaluation",
        classes=[c["name"] for c in files.ground_truth["categories"]],
        records=records,
        pictures=pictures,
        sections=sections,
        progress=progress,
    )


def dataset_report(
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    check: CheckReport,
    title: str,
    progress: Progress | None = None,
) -> Path:
    """Write the viewer of a dataset alone into ``out``: every instance, the per-class counts, and the
    images with check-data's problems outlined; returns ``out/index.html``.

    Args:
        check: the dataset's :func:`~maskrcnn.data.check.check_dataset` report.
    """
    builder = CocoBuilder.for_dataset(dataset)
    builder.keypoint_spec = None  # the viewer draws masks and boxes
    references = [dataset.image_reference(i) for i in range(len(dataset))]
    problems: dict[str, list[str]] = {}
    for problem in check.problems:
        if problem.image:
            where = f"{problem.annotation}: " if problem.annotation else ""
            text = f"{problem.severity}: {where}{problem.message}"
            problems.setdefault(problem.image, []).append(text)
    records: list[ImageRecord] = []

    def pictures() -> Iterator[tuple[int, Picture]]:
        # The records are made while the pictures are: each item is loaded once.
        with without_transforms(dataset):
            for index, reference in enumerate(references):
                number = index + 1
                try:
                    image, target = dataset[index]
                except (DataError, ImageError) as e:
                    records.append(ImageRecord(number, reference, 0, 0, problems=[f"error: {e}"]))
                    continue
                height, width = image.shape[-2:]
                builder.add(number, int(height), int(width), target, file_name=reference)
                yield number, to_pil(image)
                records.append(_dataset_record(builder, number, problems.get(reference, [])))

    return write_site(
        out,
        title=title,
        subtitle=f"{len(dataset)} images of {check.source}. Built by maskrcnn inspect data --html",
        mode="dataset",
        classes=list(builder.class_names),
        records=records,
        pictures=pictures(),
        sections=dataset_sections(
            check.source, check.instances, check.crowd, len(check.negatives), check.problems, check.images
        ),
        progress=progress,
    )


def _dataset_record(builder: CocoBuilder, number: int, problems: list[str]) -> ImageRecord:
    """The record of the image the builder added last (its annotations are the builder's last ones)."""
    image = builder.images[-1]
    annotations = []
    for ann in reversed(builder.annotations):
        if ann["image_id"] != number:
            break
        annotations.append(ann)
    annotations.reverse()
    ground_truth = {"images": [image], "annotations": annotations, "categories": builder.categories}
    (record,) = evaluation_records(ground_truth, [], None)
    record.problems = problems
    return record
