import hashlib

import pytest
import torch

from maskrcnn.modeling import FrozenBatchNorm2d, RPNHead
from maskrcnn.models import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from maskrcnn.weights import REGISTRY, WeightsEntry
from tests.synthetic_weights import load_layout


def test_torchvision_keyword_arguments():
    head = RPNHead(256, 3, conv_depth=1)
    model = maskrcnn_resnet50_fpn(
        num_classes=5,
        min_size=(480, 512),
        max_size=700,
        rpn_post_nms_top_n_test=300,
        box_score_thresh=0.3,
        box_detections_per_img=20,
        bbox_reg_weights=(5.0, 5.0, 2.0, 2.0),
        rpn_head=head,
    )
    assert model.transform.min_size == (480, 512)
    assert model.transform.max_size == 700
    assert model.rpn.post_nms_top_n["testing"] == 300
    assert model.roi_heads.score_thresh == 0.3
    assert model.roi_heads.detections_per_img == 20
    assert model.roi_heads.box_coder.weights == (5.0, 5.0, 2.0, 2.0)
    assert model.rpn.head is head
    assert model.roi_heads.box_predictor.cls_score.out_features == 5
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['box_score_threshold'\]"):
        maskrcnn_resnet50_fpn(box_score_threshold=0.3)


def test_v1_and_v2_architectures():
    scratch = maskrcnn_resnet50_fpn()
    # From scratch (no weights): BatchNorm and every stage trained, as torchvision does.
    assert isinstance(scratch.backbone.body.bn1, torch.nn.BatchNorm2d)
    assert all(p.requires_grad for p in scratch.parameters())
    assert scratch.roi_heads.box_roi_pool.sampling_ratio == 2
    assert not scratch.roi_heads.box_roi_pool.aligned
    v2 = maskrcnn_resnet50_fpn_v2(trainable_backbone_layers=2)
    assert len(v2.rpn.head.conv) == 2
    assert isinstance(v2.backbone.fpn.inner_blocks[0][1], torch.nn.BatchNorm2d)
    # The frozen stages of a BatchNorm backbone keep their statistics.
    assert isinstance(v2.backbone.body.layer2[0].bn1, FrozenBatchNorm2d)
    assert isinstance(v2.backbone.body.layer3[0].bn1, torch.nn.BatchNorm2d)


def test_weights_by_name(tmp_path, monkeypatch):
    """``weights_backbone="<name>"`` as in torchvision: the named file, from the cache."""
    monkeypatch.setenv("MASKRCNN_HOME", str(tmp_path))
    monkeypatch.setenv("MASKRCNN_OFFLINE", "1")
    state = {k: torch.full(shape, 0.5) for k, shape, _ in load_layout("resnet50_imagenet")}
    path = tmp_path / "weights" / "lab-resnet50.pth"
    path.parent.mkdir()
    torch.save(state, path)
    entry = WeightsEntry(
        name="lab-r50",
        file_name=path.name,
        url="https://lab.example/lab-resnet50.pth",
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        kind="backbone",
        architecture="resnet50",
        num_classes=1000,
        size_mb=98.0,
        summary="the lab's own ImageNet training",
    )
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    model = maskrcnn_resnet50_fpn(weights_backbone="lab-r50")
    assert torch.equal(model.backbone.body.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    with pytest.raises(OSError, match=r"coco-v2 .* is not in the cache and MASKRCNN_OFFLINE is set"):
        maskrcnn_resnet50_fpn_v2(weights="coco-v2")
