"""The Predictor on a tiny untrained model: input forms, thresholds, class filter, batches, devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import maskrcnn
from maskrcnn.engine.image_input import to_image_tensor
from maskrcnn.engine.predictor import Detections, Predictor
from maskrcnn.modeling import build_model
from maskrcnn.weights import save_checkpoint
from tests.engine.prediction_helpers import (
    CLASSES,
    LeftHalfModel,
    random_image,
    tiny_checkpoint,
    untrained_predictor,
)
from tests.modeling.helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")
checkpoint = pytest.fixture(scope="module")(tiny_checkpoint)
predictor = pytest.fixture(scope="module")(untrained_predictor)


def assert_same(a: Detections, b: Detections, atol: float = 1e-4) -> None:
    assert len(a) == len(b)
    assert torch.equal(a.labels, b.labels)
    assert a.class_names == b.class_names
    torch.testing.assert_close(a.boxes, b.boxes, atol=atol, rtol=0)
    torch.testing.assert_close(a.scores, b.scores, atol=atol, rtol=0)
    assert (a.masks != b.masks).float().mean() < 1e-3  # a probability right at 0.5 may flip


def test_public_names():
    assert maskrcnn.Predictor is Predictor
    assert maskrcnn.Detections is Detections


def test_predictor_inputs_agree(predictor: Predictor, tmp_path: Path):
    array = random_image(0)
    path = tmp_path / "image.png"
    Image.fromarray(array).save(path)
    reference = predictor(path)
    assert len(reference) == 10
    assert reference.masks.dtype == torch.bool
    assert reference.masks.shape == (10, 48, 64)
    assert reference.boxes.shape == (10, 4)
    assert reference.image_size == (48, 64)
    assert reference.class_names == [CLASSES[int(label) - 1] for label in reference.labels]
    assert torch.all(reference.scores[:-1] >= reference.scores[1:])  # highest first
    assert reference.mask_probs is None
    as_float = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    for image in (
        array,
        Image.fromarray(array),
        str(path),
        as_float,
        torch.from_numpy(array),  # uint8 [H, W, 3]
        torch.from_numpy(array).permute(2, 0, 1),  # uint8 [3, H, W], as torchvision reads
        array.astype(np.float32) / 255,  # float [H, W, 3]
    ):
        assert_same(predictor(image), reference)


def test_predictor_on_device(checkpoint: Path, device: str):
    found = Predictor.from_checkpoint(checkpoint, device=device, score_threshold=0.0)(random_image(9))
    assert len(found) == 10
    assert found.boxes.device.type == "cpu"  # results come back to the CPU
    assert found.masks.shape == (10, 48, 64)


def test_score_threshold_and_class_filter(checkpoint: Path, predictor: Predictor):
    image = random_image(1)
    everything = predictor(image)
    cut = float(everything.scores[4])
    above = Predictor.from_checkpoint(checkpoint, score_threshold=cut)(image)
    assert len(above) == int((everything.scores >= cut).sum()) >= 5
    assert torch.all(above.scores >= cut)
    torch.testing.assert_close(above.boxes, everything.boxes[: len(above)], atol=1e-4, rtol=0)

    wanted = everything.class_names[0]
    only = Predictor.from_checkpoint(checkpoint, score_threshold=0.0, classes=[wanted])(image)
    expected = [k for k, name in enumerate(everything.class_names) if name == wanted]
    assert only.class_names == [wanted] * len(expected)
    torch.testing.assert_close(only.scores, everything.scores[expected], atol=1e-5, rtol=0)

    with pytest.raises(ValueError, match=r"unknown class 'zebra'.*square, disc, triangle"):
        Predictor.from_checkpoint(checkpoint, classes=["zebra"])


def test_low_threshold_passed_to_the_call_and_the_model_never_changed(
    tmp_path_factory: pytest.TempPathFactory,
):
    # A model that keeps only candidates above 0.9: the untrained scores (near 1/4) all fall below it.
    config = tiny_config()
    config.roi_heads.score_thresh = 0.9
    torch.manual_seed(0)
    path = save_checkpoint(
        build_model(config),
        tmp_path_factory.mktemp("strict") / "strict.safetensors",
        config=config,
        class_names=CLASSES,
    )
    predictor = Predictor.from_checkpoint(path, score_threshold=0.0)
    heads = predictor.model.roi_heads
    assert heads.score_thresh == pytest.approx(0.9)
    seen: list[tuple[float, object]] = []

    def spy(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        seen.append((module.score_thresh, kwargs.get("score_thresh")))

    hook = heads.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        found = predictor(random_image(2))
    finally:
        hook.remove()
    assert seen == [(pytest.approx(0.9), 0.0)]  # the call's threshold, the module's own untouched
    assert heads.score_thresh == pytest.approx(0.9)
    assert len(found) == 10  # the low-scoring detections a threshold of 0 asks for
    assert torch.all(found.scores < 0.9)
    with torch.inference_mode():
        own = predictor.model([to_image_tensor(random_image(2))])[0]
    assert len(own["scores"]) == 0  # the model's own call still uses its own threshold


def test_threshold_at_or_above_the_models_own_leaves_the_call_plain(predictor: Predictor, checkpoint: Path):
    strict = Predictor.from_checkpoint(checkpoint, score_threshold=0.5)
    seen: list[dict] = []
    hook = strict.model.roi_heads.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs), with_kwargs=True
    )
    try:
        strict(random_image(2))
    finally:
        hook.remove()
    assert seen == [{"score_thresh": None}]


def test_other_modules_are_called_with_the_images_only():
    # LeftHalfModel's call takes no score_thresh: a low threshold must not be passed to it.
    found = Predictor(LeftHalfModel(), ["thing"], score_threshold=0.0)(random_image(3))
    assert found.class_names == ["thing"]
    assert found.masks[:, :, :32].all()
    assert not found.masks[:, :, 32:].any()


def test_batch_equals_one_by_one(checkpoint: Path):
    images = [random_image(seed) for seed in (3, 4, 5)]
    single = Predictor.from_checkpoint(checkpoint, score_threshold=0.0)
    one_by_one = [single(image) for image in images]
    for found, expected in zip(single.predict_batch(images), one_by_one, strict=True):
        assert_same(found, expected)
    batched = Predictor.from_checkpoint(checkpoint, score_threshold=0.0, batch_size=2)
    streamed = list(batched.predict_stream(iter(images)))
    assert len(streamed) == 3
    for found, expected in zip(streamed, one_by_one, strict=True):
        assert_same(found, expected)
    assert single.predict_batch([]) == []


def test_keep_probabilities(checkpoint: Path):
    found = Predictor.from_checkpoint(checkpoint, score_threshold=0.0, keep_probabilities=True)(
        random_image(6)
    )
    assert found.mask_probs is not None
    assert found.mask_probs.shape == found.masks.shape
    assert torch.equal(found.masks, found.mask_probs > 0.5)  # binary masks: above 0.5, as evaluation's


def test_mask_at_exactly_the_threshold_is_outside():
    class HalfModel(LeftHalfModel):
        def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
            out = super().forward(images)
            for o in out:
                o["masks"] = o["masks"].clamp(max=0.5)  # 0.5 on the left, 0 on the right
            return out

    found = Predictor(HalfModel(), ["thing"], score_threshold=0.0)(random_image(3))
    assert not found.masks.any()


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"score_threshold must be in 0\.\.1"):
        Predictor(LeftHalfModel(), ["thing"], score_threshold=1.5)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        Predictor(LeftHalfModel(), ["thing"], batch_size=0)
