from collections import Counter

import numpy as np
import pytest
import torch

from maskrcnn.data import load_dataset
from maskrcnn.data.shapes import (
    CLASS_NAMES,
    Scene,
    Shape,
    ShapesDataset,
    draw_scene,
    random_scene,
    write_shapes_coco,
)


def test_deterministic_and_independent_of_order():
    a = ShapesDataset(count=6, seed=3)
    b = ShapesDataset(count=6, seed=3)
    for i in (5, 0, 3):  # any order gives the same item
        ia, ta = a[i]
        ib, tb = b[i]
        assert torch.equal(ia, ib)
        assert torch.equal(ta["masks"], tb["masks"])
    assert not torch.equal(a[0][0], ShapesDataset(count=1, seed=4)[0][0])
    assert load_dataset("shapes", count=2).class_names == list(CLASS_NAMES)
    with pytest.raises(ValueError, match="reads no files"):
        load_dataset("shapes", "some/folder")


def test_classic_distribution():
    rng = np.random.default_rng(0)
    counts, sizes, centres = [], [], []
    for _ in range(300):
        scene = random_scene(rng)
        counts.append(len(scene.shapes))
        sizes += [s.s for s in scene.shapes]
        centres += [(s.x, s.y) for s in scene.shapes]
    assert min(counts) >= 1 and max(counts) == 4  # noqa: PT018
    assert min(sizes) == 20 and max(sizes) == 32  # noqa: PT018  (s in [20, 128 // 4])
    assert min(min(c) for c in centres) >= 20 and max(max(c) for c in centres) <= 107  # noqa: PT018
    kinds = {s.kind for _ in range(50) for s in random_scene(rng).shapes}
    assert kinds == set(CLASS_NAMES)


def test_masks_match_the_pixels_and_occlusion():
    # A square, then a circle drawn on top of part of it.
    scene = Scene(
        background=(0, 0, 0),
        shapes=(Shape("square", (255, 0, 0), 40, 40, 20), Shape("circle", (0, 0, 255), 60, 60, 15)),
    )
    image, masks, labels = draw_scene(scene)
    assert labels.tolist() == [1, 2]
    assert (masks[0] & masks[1]).sum() == 0  # visible parts never overlap
    square, circle = masks[0].bool(), masks[1].bool()
    assert torch.all(image[:, square] == torch.tensor([1.0, 0.0, 0.0])[:, None])
    assert torch.all(image[:, circle] == torch.tensor([0.0, 0.0, 1.0])[:, None])
    background = ~(square | circle)
    assert torch.all(image[:, background] == 0)
    # The square spans 2s + 1 = 41 pixels per side, minus what the circle hides.
    assert square.sum() + (circle[20:61, 20:61]).sum() == 41 * 41
    # A filled circle of radius 15 covers the pixels whose centres lie within about 15.5 of its centre
    # (2s + 1 pixels across, like the square).
    assert abs(int(circle.sum()) - np.pi * 15.5**2) < 0.02 * np.pi * 15.5**2
    # Entirely hidden shapes are dropped.
    hidden = Scene((0, 0, 0), (Shape("square", (9, 9, 9), 40, 40, 5), Shape("square", (1, 1, 1), 40, 40, 20)))
    _, masks, labels = draw_scene(hidden)
    assert labels.tolist() == [1]


def test_items_follow_the_contract_and_options():
    ds = ShapesDataset(
        count=4, seed=1, image_size=96, min_shapes=2, max_shapes=2, noise=0.05, texture=0.2, buffer=16
    )
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, 96, 96)
        assert image.min() >= 0
        assert image.max() <= 1
        n = len(target["labels"])
        assert 1 <= n <= 2
        assert target["masks"].shape == (n, 96, 96)
        assert (
            (target["boxes"][:, 2] > target["boxes"][:, 0]) & (target["boxes"][:, 3] > target["boxes"][:, 1])
        ).all()
        # The scene lists every shape drawn; occlusion can only hide some.
        assert not Counter(target["labels"].tolist()) - Counter(ds.instance_labels(i))
    assert ds.image_size(0) == (96, 96)


def test_written_to_disk_as_coco(tmp_path):
    path = write_shapes_coco(tmp_path / "shapes", count=3, seed=2)
    assert path == tmp_path / "shapes" / "annotations.json"
    coco = load_dataset("coco", path)
    generated = ShapesDataset(count=3, seed=2)
    assert coco.class_names == list(CLASS_NAMES)
    for i in range(3):
        image, target = coco[i]
        expected_image, expected = generated[i]
        # PNG is lossless: the written pixels are the generated ones (up to 8-bit rounding).
        assert torch.allclose(image, expected_image, atol=0.5 / 255)
        assert torch.equal(target["masks"], expected["masks"])
        assert target["labels"].tolist() == expected["labels"].tolist()
