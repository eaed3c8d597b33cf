import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from maskrcnn.ops import masks_to_boxes, rle_encode
from maskrcnn.structures import CroppedMasks


def _pycocotools_rle(dense: torch.Tensor) -> list[dict]:
    """The reference: pycocotools' own encoder on the full-size masks."""
    array = np.asfortranarray(dense.numpy().astype(np.uint8).transpose(1, 2, 0))
    return [{"size": r["size"], "counts": r["counts"].decode("ascii")} for r in coco_mask.encode(array)]


def _special_masks(height: int, width: int) -> torch.Tensor:
    """Masks at the edges of RLE's column-by-column runs."""
    masks = torch.zeros(7, height, width, dtype=torch.bool)
    masks[0] = True  # the whole image: one run from the first pixel to the last
    masks[2, :, 1:3] = True  # full-height columns: the runs continue from one column into the next
    masks[3, -1, -1] = True  # only the last pixel
    masks[4, 0, 0] = True  # only the first pixel
    masks[5, 1:-1, 1:-1] = True  # away from every edge
    masks[6, :, 0] = True
    masks[6, 0, min(1, width - 1)] = True  # full height in one column, then the top of the next
    return masks  # masks[1] stays empty


@pytest.mark.parametrize("size", [(5, 4), (1, 6), (6, 1), (3, 3)])
def test_rle_from_crops_is_pycocotools_on_the_full_masks(size):
    g = torch.Generator().manual_seed(sum(size))
    random = torch.rand(30, *size, generator=g) > torch.rand(30, 1, 1, generator=g)
    dense = torch.cat([_special_masks(*size), random])
    masks = CroppedMasks.from_dense(dense)
    assert masks.rle() == _pycocotools_rle(dense)
    assert masks.rle() == rle_encode(dense)
    for rle, mask in zip(masks.rle(), dense, strict=True):
        assert torch.equal(
            torch.from_numpy(coco_mask.decode({**rle, "counts": rle["counts"].encode()})), mask.byte()
        )


def test_crops_are_tight_and_give_the_full_masks_back():
    g = torch.Generator().manual_seed(1)
    dense = torch.cat([_special_masks(9, 12), torch.rand(5, 9, 12, generator=g) > 0.8])
    masks = CroppedMasks.from_dense(dense.to(torch.uint8) * 255)  # nonzero = inside
    assert len(masks) == len(dense)
    for crop, _ in masks:
        if crop.numel():
            assert crop[0].any()
            assert crop[-1].any()
            assert crop[:, 0].any()
            assert crop[:, -1].any()
    assert masks.crops[1].shape == (0, 0)  # the empty mask
    assert torch.equal(masks.dense(), dense)
    assert masks.dense().transpose(1, 2).is_contiguous()  # column by column, as COCO's RLE reads
    assert torch.equal(masks.boxes(), masks_to_boxes(dense))
    assert torch.equal(masks.areas(), dense.sum(dim=(1, 2)))
    assert torch.equal(masks.union(), dense.any(dim=0))
    for k in range(len(dense)):
        assert torch.equal(masks.mask(k), dense[k])


def test_regions_larger_than_the_masks_are_shrunk():
    region = torch.zeros(6, 8, dtype=torch.bool)
    region[2:4, 3:5] = True
    masks = CroppedMasks.from_regions(
        [region, torch.zeros(3, 3, dtype=torch.bool)], [(10, 20), (0, 0)], (30, 40)
    )
    assert masks.origins == [(12, 23), (0, 0)]
    assert masks.crops[0].shape == (2, 2)
    assert masks.crops[1].shape == (0, 0)
    assert masks.boxes().tolist() == [[23.0, 12.0, 25.0, 14.0], [0.0, 0.0, 0.0, 0.0]]


def test_no_masks():
    masks = CroppedMasks.from_dense(torch.zeros(0, 4, 5, dtype=torch.bool))
    assert len(masks) == 0
    assert masks.rle() == []
    assert masks.dense().shape == (0, 4, 5)
    assert masks.boxes().shape == (0, 4)
    assert not masks.union().any()
    with pytest.raises(ValueError, match="2 crops for 1 origins"):
        CroppedMasks([torch.ones(1, 1, dtype=torch.bool)] * 2, [(0, 0)], (3, 3))
