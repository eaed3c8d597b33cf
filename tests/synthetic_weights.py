"""Deterministic synthetic weights, images and targets shared by the tests and the golden-file tool.

The golden outputs in ``tests/fixtures/torchvision/golden_*.json`` were computed by torchvision's Mask
R-CNN (``tools/make_torchvision_golden.py``) from exactly the tensors built here, so a test can give the
same tensors to our implementation and compare. For that to hold on any machine and torch version, nothing
here uses torch's random number generator (its streams are not promised to stay the same between
releases): every value is an integer hash of ``(seed, key, element index)`` computed in int64 arithmetic
that never overflows, mapped exactly to a uniform number in float64 and scaled. The only rounding steps are
single IEEE operations (one multiply and one add per element, then the cast to the requested dtype), which
give the same bits everywhere. ``tensor_digest`` / ``state_dict_digest`` fingerprint the result exactly,
and the golden files record those fingerprints so a test can tell that its inputs are the ones used.

The scales depend on the kind of tensor (read from its key) so that the *untrained* network behaves like a
usable detector: activations neither explode nor vanish through the 16 ResNet-50 blocks, the RPN proposes
boxes near its anchors, the classifier is confident about a spread of classes on a few boxes (tens of
detections above torchvision's default score threshold of 0.05, not 0 and not the cap of 100), and mask
logits change sign inside each box so the thresholded masks are neither empty nor full. The constants were
tuned by running torchvision's ``maskrcnn_resnet50_fpn`` and ``maskrcnn_resnet50_fpn_v2`` on
``golden_images()``; changing any of them changes the golden files.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "torchvision"

Layout = list[tuple[str, list[int], str]]

# Layers whose first dimension is (a multiple of) the number of classes: key prefix -> rows per class.
CLASS_DEPENDENT: dict[str, int] = {
    "roi_heads.box_predictor.cls_score": 1,
    "roi_heads.box_predictor.bbox_pred": 4,
    "roi_heads.mask_predictor.mask_fcn_logits": 1,
}

_MASK16 = 0xFFFF
_MASK32 = 0xFFFFFFFF
_SQRT3 = math.sqrt(3.0)  # a uniform on (-a, a) has std a / sqrt(3)

# ---- Scales, as (centre, half-width) of a uniform distribution or a gain on the He std sqrt(2 / fan_in).
# BatchNorm: in eval mode torchvision normalises with these running statistics, so they are kept close
# to an identity map (mean ~0, var ~1) and the conv weights alone decide the activation scale.
_BN_WEIGHT = (1.0, 0.2)
# The last BN of each residual branch is scaled down: the residual stream then grows by ~1.1x per block
# instead of ~1.4x, i.e. by ~3x (not ~200x) over the 16 blocks of ResNet-50.
_BN_WEIGHT_LAST = (0.35, 0.15)
_BN_BIAS = (0.0, 0.1)
_BN_MEAN = (0.0, 0.1)
_BN_VAR = (1.0, 0.25)
_HIDDEN_BIAS = (0.0, 0.05)
# FPN convs have no ReLU and sum four levels of positive (post-ReLU) backbone features: a third of He
# keeps the pyramid outputs at std ~1 instead of ~3.
_FPN_GAIN = 0.3
_RPN_CLS_GAIN = 0.5  # objectness logits of std ~0.5: distinct scores, no saturation in the loss
_RPN_BOX_GAIN = 0.05  # RPN deltas of ~0.05: proposals stay near their anchors
# Box-head layers use "antithetic" weights (each row is made of +u, -u pairs, so it sums to exactly 0).
# Random features share a large component common to all RoIs (ReLU outputs are positive); a row that
# sums to zero cancels it, so the class logits depend on what differs between RoIs, which gives a mix
# of labels instead of one class winning everywhere. The cancellation also shrinks the outputs, which
# the gains below restore to std ~1-2.
_ANTITHETIC = ("roi_heads.box_head.", "roi_heads.box_predictor.cls_score.")
_BOX_FC_GAIN = 3.0  # fc6 / fc7 (v1) and box_head.5 (v2)
_BOX_CONV_GAIN = 1.3  # the four conv layers of v2's box head
_CLS_GAIN = 1.5  # class logits vary by ~4 across RoIs
_CLS_BIAS = (0.0, 4.0)  # class offsets over +-4: some classes are favoured, most still appear
# The background logit is set apart: it decides how many (RoI, class) pairs pass the 0.05 threshold.
_CLS_BG_BIAS = 22.0
_BOX_GAIN = 0.2  # RoI deltas of ~0.5 before the coder's weights (10, 10, 5, 5): boxes move a little
_MASK_GAIN = 1.0  # mask logits of std ~2 that cross zero inside a box


def load_layout(name: str) -> Layout:
    """The ``(key, shape, dtype name)`` entries of ``torchvision_{name}_state_dict.json``, in file order.

    ``name`` is e.g. ``"maskrcnn_resnet50_fpn"``; shapes are lists of ints (``[]`` for a scalar) and the
    dtype names are ``"float32"`` or ``"int64"``.
    """
    with open(FIXTURES / f"torchvision_{name}_state_dict.json", encoding="utf-8") as f:
        data = json.load(f)
    return [(str(key), [int(s) for s in shape], str(dtype)) for key, shape, dtype in data["tensors"]]


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for int64 ``x`` in ``[0, 2**32)`` and ``c < 2**32``, without int64 overflow.

    Signed overflow is undefined behaviour in C++, so the product is split on the 16-bit halves of ``x``:
    each partial product stays below ``2**48``.
    """
    lo = x & _MASK16
    hi = x >> 16
    return ((((hi * c) & _MASK16) << 16) + lo * c) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """Chris Wellons' ``lowbias32`` integer hash, elementwise on int64 values in ``[0, 2**32)``."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _key_seeds(seed: int, key: str) -> tuple[int, int]:
    """Two 32-bit seeds for one tensor; sha256 (unlike ``hash()``) does not change between processes."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:8], "little")


def hash_uniform(seed: int, key: str, numel: int) -> torch.Tensor:
    """``[numel]`` float64 values, uniform on ``(-1, 1)``, a pure function of ``(seed, key, index)``.

    Element ``i`` depends on ``i`` only (not on ``numel``), so a tensor that grows along its first
    dimension keeps its leading rows: a 2-class predictor is a slice of the 91-class one.
    """
    if numel >= 2**31:
        raise ValueError(f"{key}: {numel} elements exceed the hash's index range")
    s1, s2 = _key_seeds(seed, key)
    index = torch.arange(numel, dtype=torch.int64)
    # The odd multiplier (2**32 / golden ratio) spreads consecutive indices before the first round;
    # index < 2**31 keeps the product below 2**63.
    x = _hash32((index * 0x9E3779B9 + s1) & _MASK32)
    x = _hash32(x ^ s2)
    # (x + 0.5) / 2**31 - 1 is exact in float64 and lies strictly inside (-1, 1).
    return (x.to(torch.float64) + 0.5) * 2.0**-31 - 1.0


def _fan_in(key: str, shape: list[int]) -> int:
    """Inputs summed into one output element of a conv / linear weight of this shape."""
    if key.endswith("conv5_mask.weight"):
        # A ConvTranspose2d weight is [in, out, kh, kw]; with stride == kernel size every output pixel
        # gets exactly one tap, so it sums over the input channels only.
        return shape[0]
    if key.endswith("kps_score_lowres.weight"):
        # The keypoint predictor's 4x4 transposed convolution has stride 2: (4 / 2)^2 taps per input
        # channel reach each output pixel.
        return shape[0] * (shape[2] // 2) * (shape[3] // 2)
    return math.prod(shape[1:])


def _last_branch_norms(keys: list[str]) -> set[str]:
    """Prefixes of the last norm layer of each residual branch: ``bn3`` of a Bottleneck, ``bn2`` of a
    BasicBlock (the layouts of the plain ResNets use the same rule)."""
    last: dict[str, int] = {}
    for key in keys:
        m = re.match(r"^(.*layer\d+\.\d+)\.bn(\d+)\.running_var$", key)
        if m:
            last[m.group(1)] = max(last.get(m.group(1), 0), int(m.group(2)))
    return {f"{block}.bn{n}" for block, n in last.items()}


def _weight_gain(prefix: str) -> float:
    """Gain on the He standard deviation for the conv / linear weight of the layer at ``prefix``."""
    if prefix.startswith("backbone.fpn."):
        return _FPN_GAIN
    if prefix in ("roi_heads.box_head.fc6", "roi_heads.box_head.fc7", "roi_heads.box_head.5"):
        return _BOX_FC_GAIN
    if re.fullmatch(r"roi_heads\.box_head\.\d+\.0", prefix):
        return _BOX_CONV_GAIN
    return {
        "rpn.head.cls_logits": _RPN_CLS_GAIN,
        "rpn.head.bbox_pred": _RPN_BOX_GAIN,
        "roi_heads.box_predictor.cls_score": _CLS_GAIN,
        "roi_heads.box_predictor.bbox_pred": _BOX_GAIN,
        "roi_heads.mask_predictor.mask_fcn_logits": _MASK_GAIN,
    }.get(prefix, 1.0)


def _spec(key: str, shape: list[int], norms: set[str], last_norms: set[str]) -> tuple[float, float]:
    """``(centre, half-width)`` of the uniform distribution for one float tensor of this ``shape``."""
    prefix, _, leaf = key.rpartition(".")
    if prefix in norms:
        if leaf == "weight":
            return _BN_WEIGHT_LAST if prefix in last_norms else _BN_WEIGHT
        return {"bias": _BN_BIAS, "running_mean": _BN_MEAN, "running_var": _BN_VAR}[leaf]
    if leaf == "bias":
        return _CLS_BIAS if prefix == "roi_heads.box_predictor.cls_score" else _HIDDEN_BIAS
    std = _weight_gain(prefix) * math.sqrt(2.0 / _fan_in(key, shape))
    return 0.0, std * _SQRT3


def _is_antithetic(key: str, shape: list[int]) -> bool:
    """Whether the weight is built from ``+u, -u`` pairs: a box-head weight whose rows have even length
    (so that no pair straddles two rows)."""
    return (
        key.endswith(".weight")
        and len(shape) >= 2
        and math.prod(shape[1:]) % 2 == 0
        and key.startswith(_ANTITHETIC)
    )


def synthetic_state_dict(
    layout: Layout,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    num_classes: int | None = None,
    background_bias: float = _CLS_BG_BIAS,
) -> dict[str, torch.Tensor]:
    """A state dict with one tensor per layout entry, deterministic and identical across torch versions.

    Float entries get ``dtype`` and the layout's shape, except that the class-dependent predictor layers
    (``CLASS_DEPENDENT``) get ``num_classes`` rows per class when it is given: ``cls_score.weight``
    ``[num_classes, 1024]`` and ``.bias`` ``[num_classes]``, ``bbox_pred.weight`` ``[4 * num_classes,
    1024]`` and ``.bias`` ``[4 * num_classes]``, ``mask_fcn_logits.weight`` ``[num_classes, 256, 1, 1]``
    and ``.bias`` ``[num_classes]``; their leading rows do not depend on ``num_classes``. Row 0 (the
    background) of ``cls_score.bias`` is ``background_bias`` (the fixed ``_CLS_BG_BIAS`` by default: with
    91 classes; a model of few classes needs a lower one to detect anything). ``num_batches_tracked``
    entries are int64 zeros of shape ``[]``.
    """
    keys = [key for key, _, _ in layout]
    norms = {key.rpartition(".")[0] for key in keys if key.endswith(".running_var")}
    last_norms = _last_branch_norms(keys)
    state: dict[str, torch.Tensor] = {}
    for key, layout_shape, dtype_name in layout:
        shape = list(layout_shape)
        if dtype_name == "int64":
            # Only num_batches_tracked is integer; a fresh BatchNorm starts at 0.
            state[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        prefix = key.rpartition(".")[0]
        if num_classes is not None and prefix in CLASS_DEPENDENT:
            shape[0] = num_classes * CLASS_DEPENDENT[prefix]
        numel = math.prod(shape)
        if _is_antithetic(key, shape):
            half = hash_uniform(seed, key, numel // 2)
            u = torch.stack([half, -half], dim=1).reshape(-1)
        else:
            u = hash_uniform(seed, key, numel)
        centre, half_width = _spec(key, shape, norms, last_norms)
        values = centre + half_width * u
        if key == "roi_heads.box_predictor.cls_score.bias":
            values[0] = background_bias
        state[key] = values.reshape(shape).to(dtype)
    return state


def tensor_digest(tensor: torch.Tensor) -> str:
    """A hex fingerprint of a tensor's dtype, shape and exact element bits.

    Computed with integer torch ops only (no numpy): the bits are split into 16-bit limbs and summed with
    position-dependent weights; every partial sum stays far below ``2**63``, and integer sums do not
    depend on the order of summation, so the result is the same on any machine and torch version.
    """
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    size = flat.element_size()
    if flat.dtype == torch.bool:
        bits = flat.to(torch.int64)
    else:
        signed = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[size]
        bits = flat.view(signed).to(torch.int64)
    sums = []
    chunk = 1 << 22  # keeps the weighted limbs of one chunk below 2**32 * 2**22 = 2**54
    for start in range(0, bits.numel(), chunk):
        part = bits[start : start + chunk]
        weight = _hash32(torch.arange(start, start + part.numel(), dtype=torch.int64)) & _MASK16
        for limb in range(max(size // 2, 1)):
            sums.append(int((((part >> (16 * limb)) & _MASK16) * weight).sum()))
    text = f"{flat.dtype}|{list(tensor.shape)}|{sums}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_dict_digest(state: dict[str, torch.Tensor]) -> str:
    """A hex fingerprint of a whole state dict (keys in order, each tensor's ``tensor_digest``)."""
    text = "|".join(f"{key}={tensor_digest(value)}" for key, value in state.items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer pixel coordinates ``ys [H, 1]`` and ``xs [1, W]`` (int64)."""
    ys = torch.arange(height, dtype=torch.int64)[:, None]
    xs = torch.arange(width, dtype=torch.int64)[None, :]
    return ys, xs


def _disc(height: int, width: int, cy: int, cx: int, r: int) -> torch.Tensor:
    """``[H, W]`` bool disc, in exact integer arithmetic."""
    ys, xs = _grid(height, width)
    return (ys - cy) ** 2 + (xs - cx) ** 2 <= r * r


def _rect(height: int, width: int, y0: int, x0: int, y1: int, x1: int) -> torch.Tensor:
    """``[H, W]`` bool rectangle covering rows ``y0..y1-1`` and columns ``x0..x1-1``."""
    ys, xs = _grid(height, width)
    return (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)


def _background(height: int, width: int) -> torch.Tensor:
    """``[3, H, W]`` float64 colour gradient. Each value comes from a few single, correctly rounded IEEE
    operations, so it is the same everywhere."""
    ys, xs = _grid(height, width)
    fy = ys.to(torch.float64) / (height - 1)
    fx = xs.to(torch.float64) / (width - 1)
    r = (0.2 + 0.5 * fx).expand(height, width)
    g = (0.3 + 0.4 * fy).expand(height, width)
    b = 0.6 - 0.3 * fx * fy
    return torch.stack([r, g, b])


def _paint(image: torch.Tensor, mask: torch.Tensor, rgb: tuple[float, float, float]) -> None:
    """Fill ``mask`` ``[H, W]`` of ``image`` ``[3, H, W]`` with one colour, in place."""
    for c, value in enumerate(rgb):
        image[c][mask] = value


def _scene_masks() -> list[torch.Tensor]:
    """The visible parts (``[120, 160]`` bool) of the three objects of golden image 0, in painting order:
    later objects occlude earlier ones."""
    h, w = 120, 160
    shapes = [
        _rect(h, w, 20, 14, 86, 70),  # tall rectangle, left
        _disc(h, w, 70, 112, 30),  # disc, right
        _rect(h, w, 64, 48, 104, 96),  # rectangle in front of both
    ]
    visible = []
    for i, shape in enumerate(shapes):
        covered = torch.zeros(h, w, dtype=torch.bool)
        for later in shapes[i + 1 :]:
            covered |= later
        visible.append(shape & ~covered)
    return visible


_SCENE_COLOURS = [(0.9, 0.15, 0.1), (0.1, 0.8, 0.2), (0.95, 0.9, 0.2)]
_SCENE_LABELS = [1, 18, 62]


def golden_images(dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Two RGB images with values in ``[0, 1]``: ``[3, 120, 160]`` (the three annotated objects of
    ``golden_targets()`` on a gradient) and ``[3, 144, 112]`` (five shapes that are *not* annotated: its
    target is empty). Built in float64 and rounded once to ``dtype``."""
    image0 = _background(120, 160)
    for mask, rgb in zip(_scene_masks(), _SCENE_COLOURS, strict=True):
        _paint(image0, mask, rgb)
    image1 = _background(144, 112).flip(-1)
    _paint(image1, _disc(144, 112, 36, 40, 22), (0.15, 0.2, 0.95))
    _paint(image1, _disc(144, 112, 30, 90, 14), (0.95, 0.1, 0.8))
    _paint(image1, _rect(144, 112, 84, 8, 128, 60), (0.95, 0.55, 0.1))
    _paint(image1, _rect(144, 112, 70, 72, 136, 100), (0.98, 0.98, 0.95))
    _paint(image1, _disc(144, 112, 100, 86, 9), (0.05, 0.05, 0.05))
    return [image0.to(dtype), image1.to(dtype)]


def golden_targets() -> list[dict[str, torch.Tensor]]:
    """Training targets for ``golden_images()``, one dict per image: ``boxes`` float32 ``[N, 4]`` (xyxy:
    the tight box of the mask, right and bottom edges exclusive), ``labels`` int64 ``[N]`` in 1..90 and
    ``masks`` uint8 ``[N, H, W]``. Image 0 has N = 3; image 1 has N = 0 (a background-only image)."""
    masks = _scene_masks()
    boxes = []
    for mask in masks:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
    first = {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.tensor(_SCENE_LABELS, dtype=torch.int64),
        "masks": torch.stack(masks).to(torch.uint8),
    }
    empty = {
        "boxes": torch.zeros((0, 4), dtype=torch.float32),
        "labels": torch.zeros((0,), dtype=torch.int64),
        "masks": torch.zeros((0, 144, 112), dtype=torch.uint8),
    }
    return [first, empty]


def golden_keypoint_targets(num_keypoints: int = 17) -> list[dict[str, torch.Tensor]]:
    """Keypoint R-CNN targets for ``golden_images()``: the boxes of :func:`golden_targets`, every object
    of class 1 (a two-class model), no masks, and ``keypoints`` float32 ``[N, K, 3]``.

    Keypoint ``k`` of an object lies at a fixed fraction of its box, spread over a 5 x 4 grid; every
    third keypoint is hidden (``v = 1``), every fifth not labelled (``0, 0, 0``); the last keypoint of
    the first object lies exactly on its box's right edge and that of the second object outside its box
    (a case the heatmap targets must treat as the reference does).
    """
    targets = golden_targets()
    boxes = targets[0]["boxes"]
    rows = []
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        points = []
        for k in range(num_keypoints):
            fx, fy = ((k * 3 + i) % 5 + 0.5) / 5, ((k * 7 + 2 * i) % 4 + 0.5) / 4
            v = 0 if k % 5 == 4 else (1 if k % 3 == 2 else 2)
            point = [x1 + fx * (x2 - x1), y1 + fy * (y2 - y1), float(v)] if v else [0.0, 0.0, 0.0]
            points.append(point)
        if i == 0:
            points[-1] = [x2, y1 + 0.5 * (y2 - y1), 2.0]
        if i == 1:
            points[-1] = [x2 + 3.0, y2 + 2.0, 2.0]
        rows.append(points)
    first = {
        "boxes": boxes,
        "labels": torch.ones(len(boxes), dtype=torch.int64),
        "keypoints": torch.tensor(rows, dtype=torch.float32),
    }
    empty = {
        "boxes": torch.zeros((0, 4), dtype=torch.float32),
        "labels": torch.zeros((0,), dtype=torch.int64),
        "keypoints": torch.zeros((0, num_keypoints, 3), dtype=torch.float32),
    }
    return [first, empty]
