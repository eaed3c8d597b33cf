"""The evaluation report: the files :func:`write_report` writes, and the one way metrics are rendered.

:func:`format_metrics` (the table ``maskrcnn evaluate`` and ``maskrcnn train`` print) and
:func:`metrics_summary` (one line, for the training log and the demo) share one row formatter, so that
a metric reads the same everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskrcnn.engine.evaluation.analysis import error_report, write_error_report
from maskrcnn.engine.evaluation.coco import IOU_TYPES, metric_names
from maskrcnn.io import atomic_write, write_json, write_text

if TYPE_CHECKING:
    from maskrcnn.engine.evaluation.evaluator import Evaluation

__all__ = [
    "REPORT_FILES",
    "SECTION_TITLES",
    "format_metrics",
    "format_semantic",
    "metrics_summary",
    "write_report",
]

# The files of :func:`write_report`, in the order written.
REPORT_FILES = (
    "metrics.json",
    "per_class.json",
    "per_class.txt",
    "results.json",
    "confusion_matrix.json",
    "confusion_matrix.png",
    "pr_curves.json",
    "pr_curve.png",
    "evaluation.json",
    "ground_truth.json",
    "errors.json",
    "errors.png",
)

SECTION_TITLES = {"bbox": "box", "segm": "mask", "keypoints": "keypoint"}
"""How the metrics' sections are called when printed (and in the per-class columns: ``mask_AP``)."""

Metrics = Mapping[str, Mapping[str, float | None]]


# ----------------------------------------------------------------------------------------------------
# Rendering metrics


def _value(value: float | None) -> str:
    """A metric as printed: 3 decimals, ``-`` where there was nothing to measure."""
    return "-" if value is None else f"{value:.3f}"


def _sections(metrics: Metrics) -> list[str]:
    """The sections ``metrics`` holds, in the order of :data:`IOU_TYPES`."""
    return [s for s in IOU_TYPES if s in metrics]


def _rows(metrics: Metrics, keys: Sequence[str], sections: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``(title, [value text per key])`` per section: the one formatter behind both renderers (a
    metric a section does not have, such as keypoints' ``APs``, is printed ``-``)."""
    return [(SECTION_TITLES[s], [_value(metrics[s].get(k)) for k in keys]) for s in sections]


def format_metrics(
    metrics: Metrics, keys: Sequence[str] = ("AP", "AP50", "AP75", "APs", "APm", "APl")
) -> str:
    """A small table: a header row of ``keys``, then a row per section ``metrics`` holds (``box``,
    ``mask``, ``keypoint``).

    Args:
        metrics: ``{"bbox": {name: value}, "segm": {...}, ...}`` (``None``: printed ``-``).
        keys: the metric names, in the columns' order.
    """
    rows = _rows(metrics, keys, _sections(metrics))
    width = max([6, *(len(title) + 1 for title, _ in rows)])
    lines = [f"{'':{width}}" + "".join(f"{k:>8}" for k in keys)]
    for title, values in rows:
        lines.append(f"{title:{width}}" + "".join(f"{v:>8}" for v in values))
    return "\n".join(lines)


def metrics_summary(
    metrics: Metrics, keys: Sequence[str] = ("AP", "AP50"), sections: Sequence[str] | None = None
) -> str:
    """One line, e.g. ``box AP 0.848 AP50 0.987; mask AP 0.864 AP50 0.984``.

    Args:
        metrics: ``{"bbox": {name: value}, "segm": {...}, ...}`` (``None``: printed ``-``).
        keys: the metric names of each section.
        sections: some of ``bbox`` (printed ``box``), ``segm`` (``mask``), ``keypoints``
            (``keypoint``), in this order; ``None``: those ``metrics`` holds.
    """
    if sections is None:
        sections = _sections(metrics)
    return "; ".join(
        f"{title} " + " ".join(f"{k} {v}" for k, v in zip(keys, values, strict=True))
        for title, values in _rows(metrics, keys, sections)
    )


def format_semantic(semantic: Mapping[str, Any]) -> str:
    """One line of the semantic figures, e.g. ``semantic (score >= 0.5): mIoU 0.712, pixel accuracy
    0.953, background IoU 0.941``.

    Args:
        semantic: the ``semantic`` block of ``metrics.json``
            (:meth:`~maskrcnn.engine.evaluation.semantic.SemanticScores.to_dict`).
    """
    return (
        f"semantic (score >= {semantic['score_threshold']:g}): mIoU {_value(semantic['mIoU'])}, "
        f"pixel accuracy {_value(semantic['pixel_accuracy'])}, "
        f"background IoU {_value(semantic['background_IoU'])}"
    )


def _per_class_table(evaluation: Evaluation, class_names: Sequence[str]) -> str:
    width = max([len("class"), len("all"), *(len(n) for n in class_names)])
    sections = _sections(evaluation.metrics)
    # Columns: AP and AP50 of each section scored ("box AP", "box AP50", "mask AP", ...).
    columns = [(s, key, f"{SECTION_TITLES[s]} {key}") for s in sections for key in ("AP", "AP50")]
    if evaluation.semantic is not None:
        columns.append(("semantic", "IoU", "semantic IoU"))  # its "all" row: the mean IoU
    header = f"{'class':<{width}}  {'instances':>9}" + "".join(f"  {title:>7}" for *_, title in columns)
    rows = [header, "-" * len(header)]

    def row(name: str, count: int, values: Sequence[float | None]) -> str:
        cells = "".join(
            f"  {_value(v):>{max(7, len(title))}}" for v, (*_, title) in zip(values, columns, strict=True)
        )
        return f"{name:<{width}}  {count:>9}" + cells

    for name, r in zip(class_names, evaluation.per_class, strict=True):
        rows.append(
            row(name, r["instances"], [r[f"{SECTION_TITLES.get(s, s)}_{key}"] for s, key, _ in columns])
        )
    m = evaluation.metrics
    mean_iou = None if evaluation.semantic is None else evaluation.semantic.mean_iou
    total = sum(r["instances"] for r in evaluation.per_class)
    rows.append("-" * len(header))
    rows.append(row("all", total, [mean_iou if s == "semantic" else m[s][key] for s, key, _ in columns]))
    return "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------------------------------
# Figures


def _pr_figure(evaluation: Evaluation) -> Any:
    # The object-oriented API without pyplot: no global backend or figure registry is touched, and the
    # PNG is rendered by Agg whatever backend the user's session has.
    from matplotlib.figure import Figure

    sections = _sections(evaluation.metrics)
    figure = Figure(figsize=(5 * len(sections), 4.5), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(sections), sharey=True))
    recall = evaluation.pr_curves["recall"]
    for ax, iou_type in zip(axes, sections, strict=True):
        # Keypoints are matched by their object keypoint similarity where boxes and masks use the IoU.
        match = "OKS" if iou_type == "keypoints" else "IoU"
        for iou, style in (("0.50", "-"), ("0.75", "--")):
            curve = evaluation.pr_curves[iou_type][iou]
            if curve is None:
                continue
            ap = float(np.mean(curve))
            ax.plot(recall, curve, style, label=f"{match} {iou} (AP {ap:.3f})")
        title = SECTION_TITLES[iou_type]
        ax.set_title(f"{title}: AP {_value(evaluation.metrics[iou_type]['AP'])} ({match} 0.50:0.95)")
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left")
    axes[0].set_ylabel("precision (all classes)")
    return figure


def _confusion_figure(evaluation: Evaluation, class_names: Sequence[str]) -> Any:
    from matplotlib.figure import Figure

    names = ["background", *class_names]
    matrix = evaluation.confusion
    size = 2.5 + 0.55 * len(names)
    figure = Figure(figsize=(size, size), layout="constrained")
    ax = figure.subplots()
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    what = "masks" if evaluation.confusion_type == "segm" else "boxes"
    ax.set_title(f"{what}: IoU >= 0.5, score >= {evaluation.score_threshold:g}")
    threshold = matrix.max() / 2 if matrix.size else 0
    if len(names) <= 40:  # beyond that, the numbers would not be legible anyway
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if count > threshold else "black",
            )
    return figure


def _save_figure(figure: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))


# ----------------------------------------------------------------------------------------------------
# The files


def _evaluation_record(evaluation: Evaluation, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The contents of ``evaluation.json``."""
    return {
        "images": evaluation.num_images,
        "skipped_images": evaluation.num_skipped,
        "skipped": evaluation.skipped,
        "detections": len(evaluation.results),
        "classes_not_scored": evaluation.unscored,
        "seconds": round(evaluation.seconds, 3),
        **({"data": dict(data)} if data is not None else {}),
    }


def write_report(
    evaluation: Evaluation,
    out_dir: str | os.PathLike[str],
    class_names: Sequence[str] | None = None,
    *,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the evaluation's files (:data:`REPORT_FILES`) into ``out_dir`` (created), each atomically.

    * ``metrics.json``: exactly ``{"bbox": {...}, "segm": {...}, "keypoints": {...}}`` (the types
      scored, see :class:`~maskrcnn.engine.evaluation.Evaluation`), each with its
      :func:`~maskrcnn.engine.evaluation.metric_names`, then ``"semantic"`` when the evaluation has
      its class maps' figures (:meth:`~maskrcnn.engine.evaluation.semantic.SemanticScores.to_dict`);
    * ``per_class.json`` (the rows of ``Evaluation.per_class``) and ``per_class.txt`` (a table, with a
      ``semantic IoU`` column and the mean IoU in its ``all`` row when there are semantic figures);
    * ``results.json``: the COCO results (original category ids);
    * ``confusion_matrix.json`` and ``confusion_matrix.png``; ``pr_curves.json`` and ``pr_curve.png``;
    * ``evaluation.json``: images evaluated, unreadable images left out, the dataset's classes the
      model could not score, time, and ``data`` as given (how the dataset was read: ``maskrcnn report``
      reads it again for the pictures of images without files);
    * with the evaluation's ground truth: ``ground_truth.json`` (what the results were scored against,
      so that ``maskrcnn analyze`` can redo the error report from the folder), ``errors.json`` and
      ``errors.png`` (:mod:`~maskrcnn.engine.evaluation.analysis`).

    Args:
        class_names: names of labels 1..K (default: the evaluation's).
        data: how the dataset was read (``maskrcnn evaluate`` gives ``format``, ``path``, ``options``,
            ``run``, ``split``); ``None``: not recorded.

    Returns:
        name -> path of each file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(class_names if class_names is not None else evaluation.class_names)
    if len(names) != len(evaluation.per_class):
        raise ValueError(f"{len(names)} class names for {len(evaluation.per_class)} classes evaluated")
    paths = {name: out / name for name in REPORT_FILES}
    metrics: dict[str, Any] = {
        t: {k: evaluation.metrics[t][k] for k in metric_names(t)} for t in _sections(evaluation.metrics)
    }
    if evaluation.semantic is not None:
        metrics["semantic"] = evaluation.semantic.to_dict()
    write_json(paths["metrics.json"], metrics)
    write_json(paths["per_class.json"], evaluation.per_class)
    write_text(paths["per_class.txt"], _per_class_table(evaluation, names))
    write_json(paths["results.json"], evaluation.results, indent=None)  # can be large: compact
    write_json(
        paths["confusion_matrix.json"],
        {
            "labels": ["background", *names],
            "rows": "ground truth",
            "columns": "predicted",
            "iou": "mask" if evaluation.confusion_type == "segm" else "box",
            "iou_threshold": 0.5,
            "score_threshold": evaluation.score_threshold,
            "matrix": evaluation.confusion.tolist(),
        },
    )
    _save_figure(_confusion_figure(evaluation, names), paths["confusion_matrix.png"])
    write_json(paths["pr_curves.json"], evaluation.pr_curves)
    _save_figure(_pr_figure(evaluation), paths["pr_curve.png"])
    write_json(paths["evaluation.json"], _evaluation_record(evaluation, data))
    if evaluation.ground_truth is None:
        return {name: path for name, path in paths.items() if path.name not in _ERROR_FILES}
    write_json(paths["ground_truth.json"], evaluation.ground_truth, indent=None)
    report = error_report(
        evaluation.ground_truth,
        evaluation.results,
        metrics,
        evaluation.per_class,
        evaluation.confusion.tolist(),
        names,
    )
    write_error_report(report, out)
    return paths


_ERROR_FILES = ("ground_truth.json", "errors.json", "errors.png")
