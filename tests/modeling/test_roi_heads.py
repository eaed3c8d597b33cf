import pytest
import torch

from maskrcnn.modeling.box_head import FastRCNNPredictor, TwoMLPHead
from maskrcnn.modeling.mask_head import MaskRCNNHeads, MaskRCNNPredictor
from maskrcnn.modeling.roi_heads import RoIHeads
from maskrcnn.ops import BoxCoder, MultiScaleRoIAlign

NAMES = ["p2", "p3"]


def make_heads(num_classes: int = 3, **kwargs) -> RoIHeads:
    torch.manual_seed(0)
    return RoIHeads(
        box_roi_pool=MultiScaleRoIAlign(NAMES, 7, 2),
        box_head=TwoMLPHead(8 * 49, 16),
        box_predictor=FastRCNNPredictor(16, num_classes),
        mask_roi_pool=MultiScaleRoIAlign(NAMES, 14, 2),
        mask_head=MaskRCNNHeads(8, (8,)),
        mask_predictor=MaskRCNNPredictor(8, 8, num_classes),
        **kwargs,
    )


def features() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"p2": torch.randn(1, 8, 16, 16, generator=g), "p3": torch.randn(1, 8, 8, 8, generator=g)}


def test_postprocess_detections_golden():
    heads = make_heads(score_thresh=0.05, nms_thresh=0.5, detections_per_img=3)
    proposals = [torch.tensor([[0.0, 0, 10, 10], [1.0, 1, 11, 11], [20.0, 20, 40, 40]])]
    # Softmax over (background, class 1, class 2).
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.2, 0.7, 0.1], [0.96, 0.01, 0.03]]))
    deltas = torch.zeros(3, 12)
    (det,) = heads.postprocess_detections(logits, deltas, proposals, [(32, 32)])
    # Class 1: proposals 1 (0.7) then 0 (0.6, IoU 0.68 with 1: suppressed); class 2: 0 (0.3), 1 (0.1,
    # suppressed); proposal 2 falls below 0.05 for both and is clipped to the 32x32 image anyway.
    assert det["labels"].tolist() == [1, 2]
    torch.testing.assert_close(det["scores"], torch.tensor([0.7, 0.3]))
    assert det["boxes"].tolist() == [[1.0, 1, 11, 11], [0.0, 0, 10, 10]]
    # Class-specific deltas: class 2's box of proposal 0 moves, class 1's does not.
    deltas[0, 8:12] = torch.tensor([10.0, 0.0, 0.0, 0.0])  # dx = 10 / wx = 1 width
    (det,) = heads.postprocess_detections(logits, deltas, proposals, [(32, 32)])
    # ... and no longer overlaps proposal 1's class-2 box, which now survives too.
    assert det["boxes"][det["labels"] == 2].tolist() == [[10.0, 0, 20, 10], [1.0, 1, 11, 11]]
    heads.detections_per_img = 1
    (det,) = heads.postprocess_detections(logits, deltas, proposals, [(32, 32)])
    assert det["labels"].tolist() == [1]


def test_training_samples():
    heads = make_heads(batch_size_per_image=8, positive_fraction=0.25)
    gt = torch.tensor([[0.0, 0, 10, 10]])
    proposals = [
        torch.tensor(
            [
                [0.0, 0, 10, 9],
                [1.0, 0, 11, 10],
                [0.0, 0, 10, 4],
                [20, 20, 30, 30],
                [12, 12, 30, 30],
                [5, 5, 15, 15],
            ]
            + [[float(x), 16, float(x) + 4, 20] for x in range(0, 24, 2)]
        )
    ]
    targets = [{"boxes": gt, "labels": torch.tensor([2]), "masks": torch.zeros(1, 32, 32, dtype=torch.uint8)}]
    torch.manual_seed(0)
    samples = heads.select_training_samples(proposals, targets)
    (boxes,), (labels,), (matched,), (reg,) = (
        samples.proposals,
        samples.labels,
        samples.matched_idxs,
        samples.regression_targets,
    )
    assert len(boxes) == 8  # batch_size_per_image
    # Foreground: IoU >= 0.5 (the first two proposals and the appended ground truth), at most 8 * 0.25.
    assert int((labels == 2).sum()) == 2
    assert set(labels.tolist()) <= {0, 2}
    assert int((labels == 0).sum()) == 6
    fg = labels > 0
    ious = [float(_iou(b, gt[0])) for b in boxes]
    assert all((iou >= 0.5) == bool(f) for iou, f in zip(ious, fg, strict=True))
    expected = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode_single(gt.expand(int(fg.sum()), 4), boxes[fg])
    torch.testing.assert_close(reg[fg], expected)
    assert matched.tolist() == [0] * 8
    # Samples keep index order (what the sampler picked, sorted), which the loss pairs with the logits.
    all_boxes = torch.cat([proposals[0], gt])
    positions = [int(torch.where((all_boxes == b).all(dim=1))[0][0]) for b in boxes]
    assert positions == sorted(positions)


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    inter = (torch.minimum(a[2:], b[2:]) - torch.maximum(a[:2], b[:2])).clamp(min=0).prod()
    return inter / ((a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter)


def test_forward_both_modes():
    heads = make_heads()
    feats = features()
    proposals = [torch.tensor([[2.0, 2, 30, 30], [4.0, 4, 20, 28], [0.0, 0, 8, 8]])]
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 4:24, 4:24] = 1
    targets = [{"boxes": torch.tensor([[4.0, 4, 24, 24]]), "labels": torch.tensor([1]), "masks": masks}]
    heads.train()
    detections, losses = heads(feats, proposals, [(64, 64)], targets)
    assert detections == []
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    with pytest.raises(ValueError, match="targets are required"):
        heads(feats, proposals, [(64, 64)])
    heads.eval()
    heads.score_thresh = 0.0
    (det,), losses = heads(feats, proposals, [(64, 64)])
    assert losses == {}
    n = len(det["boxes"])
    assert n > 0
    assert det["masks"].shape == (n, 1, 28, 28)
    assert det["labels"].dtype == torch.int64
    assert ((det["masks"] >= 0) & (det["masks"] <= 1)).all()
