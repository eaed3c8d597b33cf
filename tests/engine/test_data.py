"""The training batches: every process's share of an epoch is the single-process epoch dealt out."""

import pytest
import torch

from maskrcnn.data import InstanceDataset
from maskrcnn.engine.data import EpochBatches


class Sizes(InstanceDataset):
    """Images known by size and labels alone: every third one portrait, class 2 rare."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.add_class("common")
        self.add_class("rare")
        for i in range(count):
            portrait = i % 3 == 0
            self.add_image(
                None, height=60 if portrait else 40, width=40 if portrait else 60, rare=i % 10 == 0
            )

    def instance_labels(self, index: int) -> list[int]:
        return [2] if self.image_info[index]["rare"] else [1, 1]

    def load_masks(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise AssertionError("the sampler must not decode masks when labels are known")


@pytest.mark.parametrize("repeat", [None, 0.5])
@pytest.mark.parametrize("world", [2, 3])
def test_processes_deal_out_the_single_process_batches(world, repeat):
    dataset = Sizes(41)
    options = {"batch_size": 4, "seed": 7, "repeat_factor_threshold": repeat}
    single = EpochBatches(dataset, **options)
    ranks = [EpochBatches(dataset, **options, rank=r, world_size=world) for r in range(world)]
    for epoch in (0, 1):
        everything = single.batches(epoch)
        shares = [sampler.batches(epoch) for sampler in ranks]
        assert len({len(share) for share in shares}) == 1  # the same number of steps everywhere
        usable = len(everything) - len(everything) % world
        dealt = [shares[k % world][k // world] for k in range(usable)]
        assert dealt == everything[:usable]  # batch k of the run is rank k % world's
        for batch in dealt:  # aspect-ratio grouping kept
            assert len({dataset.image_info[i]["height"] > dataset.image_info[i]["width"] for i in batch}) == 1
    if repeat is not None:  # the rare class is repeated within the epoch
        counts = torch.bincount(torch.tensor([i for b in single.batches(0) for i in b]), minlength=41)
        assert counts[0] >= 1
        assert counts[10::10].float().mean() > counts[1:10].float().mean()


def test_resuming_skips_the_batches_already_trained_on():
    dataset = Sizes(41)
    sampler = EpochBatches(dataset, batch_size=4, seed=7, rank=1, world_size=2)
    sampler.set_epoch(1, skip=2)
    keys = list(sampler)
    assert [[i for _, i in batch] for batch in keys] == sampler.batches(1)[2:]
    assert all(epoch == 1 for batch in keys for epoch, _ in batch)


def test_flips_rename_keypoints_by_the_datasets_mirror_pairs():
    from torch.utils.data import Subset

    from maskrcnn.config import AugmentConfig
    from maskrcnn.data.shapes import ShapesDataset
    from maskrcnn.data.transforms import HorizontalFlip, VerticalFlip
    from maskrcnn.engine.data import blank_batch, build_augmentation

    cfg = AugmentConfig(hflip=0.5, vflip=0.5)
    for data in (ShapesDataset(count=2, keypoints=True), Subset(ShapesDataset(count=2, keypoints=True), [1])):
        steps = build_augmentation(cfg, data).transforms
        flips = [t for t in steps if isinstance(t, (HorizontalFlip, VerticalFlip))]
        assert [t.keypoint_flip for t in flips] == [[0, 2, 1, 3], [0, 2, 1, 3]]
    assert all(t.keypoint_flip is None for t in build_augmentation(cfg, ShapesDataset(count=2)).transforms)
    [_], [target] = blank_batch(torch.device("cpu"), num_keypoints=4)
    assert target["keypoints"].shape == (0, 4, 3)
    assert "keypoints" not in blank_batch(torch.device("cpu"))[1][0]


def test_validation_data_needs_the_training_datas_keypoints():
    from maskrcnn.config import DataConfig
    from maskrcnn.engine.data import load_training_data
    from maskrcnn.engine.errors import TrainingError

    same = DataConfig(
        format="shapes",
        train_options={"count": 2, "keypoints": True},
        val_options={"count": 1, "seed": 1, "keypoints": True},
    )
    train, val = load_training_data(same)
    assert train.keypoint_spec == val.keypoint_spec
    other = DataConfig(
        format="shapes", train_options={"count": 2, "keypoints": True}, val_options={"count": 1}
    )
    with pytest.raises(TrainingError, match=r"validation data's keypoints none differ from the training"):
        load_training_data(other)
