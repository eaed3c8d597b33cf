"""``evaluate`` end to end: an oracle with an unreadable image, a tiny model on a Subset."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from maskrcnn.data import ShapesDataset
from maskrcnn.engine.evaluation import (
    METRIC_NAMES,
    coco_ground_truth,
    coco_scores,
    detections_to_results,
    evaluate,
    match_classes,
)
from maskrcnn.modeling import build_model
from tests.engine.evaluation.helpers import (
    Oracle,
    Rectangles,
    small_config,
    with_false_positive,
)


def test_evaluate_with_a_perfect_model_and_an_unreadable_image():
    oracle = Oracle().train()
    dataset = Rectangles(bad={1})
    evaluation = evaluate(oracle, dataset, batch_size=2, progress=False)
    assert oracle.training  # restored
    assert oracle.calls == [(False, True, 1), (False, True, 1)]  # the bad image was left out of batch 1
    assert evaluation.num_images == 2
    assert evaluation.num_skipped == 1
    assert "broken on purpose" in evaluation.skipped[0]
    assert evaluation.metrics["segm"]["AP"] == pytest.approx(1.0)
    assert evaluation.metrics["bbox"]["AP"] == pytest.approx(1.0)
    assert [r["instances"] for r in evaluation.per_class] == [1, 1]
    assert evaluation.confusion.tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_evaluate_scores_what_coco_scores_gives():
    """The loop's ground truth and results are the dataset's and the model's, scored as the functions
    of ``coco`` score them."""
    oracle = Oracle()
    oracle.dets = with_false_positive()
    dataset = Rectangles(category_ids=[7, 3])
    evaluation = evaluate(oracle, dataset, batch_size=3, progress=False)
    results = detections_to_results(oracle.dets, [0, 1, 2], [7, 3])
    assert evaluation.results == results
    scores = coco_scores(coco_ground_truth(dataset), results)
    assert evaluation.metrics == scores.metrics
    assert evaluation.pr_curves == scores.pr_curves
    assert [(r["class"], r["category_id"], r["mask_AP"]) for r in evaluation.per_class] == [
        ("a", 7, scores.per_class["segm"][7]["AP"]),
        ("b", 3, scores.per_class["segm"][3]["AP"]),
    ]
    assert evaluation.summary() == (
        f"box AP {evaluation.metrics['bbox']['AP']:.3f} AP50 {evaluation.metrics['bbox']['AP50']:.3f} "
        f"AP75 {evaluation.metrics['bbox']['AP75']:.3f}; mask AP {evaluation.metrics['segm']['AP']:.3f} "
        f"AP50 {evaluation.metrics['segm']['AP50']:.3f} AP75 {evaluation.metrics['segm']['AP75']:.3f}"
    )


def test_evaluate_end_to_end_with_a_tiny_model(one_thread):
    torch.manual_seed(0)
    model = build_model(small_config()).train()
    shapes = ShapesDataset(
        count=3, seed=1, image_size=64, transforms=lambda image, target: pytest.fail("augmented")
    )
    transforms = shapes.transforms
    evaluation = evaluate(model, Subset(shapes, [0, 2]), batch_size=2, progress=False)
    assert model.training
    assert shapes.transforms is transforms
    assert set(evaluation.metrics) == {"bbox", "segm"}
    for values in evaluation.metrics.values():
        assert list(values) == list(METRIC_NAMES)
        assert all(v is None or 0.0 <= v <= 1.0 for v in values.values())
    assert [r["class"] for r in evaluation.per_class] == ["square", "circle", "triangle"]
    assert evaluation.num_images == 2
    assert evaluation.skipped == []
    assert evaluation.confusion.shape == (4, 4)
    assert evaluation.confusion.dtype == np.int64
    assert evaluation.confusion[1:].sum() == sum(r["instances"] for r in evaluation.per_class)
    assert len(evaluation.pr_curves["recall"]) == 101
    for r in evaluation.results:
        assert set(r) == {"image_id", "category_id", "bbox", "score", "segmentation"}
        assert r["image_id"] in (0, 2)
        assert r["category_id"] in (1, 2, 3)
        assert isinstance(r["segmentation"]["counts"], str)
    json.dumps(evaluation.results)
    assert "box AP" in evaluation.summary()


class Relabelled(torch.nn.Module):
    """The oracle with its labels renamed: ``lut[dataset label]`` is the model's label."""

    def __init__(self, lut):
        super().__init__()
        self.oracle, self.lut = Oracle(), torch.tensor(lut)

    def forward(self, images):
        return [{**out, "labels": self.lut[out["labels"]]} for out in self.oracle(images)]


def test_a_model_of_other_classes_is_scored_on_the_ones_it_shares():
    dataset = Rectangles()  # classes a, b
    # The model's classes are x, b, a: dataset a is its label 3, b its label 2.
    label_map, unscored = match_classes(["x", "b", "A"], ["a", "b"])
    assert (label_map, unscored) == ([0, 2, 1], [])
    model = Relabelled([0, 3, 2])
    with pytest.raises(ValueError, match=r"detection labels \[3\] outside 1..2"):  # taken at its word
        evaluate(model, dataset, progress=False)
    right = evaluate(model, dataset, progress=False, label_map=label_map)
    assert right.metrics["segm"]["AP"] == pytest.approx(1.0)
    assert right.unscored == []
    assert {r["category_id"] for r in right.results} == {1, 2}

    # A model of b and zebra: zebra's detections are dropped, a cannot be scored and is left out.
    label_map, unscored = match_classes(["b", "zebra", "N/A"], ["a", "b"])
    assert (label_map, unscored) == ([2, 0, 0], ["a"])
    partial = evaluate(Relabelled([0, 2, 1]), dataset, progress=False, label_map=label_map)
    assert partial.unscored == ["a"]
    assert partial.metrics["segm"]["AP"] == pytest.approx(1.0)  # b alone, found perfectly
    assert [r["mask_AP"] for r in partial.per_class] == [None, pytest.approx(1.0)]
    assert {r["category_id"] for r in partial.results} == {2}
