"""The summary parts of the report's page, from the files an evaluation or a run wrote: the metrics,
the AP each error kind costs, AP by size and by visibility, per-class figures, the training history,
and for a dataset alone its counts and problems."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from maskrcnn.engine.evaluation.errors import ERROR_KINDS
from maskrcnn.engine.viewer.site import Section
from maskrcnn.visualize import loss_curve_figure, validation_history_figure

__all__ = ["dataset_sections", "evaluation_sections", "run_sections"]

_TITLES = {"bbox": "box", "segm": "mask", "keypoints": "keypoint"}
_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures(folder: Path, names: Sequence[str]) -> dict[str, Any]:
    return {name: folder / name for name in names if (folder / name).is_file()}


def evaluation_sections(
    folder: Path,
    metrics: Mapping[str, Any],
    errors: Mapping[str, Any] | None,
    evaluation: Mapping[str, Any] | None,
) -> list[Section]:
    """The metrics, error analysis and per-class sections of an evaluation folder's files."""
    rows = [[_TITLES[t], *(_number(metrics[t].get(k)) for k in _METRICS)] for t in _TITLES if t in metrics]
    body = _table(["", *_METRICS], rows)
    if "semantic" in metrics:
        s = metrics["semantic"]
        body += (
            f"<p>Semantic maps (score &ge; {s['score_threshold']:g}): mIoU {_number(s['mIoU'])}, pixel "
            f"accuracy {_number(s['pixel_accuracy'])}, background IoU {_number(s['background_IoU'])}.</p>"
        )
    if evaluation:
        body += (
            f"<p class='note'>{evaluation.get('images', '?')} images, {evaluation.get('detections', '?')} "
            f"detections; {evaluation.get('skipped_images', 0)} unreadable images left out.</p>"
        )
    sections = [Section("Metrics", body, _figures(folder, ["pr_curve.png", "confusion_matrix.png"]))]
    if errors:
        sections.append(_error_section(folder, errors))
    return sections


def _error_section(folder: Path, errors: Mapping[str, Any]) -> Section:
    types = [t for t in ("bbox", "segm") if t in errors]
    rows = []
    for t in types:
        e = errors[t]["errors"]
        rows.append(
            [
                _TITLES[t],
                _number(None if e["AP50"] is None else 100 * e["AP50"], 1),
                *(f"{100 * e['ap_gain'][k]:.1f} ({e['counts'][k]})" for k in ERROR_KINDS),
            ]
        )
    body = "<p>AP50 points each kind of error costs (TIDE's oracles), with its count.</p>" + _table(
        ["", "AP50", *ERROR_KINDS], rows
    )
    main = "segm" if "segm" in errors else types[0] if types else None
    if main is not None:
        sizes = errors[main]["sizes"]
        body += "<h3>By object size</h3>" + _table(
            ["size", "objects", "AP"], [[k, v["objects"], _number(v["AP"])] for k, v in sizes.items()]
        )
        visibility = errors[main]["visibility"]
        body += "<h3>By how much of the object no other object covers</h3>" + _table(
            ["group", "objects", "found", "share found"],
            [[k, v["objects"], v["found"], _number(v["recall"])] for k, v in visibility.items()],
        )
    per_class = errors.get("per_class", [])
    if per_class:
        body += "<h3>Per class</h3>" + _table(
            ["class", "objects", "AP", "AP50", "its objects taken for"],
            [
                [
                    row["class"],
                    row["objects"],
                    _number(row["AP"]),
                    _number(row["AP50"]),
                    ", ".join(f"{t['class']} ({t['objects']})" for t in row["taken_for"]) or "-",
                ]
                for row in per_class
            ],
        )
    return Section("Why the AP is what it is", body, _figures(folder, ["errors.png"]))


def run_sections(history: Sequence[Mapping[str, Any]]) -> list[Section]:
    """The training run's losses and validation history (from its ``log.jsonl`` records)."""
    figures: dict[str, Any] = {}
    loss = loss_curve_figure(history)
    if loss is not None:
        figures["loss_curve.png"] = loss
    validations = [r for r in history if r.get("kind") == "validation"]
    body = ""
    if validations:
        types = [t for t in _TITLES if any(t in (r.get("metrics") or {}) for r in validations)]
        header = [
            "step",
            "epoch",
            "validation loss",
            *(f"{_TITLES[t]} {k}" for t in types for k in ("AP", "AP50")),
        ]
        rows = [
            [
                r.get("step", "-"),
                _number(r.get("epoch"), 2),
                _number(r.get("val_loss"), 4),
                *(_number((r.get("metrics") or {}).get(t, {}).get(k)) for t in types for k in ("AP", "AP50")),
            ]
            for r in validations
        ]
        body += _table(header, rows)
        figure = validation_history_figure(history)
        if figure is not None:
            figures["validation_history.png"] = figure
    steps = [r for r in history if r.get("kind") == "train"]
    if steps:
        last = steps[-1]
        loss = _number(last.get("loss"), 4)
        body = f"<p>{len(steps)} logged steps, the last at step {last.get('step')} (loss {loss}).</p>" + body
    return [Section("Training", body or "<p>No training record in the log.</p>", figures)]


def dataset_sections(
    source: str,
    counts: Mapping[str, int],
    crowd: int,
    negatives: int,
    problems: Sequence[Any],
    images: int,
) -> list[Section]:
    """A dataset's per-class counts and its problems (``problems``: check-data's ``Problem`` s)."""
    rows = [[name, count] for name, count in counts.items()]
    body = (
        f"<p>{html.escape(source)}: {images} images ({negatives} without objects), "
        f"{sum(counts.values())} instances" + (f", {crowd} crowd regions" if crowd else "") + ".</p>"
    )
    body += _table(["class", "instances"], rows)
    sections = [Section("Dataset", body)]
    errors = sum(p.severity == "error" for p in problems)
    if problems:
        items = "".join(f"<li class='{html.escape(p.severity)}'>{html.escape(str(p))}</li>" for p in problems)
        text = (
            f"<p>{errors} errors, {len(problems) - errors} warnings (images with problems are outlined in "
            f"red in the grid; order them first with 'problems first').</p><ul class='problems'>{items}</ul>"
        )
    else:
        text = "<p>No problems: every image and annotation reads as it should.</p>"
    sections.append(Section("Problems (check-data)", text))
    return sections
