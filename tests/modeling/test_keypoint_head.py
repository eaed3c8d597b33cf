"""The keypoint branch: heatmap targets, the spatial cross-entropy, peak placement, and the branch inside the
RoI heads (torchvision parity of the whole model is in test_torchvision_parity.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from maskrcnn.config import ModelConfig
from maskrcnn.modeling import build_model
from maskrcnn.modeling.keypoint_head import (
    KeypointRCNNHeads,
    KeypointRCNNPredictor,
    heatmaps_to_keypoints,
    keypointrcnn_loss,
    keypoints_to_heatmap,
)


def test_head_and_predictor_shapes_and_names():
    head = KeypointRCNNHeads(16, (32, 32, 8))
    predictor = KeypointRCNNPredictor(head.out_channels, 5)
    out = predictor(head(torch.rand(3, 16, 14, 14)))
    assert out.shape == (3, 5, 56, 56)
    # torchvision's key names: convolutions at the even positions (ReLUs between them)
    assert [k for k in head.state_dict() if k.endswith("weight")] == ["0.weight", "2.weight", "4.weight"]
    assert list(predictor.state_dict()) == ["kps_score_lowres.weight", "kps_score_lowres.bias"]


def test_heatmap_targets_are_the_cells_of_the_keypoints():
    rois = torch.tensor([[10.0, 20.0, 66.0, 76.0]])  # 56 x 56 pixels: one pixel per cell
    keypoints = torch.tensor(
        [
            [
                [10.0, 20.0, 2.0],  # top-left corner: cell (0, 0)
                [40.5, 30.9, 1.0],  # hidden but labelled: learnt, cell (10, 30)
                [66.0, 76.0, 2.0],  # exactly on the right / bottom edge: the last cell
                [9.9, 30.0, 2.0],  # left of the box: not learnt
                [30.0, 40.0, 0.0],  # not labelled
            ]
        ]
    )
    target, valid = keypoints_to_heatmap(keypoints, rois, 56)
    assert valid.tolist() == [[1, 1, 1, 0, 0]]
    assert target.tolist() == [[0, 10 * 56 + 30, 55 * 56 + 55, 0, 0]]


def test_loss_is_the_cross_entropy_of_the_learnable_keypoints_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 56, 56)
    proposals = [torch.tensor([[0.0, 0.0, 56.0, 56.0], [0.0, 0.0, 28.0, 28.0]])]
    gt = torch.tensor([[[5.0, 7.0, 2.0], [60.0, 1.0, 2.0], [3.0, 3.0, 0.0]]])  # second: outside box 0
    loss = keypointrcnn_loss(logits, proposals, [gt], [torch.tensor([0, 0])])
    flat = logits.reshape(6, 56 * 56)
    # proposal 0 learns keypoint 0 at cell (7, 5); proposal 1 (two cells per pixel) at (14, 10)
    expected = F.cross_entropy(flat[[0, 3]], torch.tensor([7 * 56 + 5, 14 * 56 + 10]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # nothing learnable: a zero that still back-propagates
    logits.requires_grad_(True)
    none = keypointrcnn_loss(logits, proposals, [gt * torch.tensor([1.0, 1.0, 0.0])], [torch.tensor([0, 0])])
    assert none.item() == 0
    assert none.grad_fn is not None


def test_peaks_are_placed_at_pixel_resolution_inside_the_box():
    # A 56 x 56 map whose peak is at cell (row 41, col 13), in a 112 x 84 box: two pixels per cell
    # across, 1.5 down; bicubic upsampling keeps the peak at the matching pixels.
    maps = torch.full((1, 1, 56, 56), -5.0)
    maps[0, 0, 41, 13] = 5.0
    rois = torch.tensor([[100.0, 50.0, 212.0, 134.0]])
    points, scores = heatmaps_to_keypoints(maps, rois)
    assert points.shape == (1, 1, 3)
    assert points.dtype == torch.float32
    x, y, one = points[0, 0].tolist()
    assert one == 1.0
    # the cell's centre in the box, to within a pixel of the resampled grid
    assert abs(x - (100 + (13 + 0.5) * 2)) <= 1.0
    assert abs(y - (50 + (41 + 0.5) * 1.5)) <= 1.0
    assert scores[0, 0].item() > 0
    # every detection gets its own resolution: an empty set gives empty outputs
    empty_points, empty_scores = heatmaps_to_keypoints(torch.zeros(0, 4, 56, 56), torch.zeros(0, 4))
    assert empty_points.shape == (0, 4, 3)
    assert empty_scores.shape == (0, 4)


def _tiny(mask_head: bool, num_keypoints: int) -> torch.nn.Module:
    cfg = ModelConfig(num_classes=3)
    cfg.backbone.name, cfg.backbone.width, cfg.backbone.fpn_channels = "resnet18", 16, 32
    cfg.roi_heads.representation_size = 64
    cfg.roi_heads.mask_head_channels = (32,)
    cfg.roi_heads.mask_predictor_channels = 32
    cfg.roi_heads.mask_head = mask_head
    cfg.roi_heads.num_keypoints = num_keypoints
    cfg.roi_heads.keypoint_head_channels = (32, 32)
    cfg.transform.min_size, cfg.transform.max_size = (96,), 128
    return build_model(cfg)


@pytest.mark.parametrize(
    ("mask_head", "losses"), [(True, {"loss_mask", "loss_keypoint"}), (False, {"loss_keypoint"})]
)
def test_models_with_keypoints_train_and_detect(mask_head, losses):
    torch.manual_seed(0)
    model = _tiny(mask_head, 4)
    image = torch.rand(3, 96, 112)
    target = {
        "boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]),
        "labels": torch.tensor([2]),
        "masks": torch.zeros(1, 96, 112, dtype=torch.uint8),
        "keypoints": torch.tensor(
            [[[20.0, 20.0, 2.0], [50.0, 30.0, 2.0], [30.0, 60.0, 1.0], [0.0, 0.0, 0.0]]]
        ),
    }
    target["masks"][0, 12:70, 10:60] = 1
    out = model([image], [target])
    assert set(out) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"} | losses
    # a uniform heatmap: the loss of each learnt keypoint is about log(56 * 56)
    assert math.isfinite(out["loss_keypoint"].item())
    assert out["loss_keypoint"].item() > 1.0
    sum(out.values()).backward()
    model.eval()
    with torch.no_grad():
        (det,) = model([image], score_thresh=0.0)
    n = det["boxes"].shape[0]
    assert det["keypoints"].shape == (n, 4, 3)
    assert det["keypoints_scores"].shape == (n, 4)
    assert ("masks" in det) == mask_head
    if n:
        # keypoints lie inside their boxes, in the input image's pixels
        x, y = det["keypoints"][..., 0], det["keypoints"][..., 1]
        boxes = det["boxes"]
        assert bool(((x >= boxes[:, None, 0] - 1e-3) & (x <= boxes[:, None, 2] + 1e-3)).all())
        assert bool(((y >= boxes[:, None, 1] - 1e-3) & (y <= boxes[:, None, 3] + 1e-3)).all())


def test_targets_without_keypoints_are_refused_naming_the_image():
    model = _tiny(False, 4)
    image = torch.rand(3, 64, 64)
    target = {"boxes": torch.tensor([[1.0, 1.0, 20.0, 20.0]]), "labels": torch.tensor([1])}
    with pytest.raises(ValueError, match=r"target of image 0 has no 'keypoints'"):
        model([image], [target])
    target["keypoints"] = torch.zeros(1, 3, 3)
    with pytest.raises(ValueError, match=r"image 0: keypoints must be a float \[1, 4, 3\] tensor"):
        model([image], [target])
    target["keypoints"] = torch.full((1, 4, 3), float("nan"))
    with pytest.raises(ValueError, match=r"keypoints of box 0 are not finite"):
        model([image], [target])
