"""The pycocotools side: golden comparisons with pycocotools run directly, category ids, crowds, empty
results, the one ground-truth builder and the one conversion of detections to results."""

import copy
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import Subset

from maskrcnn.data.dataset import DataError, stored_items
from maskrcnn.data.formats.export import CocoBuilder, to_coco
from maskrcnn.engine.evaluation import (
    MASK_THRESHOLD,
    METRIC_NAMES,
    binarize_masks,
    coco_ground_truth,
    coco_metrics,
    coco_scores,
    confusion_matrix,
    detections_to_results,
    instances_to_results,
)
from tests.engine.evaluation.helpers import (
    SCENE,
    H,
    Rectangles,
    W,
    detection,
    perfect,
    rect_mask,
    with_false_positive,
)


def shifted():
    dets = perfect()
    dets[1] = detection([(8, 36, 16, 46)], [1], [0.8])  # 6 px right: IoU 24 / 36 = 0.667
    return dets


def missed():
    dets = perfect()
    dets[0] = detection([SCENE[0][0][1]], [1], [0.9])  # the label-2 object of image 0 is missed
    return dets


# ----------------------------------------------------------------------------------------------------
# The reference: the ground truth and results written by hand, evaluated by pycocotools directly


def reference_gt(tmp_path, scene=SCENE, names=("a", "b"), category_ids=(1, 2)):
    images, annotations = [], []
    for image_id, objects in enumerate(scene):
        images.append({"id": image_id, "height": H, "width": W, "file_name": f"{image_id}.png"})
        for obj in objects:
            label, (y0, y1, x0, x1) = obj[:2]
            rle = mask_utils.encode(np.asfortranarray(rect_mask(obj[1])))
            rle["counts"] = rle["counts"].decode()
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[label - 1],
                    "segmentation": rle,
                    "area": (y1 - y0) * (x1 - x0),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": obj[2] if len(obj) > 2 else 0,
                }
            )
    categories = [{"id": c, "name": n} for c, n in zip(category_ids, names, strict=True)]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return COCO(str(path))


def reference_results(dets, category_ids=(1, 2)):
    out = []
    for image_id, det in enumerate(dets):
        for (x0, y0, x1, y1), label, score, mask in zip(
            det["boxes"].tolist(), det["labels"].tolist(), det["scores"].tolist(), det["masks"], strict=True
        ):
            rle = mask_utils.encode(np.asfortranarray((mask[0] > 0.5).numpy().astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            out.append(
                {
                    "image_id": image_id,
                    "category_id": category_ids[label - 1],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": score,
                    "segmentation": rle,
                }
            )
    return out


def reference_stats(gt, results, iou_type, cat_ids=None):
    # The official formats: box results without masks, mask results without boxes.
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    dt = gt.loadRes([{k: v for k, v in copy.deepcopy(r).items() if k != drop} for r in results])
    coco_eval = COCOeval(gt, dt, iou_type)
    if cat_ids is not None:
        coco_eval.params.catIds = cat_ids
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval.stats


def as_stats(metrics):
    return np.array([-1.0 if metrics[k] is None else metrics[k] for k in METRIC_NAMES])


# ----------------------------------------------------------------------------------------------------
# Ground truth


def test_ground_truth_matches_the_hand_written_one(tmp_path):
    dataset = Rectangles(transforms=lambda image, target: pytest.fail("augmentation ran"))
    transforms = dataset.transforms
    gt = coco_ground_truth(dataset)
    assert dataset.transforms is transforms
    ref = reference_gt(tmp_path)
    assert gt.getImgIds() == ref.getImgIds()
    assert [(i["height"], i["width"]) for i in gt.loadImgs(gt.getImgIds())] == [(H, W)] * 3
    assert gt.loadCats(gt.getCatIds()) == ref.loadCats(ref.getCatIds())
    keys = ("image_id", "category_id", "segmentation", "area", "bbox", "iscrowd")
    ours = [{k: a[k] for k in keys} for a in gt.loadAnns(gt.getAnnIds())]
    theirs = [{k: a[k] for k in keys} for a in ref.loadAnns(ref.getAnnIds())]
    assert ours == theirs


def test_export_and_evaluation_build_the_same_ground_truth():
    """One builder: ``maskrcnn convert``'s dict, the evaluation's ground truth and the evaluation loop's
    builder (fed the items as batches deliver them) hold the same images and annotations."""
    dataset = Rectangles(
        [[(1, (5, 25, 5, 25)), (2, (20, 38, 2, 48), 1)], [], [(2, (8, 36, 10, 40))]], category_ids=[7, 3]
    )
    exported = to_coco(dataset)
    gt = coco_ground_truth(dataset).dataset
    loop = CocoBuilder.for_dataset(dataset)
    for _, image, target in stored_items(dataset):
        loop.add(int(target["image_id"]), image.shape[-2], image.shape[-1], target)
    assert exported["categories"] == gt["categories"] == loop.categories
    assert exported["categories"] == [{"id": 7, "name": "a"}, {"id": 3, "name": "b"}]
    assert exported["images"] == gt["images"] == loop.images
    assert exported["annotations"] == gt["annotations"] == loop.annotations
    assert [a["area"] for a in loop.annotations] == [400, 18 * 46, 28 * 30]
    assert all(type(a["area"]) is int for a in exported["annotations"])
    assert [a["iscrowd"] for a in exported["annotations"]] == [0, 1, 0]
    assert [a["category_id"] for a in exported["annotations"]] == [7, 3, 3]


def test_builders_merge_in_order_and_refuse_shared_image_ids():
    dataset = Rectangles()
    whole = CocoBuilder.for_dataset(dataset)
    parts = [CocoBuilder.for_dataset(Subset(dataset, [0])), CocoBuilder.for_dataset(dataset)]
    for index, image, target in stored_items(dataset):
        h, w = image.shape[-2:]
        whole.add(int(target["image_id"]), h, w, target)
        parts[min(index, 1)].add(int(target["image_id"]), h, w, target)
    merged = CocoBuilder(whole.class_names, whole.category_ids)
    for part in parts:
        merged.extend(part)
    assert merged.images == whole.images
    assert merged.annotations == whole.annotations  # renumbered 1..
    with pytest.raises(DataError, match="share image_id 0; COCO needs distinct ids"):
        merged.extend(parts[0])


# ----------------------------------------------------------------------------------------------------
# Results and metrics


@pytest.mark.parametrize(
    ("make", "expected_ap"),
    [
        (perfect, 1.0),
        (with_false_positive, (2 / 3 + 1) / 2),  # class a: precision 2/3 at every recall level
        (shifted, None),
        (missed, 0.5),  # class b: nothing found
    ],
    ids=["perfect", "false-positive", "shifted", "missed"],
)
def test_metrics_equal_pycocotools_run_directly(tmp_path, make, expected_ap):
    dets = make()
    results = detections_to_results(dets, [0, 1, 2], [1, 2])
    hand = reference_results(dets)
    assert results == hand
    json.dumps(results)  # JSON-ready

    gt = coco_ground_truth(Rectangles())
    ref = reference_gt(tmp_path)
    scores = coco_scores(gt, results)
    assert set(scores.metrics) == {"bbox", "segm"}
    for iou_type in ("bbox", "segm"):
        metrics = scores.metrics[iou_type]
        assert list(metrics) == list(METRIC_NAMES)
        assert all(v is None or isinstance(v, float) for v in metrics.values())
        np.testing.assert_allclose(as_stats(metrics), reference_stats(ref, hand, iou_type), atol=1e-12)
        for cat in (1, 2):
            stats = reference_stats(ref, hand, iou_type, cat_ids=[cat])
            assert scores.per_class[iou_type][cat]["AP"] == pytest.approx(stats[0], abs=1e-12)
            assert scores.per_class[iou_type][cat]["AP50"] == pytest.approx(stats[1], abs=1e-12)
        if expected_ap is not None:
            assert metrics["AP"] == pytest.approx(expected_ap)
        assert metrics["APm"] is None  # every object is small
        assert metrics["APl"] is None
    if make is perfect:
        assert scores.metrics["bbox"]["AP"] == pytest.approx(1.0)
        assert scores.metrics["bbox"]["AP50"] == pytest.approx(1.0)
        assert scores.metrics["segm"]["AP"] == pytest.approx(1.0)
        assert scores.metrics["segm"]["AP50"] == pytest.approx(1.0)
        assert scores.pr_curves["segm"]["0.50"] == pytest.approx([1.0] * 101)
    if make is shifted:  # IoU 0.667 passes the thresholds 0.50..0.65 only
        assert scores.metrics["bbox"]["AP50"] == pytest.approx(1.0)
        assert scores.metrics["bbox"]["AP75"] < 1.0
    assert coco_metrics(gt, results) == scores.metrics


def test_one_conversion_for_bool_masks_and_probabilities():
    """A Predictor's bool masks and the model's probabilities give the same results; a pixel at exactly
    0.5 is outside the mask."""
    det = detection([(5, 25, 5, 25), (10, 30, 30, 45)], [2, 1], [0.9, 0.4])
    det["masks"][0, 0, 0, 0] = MASK_THRESHOLD  # exactly at the threshold: outside
    det["masks"][1, 0, 39, 49] = 0.5000001  # just above: inside
    masks = binarize_masks(det["masks"][:, 0])
    assert masks.dtype == torch.bool
    assert not masks[0, 0, 0]
    assert masks[1, 39, 49]
    results = detections_to_results([det], [5], [7, 3])
    direct = instances_to_results(5, det["boxes"], det["labels"], det["scores"], masks, [7, 3])
    assert results == direct
    assert mask_utils.decode(results[1]["segmentation"])[39, 49] == 1
    assert mask_utils.decode(results[0]["segmentation"])[0, 0] == 0
    assert int(mask_utils.area(results[0]["segmentation"])) == 20 * 20  # the 0.5 pixel stayed out
    with_fields = instances_to_results(
        5, det["boxes"], det["labels"], det["scores"], masks, [7, 3], file_name="a.png"
    )
    assert [list(r) for r in with_fields] == [
        ["file_name", "image_id", "category_id", "bbox", "score", "segmentation"]
    ] * 2
    assert [{k: v for k, v in r.items() if k != "file_name"} for r in with_fields] == results
    boxes_only = instances_to_results(5, det["boxes"], det["labels"], det["scores"], None, [7, 3])
    assert boxes_only == [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    assert instances_to_results(5, torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), None, [7, 3]) == []
    with pytest.raises(ValueError, match=r"image 5: detection labels \[0\] outside 1\.\.2"):
        instances_to_results(5, det["boxes"][:1], torch.tensor([0]), det["scores"][:1], None, [7, 3])


def test_original_category_ids_are_written_back(tmp_path):
    dataset = Rectangles(names=("cat", "dog"), category_ids=[7, 3])
    gt = coco_ground_truth(dataset)
    assert {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())} == {7: "cat", 3: "dog"}
    assert sorted({a["category_id"] for a in gt.loadAnns(gt.getAnnIds())}) == [3, 7]
    results = detections_to_results(perfect(), [0, 1, 2], dataset.category_ids)
    assert [r["category_id"] for r in results] == [7, 3, 7]
    assert coco_metrics(gt, results)["segm"]["AP"] == pytest.approx(1.0)
    ref = reference_gt(tmp_path, names=("cat", "dog"), category_ids=(7, 3))
    np.testing.assert_allclose(
        as_stats(coco_metrics(gt, results)["bbox"]),
        reference_stats(ref, reference_results(perfect(), category_ids=(7, 3)), "bbox"),
    )
    with pytest.raises(ValueError, match=r"outside 1\.\.2"):
        detections_to_results([detection([(0, 5, 0, 5)], [3], [0.5])], [0], [7, 3])


def test_detections_on_crowd_regions_are_not_false_positives():
    crowd = (20, 38, 2, 48)
    scene = [[(1, (2, 15, 2, 20)), (1, crowd, 1)]]
    dets = [detection([crowd, (2, 15, 2, 20)], [1, 1], [0.9, 0.8])]  # the crowd one scores higher
    with_crowd = coco_ground_truth(Rectangles(scene))
    results = detections_to_results(dets, [0], [1, 2])
    metrics = coco_metrics(with_crowd, results)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)  # pycocotools' 1 / (1 + eps) = 1 - 2e-16
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
    matrix = confusion_matrix(with_crowd, results, [1, 2])
    assert matrix.tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    # Without the crowd region, the same detection is a false positive ranked first.
    without = coco_ground_truth(Rectangles([[(1, (2, 15, 2, 20))]]))
    assert coco_metrics(without, results)["segm"]["AP"] == pytest.approx(0.5)
    assert confusion_matrix(without, results, [1, 2])[0, 1] == 1


def test_empty_results_give_zeros():
    gt = coco_ground_truth(Rectangles())
    scores = coco_scores(gt, [])
    for iou_type in ("bbox", "segm"):
        assert scores.metrics[iou_type]["AP"] == 0.0
        assert scores.metrics[iou_type]["AR100"] == 0.0
        assert scores.metrics[iou_type]["APl"] is None
        assert scores.pr_curves[iou_type]["0.75"] == [0.0] * 101
    assert confusion_matrix(gt, [], [1, 2]).tolist() == [[0, 0, 0], [2, 0, 0], [1, 0, 0]]
    # No ground truth either: nothing to measure, still no crash.
    nothing = coco_ground_truth(Rectangles([[], []]))
    assert all(v is None for v in coco_metrics(nothing, [])["segm"].values())
