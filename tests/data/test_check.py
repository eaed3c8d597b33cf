"""check-data's keypoint counts and warnings."""

import torch

from maskrcnn.data import check_dataset
from maskrcnn.data.dataset import AnnotatedDataset, Annotation, ImageRecord
from maskrcnn.data.keypoints import KeypointSpec
from maskrcnn.data.shapes import ShapesDataset


class InMemory(AnnotatedDataset):
    def load_image(self, index):
        return torch.zeros(3, 20, 20)


def test_keypoints_counted_and_astray_ones_warned():
    square = [[2, 2, 8, 2, 8, 8, 2, 8]]  # box 2..8
    records = [
        ImageRecord(
            0,
            None,
            20,
            20,
            ref="a.png",
            annotations=[
                Annotation(1, square, keypoints=[3.0, 3.0, 2, 15.0, 15.0, 2, 18.0, 1.0, 1]),
                Annotation(1, [[10, 10, 14, 10, 14, 14]], keypoints=[0, 0, 0, 0, 0, 0, 0, 0, 0]),
                Annotation(
                    1, square, iscrowd=True, keypoints=[19.0, 19.0, 2, 0, 0, 0, 0, 0, 0]
                ),  # not counted
            ],
        )
    ]
    spec = KeypointSpec(("a", "b", "c"))
    report = check_dataset(InMemory(records, ["thing"], keypoint_spec=spec), source="mem")
    assert (report.labelled_keypoints, report.visible_keypoints, report.without_keypoints) == (3, 2, 1)
    # Only the visible one far from its box: a hidden keypoint may lie outside what is visible.
    [problem] = report.warnings
    assert str(problem) == (
        "warning: mem, image a.png: 1 visible keypoint(s) outside their object's box: "
        "instance 0 b (15.0, 15.0)"
    )
    assert "keypoints: 3 per instance (a, b, c); 3 labelled (2 visible), 1 instances with none labelled" in (
        report.render()
    )
    assert report.ok


def test_shapes_keypoints_are_clean():
    report = check_dataset(ShapesDataset(count=20, seed=1, keypoints=True))
    assert report.keypoint_names == ("top", "left", "right", "bottom")
    assert report.labelled_keypoints > 0
    assert not report.problems
    assert "keypoints:" not in check_dataset(ShapesDataset(count=2)).render()
