import importlib

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from maskrcnn.ops import batched_nms, nms
from tests.ops.reference import nms_loop

# The package re-exports the function `nms` under the module's name; fetch the module itself.
nms_module = importlib.import_module("maskrcnn.ops.nms")

THRESHOLDS = [0.0, 0.3, 0.5, 0.7, 0.95, 1.0]


@st.composite
def box_sets(draw: st.DrawFn, max_boxes: int = 60) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes on a coarse integer grid (so duplicates, shared edges, zero-area boxes and exact IoU ties
    happen often), scores from a few values (so score ties happen), and a few categories."""
    n = draw(st.integers(0, max_boxes))
    coords = draw(st.lists(st.integers(0, 12), min_size=4 * n, max_size=4 * n))
    b = torch.tensor(coords, dtype=torch.float32).reshape(n, 4)
    boxes = torch.stack(
        (
            torch.minimum(b[:, 0], b[:, 2]),
            torch.minimum(b[:, 1], b[:, 3]),
            torch.maximum(b[:, 0], b[:, 2]),
            torch.maximum(b[:, 1], b[:, 3]),
        ),
        dim=1,
    )
    if n and draw(st.booleans()):
        dup = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n))
        boxes = torch.cat([boxes, boxes[dup]])
    m = boxes.shape[0]
    scores = torch.tensor(draw(st.lists(st.sampled_from([0.1, 0.5, 0.5, 0.9, 1.0]), min_size=m, max_size=m)))
    groups = torch.tensor(draw(st.lists(st.integers(0, 3), min_size=m, max_size=m)), dtype=torch.int64)
    return boxes, scores.reshape(m), groups.reshape(m)


def random_boxes(
    n: int, seed: int, width: float = 1216, height: float = 800
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes spread over an image with log-uniform sizes from 16 to 512 px, as proposals are."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * torch.tensor([width, height])
    size = torch.exp(torch.rand(n, 2, generator=g) * np.log(512 / 16)) * 16
    return torch.cat([centre - size / 2, centre + size / 2], dim=1), torch.rand(n, generator=g)


@given(data=box_sets(), threshold=st.sampled_from(THRESHOLDS))
def test_nms_matches_reference(data, threshold):
    boxes, scores, _ = data
    keep = nms(boxes, scores, threshold)
    assert keep.tolist() == nms_loop(boxes, scores, threshold).tolist()


@given(data=box_sets(), threshold=st.sampled_from(THRESHOLDS))
def test_batched_nms_matches_reference(data, threshold):
    boxes, scores, groups = data
    keep = batched_nms(boxes, scores, groups, threshold)
    assert keep.tolist() == nms_loop(boxes, scores, threshold, groups).tolist()


@given(data=box_sets(max_boxes=300), threshold=st.sampled_from(THRESHOLDS), grouped=st.booleans())
def test_both_strategies_match_reference(data, threshold, grouped):
    """The sparse (windowed) and dense strategies are both exact: each is checked on its own."""
    boxes, scores, groups = data
    g = groups if grouped else None
    expected = nms_loop(boxes, scores, threshold, g).tolist()
    if boxes.shape[0] == 0:
        return
    order = torch.sort(scores, descending=True, stable=True).indices
    sb, sg = boxes[order], (g[order] if grouped else None)
    dense = order[nms_module._greedy_dense(sb, sg, threshold)]
    assert dense.tolist() == expected
    for axis in (0, 1):
        perm, count = nms_module._windows(sb, sg, threshold, axis)
        for edges in (nms_module._edges_from_pairs, nms_module._edges_from_blocks):
            u, v = edges(sb, perm, count, threshold)
            sparse = order[nms_module._greedy_from_edges(u, v, sb.shape[0])]
            assert sparse.tolist() == expected


@pytest.mark.parametrize(("n", "threshold"), [(4000, 0.7), (10_000, 0.5), (10_000, 0.7)])
def test_large_inputs_match_reference(n, threshold):
    boxes, scores = random_boxes(n, seed=n)
    assert nms(boxes, scores, threshold).tolist() == nms_loop(boxes, scores, threshold).tolist()


def test_heavy_overlap_and_batched_large():
    # 3,000 jittered copies of a few boxes: the windows hold most pairs, so the dense strategy runs.
    g = torch.Generator().manual_seed(3)
    base = torch.tensor([[100.0, 100, 300, 260], [110, 90, 320, 250], [500, 400, 700, 640]])
    boxes = base[torch.randint(0, 3, (3000,), generator=g)] + torch.randn(3000, 4, generator=g) * 3
    scores = torch.rand(3000, generator=g)
    assert nms(boxes, scores, 0.5).tolist() == nms_loop(boxes, scores, 0.5).tolist()
    boxes, scores = random_boxes(10_000, seed=5)
    classes = torch.randint(0, 80, (10_000,), generator=g)
    expected = nms_loop(boxes, scores, 0.5, classes).tolist()
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == expected


def test_golden_and_order():
    boxes = torch.tensor(
        [[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10], [21, 21, 29, 29]]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.1])
    # IoU(0,1) = 81/119 = 0.68; box 3 duplicates box 0 with a higher score; IoU(2,4) = 0.64.
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, 0.65).tolist() == [3, 2, 4]
    assert nms(boxes, scores, 0.7).tolist() == [3, 1, 2, 4]
    classes = torch.tensor([0, 1, 0, 0, 1])
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [3, 1, 2, 4]


def test_empty_dtypes_and_errors():
    empty = torch.zeros((0, 4))
    assert nms(empty, torch.zeros(0), 0.5).dtype == torch.int64
    assert batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).numel() == 0
    boxes, scores = random_boxes(300, seed=1)
    expected = nms(boxes, scores, 0.5)
    # Boxes and scores still in an autograd graph (detections in eval mode without no_grad).
    grad_boxes, grad_scores = boxes.clone().requires_grad_(), scores.clone().requires_grad_()
    assert nms(grad_boxes, grad_scores, 0.5).tolist() == expected.tolist()
    classes = torch.arange(300) % 3
    assert (
        batched_nms(grad_boxes, grad_scores, classes, 0.5).tolist()
        == batched_nms(boxes, scores, classes, 0.5).tolist()
    )
    assert nms(boxes.double(), scores.double(), 0.5).tolist() == expected.tolist()
    # Half-precision boxes are compared in float32.
    half = boxes.half()
    assert (
        nms(half, scores.half(), 0.5).tolist() == nms_loop(half.float(), scores.half().float(), 0.5).tolist()
    )
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


def test_device(device):
    boxes, scores = random_boxes(2000, seed=2)
    expected = nms_loop(boxes, scores, 0.5).tolist()
    keep = nms(boxes.to(device), scores.to(device), 0.5)
    assert keep.device.type == device
    assert keep.cpu().tolist() == expected
