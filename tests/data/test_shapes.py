import json
from collections import Counter

import numpy as np
import pytest
import torch

from maskrcnn.data import load_dataset
from maskrcnn.data.shapes import (
    CLASS_NAMES,
    KEYPOINT_SPEC,
    Scene,
    Shape,
    ShapesDataset,
    draw_scene,
    random_scene,
    scene_keypoints,
    write_shapes_coco,
)
from maskrcnn.data.transforms import HorizontalFlip


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


# ----------------------------------------------------------------------------------------------------
# Keypoints


def test_keypoints_golden():
    # Pillow draws at pixel centres: a square of size 10 at (30, 30) fills columns and rows 20..40, and
    # its keypoints are the centres of the middle pixels of its sides.
    scene = Scene((0, 0, 0), (Shape("square", (9, 9, 9), 30, 30, 10),))
    assert scene_keypoints(scene, height=64, width=64).tolist() == [
        [[30.5, 20.5, 2.0], [20.5, 30.5, 2.0], [40.5, 30.5, 2.0], [30.5, 40.5, 2.0]]
    ]
    circle = Scene((0, 0, 0), (Shape("circle", (9, 9, 9), 30, 30, 10),))
    assert torch.equal(
        scene_keypoints(circle, height=64, width=64), scene_keypoints(scene, height=64, width=64)
    )
    # The triangle: apex (30, 20); base on row 40 from column int(30 - 10 / sin 60) = int(18.45) = 18 to
    # int(41.55) = 41 (Pillow truncates), its middle at 30.
    triangle = Scene((0, 0, 0), (Shape("triangle", (9, 9, 9), 30, 30, 10),))
    assert scene_keypoints(triangle, height=64, width=64).tolist() == [
        [[30.5, 20.5, 2.0], [18.5, 40.5, 2.0], [41.5, 40.5, 2.0], [30.5, 40.5, 2.0]]
    ]
    _, masks, _ = draw_scene(triangle, height=64, width=64)
    row = masks[0, 40].nonzero().flatten()
    assert (int(row.min()), int(row.max())) == (18, 41)
    assert masks[0, :, 30].nonzero().flatten()[0] == 20
    assert KEYPOINT_SPEC.names == ("top", "left", "right", "bottom")
    assert KEYPOINT_SPEC.flip_permutation() == [0, 2, 1, 3]


def test_keypoints_hidden_and_outside():
    scene = Scene(
        (0, 0, 0),
        (
            Shape("square", (9, 9, 9), 30, 30, 10),
            Shape("circle", (200, 0, 0), 44, 30, 6),  # covers the square's right keypoint (40, 30)
            Shape("triangle", (0, 200, 0), 5, 50, 10),  # its left corner and bottom are outside
        ),
    )
    keypoints = scene_keypoints(scene, height=64, width=64)
    assert keypoints[0].tolist() == [
        [30.5, 20.5, 2.0],
        [20.5, 30.5, 2.0],
        [40.5, 30.5, 1.0],
        [30.5, 40.5, 2.0],
    ]
    assert keypoints[1, :, 2].tolist() == [2.0, 2.0, 2.0, 2.0]
    # Triangle: apex (5, 40), left corner int(5 - 11.55) = -6, right int(16.55) = 16, bottom row 60.
    assert keypoints[2].tolist() == [[5.5, 40.5, 2.0], [0.0, 0.0, 0.0], [16.5, 60.5, 2.0], [5.5, 60.5, 2.0]]


@pytest.mark.parametrize("kind", CLASS_NAMES)
def test_each_keypoint_is_a_pixel_of_its_shape(kind):
    # What the module docstring promises, for every size: the picture shows the keypoint's pixel.
    for s in range(1, 41):
        shape = Shape(kind, (9, 9, 9), 50, 48, s)
        _, masks, _ = draw_scene(Scene((0, 0, 0), (shape,)), height=100, width=100)
        for col, row in shape.keypoint_pixels():
            assert masks[0, row, col] == 1, (s, col, row)
        ys, xs = masks[0].nonzero().unbind(1)
        top, left, right, bottom = shape.keypoint_pixels()
        assert (top[1], left[0], right[0], bottom[1]) == (ys.min(), xs.min(), xs.max(), ys.max())  # extremes


def test_keypoint_dataset_items():
    plain = ShapesDataset(count=30, seed=4, max_shapes=6)
    ds = ShapesDataset(count=30, seed=4, max_shapes=6, keypoints=True)
    assert plain.keypoint_spec is None
    assert ds.keypoint_spec is KEYPOINT_SPEC
    hidden = 0
    for i in range(len(ds)):
        image, target = ds[i]
        expected_image, expected = plain[i]
        assert "keypoints" not in expected
        assert torch.equal(image, expected_image)  # keypoints change nothing else
        assert torch.equal(target["masks"], expected["masks"])
        keypoints, masks = target["keypoints"], target["masks"]
        assert keypoints.shape == (len(masks), 4, 3)
        assert keypoints.dtype == torch.float32
        for n, k in (keypoints[..., 2] > 0).nonzero().tolist():
            col, row = int(keypoints[n, k, 0]), int(keypoints[n, k, 1])
            if keypoints[n, k, 2] == 2:
                assert masks[n, row, col] == 1  # a visible keypoint is on its own visible pixels
            else:
                assert masks[n + 1 :, row, col].any()  # a hidden one under a later shape
                hidden += 1
    assert hidden > 0
    with pytest.raises(ValueError, match="make the dataset with keypoints=True"):
        plain.load_keypoints(0)
    assert load_dataset("shapes", count=1, keypoints=True).keypoint_spec is KEYPOINT_SPEC


def test_flipped_shapes_keep_left_on_the_left():
    flip = HorizontalFlip(p=1.0, keypoint_flip=KEYPOINT_SPEC.flip_permutation())
    ds = ShapesDataset(count=10, seed=0, keypoints=True, transforms=flip)
    for i in range(len(ds)):
        _, target = ds[i]
        _, left, right, _ = target["keypoints"].unbind(1)
        both = (left[:, 2] > 0) & (right[:, 2] > 0)
        assert torch.all(left[both, 0] < right[both, 0])


def test_keypoints_written_to_disk_as_coco(tmp_path):
    path = write_shapes_coco(tmp_path / "shapes", count=3, seed=2, image_size=96, keypoints=True)
    data = json.loads(path.read_text())
    for category in data["categories"]:
        assert category["keypoints"] == ["top", "left", "right", "bottom"]
        assert category["skeleton"] == [[1, 2], [2, 4], [4, 3], [3, 1]]  # COCO's are 1-based
    generated = ShapesDataset(count=3, seed=2, image_size=96, keypoints=True)
    annotations = iter(data["annotations"])
    for i in range(3):
        _, expected = generated[i]
        for keypoints in expected["keypoints"]:
            ann = next(annotations)
            assert ann["keypoints"] == keypoints.flatten().tolist()
            assert ann["num_keypoints"] == int((keypoints[:, 2] > 0).sum())
    coco = load_dataset("coco", path)
    assert coco.keypoint_spec.names == KEYPOINT_SPEC.names
    assert coco.keypoint_spec.skeleton == KEYPOINT_SPEC.skeleton
    assert coco.keypoint_spec.flip_permutation() == KEYPOINT_SPEC.flip_permutation()
    for i in range(3):
        assert torch.equal(coco[i][1]["keypoints"], generated[i][1]["keypoints"])
