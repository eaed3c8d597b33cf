import math
import pickle
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import RandomSampler, SequentialSampler, Subset

from maskrcnn.data import DataError, ImageError, InstanceDataset, build_target
from maskrcnn.data.loader import (
    BadItem,
    Batch,
    GroupedBatchSampler,
    RepeatFactorSampler,
    SkipBadItems,
    aspect_ratio_groups,
    collate,
    drop_crowd,
    make_data_loader,
    repeat_factors,
    set_epoch,
)
from maskrcnn.data.transforms import ColorJitter, Compose, HorizontalFlip, ScaleJitter


class Toy(InstanceDataset):
    """In-memory images of the given sizes, each with one square instance per label."""

    def __init__(self, sizes, labels=None, transforms=None, bad=()):
        super().__init__(transforms=transforms)
        for name in ("a", "b", "c"):
            self.add_class(name)
        labels = labels if labels is not None else [[1]] * len(sizes)
        for k, ((h, w), lab) in enumerate(zip(sizes, labels, strict=True)):
            self.add_image(None, height=h, width=w, labels=lab, ref=f"toy{k}.png")
        self.bad = set(bad)

    def image_reference(self, index):
        return self.image_info[index]["ref"]

    def load_image(self, index):
        if index in self.bad:
            raise DataError(f"{self.image_reference(index)}: broken on purpose")
        info = self.image_info[index]
        g = torch.Generator().manual_seed(index)
        return torch.rand((3, info["height"], info["width"]), generator=g)

    def load_masks(self, index):
        info = self.image_info[index]
        n = len(info["labels"])
        masks = torch.zeros((n, info["height"], info["width"]), dtype=torch.uint8)
        for k in range(n):
            masks[k, k : k + 3, k : k + 3] = 1
        return masks, torch.tensor(info["labels"], dtype=torch.int64)


def test_collate_leaves_out_bad_items():
    image = torch.zeros(3, 4, 5)
    target = build_target(torch.zeros(0, 4, 5), torch.zeros(0), 0)
    batch = collate([(image, target), BadItem(3, "x.jpg: cannot decode"), (image, target)])
    assert isinstance(batch, Batch)
    assert len(batch.images) == len(batch.targets) == 2
    assert batch.skipped == ["x.jpg: cannot decode"]
    assert collate([BadItem(0, "gone")]) == Batch([], [], ["gone"])


def test_skip_bad_items_wraps_errors_and_passes_attributes():
    toy = Toy([(8, 8)] * 3, bad={1})
    data = SkipBadItems(toy)
    assert len(data) == 3
    assert data.class_names == ["a", "b", "c"]
    assert data.image_size(2) == (8, 8)
    assert isinstance(data[0], tuple)
    assert data[1] == BadItem(1, "toy1.png: broken on purpose")  # the file is not named twice
    # An error that does not name the image gets its reference.
    toy.load_image = lambda index: (_ for _ in ()).throw(ImageError("cannot decode (truncated)"))
    assert data[0].message == "toy0.png: cannot decode (truncated)"
    with pytest.raises(AttributeError):
        _ = data.no_such_attribute
    # Bugs are not hidden.
    toy.load_image = lambda index: 1 / 0
    with pytest.raises(ZeroDivisionError):
        data[0]
    # Picklable (worker processes under spawn), despite the attribute pass-through.
    restored = pickle.loads(pickle.dumps(SkipBadItems(Toy([(8, 8)]))))
    assert restored.class_names == ["a", "b", "c"]


def test_drop_crowd():
    masks = torch.zeros(3, 6, 6, dtype=torch.uint8)
    masks[0, :2, :2] = masks[1, 2:4, 2:4] = masks[2, 4:, 4:] = 1
    target = build_target(masks, torch.tensor([1, 2, 3]), 0, torch.tensor([0, 1, 0]))
    out = drop_crowd(target)
    assert out["labels"].tolist() == [1, 3]
    assert out["masks"].shape == (2, 6, 6)
    assert out["boxes"].tolist() == [[0, 0, 2, 2], [4, 4, 6, 6]]
    assert out["iscrowd"].tolist() == [0, 0]
    assert drop_crowd(out) is out


def test_aspect_ratio_groups():
    toy = Toy([(10, 20), (20, 10), (10, 10), (30, 10)])
    assert aspect_ratio_groups(toy) == [1, 0, 1, 0]
    assert aspect_ratio_groups(toy, bins=(0.5, 1.0, 2.0)) == [3, 1, 2, 0]
    assert aspect_ratio_groups(Subset(SkipBadItems(toy), [3, 0])) == [0, 1]
    with pytest.raises(ValueError, match="increasing"):
        aspect_ratio_groups(toy, bins=(2.0, 1.0))


def test_grouped_batches_hold_one_group_and_every_index_once():
    groups = [k % 3 for k in range(23)]
    sampler = RandomSampler(range(23), generator=torch.Generator().manual_seed(0))
    batch_sampler = GroupedBatchSampler(sampler, groups, 4)
    first = list(batch_sampler)
    for batch in first:
        assert len({groups[i] for i in batch}) == 1
        assert 1 <= len(batch) <= 4
    assert sorted(i for batch in first for i in batch) == list(range(23))
    assert len(batch_sampler) == len(first) == 2 + 2 + 2  # 8, 8, 7 images per group: ceil(n / 4) each
    # Deterministic given the sampler's order.
    order = list(RandomSampler(range(23), generator=torch.Generator().manual_seed(0)))
    assert first == list(GroupedBatchSampler(order, groups, 4))
    dropped = GroupedBatchSampler(SequentialSampler(range(23)), groups, 4, drop_last=True)
    assert all(len(b) == 4 for b in dropped)
    assert len(list(dropped)) == len(dropped) == 5


def test_repeat_factors_golden():
    # Class 1 in 1 of 10 images, class 2 in all but one, one negative image.
    labels = [[1, 2]] + [[2]] * 8 + [[]]
    factors = repeat_factors(labels, threshold=0.5)
    assert factors[0].item() == pytest.approx(math.sqrt(5))
    assert factors[1:].tolist() == [1.0] * 9
    # A threshold above every frequency repeats everything.
    assert repeat_factors([[1], [1], [2]], threshold=4.0).tolist() == pytest.approx(
        [math.sqrt(4 / (2 / 3))] * 2 + [math.sqrt(4 / (1 / 3))]
    )


def test_repeat_factor_sampler_is_seeded_and_rounds_stochastically():
    toy = Toy([(8, 8)] * 10, labels=[[1, 2]] + [[2]] * 8 + [[]])
    sampler = RepeatFactorSampler(toy, threshold=0.5, seed=3)
    assert len(sampler) == round(math.sqrt(5) + 9)
    first, second = list(sampler), list(sampler)  # epochs 0 and 1
    assert first != second
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert list(RepeatFactorSampler(toy, threshold=0.5, seed=3)) == first
    assert list(RepeatFactorSampler(toy, threshold=0.5, seed=4)) != first
    copies = [Counter(sampler.indices(epoch).tolist())[0] for epoch in range(300)]
    assert set(copies) == {2, 3}
    assert sum(copies) / len(copies) == pytest.approx(math.sqrt(5), abs=0.1)
    ordered = RepeatFactorSampler(toy, threshold=0.5, shuffle=False).indices(0).tolist()
    assert ordered == sorted(ordered)
    assert set(ordered) == set(range(10))


def augmented(sizes):
    return Toy(
        sizes,
        labels=[[1, 2]] * len(sizes),
        transforms=Compose([HorizontalFlip(), ScaleJitter(0.5, 1.5), ColorJitter(brightness=0.4, hue=0.1)]),
    )


def epoch_of(loader):
    return [(b.images, [t["masks"] for t in b.targets], b.skipped) for b in loader]


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_loader_with_workers_is_reproducible():
    sizes = [(16, 24), (24, 16)] * 4
    runs = []
    for seed in (5, 5, 6):
        loader = make_data_loader(augmented(sizes), batch_size=2, num_workers=2, seed=seed)
        runs.append([epoch_of(loader), epoch_of(loader)])
        del loader
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])
    assert not same(runs[0][0], runs[0][1])  # the next epoch draws new augmentation
    for batch in runs[0][0]:
        assert len({image.shape[1] < image.shape[2] for image in batch[0]}) == 1  # aspect grouping


def test_loader_without_grouping_and_set_epoch():
    toy = Toy([(8, 8)] * 10, labels=[[1, 2]] + [[2]] * 8 + [[]])
    loader = make_data_loader(toy, batch_size=3, shuffle=False, aspect_ratio_grouping=False)
    assert [len(b.images) for b in loader] == [3, 3, 3, 1]
    repeated = make_data_loader(toy, batch_size=4, repeat_factor_threshold=0.5, seed=1)
    set_epoch(repeated, 7)
    epoch7 = [t["image_id"].item() for b in repeated for t in b.targets]
    set_epoch(repeated, 7)
    assert [t["image_id"].item() for b in repeated for t in b.targets] == epoch7
    assert Counter(epoch7)[0] in (2, 3)
    with pytest.raises(ValueError, match="either"):
        make_data_loader(toy, batch_size=2, repeat_factor_threshold=0.5, sampler=SequentialSampler(toy))


class Files(InstanceDataset):
    """Images read from files (the base class's ``load_image``), one instance each."""

    def __init__(self, paths):
        super().__init__()
        self.add_class("thing")
        for path in paths:
            self.add_image(path)

    def load_masks(self, index):
        h, w = self.image_size(index)
        masks = torch.zeros((1, h, w), dtype=torch.uint8)
        masks[0, 1:5, 2:6] = 1
        return masks, torch.tensor([1])


def test_corrupt_image_is_skipped_in_workers(tmp_path: Path):
    paths = []
    g = torch.Generator().manual_seed(0)
    for k in range(4):
        path = tmp_path / f"img{k}.jpg"
        # Noise compresses badly: the header is a small part of the file and survives the cut below.
        pixels = (torch.rand((24, 32, 3), generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])  # a truncated download: header intact, pixels cut
    loader = make_data_loader(Files(paths), batch_size=4, shuffle=False, num_workers=2)
    (batch,) = list(loader)
    assert len(batch.images) == 3
    assert [int(t["image_id"]) for t in batch.targets] == [0, 1, 3]
    assert all(image.shape == (3, 24, 32) for image in batch.images)
    assert all(t["boxes"].tolist() == [[2, 1, 6, 5]] for t in batch.targets)
    (message,) = batch.skipped
    assert "img2.jpg" in message
    assert "cannot decode" in message
    with pytest.raises(ImageError, match=r"img2\.jpg"):
        next(iter(make_data_loader(Files(paths), batch_size=4, shuffle=False, skip_bad_items=False)))


def test_keypoints_pass_through_batching_and_crowd_removal():
    from maskrcnn.data.shapes import KEYPOINT_SPEC, ShapesDataset

    flip = HorizontalFlip(p=0.5, keypoint_flip=KEYPOINT_SPEC.flip_permutation())
    data = ShapesDataset(
        count=4, seed=3, image_size=64, min_size=8, buffer=10, keypoints=True, transforms=flip
    )
    torch.manual_seed(0)
    batch = next(iter(make_data_loader(data, batch_size=4, shuffle=False, aspect_ratio_grouping=False)))
    assert len(batch.targets) == 4
    for target in batch.targets:
        assert target["keypoints"].shape == (len(target["labels"]), 4, 3)
    target = batch.targets[0]
    crowd = torch.zeros_like(target["iscrowd"])
    crowd[0] = 1
    kept = drop_crowd({**target, "iscrowd": crowd})
    assert torch.equal(kept["keypoints"], target["keypoints"][1:])
