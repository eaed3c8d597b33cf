"""Semantic and instance maps from detections, and their PNG files: overlaps by score, crops and dense
masks alike, the files read back to the same ids and colours."""

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.data.dataset import read_mask_file
from maskrcnn.engine.semantic import (
    instance_map,
    semantic_map,
    voc_palette,
    write_class_png,
    write_instance_png,
)
from maskrcnn.structures import CroppedMasks


def rects(size, boxes):
    """bool ``[D, H, W]``: one rectangle ``(y0, y1, x0, x1)`` (end exclusive) per mask."""
    masks = torch.zeros(len(boxes), *size, dtype=torch.bool)
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        masks[k, y0:y1, x0:x1] = True
    return masks


def reference_instance_map(masks, scores):
    """The rule, pixel by pixel on full-size masks: the highest score covering the pixel, the first such
    detection among equal scores (argmax gives the first maximum), 0 where none covers it."""
    scores = scores.double()[:, None, None]
    best = torch.where(masks.bool(), scores, torch.tensor(-float("inf"), dtype=torch.float64)).argmax(0)
    return torch.where(masks.bool().any(0), best + 1, 0)


def test_overlaps_go_to_the_highest_score_and_ties_to_the_earlier_detection():
    masks = rects((4, 6), [(0, 3, 0, 3), (1, 4, 1, 5), (0, 2, 2, 6), (2, 4, 0, 2)])
    # Detection 1 scores highest; 0 and 2 tie (0 is earlier), 3 is the lowest and listed last.
    scores = torch.tensor([0.5, 0.9, 0.5, 0.3])
    expected = torch.tensor(
        [
            [1, 1, 1, 3, 3, 3],
            [1, 2, 2, 2, 2, 3],
            [1, 2, 2, 2, 2, 0],
            [4, 2, 2, 2, 2, 0],
        ]
    )
    assert instance_map(masks, scores).tolist() == expected.tolist()
    labels = torch.tensor([3, 1, 2, 2])
    assert semantic_map(masks, labels, scores).tolist() == torch.tensor([0, 3, 1, 2, 2])[expected].tolist()
    # The order the detections come in changes only the ids (and the winner of a tie): listed
    # backwards, detection 2 is now the earlier of the two tied ones.
    backwards = instance_map(masks.flip(0), scores.flip(0))
    assert backwards[0, 2].item() == 2  # detection 2, now listed second, holds the tied pixel
    assert backwards[0].tolist() == [4, 4, 2, 2, 2, 2]


@pytest.mark.parametrize("seed", [0, 1])
def test_crops_and_dense_masks_give_the_rule_s_map(seed, device):
    generator = torch.Generator().manual_seed(seed)
    size, count = (37, 53), 12
    dense = torch.zeros(count, *size, dtype=torch.bool)
    for k in range(count):
        y0, x0 = torch.randint(0, 30, (2,), generator=generator).tolist()
        h, w = torch.randint(1, 25, (2,), generator=generator).tolist()
        dense[k, y0 : y0 + h, x0 : x0 + w] = torch.rand(h, w, generator=generator)[: size[0] - y0] > 0.2
    dense[3] = False  # an empty mask holds nothing
    scores = torch.tensor([0.9, 0.5, 0.7])[torch.randint(0, 3, (count,), generator=generator)]  # ties
    labels = torch.randint(1, 5, (count,), generator=generator)
    expected = reference_instance_map(dense, scores)
    assert (expected == 4).sum() == 0
    crops = CroppedMasks.from_dense(dense.to(device))
    for masks in (dense, dense.to(torch.uint8), crops, crops.dense(), dense.to(device)):
        assert instance_map(masks, scores).cpu().tolist() == expected.tolist()
        assert semantic_map(masks, labels, scores).cpu().tolist() == (
            torch.cat([torch.zeros(1, dtype=torch.int64), labels])[expected].tolist()
        )
    assert instance_map(crops, scores).device == crops.device


def test_the_maps_are_painted_from_the_crops():
    """100 detections in a 2048 x 1365 photo: no full-size mask is ever made (``dense``, ``mask``)."""

    class CropsOnly(CroppedMasks):
        def dense(self):
            raise AssertionError("dense masks built")

        def mask(self, k):
            raise AssertionError("a full-size mask built")

    generator = torch.Generator().manual_seed(0)
    crops, origins = [], []
    for _ in range(100):
        h, w = torch.randint(20, 300, (2,), generator=generator).tolist()
        y, x = (
            int(torch.randint(0, 1365 - h, (), generator=generator)),
            int(torch.randint(0, 2048 - w, (), generator=generator)),
        )
        origins.append((y, x))
        crops.append(torch.ones(h, w, dtype=torch.bool))
    masks = CropsOnly(crops, origins, (1365, 2048))
    scores = torch.rand(100, generator=generator)
    found = semantic_map(masks, torch.arange(1, 101), scores)
    assert found.shape == (1365, 2048)
    best = int(scores.argmax())
    (y, x), (h, w) = origins[best], crops[best].shape
    assert (found[y : y + h, x : x + w] == best + 1).all()  # labels 1..100: the best one's is best + 1


def test_no_detections_give_background_and_bad_masks_are_refused():
    assert instance_map(CroppedMasks([], [], (3, 4)), torch.zeros(0)).tolist() == [[0] * 4] * 3
    empty = torch.zeros(0, 3, 4, dtype=torch.bool)
    assert semantic_map(empty, torch.zeros(0, dtype=torch.int64), torch.zeros(0)).shape == (3, 4)
    with pytest.raises(ValueError, match="threshold probabilities first"):
        instance_map(torch.rand(2, 3, 4), torch.ones(2))
    with pytest.raises(ValueError, match="threshold probabilities first"):
        instance_map(torch.ones(2, 1, 3, 4, dtype=torch.bool), torch.ones(2))
    with pytest.raises(ValueError, match="1 scores for 2 masks"):
        instance_map(torch.ones(2, 3, 4, dtype=torch.bool), torch.ones(1))
    with pytest.raises(ValueError, match="2 labels for 1 scores"):
        semantic_map(torch.ones(1, 3, 4, dtype=torch.bool), torch.ones(2, dtype=torch.int64), torch.ones(1))


def test_the_palette_is_pascal_voc_s():
    palette = voc_palette()
    assert len(palette) == 256
    # VOC's SegmentationClass colours: background, aeroplane, bicycle, bird, boat, ..., person (15),
    # and 255, the colour of its "void" border pixels.
    assert palette[:6] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128)]
    assert palette[15] == (192, 128, 128)
    assert palette[255] == (224, 224, 192)
    assert len(set(palette)) == 256
    assert voc_palette(3) == palette[:3]


def test_the_class_png_reads_back_as_its_ids_and_colours(tmp_path):
    class_map = torch.tensor([[0, 1, 2, 3], [3, 3, 0, 15]])
    path = write_class_png(tmp_path / "out" / "map.png", class_map, num_classes=20)
    assert sorted(p.name for p in path.parent.iterdir()) == ["map.png"]  # written atomically
    with Image.open(path) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "P", (4, 2))
        assert np.asarray(image).tolist() == class_map.tolist()
        colours = image.getpalette()
        assert [tuple(colours[3 * k : 3 * k + 3]) for k in (0, 1, 2, 3, 15)] == [
            voc_palette()[k] for k in (0, 1, 2, 3, 15)
        ]
        rgb = np.asarray(image.convert("RGB"))
    assert rgb[0, 1].tolist() == [128, 0, 0]
    assert rgb[1, 3].tolist() == [192, 128, 128]
    with pytest.raises(ValueError, match=r"class_map holds ids 0..15; expected 0..3"):
        write_class_png(tmp_path / "bad.png", class_map, num_classes=3)
    with pytest.raises(ValueError, match="integer"):
        write_class_png(tmp_path / "bad.png", class_map.float(), num_classes=20)
    assert not (tmp_path / "bad.png").exists()


def test_more_than_255_classes_make_a_16_bit_class_png(tmp_path):
    class_map = torch.tensor([[0, 255, 256, 300]])
    path = write_class_png(tmp_path / "map.png", class_map, num_classes=300)
    with Image.open(path) as image:
        assert image.mode == "I;16"
        assert np.asarray(image).tolist() == class_map.tolist()


def test_the_instance_png_reads_back_as_its_ids(tmp_path):
    masks = rects((4, 6), [(0, 3, 0, 3), (1, 4, 1, 5)])
    ids = instance_map(masks, torch.tensor([0.9, 0.8]))
    path = write_instance_png(tmp_path / "ids.png", ids)
    with Image.open(path) as image:
        assert image.mode == "L"
        assert np.asarray(image).tolist() == ids.tolist()
    assert read_mask_file(path).tolist() == ids.tolist()  # what the instance-png reader takes


def test_more_than_255_instances_make_a_16_bit_instance_png(tmp_path):
    # 300 one-pixel detections in a 15 x 20 image: ids 1..300.
    dense = torch.eye(300, dtype=torch.bool).reshape(300, 15, 20)
    ids = instance_map(dense, torch.ones(300))
    assert ids.max() == 300
    path = write_instance_png(tmp_path / "ids.png", ids)
    with Image.open(path) as image:
        assert image.mode == "I;16"
        assert np.asarray(image).tolist() == ids.tolist()
    assert read_mask_file(path).tolist() == ids.tolist()
    with pytest.raises(ValueError, match=r"instance_map holds ids -1..0; expected 0..65535"):
        write_instance_png(tmp_path / "bad.png", torch.tensor([[0, -1]]))
