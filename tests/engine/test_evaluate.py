"""COCO evaluation: golden comparisons with pycocotools run directly, category ids, crowds, empty
results, the mask confusion matrix, ``evaluate`` end to end, the report files and the command."""

import argparse
import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import Subset

from maskrcnn.data import DataError, InstanceDataset, ShapesDataset
from maskrcnn.engine.evaluate import (
    METRIC_NAMES,
    add_evaluate_arguments,
    coco_ground_truth,
    coco_metrics,
    coco_scores,
    confusion_matrix,
    detections_to_results,
    evaluate,
    run_evaluate,
    write_report,
)
from maskrcnn.modeling import build_model
from maskrcnn.weights import save_checkpoint
from tests.modeling.helpers import tiny_config

H, W = 40, 50  # not square: a transposed RLE would show

# Rectangles are (y0, y1, x0, x1), end exclusive. Image 2 has no object.
SCENE = [
    [(1, (5, 25, 5, 25)), (2, (10, 30, 30, 45))],
    [(1, (8, 36, 10, 40))],
    [],
]


def small_config():
    """The tiny test model at 64 px: a quarter of the work of the 128 px one."""
    cfg = tiny_config()
    return dataclasses.replace(cfg, transform=dataclasses.replace(cfg.transform, min_size=(64,), max_size=64))


@pytest.fixture
def one_thread():
    """The tiny model on one thread: on a busy machine, two threads contending for a core run it many
    times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rect_mask(rect):
    y0, y1, x0, x1 = rect
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


class Rectangles(InstanceDataset):
    """In-memory images of rectangles; image ``i`` is filled with ``i / 10`` so a model can tell them
    apart. ``scene[i]`` lists ``(label, rect)`` or ``(label, rect, iscrowd)``."""

    def __init__(self, scene=SCENE, names=("a", "b"), category_ids=None, bad=(), transforms=None):
        super().__init__(transforms=transforms)
        for name in names:
            self.add_class(name)
        if category_ids is not None:
            self.category_ids = list(category_ids)
        for objects in scene:
            self.add_image(None, height=H, width=W, objects=objects)
        self.bad = set(bad)

    def load_image(self, index):
        if index in self.bad:
            raise DataError(f"image {index}: broken on purpose")
        return torch.full((3, H, W), index / 10)

    def load_masks(self, index):
        objects = self.image_info[index]["objects"]
        masks = torch.from_numpy(
            np.stack([rect_mask(o[1]) for o in objects]) if objects else np.zeros((0, H, W))
        )
        labels = torch.tensor([o[0] for o in objects], dtype=torch.int64)
        crowd = torch.tensor([o[2] if len(o) > 2 else 0 for o in objects], dtype=torch.int64)
        return masks, labels, crowd


def detection(rects, labels, scores):
    """A model output for rectangles: boxes xyxy, masks ``[D, 1, H, W]`` probabilities."""
    masks = torch.zeros(len(rects), 1, H, W)
    for k, rect in enumerate(rects):
        masks[k, 0] = torch.from_numpy(rect_mask(rect)) * 0.9
    boxes = torch.tensor([[x0, y0, x1, y1] for y0, y1, x0, x1 in rects], dtype=torch.float32).reshape(-1, 4)
    return {
        "boxes": boxes,
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "masks": masks,
    }


def perfect(scene=SCENE):
    """One exact detection per object, scores decreasing."""
    out, score = [], 0.9
    for objects in scene:
        rects = [o[1] for o in objects]
        scores = [score - 0.05 * k for k in range(len(rects))]
        out.append(detection(rects, [o[0] for o in objects], scores))
        score -= 0.1
    return out


def with_false_positive():
    dets = perfect()
    dets[2] = detection([(0, 20, 0, 20)], [1], [0.95])  # on the empty image, the highest score
    return dets


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


def test_confusion_matrix_counts_matches_confusions_misses_and_false_positives():
    dets = perfect()
    dets[0] = detection([SCENE[0][0][1], SCENE[0][1][1]], [2, 2], [0.9, 0.8])  # a taken for b
    dets[1] = detection([SCENE[1][0][1]], [1], [0.3])  # below the score threshold: a miss
    dets[2] = detection([(0, 10, 0, 10)], [2], [0.6])  # nothing there: a false positive
    gt = coco_ground_truth(Rectangles())
    matrix = confusion_matrix(gt, detections_to_results(dets, [0, 1, 2], [1, 2]), [1, 2])
    # rows: ground truth background, a, b; columns: predicted background, a, b
    assert matrix.tolist() == [[0, 0, 1], [1, 0, 1], [0, 0, 1]]
    assert matrix.dtype == np.int64


class Oracle(nn.Module):
    """Returns the exact rectangles of each image (told apart by their fill value)."""

    def __init__(self, scene=SCENE):
        super().__init__()
        self.dets = perfect(scene)
        self.calls = []

    def forward(self, images):
        self.calls.append((self.training, torch.is_inference_mode_enabled(), len(images)))
        return [self.dets[round(float(image[0, 0, 0]) * 10)] for image in images]


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


def test_write_report(tmp_path):
    dets = with_false_positive()
    dets[1] = detection([SCENE[1][0][1]], [2], [0.7])  # a confusion, for the matrix
    oracle = Oracle()
    oracle.dets = dets
    evaluation = evaluate(oracle, Rectangles(), progress=False)
    out = tmp_path / "report"
    paths = write_report(evaluation, out, ["alpha", "beta"])
    for name in ("metrics.json", "per_class.json", "per_class.txt", "results.json"):
        assert (out / name).is_file()
    for name in ("pr_curve.png", "confusion_matrix.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            assert image.width > 100
    assert sorted(p.name for p in out.iterdir()) == sorted(paths)  # no temporary file left behind
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["bbox", "segm"]
    for values in metrics.values():
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(values)
        assert list(values) == list(METRIC_NAMES)
    assert metrics == evaluation.metrics
    assert json.loads((out / "results.json").read_text()) == evaluation.results
    rows = json.loads((out / "per_class.json").read_text())
    assert [r["category_id"] for r in rows] == [1, 2]
    table = (out / "per_class.txt").read_text()
    assert "alpha" in table
    assert "beta" in table
    assert "mask AP50" in table
    confusion = json.loads((out / "confusion_matrix.json").read_text())
    assert confusion["labels"] == ["background", "alpha", "beta"]
    assert confusion["matrix"] == evaluation.confusion.tolist()


# ----------------------------------------------------------------------------------------------------
# The command


def command(*argv):
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def checkpoint(tmp_path):
    def save(class_names=("square", "circle", "triangle")):
        torch.manual_seed(0)
        cfg = small_config()
        return save_checkpoint(
            build_model(cfg), tmp_path / "model.safetensors", config=cfg, class_names=list(class_names)
        )

    return save


def test_run_evaluate_writes_the_report(tmp_path, checkpoint, capsys, one_thread):
    weights = checkpoint()
    out = tmp_path / "eval"
    args = command(
        "--weights",
        str(weights),
        "--format",
        "shapes",
        "-o",
        "count=3",
        "-o",
        "image_size=64",
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    assert args.func is run_evaluate
    assert run_evaluate(args) == 0
    printed = capsys.readouterr().out
    assert "evaluated 3 images" in printed
    assert "mask" in printed
    assert "AP50" in printed
    assert str(out / "metrics.json") in printed
    assert list(json.loads((out / "metrics.json").read_text())) == ["bbox", "segm"]
    assert (out / "confusion_matrix.png").is_file()


def test_run_evaluate_refuses_other_classes_and_missing_files(tmp_path, checkpoint, capsys, one_thread):
    weights = checkpoint(class_names=("cat", "dog", "bird"))
    out = tmp_path / "eval"
    assert run_evaluate(command("--weights", str(weights), "--format", "shapes", "--out", str(out))) == 1
    error = capsys.readouterr().err
    assert "['square', 'circle', 'triangle']" in error
    assert "['cat', 'dog', 'bird']" in error
    assert not out.exists()

    missing = tmp_path / "nothing.safetensors"
    assert run_evaluate(command("--weights", str(missing), "--format", "shapes", "--out", str(out))) == 1
    assert "nothing.safetensors" in capsys.readouterr().err
    args = command(
        "--weights", str(weights), "--format", "coco", "--data", str(tmp_path / "no.json"), "--out", "x"
    )
    assert run_evaluate(args) == 1
    assert "no.json" in capsys.readouterr().err
