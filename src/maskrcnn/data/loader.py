"""Batching datasets for training: collation, bad-item skipping, aspect-ratio grouping, repeat-factor
sampling, and a reproducible :class:`~torch.utils.data.DataLoader` built from them.

:func:`make_data_loader` is the entry point; its batches are :class:`Batch` tuples of lists (images differ
in size; the model's transform pads them). A corrupt file does not stop an epoch: its item is left out and
the message is in ``batch.skipped`` for the training loop to report.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from maskrcnn.data.dataset import DataError, Target, resolve_index
from maskrcnn.data.image_io import ImageError
from maskrcnn.data.transforms import select_instances

__all__ = [
    "BadItem",
    "Batch",
    "GroupedBatchSampler",
    "RepeatFactorSampler",
    "SkipBadItems",
    "aspect_ratio_groups",
    "collate",
    "drop_crowd",
    "make_data_loader",
    "mix_seed",
    "repeat_factors",
    "seed_worker",
    "set_epoch",
]

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    """One batch: parallel lists of images (float ``[3, H_i, W_i]``) and targets, and the messages of the
    items that could not be loaded (left out of the lists)."""

    images: list[Tensor]
    targets: list[Target]
    skipped: list[str]


class BadItem(NamedTuple):
    """What :class:`SkipBadItems` returns instead of an item that failed to load."""

    index: int
    message: str


def collate(items: Sequence[tuple[Tensor, Target] | BadItem]) -> Batch:
    """Gather dataset items into a :class:`Batch` (lists, no stacking); :class:`BadItem` s go to
    ``skipped``. A batch may come out empty if every item failed."""
    images: list[Tensor] = []
    targets: list[Target] = []
    skipped: list[str] = []
    for item in items:
        if isinstance(item, BadItem):
            skipped.append(item.message)
        else:
            image, target = item
            images.append(image)
            targets.append(target)
    return Batch(images, targets, skipped)


def _reference(dataset: Any, index: int) -> str:
    """How to name item ``index`` of ``dataset`` in a message (through ``Subset`` s)."""
    dataset, index = resolve_index(dataset, index)
    if hasattr(dataset, "image_reference"):
        try:
            return str(dataset.image_reference(index))
        except Exception:  # a name is only for the message; never fail while reporting a failure
            pass
    return f"item {index}"


class SkipBadItems(Dataset[Any]):
    """Wrap a dataset so that an item failing with :class:`DataError` or :class:`ImageError` becomes a
    :class:`BadItem` carrying the image's reference and the error, instead of an exception that would
    end the epoch (in a worker process too). Other exceptions (bugs) still propagate.

    ``len`` and attribute access (``class_names``, ``image_size``...) pass through to the dataset.
    """

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except (DataError, ImageError) as e:
            ref, message = _reference(self.dataset, index), str(e)
            # The errors usually name the file already: do not repeat it.
            return BadItem(index, message if ref in message else f"{ref}: {message}")

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found normally; "dataset" itself is absent while unpickling.
        if name == "dataset" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def drop_crowd(target: Target) -> Target:
    """The target without its crowd regions (``iscrowd == 1``): they are not trained as instances."""
    keep = target["iscrowd"] == 0
    if bool(keep.all()):
        return target
    return select_instances(target, keep)


# ----------------------------------------------------------------------------------------------------
# Aspect-ratio grouping


def _image_size(dataset: Any, index: int) -> tuple[int, int]:
    dataset, index = resolve_index(dataset, index)
    if hasattr(dataset, "image_size"):
        h, w = dataset.image_size(index)
        return int(h), int(w)
    # A plain Dataset: the only way to know is to load the item.
    h, w = dataset[index][0].shape[-2:]
    return int(h), int(w)


def aspect_ratio_groups(dataset: Any, bins: Sequence[float] = (1.0,)) -> list[int]:
    """Group id of every image by its aspect ratio ``width / height``, from ``dataset.image_size`` (the
    pixels are not decoded; ``Subset`` and :class:`SkipBadItems` are seen through).

    Args:
        bins: increasing ratio boundaries; group ``g`` holds ratios in ``[bins[g - 1], bins[g])``. The
            default separates portrait (group 0) from landscape and square (group 1) images.

    Returns:
        one group id per image, in ``0..len(bins)``. Images whose size cannot be read go to group 0
        (loading them will fail and be reported anyway).
    """
    edges = [float(b) for b in bins]
    if edges != sorted(edges):
        raise ValueError(f"bins must be increasing, got {list(bins)}")
    groups: list[int] = []
    unreadable: list[str] = []
    for i in range(len(dataset)):
        try:
            h, w = _image_size(dataset, i)
        except (DataError, ImageError) as e:
            unreadable.append(str(e))
            groups.append(0)
            continue
        groups.append(bisect.bisect_right(edges, w / h))
    if unreadable:
        log.warning("%d image size(s) unreadable, e.g. %s", len(unreadable), unreadable[0])
    return groups


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches of indices from ``sampler`` whose images all belong to one group (torchvision's idea:
    images of similar aspect ratio pad to less wasted area).

    Indices are taken in the sampler's order and buffered per group; a group's buffer is yielded as soon
    as it holds ``batch_size`` indices. At the end of the sampler, each group's leftovers form a last,
    smaller batch (in increasing group order), so no image is lost; ``drop_last`` drops them instead.
    Deterministic given the sampler's order.

    Args:
        sampler: yields dataset indices (``RandomSampler``, :class:`RepeatFactorSampler`, a
            ``DistributedSampler``...).
        group_ids: group of each dataset index (e.g. :func:`aspect_ratio_groups`).
        batch_size: images per batch.
        drop_last: drop the incomplete batches at the end of each pass.
    """

    def __init__(
        self, sampler: Sampler[int], group_ids: Sequence[int], batch_size: int, *, drop_last: bool = False
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = sampler
        self.group_ids = [int(g) for g in group_ids]
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        buffers: dict[int, list[int]] = {}
        for index in self.sampler:
            buffer = buffers.setdefault(self.group_ids[index], [])
            buffer.append(int(index))
            if len(buffer) == self.batch_size:
                yield buffer
                buffers[self.group_ids[index]] = []
        if not self.drop_last:
            for group in sorted(buffers):
                if buffers[group]:
                    yield buffers[group]

    def __len__(self) -> int:
        """The number of batches per pass when the sampler visits every image once (``RandomSampler``,
        ``SequentialSampler``); otherwise (subsets, repeats) an estimate from the group proportions,
        since counting exactly would mean drawing the sampler's random order."""
        counts = np.bincount(self.group_ids) if self.group_ids else np.zeros(0, dtype=np.int64)
        total = len(self.sampler)  # type: ignore[arg-type]
        if total != len(self.group_ids):
            counts = counts * (total / max(1, len(self.group_ids)))
        per_group = counts / self.batch_size
        batches = np.floor(per_group) if self.drop_last else np.ceil(per_group - 1e-9)
        return int(batches.sum())

    def set_epoch(self, epoch: int) -> None:
        """Forward to the sampler (``DistributedSampler``, :class:`RepeatFactorSampler`) if it has one."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


# ----------------------------------------------------------------------------------------------------
# Repeat factor sampling


def _instance_labels(dataset: Any, index: int) -> list[int]:
    dataset, index = resolve_index(dataset, index)
    return [int(v) for v in dataset.instance_labels(index)]


def repeat_factors(labels_per_image: Sequence[Sequence[int]], threshold: float) -> Tensor:
    """LVIS repeat factors (Gupta et al., 2019): ``float64 [N]``, one per image.

    For each class ``c``, ``f_c`` is the fraction of images containing it and ``r_c = max(1,
    sqrt(threshold / f_c))``; an image's factor is the largest ``r_c`` of its classes (1 for an image
    without instances).
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    n = len(labels_per_image)
    images_with: dict[int, int] = {}
    for labels in labels_per_image:
        for c in set(labels):
            images_with[c] = images_with.get(c, 0) + 1
    class_factor = {c: max(1.0, math.sqrt(threshold / (k / n))) for c, k in images_with.items()}
    return torch.tensor(
        [max((class_factor[c] for c in labels), default=1.0) for labels in labels_per_image],
        dtype=torch.float64,
    )


def mix_seed(*values: int) -> int:
    """A 63-bit generator seed from several integers (``(seed, epoch)``, ``(seed, epoch, index)``...):
    nearby tuples give unrelated streams."""
    digest = hashlib.sha256(",".join(str(int(v)) for v in values).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class RepeatFactorSampler(Sampler[int]):
    """Repeat-factor sampling for long-tailed data (LVIS): images with rare classes are seen more often.

    Each pass repeats image ``i`` ``floor(r_i)`` times plus once more with probability ``r_i -
    floor(r_i)`` (stochastic rounding; see :func:`repeat_factors`), then shuffles, all with a
    generator seeded by ``(seed, epoch)``. Labels come from ``dataset.instance_labels`` (no decoding for
    the annotation readers; crowd regions excluded).

    Successive passes use epochs 0, 1, 2...; :meth:`set_epoch` fixes the epoch of the next pass (resume,
    distributed training), so a pass is a function of ``(seed, epoch)`` alone.

    Args:
        dataset: an :class:`~maskrcnn.data.InstanceDataset` (or ``Subset`` / :class:`SkipBadItems` of one).
        threshold: frequency below which a class is repeated (LVIS: 0.001).
        seed: base seed.
        shuffle: shuffle each pass (else indices ascend, repeats adjacent).

    Attributes:
        factors: ``float64 [N]`` repeat factor of each image.
    """

    def __init__(self, dataset: Any, *, threshold: float, seed: int = 0, shuffle: bool = True) -> None:
        labels = [_instance_labels(dataset, i) for i in range(len(dataset))]
        self.factors = repeat_factors(labels, threshold)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass the one of ``epoch``."""
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> Tensor:
        """``int64 [M]`` indices of the pass of ``epoch`` (``M`` varies around ``len(self)``)."""
        g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        whole = self.factors.floor()
        counts = whole + (
            torch.rand(self.factors.shape, generator=g, dtype=torch.float64) < self.factors - whole
        )
        indices = torch.arange(len(self.factors)).repeat_interleave(counts.long())
        if self.shuffle:
            indices = indices[torch.randperm(indices.numel(), generator=g)]
        return indices

    def __iter__(self) -> Iterator[int]:
        indices = self.indices(self.epoch)
        self.epoch += 1
        yield from indices.tolist()

    def __len__(self) -> int:
        """The expected number of indices per pass, ``round(sum(factors))``; a pass yields a few more or
        fewer (stochastic rounding)."""
        return round(float(self.factors.sum()))


# ----------------------------------------------------------------------------------------------------
# The loader


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random`` and numpy from the worker's torch seed.

    The DataLoader seeds worker ``k``'s torch generator with ``base_seed + k``, ``base_seed`` drawn from
    the loader's (seeded) generator; Python's and numpy's global generators are seeded from that too, so
    augmentation drawing from any of the three is reproducible and differs between workers.
    """
    seed = torch.initial_seed()
    random.seed(seed)
    # Seeding the global generator is the point: user transforms may call np.random directly (32 bits).
    np.random.seed(seed % 2**32)  # noqa: NPY002


def set_epoch(loader: DataLoader[Any], epoch: int) -> None:
    """Tell the loader's sampler (plain or inside its batch sampler) the epoch, if it uses one
    (:class:`RepeatFactorSampler`, ``DistributedSampler``); call before each epoch."""
    for sampler in (loader.sampler, getattr(loader.batch_sampler, "sampler", None), loader.batch_sampler):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # type: ignore[union-attr]
            return


def make_data_loader(
    dataset: Dataset[Any],
    *,
    batch_size: int,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    aspect_ratio_grouping: bool = True,
    repeat_factor_threshold: float | None = None,
    skip_bad_items: bool = True,
    drop_last: bool = False,
    sampler: Sampler[int] | None = None,
) -> DataLoader[Batch]:
    """A DataLoader of :class:`Batch` es.

    Args:
        dataset: map-style dataset of ``(image, target)`` items (an ``InstanceDataset``).
        batch_size: images per batch.
        shuffle: random order each epoch (from a generator seeded with ``seed``); ignored when a
            ``sampler`` or a repeat-factor threshold decides the order.
        num_workers: worker processes (0: load in this process). Workers are persistent and seeded
            from ``seed``, so the same seed gives the same augmented batches. With 0, augmentation
            draws from this process's torch generator: seed it with ``torch.manual_seed``.
        seed: base seed of the order, the repeat factors' rounding and the workers' generators.
        aspect_ratio_grouping: batch portrait and landscape images separately
            (:class:`GroupedBatchSampler`, sizes read without decoding).
        repeat_factor_threshold: enable :class:`RepeatFactorSampler` with this threshold.
        skip_bad_items: leave out items failing with ``DataError`` / ``ImageError`` (reported in
            ``batch.skipped``) instead of raising.
        drop_last: drop incomplete batches.
        sampler: a custom index sampler (e.g. a ``DistributedSampler``), replacing ``shuffle`` and the
            repeat-factor sampler.

    Call :func:`set_epoch` before each epoch when the sampler depends on it.
    """
    if sampler is not None and repeat_factor_threshold is not None:
        raise ValueError("pass either a sampler or repeat_factor_threshold, not both")
    data: Dataset[Any] = SkipBadItems(dataset) if skip_bad_items else dataset
    if sampler is None:
        if repeat_factor_threshold is not None:
            sampler = RepeatFactorSampler(
                dataset, threshold=repeat_factor_threshold, seed=seed, shuffle=shuffle
            )
        elif shuffle:
            sampler = RandomSampler(data, generator=torch.Generator().manual_seed(seed))
        else:
            sampler = SequentialSampler(data)
    batch_sampler: Sampler[list[int]]
    if aspect_ratio_grouping:
        batch_sampler = GroupedBatchSampler(
            sampler, aspect_ratio_groups(dataset), batch_size, drop_last=drop_last
        )
    else:
        batch_sampler = BatchSampler(sampler, batch_size, drop_last)
    # The loader's generator draws the workers' base seed; a different stream from the order's.
    loader_seed = mix_seed(seed, -1)
    return DataLoader(
        data,
        batch_sampler=batch_sampler,
        collate_fn=collate,
        num_workers=num_workers,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(loader_seed),
    )
