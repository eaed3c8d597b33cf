import pytest
import torch

from maskrcnn.ops import (
    box_area,
    box_convert,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    clip_boxes_to_image,
    remove_small_boxes,
)


def test_area_and_iou_golden(device):
    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 25]], device=device)
    b = torch.tensor([[0.0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 5, 20]], device=device)
    assert box_area(a).tolist() == [100.0, 200.0]
    iou = box_iou(a, b).cpu()
    expected = torch.tensor(
        [
            [1.0, 0.0, 50 / (100 + 100 - 50)],
            [25 / (100 + 200 - 25), 50 / (200 + 100 - 50), 0.0],
        ]
    )
    torch.testing.assert_close(iou, expected)


def test_iou_matches_pairwise_loop():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(7, 4, generator=g, dtype=torch.float64) * 50
    b = torch.rand(5, 4, generator=g, dtype=torch.float64) * 50
    a[:, 2:] += a[:, :2]
    b[:, 2:] += b[:, :2]
    iou = box_iou(a, b)
    for i in range(7):
        for j in range(5):
            w = max(min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]), 0)
            h = max(min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]), 0)
            inter = w * h
            union = (
                (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            )
            assert iou[i, j].item() == pytest.approx((inter / union).item(), abs=1e-12)


def test_empty_inputs_keep_dtype():
    e = torch.zeros((0, 4), dtype=torch.float64)
    b = torch.ones((3, 4), dtype=torch.float64)
    assert box_iou(e, b).shape == (0, 3)
    assert box_iou(b, e).dtype == torch.float64
    assert box_area(e).shape == (0,)
    assert remove_small_boxes(e, 1.0).shape == (0,)
    assert clip_boxes_to_image(e, (5, 5)).shape == (0, 4)


def test_clip_and_remove_small():
    boxes = torch.tensor([[-5.0, -1, 30, 12], [2, 3, 2.5, 9], [1, 1, 4, 4]])
    clipped = clip_boxes_to_image(boxes, (10, 20))  # (height, width)
    assert clipped.tolist() == [[0, 0, 20, 10], [2, 3, 2.5, 9], [1, 1, 4, 4]]
    assert remove_small_boxes(clipped, 1.0).tolist() == [0, 2]
    assert remove_small_boxes(clipped, 3.0).tolist() == [0, 2]
    assert remove_small_boxes(clipped, 3.5).tolist() == [0]
    # Batched [..., 4] boxes (e.g. per-class boxes [N, K, 4]) are clipped too.
    per_class = boxes[:, None].expand(3, 2, 4)
    assert clip_boxes_to_image(per_class, (10, 20))[:, 1].tolist() == clipped.tolist()


def test_convert_round_trip():
    xyxy = torch.tensor([[1.0, 2, 5, 10], [0, 0, 3, 3]])
    cxcywh = box_xyxy_to_cxcywh(xyxy)
    assert cxcywh.tolist() == [[3, 6, 4, 8], [1.5, 1.5, 3, 3]]
    torch.testing.assert_close(box_cxcywh_to_xyxy(cxcywh), xyxy)
    torch.testing.assert_close(box_convert(xyxy, "xyxy", "cxcywh"), cxcywh)
    with pytest.raises(ValueError, match="unsupported"):
        box_convert(xyxy, "xyxy", "xywh")
