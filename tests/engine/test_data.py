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
