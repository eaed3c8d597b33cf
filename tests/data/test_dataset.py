import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from maskrcnn.data import (
    AnnotatedDataset,
    Annotation,
    DataError,
    ImageRecord,
    InstanceDataset,
    MaskFile,
    ProblemLog,
)
from maskrcnn.data.dataset import (
    base_dataset,
    check_annotation,
    clean_keypoints,
    polygon_area,
    rasterize,
    stored_items,
)
from maskrcnn.data.keypoints import KeypointSpec


class TwoSquares(InstanceDataset):
    """A user's dataset in the style of the samples: classes and images registered, masks drawn."""

    def __init__(self, root, **kwargs):
        super().__init__(**kwargs)
        self.add_class("square")
        self.add_class("dot")
        for i in range(2):
            path = root / f"{i}.png"
            Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(path)
            self.add_image(path, image_id=100 + i, squares=[(1, 2, 4, 5), (6, 6, 9, 8)][: i + 1])

    def load_masks(self, index):
        info = self.image_info[index]
        masks = torch.zeros(len(info["squares"]) + 1, 10, 12, dtype=torch.bool)
        for k, (x1, y1, x2, y2) in enumerate(info["squares"]):
            masks[k, y1:y2, x1:x2] = True
        # The last instance is empty (as after an occlusion): it must be dropped.
        labels = torch.tensor([1] * len(info["squares"]) + [2])
        return masks, labels


def test_subclass_in_a_few_lines(tmp_path):
    ds = TwoSquares(tmp_path)
    assert len(ds) == 2
    assert ds.class_names == ["square", "dot"]
    assert ds.num_classes == 3
    assert ds.add_class("square") == 1  # registering twice is harmless
    image, target = ds[1]
    assert image.shape == (3, 10, 12)
    assert set(target) == {"boxes", "labels", "masks", "iscrowd", "area", "image_id"}
    assert target["labels"].tolist() == [1, 1]
    # Boxes come from the masks, in pixel-edge coordinates: columns 1..3 -> x1 = 1, x2 = 4.
    assert target["boxes"].tolist() == [[1.0, 2.0, 4.0, 5.0], [6.0, 6.0, 9.0, 8.0]]
    assert target["area"].tolist() == [9.0, 6.0]
    assert target["masks"].dtype == torch.uint8
    assert target["iscrowd"].tolist() == [0, 0]
    assert int(target["image_id"]) == 101
    assert ds.image_size(0) == (10, 12)
    assert ds.instance_labels(1) == [1, 1, 2]
    with pytest.raises(IndexError):
        ds[2]


def test_transforms_are_applied_and_bad_masks_named(tmp_path):
    seen = []

    def record(image, target):
        seen.append(len(target["labels"]))
        return image * 0, target

    ds = TwoSquares(tmp_path, transforms=record)
    image, _ = ds[0]
    assert seen == [1]
    assert image.abs().sum() == 0

    class WrongSize(TwoSquares):
        def load_masks(self, index):
            return torch.zeros(1, 5, 5), torch.tensor([1])

    with pytest.raises(DataError, match=r"0.png: load_masks returned masks \[1, 5, 5\]"):
        WrongSize(tmp_path)[0]

    class BadLabel(TwoSquares):
        def load_masks(self, index):
            return torch.ones(1, 10, 12), torch.tensor([3])

    with pytest.raises(DataError, match=r"labels \[3\] outside 1..2"):
        BadLabel(tmp_path)[0]


@pytest.mark.parametrize(
    ("segmentation", "severity", "message"),
    [
        ([[0, 0, 4, 0]], "error", "polygon part 0 has 2 points"),
        ([[0, 0, 4, 0, 4]], "error", "polygon part 0 has 2.5 points"),
        ([[0, 0, 4, 0, 8, 0]], "error", "zero-area instance"),
        ([[20, 20, 30, 20, 30, 30]], "error", "polygon lies outside the 10x8 image"),
        (
            [[-3, 0, 4, 0, 4, 4]],
            "warning",
            "coordinates outside the 10x8 image (x -3.0..4.0, y 0.0..4.0); clipped",
        ),
        ([[0, 0, 1, 0, float("nan"), 1]], "error", "non-finite coordinate"),
        # Coordinates whose products overflow: the shoelace must not turn them into a NaN area.
        ([[-3, 0, 1e200, 0, 4, 1e200]], "warning", "coordinates outside the 10x8 image"),
        ({"size": [8, 9], "counts": "abc"}, "error", "RLE size [8, 9] differs from the image size [8, 10]"),
        ({"size": [8, 10], "counts": [80]}, "error", "zero-area instance (empty RLE)"),
        ({"counts": [80]}, "error", "malformed RLE"),
        ([], "error", "no polygon"),
    ],
)
def test_check_annotation(segmentation, severity, message):
    problems = check_annotation(segmentation, 8, 10)
    assert len(problems) == 1
    assert problems[0][0] == severity
    assert message in problems[0][1]


def test_polygon_area_near_the_float_limit():
    assert polygon_area([0, 0, 2, 0, 2, 3]) == 3.0
    assert polygon_area([0, 0, 4e200, 0, 4e200, 2e200]) == float("inf")  # 4e400: beyond float
    assert polygon_area([0, 0, 1e300, 0, 2e300, 0]) == 0.0  # collinear, however large
    assert polygon_area([0, 0, 1e-150, 0, 0, 1e-150]) == pytest.approx(5e-301)  # tiny, not lost


def test_rasterize_each_kind(tmp_path):
    square = rasterize([[1, 1, 4, 1, 4, 3, 1, 3]], 5, 6)
    assert square.sum() == 6 and square[1:3, 1:4].all()  # noqa: PT018
    rle = rasterize({"size": [5, 6], "counts": [2, 3, 25]}, 5, 6)  # column-major runs: rows 2..4 of column 0
    assert rle[:, 0].tolist() == [0, 0, 1, 1, 1]
    labels = np.zeros((5, 6), np.uint8)
    labels[0, 0] = 1
    labels[4, 5] = 2
    Image.fromarray(labels).save(tmp_path / "ids.png")
    cache: dict = {}
    one = rasterize(MaskFile(tmp_path / "ids.png", value=2), 5, 6, cache)
    assert one.sum() == 1 and one[4, 5] == 1  # noqa: PT018
    assert rasterize(MaskFile(tmp_path / "ids.png"), 5, 6, cache).sum() == 2
    with pytest.raises(DataError, match=r"ids.png: mask is 6x5, the image 7x5"):
        rasterize(MaskFile(tmp_path / "ids.png"), 5, 7)


def test_problem_log_and_annotated_dataset(tmp_path):
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "a.png")
    log = ProblemLog("ann.json")
    record = ImageRecord(1, tmp_path / "a.png", None, None, ref="a.png")
    assert log.check_image(record)
    assert (record.height, record.width) == (8, 10)  # filled in from the file
    assert log.add_annotation(record, Annotation(1, [[0, 0, 5, 0, 5, 4, 0, 4]], ref="annotation 1"))
    assert not log.add_annotation(record, Annotation(1, [[0, 0, 5, 0]], ref="annotation 2"))
    missing = ImageRecord(2, tmp_path / "b.png", 8, 10, ref="b.png")
    assert not log.check_image(missing)
    wrong = ImageRecord(3, tmp_path / "a.png", 9, 10, ref="a-again.png")
    assert not log.check_image(wrong)
    assert [str(p) for p in log.problems] == [
        "error: ann.json, image a.png, annotation 2: polygon part 0 has 2 points; "
        "it needs at least 3 (x, y) pairs",
        f"error: ann.json, image b.png: image file not found: {tmp_path / 'b.png'}",
        "error: ann.json, image a-again.png: image is 10x8 but the annotations say 10x9",
    ]
    with pytest.raises(DataError, match="annotation 2: polygon part 0 has 2 points"):
        ProblemLog("ann.json", strict=True).add_annotation(
            record, Annotation(1, [[0, 0, 5, 0]], ref="annotation 2")
        )

    crowd = Annotation(2, {"size": [8, 10], "counts": [0, 8, 72]}, iscrowd=True, ref="annotation 3")
    log.add_annotation(record, crowd)
    negative = ImageRecord(4, tmp_path / "a.png", 8, 10, ref="negative.png")
    ds = AnnotatedDataset([record, negative], ["cat", "dog"], problems=log.problems, source="ann.json")
    _, target = ds[0]
    assert target["labels"].tolist() == [1, 2]
    assert target["iscrowd"].tolist() == [0, 1]
    assert target["boxes"].tolist() == [[0.0, 0.0, 5.0, 4.0], [0.0, 0.0, 1.0, 8.0]]
    assert ds.instance_labels(0) == [1]  # crowd regions are not instances to balance
    _, empty = ds[1]
    assert empty["masks"].shape == (0, 8, 10)
    assert ds.summary() == (
        "2 images (1 without objects), instances: cat 1, dog 0; skipped 1 instances and 2 images with errors"
    )


# ----------------------------------------------------------------------------------------------------
# Keypoints


class PointedSquares(TwoSquares):
    """TwoSquares with two keypoints per instance: the corners of each square (the empty third instance
    has some too; they go with it)."""

    def __init__(self, root, keypoints=None, **kwargs):
        super().__init__(root, **kwargs)
        self.keypoint_spec = KeypointSpec(("top_left", "bottom_right"))
        self.keypoints = keypoints

    def load_keypoints(self, index):
        if self.keypoints is not None:
            return self.keypoints
        rows = [
            [[x1 + 0.5, y1 + 0.5, 2.0], [x2 - 0.5, y2 - 0.5, 1.0]]
            for x1, y1, x2, y2 in self.image_info[index]["squares"]
        ]
        return torch.tensor([*rows, [[3.0, 3.0, 2.0], [0.0, 0.0, 0.0]]])


def test_items_carry_keypoints_with_their_instances(tmp_path):
    ds = PointedSquares(tmp_path)
    _, target = ds[1]
    assert set(target) == {"boxes", "labels", "masks", "iscrowd", "area", "image_id", "keypoints"}
    assert target["keypoints"].dtype == torch.float32
    # The empty instance is dropped, and its keypoints with it.
    assert target["keypoints"].tolist() == [
        [[1.5, 2.5, 2.0], [3.5, 4.5, 1.0]],
        [[6.5, 6.5, 2.0], [8.5, 7.5, 1.0]],
    ]
    # Without a spec there are none: nothing changes for datasets without keypoints.
    assert "keypoints" not in TwoSquares(tmp_path)[1][1]
    # Subsets, wrappers and reading without augmentation see the spec and the keypoints.
    part = Subset(ds, [1])
    assert base_dataset(part).keypoint_spec.names == ("top_left", "bottom_right")
    [(index, _, stored)] = list(stored_items(part))
    assert index == 0
    assert torch.equal(stored["keypoints"], target["keypoints"])


def test_keypoints_from_annotations(tmp_path):
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "a.png")
    box = [[0, 0, 5, 0, 5, 4, 0, 4]]
    record = ImageRecord(
        1,
        tmp_path / "a.png",
        8,
        10,
        annotations=[
            Annotation(1, box, keypoints=[1.5, 1.5, 2, 4.0, 3.0, 1]),
            Annotation(1, box),  # none labelled
            Annotation(
                1, box, keypoints=[11.0, 1.0, 2, 10.0, 8.0, 2]
            ),  # beyond the right border; on the corner
        ],
    )
    ds = AnnotatedDataset([record], ["thing"], keypoint_spec=KeypointSpec(("a", "b")))
    _, target = ds[0]
    assert target["keypoints"].tolist() == [
        [[1.5, 1.5, 2.0], [4.0, 3.0, 1.0]],
        [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        [[0.0, 0.0, 0.0], [10.0, 8.0, 2.0]],  # outside the image: not labelled; its border is in it
    ]


@pytest.mark.parametrize(
    ("keypoints", "message"),
    [
        (torch.zeros(2, 3, 3), r"0.png: load_keypoints returned keypoints \[2, 3, 3\]; expected \[2, 2, 3\]"),
        (torch.zeros(2, 2), r"0.png: load_keypoints returned keypoints \[2, 2\]; expected \[2, 2, 3\]"),
        (
            torch.tensor([[[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]], [[0.0, 0.0, 0.0], [1.0, float("nan"), 2.0]]]),
            r"0.png: instance 1 keypoint 1 \(bottom_right\) is \[1.0, nan, 2.0\]: not finite",
        ),
        (
            torch.tensor([[[1.0, 1.0, 3.0], [1.0, 1.0, 2.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]),
            r"0.png: instance 0 keypoint 0 \(top_left\) has visibility 3; expected 0 \(not labelled\)",
        ),
    ],
)
def test_bad_keypoints_are_named(tmp_path, keypoints, message):
    with pytest.raises(DataError, match=message):
        PointedSquares(tmp_path, keypoints=keypoints)[0]


def test_keypoints_outside_the_image_are_cleared_and_said(tmp_path, caplog):
    outside = torch.tensor([[[12.5, 1.0, 2.0], [2.0, 2.0, 2.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    with caplog.at_level(logging.WARNING, logger="maskrcnn.data.dataset"):
        _, target = PointedSquares(tmp_path, keypoints=outside)[0]
    assert target["keypoints"].tolist() == [[[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]]
    assert "0.png: 1 labelled keypoint(s) outside the 12x10 image set to not labelled" in caplog.text


def test_clean_keypoints():
    keypoints = torch.tensor(
        [[[0.0, 0.0, 2.0], [6.0, 4.0, 1.0], [6.1, 1.0, 2.0], [1.0, -0.1, 2.0], [3.0, 2.0, 0.0]]]
    )
    assert clean_keypoints(keypoints, 4, 6).tolist() == [
        [[0.0, 0.0, 2.0], [6.0, 4.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    ]
    labelled = keypoints[:, :2]
    assert clean_keypoints(labelled, 4, 6) is labelled  # nothing to clear: no copy
