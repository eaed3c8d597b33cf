import math

import pytest
import torch

from maskrcnn.modeling.rpn import RegionProposalNetwork, RPNHead, flatten_predictions, rpn_loss
from maskrcnn.ops import AnchorGenerator, BalancedPositiveNegativeSampler, BoxCoder
from maskrcnn.structures import ImageList


def make_rpn(**kwargs) -> RegionProposalNetwork:
    gen = AnchorGenerator(sizes=((16,), (32,)), aspect_ratios=((1.0, 2.0),))
    return RegionProposalNetwork(anchor_generator=gen, head=RPNHead(8, 2), **kwargs)


def test_flatten_follows_anchor_order():
    # Anchors are ordered by location (row-major), then anchor; the head's channels are anchor-major.
    n, a, h, w = 2, 2, 2, 3
    logits = torch.arange(n * a * h * w, dtype=torch.float32).reshape(n, a, h, w)
    deltas = torch.arange(n * 4 * a * h * w, dtype=torch.float32).reshape(n, 4 * a, h, w)
    flat_logits, flat_deltas = flatten_predictions(
        [logits, logits[:, :, :1, :1]], [deltas, deltas[:, :, :1, :1]]
    )
    assert flat_logits.shape == (2, h * w * a + a)
    assert flat_deltas.shape == (2, h * w * a + a, 4)
    for img in range(n):
        for y in range(h):
            for x in range(w):
                for k in range(a):
                    row = (y * w + x) * a + k
                    assert flat_logits[img, row] == logits[img, k, y, x]
                    assert flat_deltas[img, row].tolist() == deltas[img, 4 * k : 4 * k + 4, y, x].tolist()
    assert flat_logits[0, h * w * a + 1] == logits[0, 1, 0, 0]  # the second level follows


def test_select_proposals_golden():
    rpn = make_rpn(pre_nms_top_n={"training": 9, "testing": 3}, post_nms_top_n={"training": 9, "testing": 3})
    rpn.eval()
    anchors = torch.tensor(
        [
            [0.0, 0, 10, 10],  # level 0
            [1.0, 0, 11, 10],  # IoU 0.82 with the first: removed by NMS
            [20.0, 20, 30, 30],
            [40.0, 40, 50, 50],  # outside the 32x32 image: clipped to nothing, removed
            [0.0, 0, 10, 10],  # level 1: the same box as the first, but NMS runs per level
            [5.0, 5, 25, 25],
        ]
    )
    logits = torch.tensor([[3.0, 2.0, 1.0, 4.0, 0.5, -1.0]])
    deltas = torch.zeros(1, 6, 4)
    (boxes,) = rpn.select_proposals(anchors, logits, deltas, [(32, 32)], [4, 2])
    # Level 0 keeps its top 3 (anchors 3, 0, 1), of which 3 vanishes and 1 is suppressed; level 1 keeps
    # both; the best 3 overall by objectness remain: anchors 0 (3.0), 4 (0.5), 5 (-1.0).
    assert boxes.tolist() == [[0.0, 0, 10, 10], [0.0, 0, 10, 10], [5.0, 5, 25, 25]]
    # Deltas move the anchors (box coder weights 1): dx = 0.1 shifts by a tenth of the width and
    # dh = log 2 doubles the height about the centre, (0, -5, 10, 15) clipped at y = 0.
    deltas[0, 0] = torch.tensor([0.1, 0.0, 0.0, math.log(2.0)])
    (boxes,) = rpn.select_proposals(anchors, logits, deltas, [(32, 32)], [4, 2])
    torch.testing.assert_close(boxes[0], torch.tensor([1.0, 0.0, 11.0, 15.0]))
    # The moved box no longer overlaps anchor 1 beyond 0.7 (IoU 100/150), so anchor 1 survives NMS.
    assert boxes[1].tolist() == [1.0, 0.0, 11.0, 10.0]


def test_assign_targets_thresholds_and_low_quality_matches():
    rpn = make_rpn()
    gt = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]])
    anchors = torch.tensor(
        [
            [0.0, 0, 10, 9],  # IoU 0.9 with gt 0: positive
            [0.0, 0, 10, 5],  # IoU 0.5: between the thresholds, ignored
            [20.0, 20, 30, 30],  # IoU 0: negative
            [50.0, 50, 60, 55],  # IoU 0.5 with gt 1, its best anchor: positive (low-quality match)
        ]
    )
    (labels,), (targets,) = rpn.assign_targets([anchors], [gt])
    assert labels.tolist() == [1.0, -1.0, 0.0, 1.0]
    expected = BoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(gt[[0, 1]], anchors[[0, 3]])
    torch.testing.assert_close(targets[[0, 3]], expected)
    (labels,), _ = rpn.assign_targets([anchors], [torch.zeros(0, 4)])
    assert labels.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_rpn_loss_golden():
    logits = torch.tensor([[2.0, -1.0, 0.5]], requires_grad=True)
    deltas = torch.zeros(1, 3, 4, requires_grad=True)
    with torch.no_grad():
        deltas[0, 0, 0] = 0.1
    labels = [torch.tensor([1.0, 0.0, -1.0])]
    targets = [torch.zeros(3, 4)]
    sampler = BalancedPositiveNegativeSampler(256, 0.5)
    objectness, box = rpn_loss(logits, deltas, labels, targets, sampler)
    # Binary cross-entropy over the two sampled anchors (the ignored one does not count).
    assert objectness.item() == pytest.approx((math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2)
    # Smooth L1 with beta 1/9 on the positive: 0.5 * 0.1^2 / (1/9), over 2 sampled anchors.
    assert box.item() == pytest.approx(0.5 * 0.01 * 9 / 2)
    l1 = rpn_loss(logits, deltas, labels, targets, sampler, box_loss="l1")[1]
    assert l1.item() == pytest.approx(0.1 / 2)
    (objectness + box).backward()
    assert logits.grad[0, 2] == 0  # the ignored anchor gets no gradient


def test_forward_training_without_objects_backpropagates():
    torch.manual_seed(0)
    rpn = make_rpn().train()
    features = {"p2": torch.randn(1, 8, 8, 8, requires_grad=True), "p3": torch.randn(1, 8, 4, 4)}
    images = ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)])
    proposals, losses = rpn(images, features, [{"boxes": torch.zeros(0, 4)}])
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
    assert losses["loss_rpn_box_reg"].item() == 0.0
    assert losses["loss_objectness"].item() > 0
    sum(losses.values()).backward()
    assert features["p2"].grad is not None
    assert proposals[0].shape[1] == 4
    assert len(proposals[0]) <= 8 * 8 * 2 + 4 * 4 * 2
    with pytest.raises(ValueError, match="targets are required"):
        rpn(images, features)
