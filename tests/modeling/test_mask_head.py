import pytest
import torch
import torch.nn.functional as F

from maskrcnn.modeling.mask_head import (
    MaskRCNNHeads,
    MaskRCNNPredictor,
    mask_probabilities,
    maskrcnn_loss,
    project_masks_on_boxes,
)


def test_head_and_predictor_shapes_and_names():
    head = MaskRCNNHeads(8, (16, 16))
    predictor = MaskRCNNPredictor(16, 12, 5)
    assert set(head.state_dict()) == {"0.0.weight", "0.0.bias", "1.0.weight", "1.0.bias"}
    assert set(predictor.state_dict()) == {
        "conv5_mask.weight",
        "conv5_mask.bias",
        "mask_fcn_logits.weight",
        "mask_fcn_logits.bias",
    }
    logits = predictor(head(torch.randn(3, 8, 14, 14)))
    assert logits.shape == (3, 5, 28, 28)
    assert predictor(head(torch.randn(0, 8, 14, 14))).shape == (0, 5, 28, 28)


def test_project_masks_on_boxes():
    mask = torch.zeros(2, 20, 20, dtype=torch.uint8)
    mask[0, 4:8, 4:12] = 1  # rows 4..7, columns 4..11
    mask[1] = 1
    boxes = torch.tensor([[4.0, 4.0, 12.0, 8.0], [0.0, 0.0, 8.0, 8.0], [4.0, 0.0, 12.0, 16.0]])
    targets = project_masks_on_boxes(mask, boxes, torch.tensor([0, 1, 0]), 4)
    assert targets.shape == (3, 4, 4)
    # The box of the object: all inside, except where bilinear samples reach past the last pixel row.
    assert torch.all(targets[0, :3, :3] == 1.0)
    assert torch.all(targets[1] == 1.0)  # a box inside an all-ones mask
    # A box four times as tall as the object (rows 0..15; the object is rows 4..7, the second bin).
    # aligned=False puts pixel i at coordinate i, not i + 0.5, so each bin's last sample row (y = 3.5,
    # 7.5) reads half of the next row: 1/8 of the first bin is inside and 1/8 of the second is outside;
    # the last column's samples straddle the object's right edge.
    assert targets[2, 0].tolist() == [0.125, 0.125, 0.125, 0.09375]
    assert targets[2, 1].tolist() == [0.875, 0.875, 0.875, 0.65625]
    assert targets[2, 2:].max() == 0.0


def test_maskrcnn_loss_uses_the_ground_truth_class_only():
    mask = torch.zeros(1, 16, 16, dtype=torch.uint8)
    mask[0, :, :8] = 1
    proposals = [torch.tensor([[0.0, 0.0, 16.0, 16.0]])]
    logits = torch.zeros(1, 3, 4, 4, requires_grad=True)
    loss = maskrcnn_loss(logits, proposals, [mask], [torch.tensor([2])], [torch.tensor([0])])
    target = project_masks_on_boxes(mask, proposals[0], torch.tensor([0]), 4)
    assert loss.item() == pytest.approx(
        F.binary_cross_entropy_with_logits(torch.zeros(1, 4, 4), target).item()
    )
    loss.backward()
    assert logits.grad[0, 2].abs().sum() > 0
    assert logits.grad[0, :2].abs().sum() == 0
    # No positive proposal: zero loss that still reaches the logits.
    empty = torch.zeros(0, 3, 4, 4, requires_grad=True)
    none = maskrcnn_loss(
        empty, [torch.zeros(0, 4)], [mask], [torch.tensor([2])], [torch.zeros(0, dtype=torch.int64)]
    )
    assert none.item() == 0.0
    none.backward()


def test_mask_probabilities_pick_each_detections_class():
    logits = torch.randn(3, 4, 2, 2)
    probs = mask_probabilities(logits, [torch.tensor([1, 3]), torch.tensor([2])])
    assert [p.shape for p in probs] == [(2, 1, 2, 2), (1, 1, 2, 2)]
    torch.testing.assert_close(probs[0][1, 0], logits[1, 3].sigmoid())
    torch.testing.assert_close(probs[1][0, 0], logits[2, 2].sigmoid())
