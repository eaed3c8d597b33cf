"""The merge of tiles' views into objects, on hand-made views of two neighbouring tiles (the merge on
whole scenes: ``test_tiling.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskrcnn.engine.tile_merge import View, _without_repeats, merge_tile_detections
from maskrcnn.engine.tiling import Window, tile_windows
from maskrcnn.structures import CroppedMasks


def view(tile: int, label: int, score: float, dense: torch.Tensor, window: Window) -> View:
    """A hand-made view: the part of an image-size mask inside the tile."""
    inside = torch.zeros_like(dense)
    inside[window.top : window.bottom, window.left : window.right] = dense[
        window.top : window.bottom, window.left : window.right
    ]
    crops = CroppedMasks.from_dense(inside[None])
    (crop, origin), box = next(iter(crops)), crops.boxes()[0]
    return View(tile=tile, label=label, score=score, box=box, crop=crop.numpy(), origin=origin)


def two_tiles() -> list[Window]:
    windows = tile_windows(64, 112, size=64, overlap=16)
    assert [(w.left, w.right) for w in windows] == [(0, 64), (48, 112)]
    return windows


def test_a_piece_taken_for_another_class_still_joins_its_object():
    windows = two_tiles()
    dense = torch.zeros((64, 112), dtype=torch.bool)
    dense[20:40, 30:90] = True  # across the border of both tiles
    views = [view(0, 3, 0.9, dense, windows[0]), view(1, 1, 0.8, dense, windows[1])]
    merged = merge_tile_detections(views, windows)
    assert len(merged["scores"]) == 1
    assert torch.equal(merged["masks"].mask(0), dense)
    assert merged["scores"].tolist() == pytest.approx([0.9])
    # Two objects of different classes that are whole in their tiles stay apart, however close.
    left, right = torch.zeros_like(dense), torch.zeros_like(dense)
    left[10:30, 50:56], right[10:30, 56:62] = True, True
    apart = merge_tile_detections(
        [view(0, 1, 0.9, left, windows[0]), view(1, 2, 0.9, right, windows[1])], windows
    )
    assert len(apart["scores"]) == 2


def test_two_views_of_one_tile_are_never_one_object():
    windows = two_tiles()
    a, b = torch.zeros((64, 112), dtype=torch.bool), torch.zeros((64, 112), dtype=torch.bool)
    a[10:30, 49:54] = True
    b[10:30, 55:60] = True  # two objects side by side inside the overlap (columns 48..63)
    # Tile 1 takes them for one object; tile 0 sees both: one of them joins tile 1's view, not both.
    views = [
        view(0, 1, 0.9, a, windows[0]),
        view(0, 1, 0.8, b, windows[0]),
        view(1, 1, 0.7, a | b, windows[1]),
    ]
    merged = merge_tile_detections(views, windows)
    assert len(merged["scores"]) == 2
    assert sorted(merged["scores"].tolist()) == pytest.approx([0.8, 0.9])


def test_a_weak_second_view_does_not_decide_pixels():
    windows = two_tiles()
    truth = torch.zeros((64, 112), dtype=torch.bool)
    truth[20:40, 50:62] = True  # inside the overlap (columns 48..63): both tiles see it whole
    poor = truth.clone()
    poor[20:40, 50:56] = False  # tile 1 sees it badly where it lies deeper in tile 1 than in tile 0
    poor[20:40, 56:62] = True
    strong, weak = view(0, 1, 0.9, truth, windows[0]), view(1, 1, 0.3, truth | poor, windows[1])
    merged = merge_tile_detections([strong, weak], windows)
    assert len(merged["scores"]) == 1
    assert torch.equal(merged["masks"].mask(0), truth)
    assert merged["scores"].tolist() == pytest.approx([0.9])


def test_a_sliver_at_a_tiles_edge_is_part_of_the_object_the_next_tile_sees_whole():
    windows = two_tiles()
    truth = torch.zeros((64, 112), dtype=torch.bool)
    truth[20:40, 30:62] = True  # ends 2 pixels before tile 0's right border: tile 0 sees it whole
    sliver = torch.zeros_like(truth)
    sliver[22:38, 48:50] = True  # tile 1's view: a sliver on its left border, a poor mask
    merged = merge_tile_detections(
        [view(0, 1, 0.9, truth, windows[0]), view(1, 2, 0.6, sliver, windows[1])], windows
    )
    assert len(merged["scores"]) == 1
    assert torch.equal(merged["masks"].mask(0), truth)


def test_second_looks_of_several_tiles_do_not_make_a_second_object():
    windows = two_tiles()
    truth = torch.zeros((64, 112), dtype=torch.bool)
    truth[20:40, 30:90] = True
    # Each tile keeps the object twice, as two classes (per-class NMS); the weaker looks match too.
    views = [
        view(0, 1, 0.9, truth, windows[0]),
        view(0, 2, 0.6, truth, windows[0]),
        view(1, 1, 0.8, truth, windows[1]),
        view(1, 2, 0.5, truth, windows[1]),
    ]
    merged = merge_tile_detections(views, windows)
    assert len(merged["scores"]) == 1
    assert merged["labels"].tolist() == [1]
    assert torch.equal(merged["masks"].mask(0), truth)
    # One tile's second look alone stays, as the model gave it.
    alone = merge_tile_detections(views[:2], windows)
    assert sorted(alone["labels"].tolist()) == [1, 2]


def test_an_object_repeated_through_other_tiles_is_left_out():
    square = np.ones((20, 20), dtype=bool)
    crops = [square, square[:18], square, square]
    origins = [(10, 10), (11, 10), (60, 60), (61, 60)]
    labels, scores = [1, 1, 1, 2], [0.9, 0.8, 0.7, 0.6]
    # Object 1 repeats object 0 (IoU 0.9, same label, from other tiles); object 3 overlaps object 2 as
    # much but is another class.
    assert _without_repeats(crops, origins, labels, scores, [-1, 4, -1, -1]) == [0, 2, 3]
    # Two detections of one tile alone are as the model gave them.
    assert _without_repeats(crops, origins, labels, scores, [4, 4, -1, -1]) == [0, 1, 2, 3]


def test_each_keypoint_of_a_joined_object_comes_from_the_tile_it_lies_deepest_in():
    windows = two_tiles()  # columns 0..63 and 48..111
    dense = torch.zeros((64, 112), dtype=torch.bool)
    dense[20:40, 30:90] = True  # across the border of both tiles
    views = [view(0, 1, 0.9, dense, windows[0]), view(1, 1, 0.8, dense, windows[1])]
    # Keypoint 0 as tile 0 places it (column 35) lies far inside tile 0, as tile 1 places it (column 49)
    # one pixel inside tile 1's border; keypoint 1 the other way round (columns 63 and 80). Keypoint 2,
    # in both tiles' shared columns, is 11 px from tile 0's border where tile 0 puts it (column 52), 9 px
    # from tile 1's where tile 1 does (column 57): tile 0's.
    views[0].keypoints = np.array([[35.5, 30.5, 4.0], [63.0, 30.0, 0.1], [52.5, 25.5, 2.0]], np.float32)
    views[1].keypoints = np.array([[49.0, 30.0, 0.2], [80.5, 30.5, 5.0], [57.5, 26.0, 3.0]], np.float32)
    merged = merge_tile_detections(views, windows, num_keypoints=3)
    assert merged["keypoints"].tolist() == [[[35.5, 30.5, 1.0], [80.5, 30.5, 1.0], [52.5, 25.5, 1.0]]]
    assert merged["keypoints_scores"].tolist() == [pytest.approx([4.0, 5.0, 2.0])]
    # A weak view (under half the best score) decides no keypoint, as it decides no pixel.
    views[1].score = 0.4
    weak = merge_tile_detections(views, windows, num_keypoints=3)
    assert weak["keypoints"][0, :, :2].tolist() == [[35.5, 30.5], [63.0, 30.0], [52.5, 25.5]]
    # An object seen by one tile keeps its view's keypoints; no keypoints without num_keypoints.
    single = merge_tile_detections(views[:1], windows, num_keypoints=3)
    assert single["keypoints"][0, :, :2].tolist() == [[35.5, 30.5], [63.0, 30.0], [52.5, 25.5]]
    assert "keypoints" not in merge_tile_detections(views[:1], windows)
    empty = merge_tile_detections([], windows, num_keypoints=3)
    assert empty["keypoints"].shape == (0, 3, 3)
    assert empty["keypoints_scores"].shape == (0, 3)
