import numpy as np
import torch

from maskrcnn.structures import CroppedMasks
from maskrcnn.visualize import color_splash, draw_anchors, draw_instances, image_grid, random_colors, to_pil


def test_to_pil_and_colors():
    image = torch.zeros(3, 4, 5)
    image[0, 1, 2] = 1.0
    pixels = np.asarray(to_pil(image))
    assert pixels.shape == (4, 5, 3)
    assert pixels[1, 2].tolist() == [255, 0, 0]
    colors = random_colors(6)
    assert len(set(colors)) == 6
    assert colors == random_colors(6)  # reproducible


def test_draw_instances_tints_masks_and_outlines():
    image = torch.zeros(3, 40, 40)
    masks = torch.zeros(1, 40, 40)
    masks[0, 10:30, 10:30] = 0.9  # probabilities: thresholded at 0.5
    picture = draw_instances(
        image,
        boxes=torch.tensor([[10.0, 10.0, 30.0, 30.0]]),
        masks=masks,
        labels=torch.tensor([2]),
        scores=torch.tensor([0.87]),
        class_names=["cat", "dog"],
        colors=[(0, 255, 0)],
        alpha=0.5,
    )
    pixels = np.asarray(picture)
    assert pixels[26, 26].tolist() == [0, 128, 0]  # inside (below the caption): half green over black
    assert pixels[10, 20].tolist() == [0, 255, 0]  # the outline (and the box) in full colour
    assert pixels[35, 35].tolist() == [0, 0, 0]  # outside untouched
    # The caption "dog 0.87": a black label with text in the instance's colour at the box's corner.
    caption = pixels[11:22, 12:40, 1]
    assert (caption == 0).sum() > 50
    assert (caption > 150).sum() > 10


def test_masks_as_crops_draw_the_same_picture_as_full_size_masks():
    g = torch.Generator().manual_seed(3)
    image = torch.rand(3, 30, 40, generator=g)
    masks = torch.zeros(3, 30, 40, dtype=torch.bool)
    masks[0, 0:12, 0:15] = True  # at the image's corner: the outline's ring is cut by the border
    masks[1, 5:25, 20:40] = torch.rand(20, 20, generator=g) > 0.3
    drawn = dict(boxes=torch.tensor([[0.0, 0.0, 15.0, 12.0], [20.0, 5.0, 40.0, 25.0], [1.0, 1.0, 4.0, 4.0]]))
    drawn.update(labels=torch.tensor([1, 2, 1]), scores=torch.tensor([0.9, 0.8, 0.7]), class_names=["a", "b"])
    dense = np.asarray(draw_instances(image, masks=masks, **drawn))
    cropped = np.asarray(draw_instances(image, masks=CroppedMasks.from_dense(masks), **drawn))
    assert np.array_equal(dense, cropped)
    assert not np.array_equal(dense, np.asarray(draw_instances(image, **drawn)))  # the masks were drawn
    torch.testing.assert_close(
        color_splash(image, CroppedMasks.from_dense(masks)), color_splash(image, masks)
    )


def test_color_splash():
    image = torch.zeros(3, 2, 3)
    image[0] = 1.0  # pure red everywhere
    masks = torch.zeros(1, 1, 2, 3)
    masks[0, 0, 0, 0] = 1.0
    splash = color_splash(image, masks)
    assert splash[:, 0, 0].tolist() == [1.0, 0.0, 0.0]  # colour kept inside the mask
    grey = 0.299
    torch.testing.assert_close(splash[:, 1, 2], torch.tensor([grey, grey, grey]))
    torch.testing.assert_close(color_splash(image, torch.zeros(0, 2, 3)), torch.full((3, 2, 3), grey))


def test_grid_and_anchors():
    pictures = [to_pil(torch.rand(3, 30, 60)) for _ in range(5)]
    grid = image_grid(pictures, columns=2, titles=[f"t{i}" for i in range(5)], cell=100)
    assert grid.size == (200, 3 * 114)
    anchors = [torch.tensor([[0.0, 0.0, 8.0, 8.0], [12.0, 12.0, 20.0, 20.0]])]
    picture = draw_anchors(torch.zeros(3, 32, 32), anchors, gt_boxes=torch.tensor([[2.0, 2.0, 6.0, 6.0]]))
    pixels = np.asarray(picture)
    assert pixels[2, 4].tolist() == [255, 255, 255]  # the ground-truth box
    assert pixels[12, 16].sum() > 0  # the anchor nearest the centre


def test_boxes_under_a_pixel_are_drawn_as_one_pixel():
    # Such boxes come back at --score-threshold 0: Pillow refuses a rectangle whose end precedes its start.
    image = torch.zeros(3, 20, 20)
    picture = draw_instances(
        image,
        boxes=torch.tensor([[5.0, 6.0, 5.4, 12.0], [8.0, 3.0, 14.0, 3.2]]),
        masks=None,
        labels=None,
        scores=None,
        class_names=[],
        colors=[(255, 0, 0), (0, 0, 255)],
    )
    pixels = np.asarray(picture)
    assert pixels[9, 5].tolist() == [255, 0, 0]  # a vertical line one pixel wide
    assert pixels[3, 10].tolist() == [0, 0, 255]  # a horizontal one
    assert (pixels.sum(axis=2) > 0).sum() == 7 + 7
