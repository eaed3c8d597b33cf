import pytest
import torch
import torch.nn.functional as F

from maskrcnn.modeling.box_head import ConvFCHead, FastRCNNPredictor, TwoMLPHead, fastrcnn_loss
from maskrcnn.modeling.layers import norm_factory


def test_heads_shapes_and_names():
    pooled = torch.randn(5, 8, 7, 7).contiguous(memory_format=torch.channels_last)
    mlp = TwoMLPHead(8 * 49, 32)
    assert set(mlp.state_dict()) == {"fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"}
    assert mlp(pooled).shape == (5, 32)
    assert (mlp(pooled) >= 0).all()
    conv = ConvFCHead(8, 7, conv_channels=(16, 16), fc_sizes=(32,), norm=norm_factory("bn")).eval()
    # torchvision's v2 numbering: convs 0.., then Flatten, then Linear (+ ReLU).
    assert "2.weight" not in conv.state_dict()
    assert conv.state_dict()["3.weight"].shape == (32, 16 * 49)
    assert conv(pooled).shape == (5, 32)
    scores, deltas = FastRCNNPredictor(32, 4)(mlp(pooled))
    assert scores.shape == (5, 4)
    assert deltas.shape == (5, 16)


def test_fastrcnn_loss_golden():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    regression = torch.zeros(3, 12)
    regression[1, 4:8] = torch.tensor([0.05, 0.0, 0.0, 2.0])  # the deltas of class 1 of proposal 1
    regression[1, 8:12] = 9.0  # another class's deltas never count
    labels = [torch.tensor([0, 1]), torch.tensor([2])]
    targets = [torch.zeros(2, 4), torch.zeros(1, 4)]
    cls, box = fastrcnn_loss(logits, regression, labels, targets)
    assert cls.item() == pytest.approx(F.cross_entropy(logits, torch.tensor([0, 1, 2])).item())
    # Smooth L1 (beta 1/9): 0.5 * 0.05^2 * 9 + (2 - 0.5 / 9), over the 3 proposals.
    assert box.item() == pytest.approx((0.5 * 0.05**2 * 9 + 2 - 0.5 / 9) / 3)
    # Background-only: no box loss, classification still trains.
    cls, box = fastrcnn_loss(logits[:1], regression[:1], [torch.tensor([0])], [torch.zeros(1, 4)])
    assert box.item() == 0.0
    assert cls.item() > 0
