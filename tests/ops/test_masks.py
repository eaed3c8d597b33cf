import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from maskrcnn.ops import (
    masks_to_boxes,
    paste_masks_cropped,
    paste_masks_in_image,
    paste_masks_thresholded,
    polygons_to_mask,
    rle_area,
    rle_decode,
    rle_encode,
    rle_to_crops,
)


def test_polygon_square_covers_its_pixels():
    mask = polygons_to_mask([[1, 1, 5, 1, 5, 5, 1, 5]], 8, 8)
    expected = torch.zeros(8, 8, dtype=torch.uint8)
    expected[1:5, 1:5] = 1  # pixel i spans [i, i + 1): the square (1, 1)-(5, 5) holds pixels 1..4
    assert torch.equal(mask, expected)
    # The box of the mask is the polygon's box: polygons, masks and boxes share one convention.
    assert masks_to_boxes(mask[None]).tolist() == [[1.0, 1.0, 5.0, 5.0]]


def test_multi_part_polygon_is_the_union():
    parts = [[0, 0, 3, 0, 3, 3, 0, 3], [5, 5, 8, 5, 8, 7, 5, 7]]
    mask = polygons_to_mask(parts, 10, 10)
    assert int(mask.sum()) == 9 + 6
    assert torch.equal(mask, polygons_to_mask(parts[:1], 10, 10) | polygons_to_mask(parts[1:], 10, 10))
    with pytest.raises(ValueError, match="at least 3 points"):
        polygons_to_mask([[0, 0, 1, 1]], 4, 4)
    assert polygons_to_mask([], 3, 4).shape == (3, 4)


def test_rle_round_trip_and_uncompressed():
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(3, 13, 17, generator=g) > 0.6).to(torch.uint8)
    rles = rle_encode(masks)
    assert all(isinstance(r["counts"], str) and r["size"] == [13, 17] for r in rles)
    assert torch.equal(rle_decode(rles), masks)
    assert torch.equal(rle_decode(rles[1]), masks[1])
    assert [rle_area(r) for r in rles] == masks.flatten(1).sum(1).tolist()
    # Uncompressed RLE (COCO's crowd annotations) counts runs in column-major order, zeros first.
    uncompressed = {"size": [3, 3], "counts": [2, 3, 4]}
    expected = torch.zeros(3, 3, dtype=torch.uint8)
    expected[2, 0] = expected[0, 1] = expected[1, 1] = 1
    assert torch.equal(rle_decode(uncompressed), expected)
    assert rle_area(uncompressed) == 3


def test_masks_to_boxes_matches_pycocotools():
    g = torch.Generator().manual_seed(1)
    masks = torch.zeros(6, 20, 30, dtype=torch.uint8)
    for k in range(5):
        y0, x0 = torch.randint(0, 15, (2,), generator=g).tolist()
        masks[k, y0 : y0 + 1 + k, x0 : x0 + 2 * k + 1] = 1
    masks[4, 0, 29] = 1  # a stray pixel far away widens the box
    boxes = masks_to_boxes(masks)
    for k in range(5):
        x, y, w, h = coco_mask.toBbox(coco_mask.encode(np.asfortranarray(masks[k].numpy()))).tolist()
        assert boxes[k].tolist() == [x, y, x + w, y + h]
    assert boxes[5].tolist() == [0, 0, 0, 0]  # empty mask
    assert masks_to_boxes(torch.zeros(0, 4, 4)).shape == (0, 4)


def _resize_reference(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (align_corners=False), written out in float64."""

    def taps(out_len: int, in_len: int):
        src = np.maximum((np.arange(out_len) + 0.5) * (in_len / out_len) - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), in_len - 1)
        i1 = np.minimum(i0 + 1, in_len - 1)
        return i0, i1, src - i0

    y0, y1, ly = taps(h, mask.shape[0])
    x0, x1, lx = taps(w, mask.shape[1])
    top = mask[y0][:, x0] * (1 - lx) + mask[y0][:, x1] * lx
    bottom = mask[y1][:, x0] * (1 - lx) + mask[y1][:, x1] * lx
    return top * (1 - ly[:, None]) + bottom * ly[:, None]


def _paste_reference(
    masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int, padding: int
) -> np.ndarray:
    out = np.zeros((masks.shape[0], 1, height, width))
    m = masks.shape[-1]
    scale = (m + 2 * padding) / m
    for k in range(masks.shape[0]):
        padded = np.pad(masks[k, 0].double().numpy(), padding)
        x1, y1, x2, y2 = boxes[k].tolist()
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
        bx0, by0, bx1, by1 = (int(v) for v in (cx - hw, cy - hh, cx + hw, cy + hh))  # truncation
        w, h = max(bx1 - bx0 + 1, 1), max(by1 - by0 + 1, 1)
        resized = _resize_reference(padded, h, w)
        for yy in range(max(by0, 0), min(by1 + 1, height)):
            for xx in range(max(bx0, 0), min(bx1 + 1, width)):
                out[k, 0, yy, xx] = resized[yy - by0, xx - bx0]
    return out


def test_paste_matches_reference():
    g = torch.Generator().manual_seed(2)
    masks = torch.rand(5, 1, 7, 7, generator=g)
    boxes = torch.tensor(
        [
            [3.2, 4.7, 20.1, 15.5],
            [-6.0, -3.0, 8.0, 9.0],
            [25.0, 18.0, 40.0, 33.0],
            [10.0, 10.0, 10.5, 10.2],
            [0, 0, 32, 24],
        ]
    )
    out = paste_masks_in_image(masks, boxes, (24, 32), padding=1)
    assert out.shape == (5, 1, 24, 32)
    assert out.dtype == torch.float32
    expected = _paste_reference(masks, boxes, 24, 32, padding=1)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(
        paste_masks_in_image(masks, boxes, (24, 32), padding=0).numpy(),
        _paste_reference(masks, boxes, 24, 32, padding=0),
        atol=1e-5,
    )


def test_paste_golden_and_empty(device):
    # A full 4x4 mask padded to 6x6 and a box grown by 6/4 about its centre: (2, 2, 10, 10) -> (0, 0, 12, 12).
    masks = torch.ones(1, 1, 4, 4, device=device)
    out = paste_masks_in_image(masks, torch.tensor([[2.0, 2, 10, 10]], device=device), (16, 16))[0, 0].cpu()
    assert out[13:].abs().sum() == 0
    assert out[:, 13:].abs().sum() == 0
    assert out[6, 6] == 1.0  # the centre is fully inside
    assert out[0, 0] == 0.0
    assert 0 < out[1, 1] < 0.5
    empty = paste_masks_in_image(
        torch.zeros(0, 1, 28, 28, device=device), torch.zeros(0, 4, device=device), (5, 6)
    )
    assert empty.shape == (0, 1, 5, 6)
    assert empty.device.type == device


def test_thresholded_paste_is_the_pasted_probabilities_above_the_threshold(device):
    g = torch.Generator().manual_seed(5)
    masks = torch.rand(6, 1, 28, 28, generator=g)
    boxes = torch.tensor(
        [
            [3.2, 4.7, 20.1, 15.5],
            [-6.0, -3.0, 8.0, 9.0],  # partly outside, top left
            [25.0, 18.0, 40.0, 33.0],  # partly outside, bottom right
            [10.0, 10.0, 10.5, 10.2],  # below a pixel
            [0, 0, 32, 24],
            [40.0, 30.0, 50.0, 40.0],  # wholly outside
        ]
    )
    masks, boxes = masks.to(device), boxes.to(device)
    for threshold in (0.0, 0.5, 0.9):
        out = paste_masks_thresholded(masks, boxes, (24, 32), threshold)
        assert out.dtype == torch.bool
        assert out.shape == (6, 24, 32)
        assert out.device.type == device
        expected = paste_masks_in_image(masks, boxes, (24, 32))[:, 0] > threshold
        assert torch.equal(out, expected)
        # The same masks kept as crops of their extents (inside the image) on the same device.
        cropped = paste_masks_cropped(masks, boxes, (24, 32), threshold)
        assert cropped.device.type == device
        assert torch.equal(cropped.dense(), expected)
        assert torch.equal(cropped.boxes(), masks_to_boxes(expected.cpu()))
        assert cropped.rle() == rle_encode(expected)
    assert not out[5].any()
    # Stored column by column: the RLE encoder reads it as it is, and gets the same runs.
    assert out.transpose(1, 2).is_contiguous()
    assert rle_encode(out) == rle_encode(out.contiguous())
    empty = paste_masks_thresholded(masks[:0], boxes[:0], (5, 6), 0.5)
    assert empty.shape == (0, 5, 6)
    with pytest.raises(ValueError, match="at least 0"):
        paste_masks_thresholded(masks, boxes, (24, 32), -0.1)


def test_rle_of_uint8_and_bool_masks_agree():
    g = torch.Generator().manual_seed(6)
    masks = torch.rand(3, 9, 11, generator=g) > 0.5
    expected = rle_encode(masks)
    assert rle_encode(masks.to(torch.uint8)) == expected
    assert rle_encode(masks.to(torch.uint8) * 255) == expected  # nonzero = inside
    assert rle_encode(masks.float()) == expected


def test_masks_to_boxes_of_bool_uint8_and_float_masks_agree():
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[2, 9, 0] = True
    expected = torch.tensor([[3.0, 2, 9, 5], [0, 0, 0, 0], [0, 9, 1, 10]])
    for dtype in (torch.bool, torch.uint8, torch.float32):
        assert torch.equal(masks_to_boxes(masks.to(dtype)), expected)
    assert torch.equal(masks_to_boxes(masks.transpose(1, 2).contiguous().transpose(1, 2)), expected)


def test_polygons_far_outside_the_image_rasterise_as_pycocotools_without_its_memory():
    g = np.random.default_rng(7)
    for _ in range(50):
        # Within an image size of the image: untouched, pixel for pixel pycocotools'.
        part = g.uniform(-60, 110, size=2 * int(g.integers(3, 9))).tolist()
        expected = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([part], 48, 64)))
        assert torch.equal(polygons_to_mask([part], 48, 64), torch.from_numpy(expected))
        # Ten image sizes away (still cheap for the reference): clipped, the same region up to the
        # rounding along the cut edges.
        part = g.uniform(-600, 600, size=2 * int(g.integers(3, 9))).tolist()
        expected = torch.from_numpy(coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([part], 48, 64))))
        differ = polygons_to_mask([part], 48, 64) != expected
        # Only pixels on the region's border may move: each differing pixel has a neighbour (of 8) of the
        # other value in pycocotools' mask.
        padded = torch.nn.functional.pad(expected[None, None].float(), (1, 1, 1, 1), mode="replicate")
        spread = torch.nn.functional.max_pool2d(padded, 3, stride=1)[0, 0]
        shrunk = -torch.nn.functional.max_pool2d(-padded, 3, stride=1)[0, 0]
        border = spread != shrunk
        assert not (differ & ~border).any()
        assert differ.sum() <= 20
    # A vertex a billion pixels away (pycocotools alone would need about 100 GB), at once.
    far = polygons_to_mask([[10, 10, 30, 10, 30, 1e9]], 48, 64)
    assert far[10:, 10:30].all()
    assert far.sum() == 38 * 20
    # Near the float limit the clipping's arithmetic must not overflow into NaN (which makes pycocotools
    # crash the process): a vertex at 1e308 cuts the frame where one at 1e20 does.
    for k in range(6):
        near_limit, far = [10, 10, 30, 10, 30, 30], [10, 10, 30, 10, 30, 30]
        near_limit[k], far[k] = -1e308 if k % 3 else 1e308, -1e20 if k % 3 else 1e20
        assert torch.equal(polygons_to_mask([near_limit], 48, 64), polygons_to_mask([far], 48, 64))


def test_polygon_with_non_finite_coordinates_is_refused():
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="non-finite"):
            polygons_to_mask([[10, 10, 30, bad, 30, 30]], 48, 64)


def test_rle_to_crops_gives_the_masks_back():
    """Compressed RLE (str counts, as results files hold it) and uncompressed RLE (COCO crowds) decode to
    crops of each mask's exact extent; an empty mask is an empty crop."""
    g = torch.Generator().manual_seed(3)
    masks = torch.zeros(3, 17, 23, dtype=torch.uint8)
    masks[0, 2:9, 4:20] = (torch.rand(7, 16, generator=g) > 0.3).to(torch.uint8)
    masks[0, 2, 4] = masks[0, 8, 19] = 1  # the extent is the block's
    masks[1, :, 22] = 1  # a whole column at the border
    rles = rle_encode(masks)
    uncompressed = {"size": [17, 23], "counts": [22 * 17, 17]}  # the same column, as a crowd stores it
    crops = rle_to_crops([*rles, uncompressed], (17, 23))
    assert crops.image_size == (17, 23)
    assert torch.equal(crops.dense().to(torch.uint8), torch.cat([masks, masks[1:2]]))
    assert crops.origins[:2] == [(2, 4), (0, 22)]
    assert tuple(crops.crops[0].shape) == (7, 16)
    assert crops.crops[2].numel() == 0
