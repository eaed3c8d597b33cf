"""``maskrcnn check-data``: read a whole dataset the way training will, and report what is wrong.

The reader has already checked the annotation file (malformed polygons, unknown categories, duplicate
ids, sizes, missing files); this pass also decodes every image and rasterises every instance, which is
how truncated images and unreadable mask files show up. For a dataset with keypoints it counts them and
warns of visible keypoints outside their object's box (the box of its mask): a point on another object,
or a mask and keypoints that do not belong together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from torch import Tensor

from maskrcnn.data.dataset import DataError, InstanceDataset, Problem, Target, problem_lines
from maskrcnn.data.image_io import ImageError
from maskrcnn.data.keypoints import KeypointSpec

__all__ = ["CheckReport", "check_dataset"]


@dataclass
class CheckReport:
    """The outcome of :func:`check_dataset`.

    Attributes:
        images: images the dataset lists (after the reader left out those it could not use).
        instances: per class name, instances that load (crowd regions counted apart).
        crowd: crowd regions that load.
        negatives: references of the images that load with no object.
        problems: the reader's problems, then those found while loading.
        keypoint_names: the dataset's keypoints (empty: it has none).
        labelled_keypoints: keypoints of non-crowd instances labelled (``v > 0``)...
        visible_keypoints: ... and of those, visible (``v = 2``).
        without_keypoints: non-crowd instances with no labelled keypoint.
    """

    source: str
    images: int = 0
    instances: Counter[str] = field(default_factory=Counter)
    crowd: int = 0
    negatives: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    keypoint_names: tuple[str, ...] = ()
    labelled_keypoints: int = 0
    visible_keypoints: int = 0
    without_keypoints: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No errors: everything listed can be trained on as it is."""
        return not self.errors

    @property
    def empty(self) -> str:
        """Why there is nothing to learn from (no image, or no object in any), or "" when there is."""
        if self.images == 0:
            return "the dataset lists no images it can use"
        if not any(self.instances.values()):
            return (
                f"none of the images ({self.images}) has an object: a model trained on it learns only "
                "background"
            )
        return ""

    @property
    def trainable(self) -> bool:
        """No errors, and something to learn from."""
        return self.ok and not self.empty

    def render(self, *, max_problems: int = 200) -> str:
        """The report as text, one problem per line."""
        lines = [f"dataset: {self.source}", f"images: {self.images} ({len(self.negatives)} without objects)"]
        per_class = ", ".join(f"{name} {count}" for name, count in self.instances.items()) or "none"
        lines.append(
            f"instances per class: {per_class}" + (f"; crowd regions: {self.crowd}" if self.crowd else "")
        )
        if self.negatives:
            shown = ", ".join(self.negatives[:10]) + (" ..." if len(self.negatives) > 10 else "")
            lines.append(f"images without objects: {shown}")
        if self.keypoint_names:
            lines.append(
                f"keypoints: {len(self.keypoint_names)} per instance ({', '.join(self.keypoint_names)}); "
                f"{self.labelled_keypoints} labelled ({self.visible_keypoints} visible), "
                f"{self.without_keypoints} instances with none labelled"
            )
        lines.append(f"problems: {len(self.errors)} errors, {len(self.warnings)} warnings")
        lines += problem_lines(self.problems, shown=max_problems, hint="")
        if self.empty:
            lines.append(f"result: nothing to train on: {self.empty}")
        elif self.ok:
            lines.append("result: OK, trainable")
        else:
            lines.append(
                "result: errors found: training skips the instances and images named above "
                "(--strict makes them fatal); fix them to use all your data"
            )
        return "\n".join(lines)


def check_dataset(
    dataset: InstanceDataset,
    *,
    source: str = "",
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> CheckReport:
    """Load every item of ``dataset`` (without augmentation) and collect what is wrong.

    Args:
        source: how to name the dataset in the report.
        progress: wraps the index iterator (e.g. ``tqdm``).
    """
    report = CheckReport(source or dataset.source or type(dataset).__name__)
    report.problems.extend(dataset.problems)
    if dataset.keypoint_spec is not None:
        report.keypoint_names = tuple(dataset.keypoint_spec.names)
    report.images = len(dataset)
    transforms, dataset.transforms = dataset.transforms, None
    indices: Iterable[int] = range(len(dataset))
    try:
        for index in progress(indices) if progress is not None else indices:
            ref = dataset.image_reference(index)
            try:
                _, target = dataset[index]
            except (DataError, ImageError) as e:
                report.problems.append(
                    Problem("error", report.source, ref, "", _unprefixed(str(e), report.source, ref))
                )
                continue
            crowd = target["iscrowd"].bool()
            report.crowd += int(crowd.sum())
            labels = target["labels"][~crowd].tolist()
            if not labels:
                report.negatives.append(ref)
            for label in labels:
                report.instances[dataset.class_names[label - 1]] += 1
            if dataset.keypoint_spec is not None and "keypoints" in target:
                _check_keypoints(report, dataset.keypoint_spec, target, ~crowd, ref)
    finally:
        dataset.transforms = transforms
    for name in dataset.class_names:
        report.instances.setdefault(name, 0)
    report.instances = Counter({name: report.instances[name] for name in dataset.class_names})
    return report


def _check_keypoints(report: CheckReport, spec: KeypointSpec, target: Target, keep: Tensor, ref: str) -> None:
    """Count one image's keypoints (of the instances ``keep``, bool ``[N]``) into ``report``, and warn of
    visible ones outside their instance's box."""
    keypoints, boxes = target["keypoints"][keep], target["boxes"][keep]
    v = keypoints[..., 2]
    report.labelled_keypoints += int((v > 0).sum())
    report.visible_keypoints += int((v == 2).sum())
    report.without_keypoints += int((~(v > 0).any(1)).sum())
    x, y = keypoints[..., 0], keypoints[..., 1]
    x1, y1, x2, y2 = (boxes[:, i, None] for i in range(4))
    # Hidden keypoints may well lie outside the box of what is visible (a foot behind a table).
    astray = (v == 2) & ((x < x1) | (x > x2) | (y < y1) | (y > y2))
    if bool(astray.any()):
        index = keep.nonzero().flatten().tolist()  # the instances' places in the image's target
        pairs = astray.nonzero().tolist()
        shown = ", ".join(
            f"instance {index[i]} {spec.names[k]} ({float(x[i, k]):.1f}, {float(y[i, k]):.1f})"
            for i, k in pairs[:3]
        )
        more = f" and {len(pairs) - 3} more" if len(pairs) > 3 else ""
        report.problems.append(
            Problem(
                "warning",
                report.source,
                ref,
                "",
                f"{len(pairs)} visible keypoint(s) outside their object's box: {shown}{more}",
            )
        )


def _unprefixed(message: str, source: str, ref: str) -> str:
    """An item's error without the "source, image ref" it starts with when the reader named them (the
    problem line names them itself)."""
    prefix = f"{source}, image {ref}"
    if message.startswith(prefix) and message[len(prefix) : len(prefix) + 2] in (", ", ": "):
        return message[len(prefix) + 2 :]
    return message
