"""Keypoints through every transform: they move with the pixels they mark, mirrors rename them, and those
leaving the image become unlabelled."""

import pytest
import torch

from maskrcnn.data import InstanceDataset, build_target
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.data.transforms import (
    ColorJitter,
    Compose,
    CopyPaste,
    HorizontalFlip,
    LargeScaleJitter,
    RandomCrop,
    RandomItem,
    RandomRotate90,
    ScaleJitter,
    VerticalFlip,
    crop,
    pad,
    refresh,
    resize,
    select_instances,
)
from maskrcnn.ops import masks_to_boxes

# Two keypoints: a mirror swaps them. Every blob labels "left" only, so after a mirror only "right" is.
BLOB_SPEC = KeypointSpec(("left", "right"))
FLIP = BLOB_SPEC.flip_permutation()


def blob_item(h: int, w: int, n: int, seed: int):
    """``n`` instances, each one pixel (distinct, random) with its "left" keypoint at the pixel's centre
    (visible) and "right" not labelled; labels 1..n name the instances."""
    g = torch.Generator().manual_seed(seed)
    where = torch.randperm(h * w, generator=g)[:n]
    rows, cols = where // w, where % w
    masks = torch.zeros((n, h, w), dtype=torch.uint8)
    masks[torch.arange(n), rows, cols] = 1
    keypoints = torch.zeros((n, 2, 3))
    keypoints[:, 0] = torch.stack((cols + 0.5, rows + 0.5, torch.full((n,), 2.0)), dim=1)
    target = build_target(masks, torch.arange(1, n + 1), 7, keypoints=keypoints)
    return torch.rand((3, h, w), generator=g), target


def assert_on_blobs(image: torch.Tensor, target: dict, *, mirrored: bool, may_cut: bool = False) -> int:
    """Each instance's one labelled keypoint lies on a pixel of its (transformed) blob; after an odd
    number of mirrors it is "right", else "left". With ``may_cut`` (crops), a blob that an upscaling made
    several pixels wide may have lost its centre to the image's border: its keypoint is then not labelled
    (and the blob touches the border). Returns the labelled keypoints."""
    n = len(target["labels"])
    h, w = image.shape[-2:]
    assert target["keypoints"].shape == (n, 2, 3)
    assert target["keypoints"].dtype == torch.float32
    assert torch.equal(target["boxes"], masks_to_boxes(target["masks"]))
    named = 1 if mirrored else 0
    assert torch.all(target["keypoints"][:, 1 - named] == 0)
    x, y, v = target["keypoints"][:, named].unbind(-1)
    labelled = v == 2
    if may_cut:
        assert torch.all(labelled | (v == 0))
        cut = target["boxes"][~labelled]
        assert torch.all((cut[:, 0] == 0) | (cut[:, 1] == 0) | (cut[:, 2] == w) | (cut[:, 3] == h))
        assert torch.all(target["keypoints"][~labelled] == 0)
    else:
        assert torch.all(labelled)
    x, y = x[labelled], y[labelled]
    assert torch.all((x > 0) & (x < w) & (y > 0) & (y < h))
    on = target["masks"][labelled][torch.arange(len(x)), y.floor().long(), x.floor().long()]
    assert torch.all(on == 1), (x, y)
    return int(labelled.sum())


class Blobs(InstanceDataset):
    """A dataset of blob items (see :func:`blob_item`), through the base class's ``__getitem__``."""

    def __init__(self, sizes, n=6, **kwargs):
        super().__init__(**kwargs)
        self.add_class("blob")
        self.keypoint_spec = BLOB_SPEC
        for i, (h, w) in enumerate(sizes):
            self.add_image(None, image_id=i, height=h, width=w, item=blob_item(h, w, n, 100 + i))

    def load_image(self, index):
        return self.image_info[index]["item"][0]

    def load_masks(self, index):
        target = self.image_info[index]["item"][1]
        return target["masks"], torch.ones(len(target["masks"]), dtype=torch.int64)

    def load_keypoints(self, index):
        return self.image_info[index]["item"][1]["keypoints"]


# name: (transform, mirrors an odd number of times, may cut an upscaled blob)
TRANSFORMS = {
    "hflip": (HorizontalFlip(p=1.0, keypoint_flip=FLIP), True, False),
    "vflip": (VerticalFlip(p=1.0, keypoint_flip=FLIP), True, False),
    "rot90": (RandomRotate90(p=1.0), False, False),
    "scale_jitter": (ScaleJitter(0.4, 2.6), False, False),
    "crop": (RandomCrop(min_fraction=0.3), False, False),  # no upscaling before it: blobs are whole
    "crop_size": (RandomCrop(size=(9, 30)), False, False),
    "lsj": (LargeScaleJitter((40, 28), min_scale=0.3, max_scale=2.0), False, True),
    "colour": (ColorJitter(brightness=0.5, hue=0.1), False, False),
    # Flips, quarter turns and crops move whole pixels, so a keypoint anywhere in a pixel stays in it: a
    # chain of them after one resize (which puts a pixel's centre inside the pixel it becomes) is exact.
    "chain": (
        Compose(
            [
                ScaleJitter(0.7, 1.9),
                RandomCrop(min_fraction=0.6),
                HorizontalFlip(p=1.0, keypoint_flip=FLIP),
                RandomRotate90(p=1.0),
                VerticalFlip(p=1.0, keypoint_flip=FLIP),
                ColorJitter(contrast=0.3),
                HorizontalFlip(p=1.0, keypoint_flip=FLIP),
            ]
        ),
        True,
        True,
    ),
}


def test_chains_of_resizes_keep_keypoints_within_a_pixel_of_their_blobs():
    # A second resize samples the masks by nearest neighbour at points the first one put off the pixels'
    # centres: the mask can be half a pixel off the exact region, never more than a pixel.
    chain = Compose(
        [
            ScaleJitter(0.6, 1.8),
            HorizontalFlip(p=1.0, keypoint_flip=FLIP),
            LargeScaleJitter(48, min_scale=0.5, max_scale=1.5),
            RandomRotate90(p=1.0),
        ]
    )
    labelled = 0
    for seed in range(12):
        torch.manual_seed(seed)
        _, out = chain(*blob_item(17, 23, 10, seed))
        x, y, v = out["keypoints"][:, 1].unbind(-1)
        assert torch.all(out["keypoints"][:, 0] == 0)
        keep = v == 2
        boxes = out["boxes"][keep]
        assert torch.all((x[keep] > boxes[:, 0] - 1) & (x[keep] < boxes[:, 2] + 1))
        assert torch.all((y[keep] > boxes[:, 1] - 1) & (y[keep] < boxes[:, 3] + 1))
        labelled += int(keep.sum())
    assert labelled >= 30


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_keypoints_stay_on_the_pixel_they_mark(name):
    transform, mirrored, may_cut = TRANSFORMS[name]
    labelled = 0
    for seed in range(12):
        torch.manual_seed(seed)
        image, target = blob_item(17, 23, 10, seed)
        before = {k: v.clone() for k, v in target.items()}
        out_image, out = transform(image, target)
        labelled += assert_on_blobs(out_image, out, mirrored=mirrored, may_cut=may_cut)
        assert all(torch.equal(before[k], target[k]) for k in before)  # the input is left alone
    assert labelled >= 12 * 10 // 4  # most blobs survive: the check is not vacuous


@pytest.mark.parametrize(
    ("size", "top", "left"), [((40, 13), 0, 0), ((9, 30), 0, 0), ((31, 31), 5, 3), ((17, 23), 0, 0)]
)
def test_resize_crop_and_pad_move_keypoints_with_the_pixels(size, top, left):
    image, target = blob_item(17, 23, 12, seed=size[0])
    out_image, out = resize(image, target, size)
    assert_on_blobs(out_image, out, mirrored=False)
    out_image, out = crop(out_image, out, top, left, size[0] - top, size[1] - left)
    assert_on_blobs(out_image, out, mirrored=False)
    out_image, out = pad(out_image, out, size[0] + 4, size[1] + 6, top=3, left=5)
    assert_on_blobs(out_image, out, mirrored=False)


def test_geometry_golden():
    masks = torch.zeros((1, 8, 10), dtype=torch.uint8)
    masks[0, 1:4, 2:7] = 1
    keypoints = torch.tensor([[[3.5, 1.5, 2.0], [5.0, 2.0, 1.0], [9.0, 7.0, 0.0]]])
    image = torch.zeros(3, 8, 10)
    target = build_target(masks, torch.tensor([1]), 0, keypoints=keypoints)
    # Not labelled (v = 0): (0, 0, 0) from the start, whatever the coordinates said.
    assert target["keypoints"][0, 2].tolist() == [0.0, 0.0, 0.0]
    _, out = resize(image, target, (16, 5))
    assert out["keypoints"][0].tolist() == [[1.75, 3.0, 2.0], [2.5, 4.0, 1.0], [0.0, 0.0, 0.0]]
    _, out = pad(image, target, 12, 14, top=3, left=2)
    assert out["keypoints"][0].tolist() == [[5.5, 4.5, 2.0], [7.0, 5.0, 1.0], [0.0, 0.0, 0.0]]
    # A quarter turn counter-clockwise: (x, y) -> (y, W - x), as boxes (x1, y1, x2, y2) -> (y1, W - x2...).
    torch.manual_seed(0)
    while True:  # the turn is random: draw until a single quarter turn comes
        _, out = RandomRotate90(p=1.0)(image, target)
        if out["masks"].shape[-2:] == (10, 8) and out["keypoints"][0, 0, 1] == 10 - 3.5:
            break
    assert out["keypoints"][0].tolist() == [[1.5, 6.5, 2.0], [2.0, 5.0, 1.0], [0.0, 0.0, 0.0]]
    assert out["boxes"].tolist() == [[1.0, 3.0, 4.0, 8.0]]


def test_flips_swap_left_and_right_named_keypoints():
    spec = KeypointSpec(("nose", "left_eye", "right_eye"))
    assert spec.flip_permutation() == [0, 2, 1]
    masks = torch.zeros((1, 8, 10), dtype=torch.uint8)
    masks[0, 1:4, 2:7] = 1
    keypoints = torch.tensor([[[4.5, 2.5, 2.0], [3.5, 1.5, 2.0], [5.5, 1.5, 1.0]]])
    image = torch.zeros(3, 8, 10)
    target = build_target(masks, torch.tensor([1]), 0, keypoints=keypoints)
    _, out = HorizontalFlip(p=1.0, keypoint_flip=spec.flip_permutation())(image, target)
    # The mirror's left eye is the original's right eye, mirrored: x -> 10 - x.
    assert out["keypoints"][0].tolist() == [[5.5, 2.5, 2.0], [4.5, 1.5, 1.0], [6.5, 1.5, 2.0]]
    _, out = VerticalFlip(p=1.0, keypoint_flip=spec.flip_permutation())(image, target)
    assert out["keypoints"][0].tolist() == [[4.5, 5.5, 2.0], [5.5, 6.5, 1.0], [3.5, 6.5, 2.0]]
    # Two mirrors give the original back.
    flip = HorizontalFlip(p=1.0, keypoint_flip=spec.flip_permutation())
    assert torch.equal(flip(*flip(image, target))[1]["keypoints"], target["keypoints"])


def test_flips_need_the_permutation_for_keypoints():
    image, target = blob_item(5, 6, 2, seed=0)
    with pytest.raises(ValueError, match="no keypoint_flip was given"):
        HorizontalFlip(p=1.0)(image, target)
    with pytest.raises(ValueError, match="keypoint_flip has 3 entries for 2 keypoints"):
        VerticalFlip(p=1.0, keypoint_flip=[0, 2, 1])(image, target)
    with pytest.raises(ValueError, match="must be a permutation"):
        HorizontalFlip(keypoint_flip=[0, 0])
    # Targets without keypoints need none.
    plain = {k: v for k, v in target.items() if k != "keypoints"}
    assert "keypoints" not in HorizontalFlip(p=1.0)(image, plain)[1]


def test_keypoints_cropped_away_become_not_labelled():
    masks = torch.zeros((2, 8, 10), dtype=torch.uint8)
    masks[0, 1:4, 2:8] = 1
    masks[1, 5:8, 7:10] = 1
    keypoints = torch.tensor(
        [
            [[2.5, 1.5, 2.0], [5.0, 2.0, 2.0], [7.5, 3.5, 1.0]],  # on the border of the crop; beyond it
            [[8.5, 6.5, 2.0], [0.0, 0.0, 0.0], [9.5, 7.5, 2.0]],  # its object is cropped away
        ]
    )
    target = build_target(masks, torch.tensor([1, 2]), 0, keypoints=keypoints)
    _, out = crop(torch.zeros(3, 8, 10), target, 1, 1, 4, 4)
    # (5.0, 2.0) lands on the crop's right border x = 4: still in the image.
    assert out["keypoints"].tolist() == [[[1.5, 0.5, 2.0], [4.0, 1.0, 2.0], [0.0, 0.0, 0.0]]]
    assert out["labels"].tolist() == [1]
    # refresh alone clears what lies outside the masks' image.
    moved = {**target, "keypoints": target["keypoints"] + torch.tensor([3.0, 0.0, 0.0])}
    assert refresh(moved)["keypoints"][:, :, 2].tolist() == [[2.0, 2.0, 0.0], [0.0, 0.0, 0.0]]


def test_select_instances_keeps_keypoints_with_their_instances():
    _, target = blob_item(6, 7, 4, seed=1)
    out = select_instances(target, torch.tensor([2, 0]))
    assert torch.equal(out["keypoints"], target["keypoints"][[2, 0]])
    out = select_instances(target, torch.tensor([False, True, False, True]))
    assert torch.equal(out["keypoints"], target["keypoints"][[1, 3]])


def test_copy_paste_brings_keypoints_and_hides_the_covered_ones():
    masks = torch.zeros((1, 12, 12), dtype=torch.uint8)
    masks[0, 0:10, 0:10] = 1
    target = build_target(
        masks, torch.tensor([1]), 0, keypoints=torch.tensor([[[2.5, 2.5, 2.0], [8.5, 8.5, 2.0]]])
    )
    src_masks = torch.zeros((1, 12, 12), dtype=torch.uint8)
    src_masks[0, 6:12, 6:12] = 1
    src = build_target(
        src_masks, torch.tensor([1]), 1, keypoints=torch.tensor([[[9.5, 9.5, 2.0], [11.0, 11.0, 1.0]]])
    )
    _, out = CopyPaste(lambda: (torch.ones(3, 12, 12), src), p=1.0)(torch.zeros(3, 12, 12), target)
    assert out["keypoints"].tolist() == [
        [[2.5, 2.5, 2.0], [8.5, 8.5, 1.0]],  # behind the pasted object now: hidden, still labelled
        [[9.5, 9.5, 2.0], [11.0, 11.0, 1.0]],
    ]
    plain = {k: v for k, v in src.items() if k != "keypoints"}
    with pytest.raises(ValueError, match="source item has no keypoints and this item 2 keypoints"):
        CopyPaste(lambda: (torch.ones(3, 12, 12), plain), p=1.0)(torch.zeros(3, 12, 12), target)


def test_copy_paste_scales_the_pasted_keypoints_with_their_objects():
    # Sources of other sizes are scaled and placed at random: their blobs' keypoints must follow.
    donors = Blobs([(34, 20), (9, 40), (17, 23)], n=8)
    pasted = 0
    for seed in range(10):
        torch.manual_seed(seed)
        image, target = blob_item(17, 23, 6, seed)
        out_image, out = CopyPaste(RandomItem(donors), p=1.0, min_visible=0.0)(image, target)
        assert_on_blobs(out_image, out, mirrored=False)
        pasted += len(out["labels"]) - 6
    assert pasted > 10


def test_dataset_items_through_transforms():
    data = Blobs([(17, 23), (20, 11)], transforms=Compose([HorizontalFlip(p=1.0, keypoint_flip=FLIP)]))
    for index in range(len(data)):
        image, target = data[index]
        assert_on_blobs(image, target, mirrored=True)
