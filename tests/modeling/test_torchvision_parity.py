"""Same weights, same images: the same detections, masks, keypoints and losses as torchvision's Mask R-CNN
and Keypoint R-CNN.

The golden files were written by ``tools/make_torchvision_golden.py`` with torchvision's own model (in
float64, so that rounding cannot flip a top-k or NMS decision) from the deterministic weights and images of
``tests/synthetic_weights.py``. Here our model, built by the builders of the same name, loads those
weights (the state dict layout is torchvision's) and must reproduce the outputs.
"""

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from maskrcnn.models import keypointrcnn_resnet50_fpn, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from maskrcnn.weights import load_weights
from tests.synthetic_weights import (
    FIXTURES,
    golden_images,
    golden_keypoint_targets,
    golden_targets,
    load_layout,
    state_dict_digest,
    synthetic_state_dict,
    tensor_digest,
)

BUILDERS = {
    "maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn,
    "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2,
    "keypointrcnn_resnet50_fpn": keypointrcnn_resnet50_fpn,
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def case(request):
    name = request.param
    golden = json.loads((FIXTURES / f"golden_{name}.json").read_text())
    settings = golden["settings"]
    bias = {"background_bias": settings["background_bias"]} if "background_bias" in settings else {}
    state = synthetic_state_dict(load_layout(name), seed=settings["weights_seed"], **bias)
    # The inputs are the very ones torchvision saw.
    assert state_dict_digest(state) == golden["weights_digest"]
    images = golden_images(torch.float64)
    assert [tensor_digest(img) for img in images] == golden["images_digest"]
    model = BUILDERS[name](**golden["settings"]["build_kwargs"])
    load_weights(model, state)
    return model.double(), images, golden


def test_detections_match(case):
    model, images, golden = case
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    for i, (det, expected) in enumerate(zip(outputs, golden["eval"], strict=True)):
        assert det["boxes"].shape[0] == expected["num_detections"], f"image {i}"
        assert det["labels"].tolist() == expected["labels"], f"image {i}"
        np.testing.assert_allclose(det["scores"].numpy(), expected["scores"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(det["boxes"].numpy(), expected["boxes"], rtol=1e-9, atol=1e-9)
        assert ("keypoints" in det) == ("keypoints" in expected), f"image {i}"
        if "keypoints" in expected:
            # torchvision places keypoints in float32 whatever the model's dtype (so do we): exact up to
            # float32 rounding of the same float64 computation.
            assert det["keypoints"].dtype == torch.float32
            np.testing.assert_allclose(det["keypoints"].numpy(), expected["keypoints"], rtol=1e-6, atol=1e-5)
            np.testing.assert_allclose(
                det["keypoints_scores"].numpy(), expected["keypoints_scores"], rtol=1e-6, atol=1e-6
            )
        assert ("masks" in det) == ("masks_rle" in expected), f"image {i}"
        if "masks" not in det:
            continue
        masks = det["masks"][:, 0]
        assert list(masks.shape[-2:]) == expected["image_size"]
        np.testing.assert_allclose(masks.sum(dim=(1, 2)).numpy(), expected["mask_prob_sums"], rtol=1e-9)
        binary = np.asfortranarray((masks > 0.5).numpy().astype(np.uint8).transpose(1, 2, 0))
        rles = coco_mask.encode(binary)
        assert [r["counts"].decode() for r in rles] == [r["counts"] for r in expected["masks_rle"]], (
            f"image {i}"
        )
        for k, crop in enumerate(expected["mask_probs"]):
            values = np.asarray(crop["values"])
            y0, x0 = crop["y0"], crop["x0"]
            ours = masks[k, y0 : y0 + values.shape[0], x0 : x0 + values.shape[1]].numpy()
            np.testing.assert_allclose(ours, values, atol=2e-9)
            assert masks[k].sum().item() == pytest.approx(ours.sum(), rel=1e-9)  # nothing outside the crop


def test_training_losses_match(case):
    model, images, golden = case
    model.train()
    torch.manual_seed(golden["train"]["rng_seed"])
    raw = golden_keypoint_targets() if model.roi_heads.num_keypoints else golden_targets()
    targets = [{k: (v.double() if k == "boxes" else v) for k, v in t.items()} for t in raw]
    losses = model(images, targets)
    expected = golden["train"]["losses"]
    assert set(losses) == set(expected)
    for name, value in expected.items():
        # torchvision computes the objectness loss in float32 (its anchor labels are float32).
        rtol = 1e-6 if golden["train"]["loss_dtypes"][name] == "float32" else 1e-9
        assert losses[name].item() == pytest.approx(value, rel=rtol), name


def test_fine_tuning_layout_gives_the_same_detections(tmp_path):
    """Built to fine-tune (``weights=`` a .pth file): frozen BatchNorm folded into the convolutions."""
    golden = json.loads((FIXTURES / "golden_maskrcnn_resnet50_fpn.json").read_text())
    path = tmp_path / "maskrcnn_resnet50_fpn_coco.pth"
    torch.save(synthetic_state_dict(load_layout("maskrcnn_resnet50_fpn")), path)
    model = maskrcnn_resnet50_fpn(weights=path, **golden["settings"]["build_kwargs"]).double().eval()
    assert type(model.backbone.body.bn1).__name__ == "FrozenBatchNorm2d"
    _assert_same_detections(model, golden)


def _assert_same_detections(model, golden):
    """The model's labels, scores, boxes (and keypoints) on the golden images are torchvision's."""
    with torch.no_grad():
        outputs = model(golden_images(torch.float64))
    for det, expected in zip(outputs, golden["eval"], strict=True):
        assert det["labels"].tolist() == expected["labels"]
        np.testing.assert_allclose(det["boxes"].numpy(), expected["boxes"], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(det["scores"].numpy(), expected["scores"], rtol=1e-9, atol=1e-12)
        if "keypoints" in expected:
            np.testing.assert_allclose(det["keypoints"].numpy(), expected["keypoints"], rtol=1e-6, atol=1e-5)


def test_a_torchvision_keypoint_file_loads_whole_and_gives_its_outputs(tmp_path):
    """torchvision's ``keypointrcnn_resnet50_fpn_coco`` layout, saved as torchvision saves it: recognised
    (no masks, 17 COCO keypoints), every tensor used, and the same detections and keypoints."""
    from maskrcnn.weights import load_checkpoint

    golden = json.loads((FIXTURES / "golden_keypointrcnn_resnet50_fpn.json").read_text())
    layout = load_layout("keypointrcnn_resnet50_fpn")
    state = synthetic_state_dict(layout, background_bias=golden["settings"]["background_bias"])
    path = tmp_path / "keypointrcnn_resnet50_fpn_coco-fc266e95.pth"
    torch.save(state, path)
    checkpoint = load_checkpoint(path)
    model = checkpoint.model
    assert checkpoint.extra["architecture"] == "keypointrcnn_resnet50_fpn"
    assert checkpoint.extra["keypoints"]["names"][:3] == ["nose", "left_eye", "right_eye"]
    assert not model.roi_heads.has_masks
    assert model.roi_heads.num_keypoints == 17
    own = model.state_dict()
    for key, value in state.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(own[key].float(), value), key
    model.transform.min_size, model.transform.max_size = (160,), 256  # the golden run's sizes
    _assert_same_detections(model.double().eval(), golden)
