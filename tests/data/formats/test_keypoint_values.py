"""The readers' shared keypoint helpers: one object's list cleaned, skeleton edges from option texts."""

import pytest

from maskrcnn.data.dataset import DataError, ProblemLog
from maskrcnn.data.formats.keypoint_values import checked_keypoints, skeleton_pairs
from maskrcnn.data.keypoints import KeypointSpec


def test_checked_keypoints_cleans_and_checks_against_the_image():
    spec = KeypointSpec(("a", "b", "c", "d"))
    log = ProblemLog("f.json")
    values = [-1, 17, 2, 5, 6, 0, 21.5, 3, 1, 10, 8, 2]  # on the border's slack, unlabelled, far out, fine
    kept = checked_keypoints(values, spec, 16, 20, log, image="a.png", annotation="annotation 1")
    assert kept == [0, 16, 2, 0, 0, 0, 0, 0, 0, 10, 8, 2]
    assert [str(p) for p in log.problems] == [
        "warning: f.json, image a.png, annotation 1: keypoint 2 (c) at (21.5, 3) outside the 20x16 image; "
        "left out (v = 0)"
    ]
    # The image size not known: nothing to check it against, unlabelled points still zeroed.
    log = ProblemLog("f.json")
    assert checked_keypoints(values, spec, None, None, log, image="", annotation="") == [
        -1, 17, 2, 0, 0, 0, 21.5, 3, 1, 10, 8, 2,
    ]  # fmt: skip
    assert log.problems == []


def test_skeleton_edges_from_names_indices_and_names_with_dashes():
    names = ["left-eye", "nose", "right-eye", "2"]
    assert skeleton_pairs(["left-eye-nose", "nose-right-eye", "1-3", "2-0"], names, where="w") == [
        (0, 1),
        (1, 2),
        (1, 3),  # indices
        (3, 0),  # a name before an index: "2" is keypoint 3's name
    ]
    assert skeleton_pairs([[0, 2], (1, 3)], names, where="w") == [(0, 2), (1, 3)]
    with pytest.raises(DataError, match=r"^w: edge 'nose' is not two keypoints 'a-b'"):
        skeleton_pairs(["nose"], names, where="w")
    ambiguous = ["a", "a-b", "b-c", "c"]  # "a-b-c" is a + b-c or a-b + c
    with pytest.raises(DataError, match=r"^w: edge 'a-b-c' can be read as more than one pair of"):
        skeleton_pairs(["a-b-c"], ambiguous, where="w")
