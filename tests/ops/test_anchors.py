import torch

from maskrcnn.ops import AnchorGenerator
from maskrcnn.structures import ImageList


def test_cell_anchors_golden():
    base = AnchorGenerator.generate_anchors((32, 64), (0.5, 1.0, 2.0))
    # w = s / sqrt(r), h = s * sqrt(r), halved and rounded (half to even): ratio-major, then size.
    expected = [
        [-23, -11, 23, 11],  # r=0.5, s=32: w=45.25, h=22.63
        [-45, -23, 45, 23],  # r=0.5, s=64: w=90.51, h=45.25
        [-16, -16, 16, 16],
        [-32, -32, 32, 32],
        [-11, -23, 11, 23],
        [-23, -45, 23, 45],
    ]
    assert base.tolist() == expected


def test_grid_anchors_over_two_levels():
    gen = AnchorGenerator(sizes=((16,), (32,)), aspect_ratios=((1.0, 2.0),))
    assert gen.num_anchors_per_location() == [2, 2]
    images = ImageList(torch.zeros(2, 3, 32, 48), [(30, 48), (32, 40)])
    feats = [torch.zeros(2, 8, 4, 6), torch.zeros(2, 8, 2, 3)]  # strides 8 and 16
    anchors = gen(images, feats)
    assert len(anchors) == 2
    assert torch.equal(anchors[0], anchors[1])
    assert anchors[0].shape == (4 * 6 * 2 + 2 * 3 * 2, 4)
    level0 = anchors[0][:48].reshape(4, 6, 2, 4)
    # Location (y=0, x=0): the two cell anchors; r=2: w = 16/sqrt 2 = 11.3 -> +-5.66 -> 6, h -> 11.
    assert level0[0, 0].tolist() == [[-8, -8, 8, 8], [-6, -11, 6, 11]]
    # Location (y=2, x=5) is shifted by (5 * 8, 2 * 8).
    assert level0[2, 5].tolist() == [[32, 8, 48, 24], [34, 5, 46, 27]]
    level1 = anchors[0][48:].reshape(2, 3, 2, 4)
    assert level1[1, 2, 0].tolist() == [16, 0, 48, 32]


def test_flat_arguments_and_dtype():
    gen = AnchorGenerator(sizes=(32, 64), aspect_ratios=(1.0,))
    images = ImageList(torch.zeros(1, 3, 16, 16, dtype=torch.float64), [(16, 16)])
    out = gen(
        images, [torch.zeros(1, 1, 2, 2, dtype=torch.float64), torch.zeros(1, 1, 1, 1, dtype=torch.float64)]
    )
    assert out[0].dtype == torch.float64
    assert out[0].tolist() == [
        [-16, -16, 16, 16],
        [-8, -16, 24, 16],
        [-16, -8, 16, 24],
        [-8, -8, 24, 24],
        [-32, -32, 32, 32],
    ]
