import colorsys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskrcnn.data import DataError, ImageError, InstanceDataset, build_target
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
    hsv_to_rgb,
    refresh,
    rgb_to_hsv,
)
from maskrcnn.ops import masks_to_boxes


def rect_masks(h: int, w: int, rects: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """``uint8 [N, h, w]`` masks, one per ``(x1, y1, x2, y2)`` pixel-edge rectangle."""
    masks = torch.zeros((len(rects), h, w), dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(rects):
        masks[k, y1:y2, x1:x2] = 1
    return masks


def make_item(
    h: int, w: int, rects: list[tuple[int, int, int, int]], labels: list[int] | None = None, seed=0
):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand((3, h, w), generator=g)
    labels = labels if labels is not None else list(range(1, len(rects) + 1))
    # iscrowd = label % 2 everywhere in these tests: a cheap check that flags travel with their labels.
    target = build_target(
        rect_masks(h, w, rects), torch.tensor(labels), 7, torch.tensor([v % 2 for v in labels])
    )
    return image, target


def assert_consistent(image: torch.Tensor, target: dict) -> None:
    h, w = image.shape[-2:]
    n = target["masks"].shape[0]
    assert image.shape == (3, h, w)
    assert image.dtype == torch.float32
    assert float(image.min()) >= 0.0
    assert float(image.max()) <= 1.0
    assert target["masks"].shape == (n, h, w)
    assert target["masks"].dtype == torch.uint8
    assert set(target["masks"].unique().tolist()) <= {0, 1}
    assert torch.equal(target["boxes"], masks_to_boxes(target["masks"]))
    assert target["boxes"].dtype == torch.float32
    assert torch.equal(target["area"], target["masks"].flatten(1).sum(1).float())
    assert bool((target["area"] > 0).all())
    assert target["labels"].shape == target["iscrowd"].shape == (n,)
    assert target["labels"].dtype == target["iscrowd"].dtype == torch.int64
    assert torch.equal(target["iscrowd"], target["labels"] % 2)
    assert int(target["image_id"]) == 7


def test_refresh_recomputes_and_drops_empty():
    image, target = make_item(6, 8, [(1, 1, 3, 3), (4, 2, 8, 6), (0, 0, 1, 1)])
    masks = target["masks"].clone()
    masks[0] = 0  # vanished
    masks[1, :, 6:] = 0  # shrunk
    out = refresh({**target, "masks": masks})
    assert out["labels"].tolist() == [2, 3]
    assert out["boxes"].tolist() == [[4, 2, 6, 6], [0, 0, 1, 1]]
    assert out["area"].tolist() == [8.0, 1.0]
    assert target["masks"].shape[0] == 3  # the input is left alone
    assert_consistent(image, out)


def test_horizontal_flip_golden():
    image, target = make_item(10, 20, [(3, 2, 8, 5), (0, 0, 20, 1)])
    out_image, out = HorizontalFlip(p=1.0)(image, target)
    assert out["boxes"].tolist() == [[20 - 8, 2, 20 - 3, 5], [0, 0, 20, 1]]
    assert torch.equal(out_image, image.flip(-1))
    assert_consistent(out_image, out)
    same_image, same = HorizontalFlip(p=0.0)(image, target)
    assert same_image is image
    assert same is target


def test_vertical_flip_golden():
    image, target = make_item(10, 20, [(3, 2, 8, 5)])
    out_image, out = VerticalFlip(p=1.0)(image, target)
    assert out["boxes"].tolist() == [[3, 10 - 5, 8, 10 - 2]]
    assert torch.equal(out_image, image.flip(-2))


def test_rot90_golden_for_every_k():
    h, w = 10, 20
    x1, y1, x2, y2 = 3, 2, 8, 5
    image, target = make_item(h, w, [(x1, y1, x2, y2)])
    expected = {
        1: [y1, w - x2, y2, w - x1],  # counter-clockwise
        2: [w - x2, h - y2, w - x1, h - y1],
        3: [h - y2, x1, h - y1, x2],  # clockwise
    }
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out_image, out = RandomRotate90(p=1.0)(image, target)
        (k,) = [k for k in (1, 2, 3) if torch.equal(out_image, torch.rot90(image, k, dims=(1, 2)))]
        seen.add(k)
        assert out["boxes"].tolist() == [expected[k]]
        assert out_image.shape[1:] == ((w, h) if k % 2 else (h, w))
        assert_consistent(out_image, out)
    assert seen == {1, 2, 3}


def test_scale_jitter_golden_and_rounding():
    image, target = make_item(10, 20, [(3, 2, 8, 5)])
    out_image, out = ScaleJitter(2.0, 2.0)(image, target)
    assert out_image.shape == (3, 20, 40)
    assert out["boxes"].tolist() == [[6, 4, 16, 10]]  # nearest: each pixel becomes a 2x2 block
    assert_consistent(out_image, out)
    torch.manual_seed(0)
    out_image, out = ScaleJitter(0.3, 0.7)(image, target)
    scale = out_image.shape[2] / 20
    assert 0.3 <= scale <= 0.7
    assert out_image.shape[1] == round(10 * scale)
    assert_consistent(out_image, out)
    # A one-pixel instance disappears at a quarter of the size; the others stay.
    image, target = make_item(16, 16, [(1, 1, 2, 2), (4, 4, 12, 12)])
    out_image, out = ScaleJitter(0.25, 0.25)(image, target)
    assert out["labels"].tolist() == [2]
    assert_consistent(out_image, out)
    with pytest.raises(ValueError, match="min_scale"):
        ScaleJitter(2.0, 1.0)


@pytest.mark.parametrize("size", [(24, 24), (30, 12), (8, 40)])
def test_large_scale_jitter_output_size(size):
    image, target = make_item(*size, [(1, 1, 6, 6), (5, 3, 8, 7)])
    for seed in range(10):
        torch.manual_seed(seed)
        out_image, out = LargeScaleJitter((16, 20), min_scale=0.1, max_scale=2.0)(image, target)
        assert out_image.shape == (3, 16, 20)
        assert_consistent(out_image, out)
    # Zoomed out: the image sits top-left on a zero canvas.
    out_image, _ = LargeScaleJitter(32, min_scale=0.5, max_scale=0.5)(image, target)
    assert out_image.shape == (3, 32, 32)
    assert float(out_image[:, 16:, 16:].abs().sum()) == 0.0


def test_random_crop_drops_vanished_instances():
    h, w = 10, 20
    image = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w).expand(3, h, w) / (h * w)
    rects = [(0, 0, 2, 3), (18, 7, 20, 10), (8, 4, 12, 6)]
    _, target = make_item(h, w, rects)
    dropped = 0
    for seed in range(20):
        torch.manual_seed(seed)
        out_image, out = RandomCrop(size=(6, 10))(image, target)
        assert out_image.shape == (3, 6, 10)
        assert_consistent(out_image, out)
        # The image's pixel values are their positions: find the window, then which masks show in it.
        top, left = divmod(round(float(out_image[0, 0, 0]) * h * w), w)
        window = target["masks"][:, top : top + 6, left : left + 10]
        visible = [k + 1 for k in range(3) if window[k].any()]
        assert out["labels"].tolist() == visible
        dropped += 3 - len(visible)
    assert dropped > 0


def test_random_crop_fraction_and_min_visible():
    image, target = make_item(20, 20, [(0, 0, 10, 10), (0, 0, 20, 20)])
    for seed in range(10):
        torch.manual_seed(seed)
        out_image, out = RandomCrop(min_fraction=0.5)(image, target)
        assert 10 <= out_image.shape[1] <= 20
        assert 10 <= out_image.shape[2] <= 20
        assert_consistent(out_image, out)
        torch.manual_seed(seed)
        _, strict = RandomCrop(min_fraction=0.5, min_visible=0.99)(image, target)
        # Same window (same draws): only the instances the crop kept whole stay.
        kept = zip(out["labels"].tolist(), out["area"].tolist(), strict=True)
        whole = [k for k, a in kept if a == [100, 400][k - 1]]
        assert strict["labels"].tolist() == whole


def test_hsv_round_trip_and_colorsys():
    g = torch.Generator().manual_seed(0)
    image = torch.rand((3, 7, 9), generator=g)
    image[:, 0, 0] = 0.5  # grey
    image[:, 0, 1] = 0.0  # black
    hsv = rgb_to_hsv(image)
    for y, x in [(0, 0), (0, 1), (3, 4), (6, 8), (2, 2)]:
        expected = colorsys.rgb_to_hsv(*image[:, y, x].tolist())
        assert hsv[:, y, x].tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(hsv_to_rgb(hsv), image, atol=1e-6)
    red = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    shifted = rgb_to_hsv(red)
    shifted[0] += 1 / 3
    assert hsv_to_rgb(shifted).flatten().tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)


def test_color_jitter_keeps_target_and_range():
    image, target = make_item(12, 16, [(1, 1, 5, 5)])
    for seed in range(5):
        torch.manual_seed(seed)
        out_image, out = ColorJitter(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.5)(image, target)
        assert out is target
        assert out_image.shape == image.shape
        assert float(out_image.min()) >= 0.0
        assert float(out_image.max()) <= 1.0
        assert not torch.equal(out_image, image)
    assert torch.equal(ColorJitter()(image, target)[0], image)
    with pytest.raises(ValueError, match="hue"):
        ColorJitter(hue=0.7)


def constant_source(image: torch.Tensor, target: dict):
    return lambda: (image, target)


def test_copy_paste_occludes():
    image, target = make_item(12, 12, [(2, 2, 9, 9), (9, 0, 12, 2)], labels=[2, 4])
    src_image = torch.ones((3, 12, 12))
    _, src_target = make_item(12, 12, [(0, 0, 6, 12)], labels=[10])
    out_image, out = CopyPaste(constant_source(src_image, src_target), p=1.0)(image, target)
    assert out["labels"].tolist() == [2, 4, 10]
    assert out["boxes"].tolist() == [[6, 2, 9, 9], [9, 0, 12, 2], [0, 0, 6, 12]]
    assert torch.equal(out_image[:, :, :6], src_image[:, :, :6])
    assert torch.equal(out_image[:, :, 6:], image[:, :, 6:])
    assert_consistent(out_image, out)


def test_copy_paste_drops_hidden_instances():
    image, target = make_item(12, 12, [(0, 0, 4, 4), (0, 0, 12, 6), (6, 6, 8, 8)], labels=[2, 4, 6])
    masks = target["masks"].clone()
    masks[1, 11, 11] = 1  # instance 4: the top half and one far pixel
    target = refresh({**target, "masks": masks})
    # Pasting 10 hides instance 2 fully and 4 but for one pixel (< 10%); 12 hides nothing.
    _, src_target = make_item(12, 12, [(0, 0, 12, 6), (0, 6, 6, 10)], labels=[10, 12])
    paste = CopyPaste(constant_source(torch.zeros(3, 12, 12), src_target), p=1.0, max_objects=1)
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        out_image, out = paste(image, target)
        assert_consistent(out_image, out)
        pasted = out["labels"].tolist()[-1]
        seen.add(pasted)
        assert out["labels"].tolist() == ([6, 10] if pasted == 10 else [2, 4, 6, 12])
    assert seen == {10, 12}
    # min_visible 0 keeps the one-pixel sliver.
    _, only_10 = make_item(12, 12, [(0, 0, 12, 6)], labels=[10])
    _, out = CopyPaste(constant_source(torch.zeros(3, 12, 12), only_10), p=1.0, min_visible=0.0)(
        image, target
    )
    assert out["labels"].tolist() == [4, 6, 10]
    assert out["boxes"][0].tolist() == [11, 11, 12, 12]


def test_copy_paste_resizes_source_and_skips_crowd():
    image, target = make_item(10, 20, [(0, 0, 2, 2)], labels=[2])
    # A 20x20 source fits into 10x10, placed somewhere in the 10x20 image; the crowd region stays home.
    src_image, src_target = make_item(20, 20, [(0, 0, 20, 20), (0, 0, 4, 4)], labels=[10, 11])
    torch.manual_seed(0)
    out_image, out = CopyPaste(constant_source(src_image, src_target), p=1.0)(image, target)
    assert_consistent(out_image, out)
    assert out["labels"].tolist()[-1] == 10
    assert 11 not in out["labels"].tolist()
    assert out["area"][-1] == 100.0


def test_copy_paste_survives_a_bad_source_and_recursion():
    image, target = make_item(8, 8, [(0, 0, 2, 2)])

    def broken():
        raise ImageError("broken.jpg: cannot decode")

    assert CopyPaste(broken, p=1.0)(image, target) == (image, target)

    def failing():
        raise DataError("bad.json: label 9 outside 1..3")

    assert CopyPaste(failing, p=1.0)(image, target)[1] is target

    class Toy(InstanceDataset):
        def __init__(self):
            super().__init__()
            self.add_class("thing")
            self.add_image(None, height=8, width=8)

        def load_image(self, index):
            return torch.full((3, 8, 8), 0.5)

        def load_masks(self, index):
            return rect_masks(8, 8, [(2, 2, 5, 5)]), torch.tensor([1])

    toy = Toy()
    # The source is the dataset itself: the nested CopyPaste passes through instead of recursing.
    toy.transforms = CopyPaste(RandomItem(toy), p=1.0)
    out_image, out = toy[0]
    assert out["labels"].tolist() == [1]  # the original is fully covered by its own copy
    assert torch.equal(out_image, torch.full((3, 8, 8), 0.5))


def test_reprs_and_argument_checks():
    assert repr(HorizontalFlip(p=0.3)) == "HorizontalFlip(p=0.3, keypoint_flip=None)"
    assert repr(VerticalFlip(keypoint_flip=(1, 0))) == "VerticalFlip(p=0.5, keypoint_flip=[1, 0])"
    assert "LargeScaleJitter(output_size=(4, 4)" in repr(Compose([LargeScaleJitter(4)]))
    with pytest.raises(ValueError, match="p must be"):
        VerticalFlip(p=1.5)
    with pytest.raises(ValueError, match="output_size"):
        LargeScaleJitter((0, 3))
    with pytest.raises(ValueError, match="min_fraction"):
        RandomCrop(min_fraction=0.0)


@st.composite
def items(draw):
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    n = draw(st.integers(0, 4))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    density = draw(st.sampled_from([0.05, 0.3, 0.9]))
    masks = (torch.rand((n, h, w), generator=g) < density).to(torch.uint8)
    masks = masks[masks.flatten(1).sum(1) > 0]
    labels = torch.arange(1, masks.shape[0] + 1)
    image = torch.rand((3, h, w), generator=g)
    return image, build_target(masks, labels, 7, labels % 2)


TRANSFORMS = [
    HorizontalFlip(p=0.5),
    VerticalFlip(p=0.5),
    RandomRotate90(p=0.5),
    ScaleJitter(0.3, 2.0),
    LargeScaleJitter((9, 7), min_scale=0.2, max_scale=2.0),
    RandomCrop(min_fraction=0.3),
    RandomCrop(size=5, min_visible=0.5),
    ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.2),
]


@settings(max_examples=40)
@given(
    item=items(),
    source=items(),
    chain=st.lists(st.integers(0, len(TRANSFORMS)), min_size=1, max_size=5),
    seed=st.integers(0, 2**31),
)
def test_any_chain_keeps_targets_consistent(item, source, chain, seed):
    src_image, src_target = source
    # Source instances get labels above the destination's, so the two can be told apart.
    src_target = {**src_target, "labels": src_target["labels"] + 20, "iscrowd": src_target["labels"] % 2}
    paste = CopyPaste(constant_source(src_image, src_target), p=0.7)
    transforms = [*TRANSFORMS, paste]
    torch.manual_seed(seed)
    image, target = item
    for k in chain:
        image, target = transforms[k](image, target)
        assert_consistent(image, target)
        labels = target["labels"].tolist()
        own = [v for v in labels if v < 20]
        # Destination instances keep their order and come before the pasted ones.
        assert own == sorted(set(own))
        assert labels[: len(own)] == own
