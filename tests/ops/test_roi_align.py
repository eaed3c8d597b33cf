import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from maskrcnn.ops import roi_align
from tests.ops.reference import roi_align_loop

ARANGE = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)  # value = 5 * y + x


@pytest.mark.parametrize(
    ("box", "output_size", "sampling_ratio", "aligned", "expected"),
    [
        # Samples at 1.25 and 1.75 (bin 0) and 2.25, 2.75 (bin 1): bilinear of a linear map is the map,
        # so each bin is 5 * mean(y) + mean(x).
        ((1, 1, 3, 3), 2, 2, False, [[9.0, 10.0], [14.0, 15.0]]),
        # aligned=True shifts the box by half a pixel: bin centres at 1.0 and 2.0.
        ((1, 1, 3, 3), 2, 2, True, [[6.0, 7.0], [11.0, 12.0]]),
        # Adaptive sampling: ceil(2 / 2) = 1 sample per bin, at the bin centres.
        ((1, 1, 3, 3), 2, -1, False, [[9.0, 10.0], [14.0, 15.0]]),
        # A sample at y = x = 4.5 lies past the last row and column (but not past H): it is clamped to
        # pixel (4, 4).
        ((3, 3, 6, 6), 1, 1, False, [[24.0]]),
        # A sample at 5.5 lies beyond H = 5: it contributes 0.
        ((4, 4, 7, 7), 1, 1, False, [[0.0]]),
        # A sample at -0.5 is inside (-1, H): it reads row/column 0.
        ((-1, -1, 0, 0), 1, 1, False, [[0.0]]),
        # aligned=False forces a degenerate 0 x 0 box to 1 x 1: one sample at (2.5, 2.5).
        ((2, 2, 2, 2), 1, 1, False, [[15.0]]),
        # aligned=True keeps it 0 x 0, and with adaptive sampling there are no samples: the bin is 0.
        ((2, 2, 2, 2), 1, -1, True, [[0.0]]),
    ],
)
def test_hand_computed_values(box, output_size, sampling_ratio, aligned, expected):
    rois = torch.tensor([[0.0, *box]])
    out = roi_align(ARANGE, rois, output_size, 1.0, sampling_ratio, aligned)
    torch.testing.assert_close(out[0, 0], torch.tensor(expected))


@st.composite
def roi_problems(draw: st.DrawFn):
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25]))
    k = draw(st.integers(0, 6))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    # Boxes in image pixels, reaching past every border and sometimes inverted or empty.
    lo = torch.rand(k, 2, generator=g, dtype=torch.float64) * (torch.tensor([w, h]) / scale + 4) - 3
    size = torch.rand(k, 2, generator=g, dtype=torch.float64) * 12 / scale - 1
    if k and draw(st.booleans()):
        size[0] = 0.0
    rois = torch.cat([torch.randint(0, n, (k, 1), generator=g).double(), lo, lo + size], dim=1)
    output_size = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    sampling_ratio = draw(st.integers(-1, 3))
    aligned = draw(st.booleans())
    return features, rois, output_size, scale, sampling_ratio, aligned


@given(problem=roi_problems())
def test_matches_loop_reference(problem):
    features, rois, output_size, scale, sampling_ratio, aligned = problem
    out = roi_align(features, rois, output_size, scale, sampling_ratio, aligned)
    ref = roi_align_loop(features, rois, output_size, scale, sampling_ratio, aligned)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@given(problem=roi_problems())
def test_float32_close_to_reference(problem):
    features, rois, output_size, scale, sampling_ratio, aligned = problem
    out = roi_align(features.float(), rois.float(), output_size, scale, sampling_ratio, aligned)
    ref = roi_align_loop(features.float(), rois.float(), output_size, scale, sampling_ratio, aligned)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_gradcheck(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor(
        [[0, 0.3, 0.7, 4.2, 5.1], [1, -1.5, 2.0, 3.0, 9.0], [1, 2.2, 1.1, 2.9, 1.4], [0, 5.0, 4.0, 8.0, 7.5]],
        dtype=torch.float64,
    )
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, (3, 2), 0.8, sampling_ratio, aligned), (x,))


def test_gradient_matches_reference_weights():
    # d(sum of outputs)/d(input) counts how much each pixel is sampled; the loop reference, applied to
    # one-hot maps, gives the same numbers.
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.5, 0.2, 3.1, 2.9]], dtype=torch.float64)
    roi_align(x, rois, 2, 1.0, 2, False).sum().backward()
    expected = torch.zeros(4, 4, dtype=torch.float64)
    for y in range(4):
        for x_ in range(4):
            onehot = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
            onehot[0, 0, y, x_] = 1
            expected[y, x_] = roi_align_loop(onehot, rois, (2, 2), 1.0, 2, False).sum()
    torch.testing.assert_close(x.grad[0, 0], expected)


def test_box_list_empty_and_layouts(device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 10, 12, generator=g).to(device)
    boxes = [torch.tensor([[1.0, 1, 6, 8]]), torch.tensor([[0.0, 2, 9, 9], [3, 3, 4, 4]])]
    boxes = [b.to(device) for b in boxes]
    as_list = roi_align(x, boxes, (3, 3), 1.0, 2)
    as_tensor = roi_align(
        x, torch.tensor([[0, 1.0, 1, 6, 8], [1, 0, 2, 9, 9], [1, 3, 3, 4, 4]], device=device), 3, 1.0, 2
    )
    torch.testing.assert_close(as_list, as_tensor)
    assert as_list.shape == (3, 3, 3, 3)
    assert as_list.device.type == device
    # A channels-last map gives the same values without copying the map.
    cl = roi_align(x.contiguous(memory_format=torch.channels_last), boxes, (3, 3), 1.0, 2)
    torch.testing.assert_close(cl, as_list)
    empty = roi_align(x, torch.zeros(0, 5, device=device), (7, 7), 0.25, 2)
    assert empty.shape == (0, 3, 7, 7)
    assert empty.dtype == x.dtype
    half = roi_align(x.to(torch.bfloat16), boxes, (3, 3), 1.0, 2)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), as_list, rtol=2e-2, atol=2e-2)
    with pytest.raises(ValueError, match=r"\[K, 5\]"):
        roi_align(x, torch.zeros(2, 4, device=device), 2)


def test_memory_bounded_for_huge_rois():
    # One RoI over a 4000 x 4000 map with adaptive sampling takes 572 x 572 samples per bin: 64 M
    # bilinear taps, over 1.5 GB if they were built at once. Chunking keeps the peak far below that.
    script = textwrap.dedent(
        """
        import resource, torch
        from maskrcnn.ops import roi_align
        torch.set_num_threads(2)
        x = torch.ones(1, 1, 4000, 4000)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = roi_align(x, torch.tensor([[0.0, 0, 0, 4000, 4000]]), 7, 1.0, -1)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Each bin averages 327,184 samples in float32: equal to 1 up to accumulated rounding.
        assert torch.allclose(out, torch.ones(1, 1, 7, 7), rtol=0, atol=2e-3), out
        print((peak - base) // 1024)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    growth_mb = int(result.stdout.strip())
    assert growth_mb < 300, f"roi_align grew the process by {growth_mb} MB"
