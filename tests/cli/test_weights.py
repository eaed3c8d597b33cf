"""Pretrained weights from the command line: ``weights list / download``, ``convert-weights``, and
torchvision checkpoints and registry names in ``predict``, ``evaluate`` and ``train``."""

import hashlib
import io
import json

import pytest
import torch
import yaml
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.config import ModelConfig
from maskrcnn.data import ShapesDataset
from maskrcnn.data.image_io import read_image
from maskrcnn.modeling import build_model
from maskrcnn.models import maskrcnn_resnet50_fpn
from maskrcnn.weights import WeightsEntry, load_checkpoint, register, save_checkpoint
from maskrcnn.weights.coco import COCO_CLASS_NAMES
from tests.engine.evaluation.helpers import small_config
from tests.engine.test_train import TINY, tiny
from tests.http_server import serve
from tests.modeling.helpers import tiny_config
from tests.synthetic_weights import golden_images, load_layout, synthetic_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def home(weights_home):
    return weights_home


def _tiny_pth(num_classes: int = 4, favoured: tuple[int, ...] = ()) -> bytes:
    """A torchvision-style ``.pth`` (a bare state dict, BatchNorm) of a small model; the ``favoured``
    labels get confident scores (an untrained model of 91 classes scores each about 1/91)."""
    torch.manual_seed(0)
    state = build_model(tiny_config(num_classes, norm="bn")).state_dict()
    state["roi_heads.box_predictor.cls_score.bias"][list(favoured)] += 6.0
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture
def served_model():
    """A registry entry ``team-model`` whose file a server on 127.0.0.1 serves."""
    content = _tiny_pth()
    with serve({"/team-model.pth": content}) as (base, state):
        register(
            WeightsEntry(
                name="team-model",
                file_name="team-model.pth",
                url=f"{base}/team-model.pth",
                sha256=hashlib.sha256(content).hexdigest(),
                kind="detection",
                architecture="resnet18-FPN",
                num_classes=4,
                size_mb=len(content) / 2**20,
                summary="the team's shapes model",
                classes=("square", "disc", "triangle"),
            )
        )
        yield base, state


def test_weights_list_shows_every_name_and_what_is_cached(home, capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    names = (
        "coco",
        "coco-v2",
        "coco-keypoints",
        "imagenet-r18",
        "imagenet-r50",
        "imagenet-r101",
        "imagenet-x50",
    )
    for name in names:
        assert f"\n{name} " in out
    assert "maskrcnn_resnet50_fpn_v2   91 (COCO)   177 MB  no" in out
    assert "keypointrcnn_resnet50_fpn  2 (person)  226 MB  no" in out
    assert f"cache: {home / 'weights'}" in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "box AP 37.9, mask AP 34.6" in lines["coco"]


def test_weights_download_fetches_into_the_cache(served_model, home, capsys):
    assert main(["weights", "download", "team-model"]) == 0
    path = home / "weights" / "team-model.pth"
    assert capsys.readouterr().out == f"team-model: {path}\n"
    assert path.is_file()
    assert main(["weights", "list"]) == 0
    assert str(path) in capsys.readouterr().out
    assert main(["weights", "download", "team", "coco"]) == 1
    assert "error: unknown weights name 'team'; known: coco, coco-v2," in capsys.readouterr().err


def test_offline_the_message_says_what_to_fetch_and_where(monkeypatch, home, capsys):
    monkeypatch.setenv("MASKRCNN_OFFLINE", "1")
    photo = home.parent / "photo.png"
    Image.new("RGB", (64, 48)).save(photo)
    assert main(["predict", str(photo), "--weights", "coco", "--out", str(home / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    url = "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    assert f"fetch {url} on a machine that has one" in err
    assert f"put it at {home / 'weights' / 'maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth'}" in err


def test_predict_with_a_name_downloads_and_uses_the_entrys_classes(served_model, tmp_path, capsys):
    _, state = served_model
    Image.new("RGB", (64, 48), (120, 40, 200)).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "photo.png"), "--weights", "team-model", "--out", str(out)]
    assert main([*args, "--score-threshold", "0", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results
    assert {r["category"] for r in results} <= {"square", "disc", "triangle"}
    assert main([*args, "--device", "cpu"]) == 0  # from the cache now
    assert len(state.requests) == 1


@pytest.fixture
def two_threads():
    """ResNet-50 at 800 px: the two cores help (the tiny models of the other tests run on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("two_threads")
def test_predict_on_a_torchvision_checkpoint_matches_the_model_call(tmp_path, capsys):
    path = tmp_path / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"  # as downloaded, kept by the user
    torch.save({"model": synthetic_state_dict(load_layout("maskrcnn_resnet50_fpn"))}, path)
    picture = tmp_path / "scene.png"
    pixels = (golden_images()[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(picture)
    out = tmp_path / "out"
    argv = ["predict", str(picture), "--weights", str(path), "--out", str(out), "--score-threshold", "0.05"]
    argv += ["--precision", "fp32"]  # compared with the model's own float32 call
    assert main([*argv, "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())

    model = maskrcnn_resnet50_fpn(weights=path).eval()
    with torch.no_grad():
        expected = model([read_image(picture)])[0]
    assert len(results) == len(expected["scores"]) > 0
    order = expected["scores"].argsort(descending=True, stable=True)
    for result, k in zip(results, order.tolist(), strict=True):
        label = int(expected["labels"][k])
        assert result["category_id"] == label  # torchvision's COCO labels are COCO's category ids
        assert result["category"] == COCO_CLASS_NAMES[label - 1] != "N/A"
        assert result["score"] == pytest.approx(float(expected["scores"][k]), abs=1e-5)
        x0, y0, x1, y1 = expected["boxes"][k].tolist()
        assert result["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.01)

    assert main([*argv, "--classes", "person,dog", "--out", str(tmp_path / "some"), "--device", "cpu"]) == 0
    kept = json.loads((tmp_path / "some" / "results.json").read_text())
    assert [r["category"] for r in kept] == [
        r["category"] for r in results if r["category"] in ("person", "dog")
    ]


def test_convert_weights_writes_a_project_checkpoint(tmp_path, capsys):
    source = tmp_path / "mine.pth"
    source.write_bytes(_tiny_pth())
    out = tmp_path / "mine.safetensors"
    assert main(["convert-weights", str(source), str(out), "--class-names", "square, disc ,triangle"]) == 0
    assert capsys.readouterr().out == (
        f"wrote {out} (Mask R-CNN resnet18-FPN (v1 heads), classes square, disc, triangle) and mine.json "
        "beside it\n"
    )
    assert load_checkpoint(out).class_names == ["square", "disc", "triangle"]
    assert main(["convert-weights", str(source), str(tmp_path / "mine.pth2")]) == 1
    assert "error: OUT must end in .safetensors" in capsys.readouterr().err
    assert main(["convert-weights", str(source), str(out), "--class-names", "a,b"]) == 1
    assert (
        "3 classes (num_classes=4 with the background); 2 class names were given" in capsys.readouterr().err
    )


def test_evaluate_scores_only_the_classes_the_model_knows(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = small_config()
    weights = save_checkpoint(
        build_model(cfg), tmp_path / "m.safetensors", config=cfg, class_names=["person", "circle", "Square"]
    )
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        "--weights",
        str(weights),
        "--format",
        "shapes",
        "-o",
        "count=3",
        "-o",
        "image_size=64",
    ]
    assert main([*argv, "--out", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert (
        "warning: the checkpoint has no class for 1 of the dataset's classes (triangle): they are left out "
        "of the AP" in captured.err
    )
    assert json.loads((out / "evaluation.json").read_text())["classes_not_scored"] == ["triangle"]
    rows = {row["class"]: row for row in json.loads((out / "per_class.json").read_text())}
    assert rows["triangle"]["mask_AP"] is None
    assert rows["square"]["instances"] > 0
    assert rows["square"]["mask_AP"] is not None
    results = json.loads((out / "results.json").read_text())
    dataset_ids = {row["category_id"] for row in rows.values()}
    assert {r["category_id"] for r in results} <= dataset_ids - {rows["triangle"]["category_id"]}


def test_train_takes_the_architecture_of_its_initial_weights(tmp_path, capsys):
    other = tiny(**{"model.roi_heads.box_head": "conv", "model.roi_heads.box_head_convs": [32, 32]}).model
    other.num_classes = 4
    torch.manual_seed(0)
    initial = build_model(other)
    weights = save_checkpoint(
        initial, tmp_path / "init.safetensors", config=other, class_names=["square", "circle", "triangle"]
    )
    out = tmp_path / "run"
    args = ["train", "--preset", "shapes", "--out", str(out), "--weights", str(weights)]
    for key, value in {**TINY, "train.max_steps": 1}.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    assert main(args) == 0
    printed = capsys.readouterr().err  # the run's messages
    assert (
        f"model architecture from {weights}: roi_heads.box_head mlp -> conv; roi_heads.box_head_convs "
        "(256, 256, 256, 256) -> (32, 32)" in printed
    )
    assert f"tensors from {weights} (detection)" in printed
    saved = yaml.safe_load((out / "config.yaml").read_text())["model"]["roi_heads"]
    assert (saved["box_head"], saved["box_head_convs"]) == ("conv", [32, 32])
    trained = load_checkpoint(out / "last.safetensors")
    assert isinstance(trained.config, ModelConfig)
    assert trained.config.roi_heads.box_head == "conv"


def test_evaluate_a_coco_model_on_coco_category_ids(tmp_path, capsys):
    data = tmp_path / "instances.json"
    argv = ["convert", "--from", "shapes", "-o", "count=3", "-o", "image_size=64", "--to", "coco", str(data)]
    assert main(argv) == 0
    coco = json.loads(data.read_text())
    as_coco = {"square": ("person", 1), "circle": ("dog", 18), "triangle": ("zebra", 24)}
    ids = {c["id"]: as_coco[c["name"]][1] for c in coco["categories"]}
    coco["categories"] = [{"id": i, "name": n} for n, i in as_coco.values()]
    for ann in coco["annotations"]:
        ann["category_id"] = ids[ann["category_id"]]
    data.write_text(json.dumps(coco))
    shapes = ShapesDataset(count=3, image_size=64)  # what convert read: its pictures beside the JSON
    for k, image in enumerate(coco["images"]):
        pixels = (shapes.load_image(k) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(tmp_path / image["file_name"])
    weights = tmp_path / "coco-like.pth"  # 91 outputs: COCO's labels, which are its category ids
    weights.write_bytes(_tiny_pth(num_classes=91, favoured=(1, 18, 24, 3)))  # 3: car, not in the data
    out = tmp_path / "eval"
    argv = ["evaluate", "--weights", str(weights), "--format", "coco", "--data", str(data), "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    assert "the checkpoint has no class for" not in capsys.readouterr().err  # each data class is the model's
    rows = json.loads((out / "per_class.json").read_text())
    assert [(r["class"], r["category_id"]) for r in rows] == [("person", 1), ("dog", 18), ("zebra", 24)]
    results = json.loads((out / "results.json").read_text())
    assert results
    assert {r["category_id"] for r in results} == {1, 18, 24}  # car (3) is no class of the data: dropped


def test_train_checks_its_weights_before_reading_the_data(tmp_path, capsys):
    assert main(["train", "--preset", "shapes", "--weights", "cocoa", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: weights 'cocoa': no such file, and not a known name (coco, coco-v2,")
    assert "training data" not in err
    assert not (tmp_path / "run").exists()
