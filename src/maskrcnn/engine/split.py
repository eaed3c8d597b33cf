"""``data.val_split``: hold out a fraction of the one annotated dataset for validation.

For people with one folder of annotated images and no validation set. The split is

* by image (an image's instances stay together), seeded by ``train.seed``;
* stratified by class where it can be: each image is grouped by its rarest class (the class found in
  the fewest images; images without instances form a group of their own), and every group gives up
  about the same fraction, so a rare class is not left out of validation, or of training, by chance;
* saved in the run directory (``split.json``: the held-out indices and the images they name), so that a
  ``--resume`` trains on the same images and the held-out ones can be evaluated again later
  (:func:`run_split_dataset`).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from maskrcnn.data import InstanceDataset
from maskrcnn.data.loader import mix_seed
from maskrcnn.engine.errors import TrainingError
from maskrcnn.engine.run_dir import RunDir
from maskrcnn.io import write_json

__all__ = [
    "DatasetPart",
    "held_out_indices",
    "load_split_file",
    "run_split_dataset",
    "save_split_file",
    "split_dataset",
]


def held_out_indices(labels_per_image: Sequence[Sequence[int]], fraction: float, seed: int) -> list[int]:
    """The images to hold out (ascending indices): ``round(fraction * N)`` of the ``N``, at least one and
    leaving at least one, stratified by each image's rarest class (see the module docstring).

    Args:
        labels_per_image: the instance labels of every image (``[]`` for an image without instances).
        fraction: in (0, 1).
        seed: the same seed and labels give the same split.

    Raises:
        ValueError: fewer than two images.
    """
    n = len(labels_per_image)
    if n < 2:
        raise ValueError(f"data.val_split needs at least 2 images to split, the data has {n}")
    images_with = Counter(label for labels in labels_per_image for label in set(labels))
    groups: dict[int, list[int]] = defaultdict(list)
    for index, labels in enumerate(labels_per_image):
        # The rarest class decides (ties: the lower label); 0: no instances.
        rarest = min(set(labels), key=lambda c: (images_with[c], c)) if labels else 0
        groups[rarest].append(index)
    wanted = min(max(round(fraction * n), 1), n - 1)
    # Each group's share, rounded down, then the remaining images to the largest remainders, preferring
    # groups that keep an image for training (a class seen in one image only stays in training).
    shares = {key: fraction * len(members) for key, members in groups.items()}
    take = {key: int(share) for key, share in shares.items()}
    by_remainder = sorted(groups, key=lambda k: (take[k] + 1 >= len(groups[k]), -(shares[k] - take[k]), k))
    for key in by_remainder[: max(0, wanted - sum(take.values()))]:
        take[key] += 1
    # A stream of its own: -1 is the train loader's, (seed, epoch) the epochs' orders.
    generator = torch.Generator().manual_seed(mix_seed(seed, -2))
    held_out: list[int] = []
    for key in sorted(groups):
        members = groups[key]
        order = torch.randperm(len(members), generator=generator).tolist()
        held_out.extend(members[i] for i in order[: take[key]])
    return sorted(held_out)


class DatasetPart(Subset):  # type: ignore[type-arg]
    """Some images of an :class:`~maskrcnn.data.InstanceDataset`, with augmentation of their own (the
    dataset's ``transforms`` stay off, so the other part is not augmented), and its ``class_names``,
    ``problems`` and ``source``: what the trainer asks of a dataset.

    Args:
        dataset: the whole dataset.
        indices: the images of this part (indices of ``dataset``).
        name: what the part is, for :meth:`summary` (``training``, ``validation``).
    """

    def __init__(self, dataset: InstanceDataset, indices: Sequence[int], *, name: str) -> None:
        super().__init__(dataset, list(indices))
        self.name = name
        self.transforms: Any = None

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names  # type: ignore[attr-defined,no-any-return]

    @property
    def problems(self) -> list[Any]:
        return self.dataset.problems  # type: ignore[attr-defined,no-any-return]

    @property
    def source(self) -> str:
        return self.dataset.source  # type: ignore[attr-defined,no-any-return]

    def image_reference(self, index: int) -> str:
        return self.dataset.image_reference(self.indices[index])  # type: ignore[attr-defined,no-any-return]

    def summary(self) -> str:
        return f"{len(self)} of {self.dataset.summary()} (the {self.name} part of data.val_split)"  # type: ignore[attr-defined]

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        item = super().__getitem__(index)
        return self.transforms(*item) if self.transforms is not None else item

    def __getitems__(self, indices: list[int]) -> list[Any]:  # type: ignore[override]
        # Subset's batched read would skip the transforms (torch insists on both or neither).
        return [self[i] for i in indices]


def split_dataset(
    dataset: InstanceDataset,
    fraction: float,
    *,
    seed: int,
    path: Path | None,
    resume: bool = False,
    write: bool = True,
) -> tuple[DatasetPart, DatasetPart]:
    """The training and validation parts of ``dataset``: for a resumed run the split saved in ``path``
    (a run directory's ``split.json``), else a new one, saved there when ``write`` (the main process of a
    run; the others draw the same; ``path=None``: not saved).

    Raises:
        TrainingError: the saved split does not fit the data (other images, or another fraction).
    """
    references = [dataset.image_reference(i) for i in range(len(dataset))]
    if resume and path is not None and path.is_file():
        held_out = load_split_file(path, references, fraction)
    else:
        labels = [dataset.instance_labels(i) for i in range(len(dataset))]
        held_out = held_out_indices(labels, fraction, seed)
        if path is not None and write:
            save_split_file(path, held_out, references, fraction=fraction, seed=seed)
    chosen = set(held_out)
    kept = [i for i in range(len(dataset)) if i not in chosen]
    return DatasetPart(dataset, kept, name="training"), DatasetPart(dataset, held_out, name="validation")


def run_split_dataset(dataset: InstanceDataset, run_dir: str | os.PathLike[str], part: str) -> DatasetPart:
    """The ``part`` (``val`` or ``train``) of ``dataset`` that the run in ``run_dir`` split off with
    ``data.val_split``: to evaluate later on the images the run held out (``dataset``: the run's
    training data, read again).

    Raises:
        TrainingError: the run has no ``split.json``, or it was made for other data.
    """
    path = RunDir(run_dir).split
    if not path.is_file():
        raise TrainingError(
            f"{path} does not exist: the run in {run_dir} was not trained with data.val_split"
        )
    references = [dataset.image_reference(i) for i in range(len(dataset))]
    held_out = set(load_split_file(path, references))
    if part == "val":
        return DatasetPart(dataset, sorted(held_out), name="validation")
    return DatasetPart(dataset, [i for i in range(len(dataset)) if i not in held_out], name="training")


def save_split_file(
    path: Path, held_out: Sequence[int], references: Sequence[str], *, fraction: float, seed: int
) -> Path:
    """``split.json``: the fraction and seed, the number of images, and the held-out indices with the
    images they name (so that a change in the data is noticed, and people can read which they are)."""
    return write_json(
        path,
        {
            "val_split": fraction,
            "seed": seed,
            "images": len(references),
            "val": list(held_out),
            "val_images": [references[i] for i in held_out],
        },
    )


def load_split_file(path: Path, references: Sequence[str], fraction: float | None = None) -> list[int]:
    """The held-out indices saved in ``path``, checked against the data's image ``references`` (and the
    run's ``fraction`` when given).

    Raises:
        TrainingError: the file is unreadable, or the data or the fraction changed since it was written.
    """
    import json

    try:
        saved = json.loads(path.read_text())
        held_out, named = [int(i) for i in saved["val"]], list(saved["val_images"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainingError(f"{path}: not a readable split ({type(e).__name__}: {e})") from None
    changed = any(
        not 0 <= i < len(references) or references[i] != name
        for i, name in zip(held_out, named, strict=False)
    )
    if changed or saved.get("images") != len(references):
        raise TrainingError(
            f"{path}: the split was made for other data ({saved.get('images')} images, now "
            f"{len(references)}); give the run's data, or start a new run"
        )
    if fraction is not None and saved.get("val_split") != fraction:
        raise TrainingError(
            f"{path}: the split holds out {saved.get('val_split')} of the images, data.val_split is now "
            f"{fraction}; keep the run's data.val_split, or start a new run"
        )
    return held_out
