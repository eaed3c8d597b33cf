import pytest
import torch

from maskrcnn.ops import LevelMapper, MultiScaleRoIAlign, roi_align


def test_level_mapper_golden():
    mapper = LevelMapper(k_min=2, k_max=5)
    sides = torch.tensor([10.0, 111.9, 112.0, 223.9, 224.0, 447.9, 448.0, 2000.0])
    boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], dim=1)
    # floor(4 + log2(side / 224) + 1e-6): 112 -> 3, 224 -> 4, 448 -> 5; clamped to [2, 5]; minus k_min.
    assert mapper([boxes]).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    inverted = torch.tensor([[10.0, 10, 0, 20]])  # negative area: finest level, not garbage
    assert mapper([inverted]).tolist() == [0]


def make_pyramid(batch: int = 2, channels: int = 4, size: tuple[int, int] = (64, 96), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    return {
        name: torch.randn(batch, channels, h // s, w // s, generator=g)
        for name, s in [("p2", 4), ("p3", 8), ("p4", 16), ("p5", 32)]
    }


def test_matches_per_level_roi_align_in_input_order():
    features = make_pyramid()
    image_shapes = [(64, 90), (60, 96)]
    # sqrt(area) from 8 to 500 px, so that every level gets boxes, listed so that levels interleave;
    # boxes may reach past the image.
    boxes = [
        torch.tensor([[0.0, 0, 300, 200], [3, 4, 11, 12], [10, 10, 160, 160], [20, 5, 60, 45]]),
        torch.tensor([[5.0, 5, 25, 35], [-100, -100, 400, 400], [1, 1, 9, 9]]),
    ]
    pooler = MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], 7, 2)
    out = pooler(features, boxes, image_shapes)
    assert out.shape == (7, 4, 7, 7)
    all_boxes = torch.cat(boxes)
    levels = LevelMapper(k_min=2, k_max=5)(boxes)
    batch_index = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    names, scales = ["p2", "p3", "p4", "p5"], [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    assert levels.tolist() == [2, 0, 1, 0, 0, 3, 0]
    for k in range(7):
        lvl = int(levels[k])
        roi = torch.cat([batch_index[k : k + 1, None].float(), all_boxes[k : k + 1]], dim=1)
        expected = roi_align(features[names[lvl]], roi, 7, scales[lvl], 2)
        torch.testing.assert_close(out[k : k + 1], expected)


def test_single_level_empty_and_gradients():
    features = make_pyramid(batch=1)
    pooler = MultiScaleRoIAlign(["p3"], (5, 3), sampling_ratio=-1, aligned=True)
    boxes = [torch.tensor([[4.0, 4, 40, 30]])]
    out = pooler(features, boxes, [(64, 96)])
    torch.testing.assert_close(out, roi_align(features["p3"], boxes, (5, 3), 1 / 8, -1, aligned=True))
    empty = MultiScaleRoIAlign(["p2", "p3"], 7, 2)(features, [torch.zeros(0, 4)], [(64, 96)])
    assert empty.shape == (0, 4, 7, 7)
    leaf = {k: v.double().requires_grad_() for k, v in features.items()}
    boxes = [torch.tensor([[-200.0, -200, 300, 300], [1, 1, 8, 8]])]  # sqrt(area) 500 -> p5, 7 -> p2
    MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], 2, 2)(leaf, boxes, [(64, 96)]).sum().backward()
    assert leaf["p2"].grad.abs().sum() > 0
    assert leaf["p5"].grad.abs().sum() > 0
    assert leaf["p3"].grad is None or leaf["p3"].grad.abs().sum() == 0  # no box of p3's size


def test_scales_are_inferred_and_checked():
    features = make_pyramid(batch=1)
    with pytest.raises(KeyError, match="p6"):
        MultiScaleRoIAlign(["p6"], 7, 2)(features, [torch.zeros(1, 4)], [(64, 96)])
    with pytest.raises(ValueError, match="halve"):
        MultiScaleRoIAlign(["p2", "p4"], 7, 2)(features, [torch.zeros(1, 4)], [(64, 96)])
