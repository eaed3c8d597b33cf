import math

import pytest
import torch

from maskrcnn.ops import BoxCoder


def test_encode_golden():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    proposal = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10 x 20
    gt = torch.tensor([[2.0, 4.0, 22.0, 24.0]])  # centre (12, 14), size 20 x 20
    deltas = coder.encode_single(gt, proposal)
    expected = [10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]
    torch.testing.assert_close(deltas, torch.tensor([expected]))


def test_round_trip_with_weights():
    g = torch.Generator().manual_seed(0)
    proposals = torch.rand(50, 4, generator=g, dtype=torch.float64) * 100
    proposals[:, 2:] += proposals[:, :2] + 1
    gt = torch.rand(50, 4, generator=g, dtype=torch.float64) * 100
    gt[:, 2:] += gt[:, :2] + 1
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        coder = BoxCoder(weights)
        deltas = coder.encode_single(gt, proposals)
        torch.testing.assert_close(coder.decode_single(deltas, proposals), gt, rtol=0, atol=1e-9)
        # Lists of per-image boxes go through the same arithmetic.
        per_image = coder.encode([gt[:20], gt[20:]], [proposals[:20], proposals[20:]])
        torch.testing.assert_close(torch.cat(per_image), deltas)
        decoded = coder.decode(deltas, [proposals[:20], proposals[20:]])
        assert decoded.shape == (50, 1, 4)
        torch.testing.assert_close(decoded[:, 0], gt, rtol=0, atol=1e-9)


def test_decode_clamps_log_scale():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    huge = torch.tensor([[0.0, 0.0, 50.0, 50.0]])
    out = coder.decode_single(huge, box)
    # exp(log(1000/16)) * 16 = 1000: the box can grow to 1000 px and no further, and stays finite.
    torch.testing.assert_close(out, torch.tensor([[-492.0, -492.0, 508.0, 508.0]]))
    assert torch.isfinite(coder.decode_single(torch.full((1, 4), 1e6), box)).all()


def test_class_specific_codes_and_empty():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 25.0, 15.0]])
    codes = torch.zeros(2, 3 * 4)
    codes[:, 4] = 10.0  # class 1: shift right by one box width
    out = coder.decode(codes, [boxes])
    assert out.shape == (2, 3, 4)
    torch.testing.assert_close(out[:, 0], boxes)
    torch.testing.assert_close(out[:, 1], boxes + torch.tensor([[10.0, 0, 10, 0], [20.0, 0, 20, 0]]))
    assert coder.decode(torch.zeros(0, 8), [torch.zeros(0, 4)]).shape == (0, 2, 4)
    assert coder.encode_single(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
    with pytest.raises(ValueError, match="4 values"):
        BoxCoder((1.0, 1.0))
