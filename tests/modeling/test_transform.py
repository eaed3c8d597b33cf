import pytest
import torch

from maskrcnn.modeling.transform import RCNNTransform, resize_boxes
from maskrcnn.ops import paste_masks_in_image


def make(min_size=(800,), max_size=1333) -> RCNNTransform:
    return RCNNTransform(
        min_size=min_size, max_size=max_size, image_mean=(0.5, 0.25, 0.0), image_std=(0.5, 0.25, 1.0)
    )


def test_normalize_resize_and_pad():
    t = make().eval()
    images = [torch.full((3, 120, 160), 0.5), torch.full((3, 100, 400), 0.5)]
    batch, targets = t(images)
    assert targets is None
    # Short side to 800 unless the long side would pass 1333: 120x160 -> 800x1067; 100x400 -> 333x1333.
    assert batch.image_sizes == [(800, 1066), (333, 1333)]
    # Padded to multiples of 32, zeros after normalisation (the mean colour).
    assert batch.tensors.shape == (2, 3, 800, 1344)
    assert torch.allclose(batch.tensors[0, :, :800, :1066], torch.tensor([0.0, 1.0, 0.5])[:, None, None])
    assert batch.tensors[1, :, 333:].abs().sum() == 0
    assert batch.tensors[0, :, :, 1066:].abs().sum() == 0


def test_targets_scaled_consistently():
    t = make(min_size=(60,), max_size=1000).train()
    mask = torch.zeros(1, 30, 40, dtype=torch.uint8)
    mask[0, 10:20, 5:25] = 1
    target = {"boxes": torch.tensor([[5.0, 10.0, 25.0, 20.0]]), "labels": torch.tensor([1]), "masks": mask}
    batch, (out,) = t([torch.rand(3, 30, 40)], [target])
    assert batch.image_sizes == [(60, 80)]
    torch.testing.assert_close(out["boxes"], torch.tensor([[10.0, 20.0, 50.0, 40.0]]))
    assert out["masks"].shape == (1, 60, 80)
    assert out["masks"].dtype == torch.uint8
    # Nearest resizing keeps the mask binary and its box where the box went.
    ys, xs = torch.where(out["masks"][0] > 0)
    assert (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) == (10, 20, 50, 40)
    assert out["labels"] is target["labels"]
    assert target["boxes"][0, 0] == 5.0  # the caller's target is not modified


def test_training_picks_a_random_min_size_with_torch_rng():
    t = make(min_size=(40, 50, 60), max_size=1000).train()
    torch.manual_seed(0)
    sizes = {t(torch.rand(1, 3, 20, 20).unbind(0))[0].image_sizes[0] for _ in range(30)}
    assert sizes == {(40, 40), (50, 50), (60, 60)}
    torch.manual_seed(3)
    first = [t([torch.rand(3, 20, 20)])[0].image_sizes[0] for _ in range(5)]
    torch.manual_seed(3)
    assert [t([torch.rand(3, 20, 20)])[0].image_sizes[0] for _ in range(5)] == first
    assert t.eval()([torch.rand(3, 20, 20)])[0].image_sizes == [(60, 60)]  # the last size in evaluation


def test_postprocess_maps_back_and_pastes():
    t = make(min_size=(60,), max_size=1000).eval()
    det = {
        "boxes": torch.tensor([[10.0, 20.0, 50.0, 40.0]]),
        "labels": torch.tensor([1]),
        "scores": torch.tensor([0.9]),
        "masks": torch.ones(1, 1, 28, 28),
    }
    (out,) = t.postprocess([det], [(60, 80)], [(30, 40)])
    torch.testing.assert_close(out["boxes"], torch.tensor([[5.0, 10.0, 25.0, 20.0]]))
    assert out["masks"].shape == (1, 1, 30, 40)
    # Pasted at the original size, into the mapped box (to within the pasting's pixel rounding).
    torch.testing.assert_close(
        out["masks"], paste_masks_in_image(torch.ones(1, 1, 28, 28), out["boxes"], (30, 40))
    )
    ys, xs = torch.where(out["masks"][0, 0] > 0.5)
    assert (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) == (5, 9, 25, 21)


def test_resize_boxes_uses_float32_ratios():
    boxes = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    out = resize_boxes(boxes, (3, 7), (10, 10))
    assert out.dtype == torch.float64
    ratio_w = torch.tensor(10.0) / torch.tensor(7.0)  # float32, as the reference implementation
    assert out[0, 0].item() == pytest.approx(1.0 * ratio_w.double().item(), abs=0)


def test_a_side_that_would_round_to_zero_keeps_one_pixel():
    # 8 x 3000 under max_size 256: the scale 256/3000 makes the short side 0.68 px.
    t = make(min_size=(128,), max_size=256).eval()
    mask = torch.zeros(1, 8, 3000, dtype=torch.uint8)
    mask[0, :, 100:400] = 1
    target = {"boxes": torch.tensor([[100.0, 0.0, 400.0, 8.0]]), "labels": torch.tensor([1]), "masks": mask}
    image, out = t.resize(torch.rand(3, 8, 3000), target)
    assert image.shape == (3, 1, 256)
    assert out["masks"].shape == (1, 1, 256)
    # The box scales with the sides actually made (1/8 vertically, 256/3000 horizontally).
    torch.testing.assert_close(out["boxes"], torch.tensor([[100 * 256 / 3000, 0.0, 400 * 256 / 3000, 1.0]]))
    # Every other image keeps the reference arithmetic (the scale factor, not a size).
    assert t.resize(torch.rand(3, 100, 400), None)[0].shape == (3, 64, 256)
