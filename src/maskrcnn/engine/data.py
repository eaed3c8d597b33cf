"""Training data from a config: datasets, augmentation, and a loader whose every batch is reproducible.

Exact resumption needs each batch to be a function of the run's seed and its position alone, not of the
history of a random generator or of how many worker processes there are. So:

* the order of epoch ``e`` is drawn from a generator seeded by ``(seed, e)`` (or the repeat-factor
  sampler's pass ``e``), and batched in the main process (:class:`EpochBatches`); resuming mid-epoch
  skips the batches already trained on without loading them;
* each item is loaded with torch's generator seeded by ``(seed, e, index)`` (:class:`SeededItems`), so
  its augmentation is the same in any worker, in any run, before or after a resume;
* an item that cannot be read becomes a ``BadItem`` (the batch goes on without it and names it).

The same sampler takes ``rank`` and ``world_size`` to give each process of a distributed run its share of
every epoch's batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from maskrcnn.config import AugmentConfig, DataConfig
from maskrcnn.data import InstanceDataset, build_target, load_dataset
from maskrcnn.data import transforms as T
from maskrcnn.data.dataset import base_dataset
from maskrcnn.data.loader import (
    Batch,
    GroupedBatchSampler,
    RepeatFactorSampler,
    SkipBadItems,
    aspect_ratio_groups,
    collate,
    mix_seed,
    seed_worker,
)
from maskrcnn.engine.errors import TrainingError
from maskrcnn.engine.split import split_dataset
from maskrcnn.engine.validation import targets_to_device

__all__ = [
    "EpochBatches",
    "SeededItems",
    "blank_batch",
    "build_augmentation",
    "load_split",
    "load_training_data",
    "make_train_loader",
    "training_batches",
]


def build_augmentation(cfg: AugmentConfig, dataset: InstanceDataset) -> T.Compose | None:
    """The training transforms an :class:`~maskrcnn.config.AugmentConfig` asks for, in a sensible order
    (geometry, then the pasting of other images' objects, then colour); ``None`` when all are off.

    Flips rename the keypoints of a dataset with keypoints by its spec's mirror pairs
    (:meth:`~maskrcnn.data.keypoints.KeypointSpec.flip_permutation`)."""
    spec = base_dataset(dataset).keypoint_spec
    flip = spec.flip_permutation() if spec is not None else None
    steps: list[Any] = []
    if cfg.large_scale_jitter is not None:
        steps.append(T.LargeScaleJitter(cfg.large_scale_jitter))
    elif cfg.scale_jitter is not None:
        steps.append(T.ScaleJitter(*cfg.scale_jitter))
    if cfg.crop is not None:
        steps.append(T.RandomCrop(min_fraction=cfg.crop))
    elif cfg.crop_size is not None:
        steps.append(T.RandomCrop(size=cfg.crop_size))
    if cfg.hflip > 0:
        steps.append(T.HorizontalFlip(p=cfg.hflip, keypoint_flip=flip))
    if cfg.vflip > 0:
        steps.append(T.VerticalFlip(p=cfg.vflip, keypoint_flip=flip))
    if cfg.rot90 > 0:
        steps.append(T.RandomRotate90(p=cfg.rot90))
    if cfg.copy_paste > 0:
        steps.append(T.CopyPaste(T.RandomItem(dataset), p=cfg.copy_paste))
    if cfg.color_jitter > 0:
        c = cfg.color_jitter
        steps.append(T.ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(c / 4, 0.5)))
    return T.Compose(steps) if steps else None


def load_split(cfg: DataConfig, split: str) -> InstanceDataset | None:
    """The ``train`` or ``val`` dataset a data config names (``None`` for a missing validation set)."""
    path = cfg.train if split == "train" else cfg.val
    options = dict(cfg.train_options if split == "train" else cfg.val_options)
    if path is None and cfg.format != "shapes":
        if split == "train":
            raise ValueError(
                f"data.train is not set: give the training data (--data PATH, format {cfg.format})"
            )
        return None
    if split == "val" and cfg.format == "shapes" and not cfg.val_options:
        return None
    if cfg.strict:
        options["strict"] = True
    return load_dataset(cfg.format, path, **options)


def load_training_data(
    cfg: DataConfig,
    *,
    seed: int = 0,
    split_file: Path | None = None,
    resume: bool = False,
    main: bool = True,
) -> tuple[InstanceDataset, InstanceDataset | None]:
    """The training dataset (its augmentation set) and the validation dataset (``None`` without one).

    With ``data.val_split`` both are parts of the training data (:mod:`maskrcnn.engine.split`): when
    resuming, the split saved in ``split_file``; else a new one drawn with ``seed`` and saved there (by
    the ``main`` process only; ``split_file=None``: not saved).

    Raises:
        TrainingError: the two have different classes or keypoints; the data is too small to split.
    """
    train_data = load_split(cfg, "train")
    assert train_data is not None
    if cfg.val_split is not None:
        if len(train_data) < 2:
            raise TrainingError(
                f"cannot hold out data.val_split={cfg.val_split} of {_data_name(train_data, cfg)}: "
                + _too_few(train_data, "split into training and validation images")
            )
        train_part, val_part = split_dataset(
            train_data, cfg.val_split, seed=seed, path=split_file, resume=resume, write=main
        )
        train_part.transforms = build_augmentation(cfg.augment, train_part)
        return train_part, val_part  # type: ignore[return-value]
    val_data = load_split(cfg, "val")
    if val_data is not None and list(val_data.class_names) != list(train_data.class_names):
        raise TrainingError(
            f"the validation data's classes {list(val_data.class_names)} differ from the training "
            f"data's {list(train_data.class_names)}; give both readers the same class names "
            "(e.g. --set data.val_options.class_names=[...])"
        )
    if val_data is not None and _keypoint_names(val_data) != _keypoint_names(train_data):
        # Keypoint AP compares keypoint k of a detection with keypoint k of the truth: same list or nothing.
        raise TrainingError(
            f"the validation data's keypoints {_keypoint_names(val_data) or 'none'} differ from the "
            f"training data's {_keypoint_names(train_data) or 'none'}; both need the same keypoints, in "
            "the same order"
        )
    train_data.transforms = build_augmentation(cfg.augment, train_data)
    return train_data, val_data


def _keypoint_names(dataset: InstanceDataset) -> list[str]:
    spec = base_dataset(dataset).keypoint_spec
    return list(spec.names) if spec is not None else []


class SeededItems(Dataset[Any]):
    """Items keyed by ``(epoch, index)``, loaded with torch's generator seeded by ``(seed, epoch, index)``
    (the caller's generator state is left as it was), unreadable ones turned into ``BadItem`` s."""

    def __init__(self, dataset: Dataset[Any], seed: int) -> None:
        self.dataset = SkipBadItems(dataset)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, epoch, index))
            return self.dataset[index]


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """The batches of one epoch as lists of ``(epoch, index)`` keys; see the module docstring.

    Args:
        dataset: the training dataset (sizes for aspect-ratio grouping, labels for repeat factors).
        batch_size: images per batch (per process).
        seed: the run's seed.
        aspect_ratio_grouping: batch portrait and landscape images apart.
        repeat_factor_threshold: LVIS repeat-factor sampling of rare classes (``None``: off).
        rank: this process's rank in a distributed run.
        world_size: processes in the run; each takes every ``world_size``-th batch of the epoch (and the
            epoch is cut to a multiple of ``world_size`` batches so that all take the same number).
    """

    def __init__(
        self,
        dataset: InstanceDataset,
        *,
        batch_size: int,
        seed: int,
        aspect_ratio_grouping: bool = True,
        repeat_factor_threshold: float | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.size = len(dataset)
        self.batch_size = batch_size
        self.seed = seed
        self.groups = aspect_ratio_groups(dataset) if aspect_ratio_grouping else [0] * self.size
        self.repeat = (
            RepeatFactorSampler(dataset, threshold=repeat_factor_threshold, seed=seed)
            if repeat_factor_threshold is not None
            else None
        )
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Make the next pass epoch ``epoch``, leaving out its first ``skip`` batches (already trained)."""
        self.epoch, self.skip = int(epoch), int(skip)

    def batches(self, epoch: int) -> list[list[int]]:
        """All of epoch ``epoch``'s batches of this process, as dataset indices."""
        if self.repeat is not None:
            order: Sequence[int] = self.repeat.indices(epoch).tolist()
        else:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            order = torch.randperm(self.size, generator=generator).tolist()
        batches = list(GroupedBatchSampler(order, self.groups, self.batch_size))  # type: ignore[arg-type]
        usable = len(batches) - len(batches) % self.world_size
        return batches[self.rank : usable : self.world_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        for batch in self.batches(epoch)[self.skip :]:
            yield [(epoch, index) for index in batch]

    def __len__(self) -> int:
        return len(self.batches(self.epoch))


def training_batches(
    dataset: InstanceDataset, cfg: DataConfig, *, seed: int, rank: int = 0, world_size: int = 1
) -> tuple[EpochBatches, DataLoader[Batch]]:
    """Process ``rank``'s share of every epoch's batches (``data`` settings) and the loader reading them.

    Raises:
        TrainingError: the data is too small for one batch per process.
    """
    sampler = EpochBatches(
        dataset,
        batch_size=cfg.batch_size,
        seed=seed,
        aspect_ratio_grouping=cfg.aspect_ratio_grouping,
        repeat_factor_threshold=cfg.repeat_factor_threshold,
        rank=rank,
        world_size=world_size,
    )
    if len(sampler) == 0:
        processes = f" for each of {world_size} processes" if world_size > 1 else ""
        lower = "; lower data.batch_size" if len(dataset) else ""
        raise TrainingError(
            f"cannot train on {_data_name(dataset, cfg)}: "
            + _too_few(dataset, f"batch of {cfg.batch_size}{processes}")
            + lower
        )
    return sampler, make_train_loader(dataset, sampler, seed=seed, num_workers=cfg.num_workers)


def _data_name(dataset: InstanceDataset, cfg: DataConfig) -> str:
    """The training data as messages name it: the file or folder read."""
    return getattr(dataset, "source", "") or cfg.train or f"the {cfg.format} data"


def _too_few(dataset: InstanceDataset, what: str) -> str:
    """Why ``dataset`` cannot give ``what`` (``"a batch of 2"``): it has no images, the reader skipped
    them all (how many, and the first reason), or it has too few."""
    skipped = [p for p in getattr(dataset, "problems", []) if p.severity == "error" and not p.annotation]
    if len(dataset) == 0 and skipped:
        first = skipped[0]
        why = first.message if first.image in first.message else f"{first.image}: {first.message}"
        return f"all {len(skipped)} images were skipped (the first: {why})"
    if len(dataset) == 0:
        return "it has no images"
    more = f" ({len(skipped)} more were skipped)" if skipped else ""
    return f"its {len(dataset)} images{more} make no {what}"


def blank_batch(
    device: torch.device, *, num_keypoints: int = 0
) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """One black 64x64 image without objects, on ``device``: what a process whose batch could not be
    read at all trains on (with its loss times zero) so that it still takes part in the gradient
    exchange of a distributed run.

    Args:
        num_keypoints: the model's keypoints (``model.roi_heads.num_keypoints``): its target then has
            ``keypoints`` ``[0, K, 3]`` as a keypoint model's targets must.
    """
    image = torch.zeros(3, 64, 64, device=device)
    empty = torch.zeros(0, 64, 64, dtype=torch.uint8)
    keypoints = torch.zeros(0, num_keypoints, 3) if num_keypoints else None
    target = build_target(empty, torch.zeros(0, dtype=torch.int64), -1, keypoints=keypoints)
    return [image], targets_to_device([target], device)


def make_train_loader(
    dataset: InstanceDataset, sampler: EpochBatches, *, seed: int, num_workers: int = 0
) -> DataLoader[Batch]:
    """A DataLoader over ``sampler``'s batches (call ``sampler.set_epoch`` before each pass)."""
    return DataLoader(
        SeededItems(dataset, seed),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        # Its own generator: starting an iteration must not draw from the global one (exact resumption).
        generator=torch.Generator().manual_seed(mix_seed(seed, -1)),
    )
