"""``maskrcnn export`` end to end: a torch.export program that computes the model's detections, the
class names stored in it, a baked-in score threshold, and the errors a user can make."""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.engine.inference import run_model
from maskrcnn.export import load_exported
from maskrcnn.weights import load_checkpoint
from tests.engine.prediction_helpers import CLASSES, tiny_checkpoint
from tests.modeling.helpers import shapes_sample

pytestmark = pytest.mark.usefixtures("one_thread")
checkpoint = pytest.fixture(scope="module")(tiny_checkpoint)


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The tiny checkpoint exported with the defaults: the file, what the command printed on stdout and
    on stderr."""
    out = tmp_path_factory.mktemp("export") / "deploy" / "tiny.pt2"  # the folder is created
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert main(["export", "--weights", str(checkpoint), "--out", str(out)]) == 0
    return out, stdout.getvalue(), stderr.getvalue()


def test_the_program_computes_the_models_detections(checkpoint: Path, exported: tuple[Path, str, str]):
    out, printed, said = exported
    assert f"wrote {out}" in printed
    assert "torch-export" in printed
    assert "square, disc, triangle" in printed
    assert "Traceback" not in said
    assert "Warning" not in said
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.pt2"]  # no partial file left
    program, class_names = load_exported(out)
    assert class_names == CLASSES
    model = load_checkpoint(checkpoint).model.eval()
    for image in (shapes_sample(0)[0], torch.rand(3, 100, 150)):  # the traced size and another
        with torch.inference_mode():
            expected = run_model(model, [image])[0]
        with torch.no_grad():
            boxes, labels, scores, masks = program.module()(image)
        assert len(boxes) == 10  # the untrained model's cap
        # The same operators in the same order: the same bits.
        assert torch.equal(boxes, expected["boxes"])
        assert torch.equal(labels, expected["labels"])
        assert torch.equal(scores, expected["scores"])
        assert torch.equal(masks, expected["roi_masks"])


def test_a_score_threshold_is_fixed_in_the_file_and_no_detection_is_no_error(
    checkpoint: Path, tmp_path: Path
):
    out = tmp_path / "strict.pt2"
    # The untrained model scores everything near 1/4: nothing passes 0.9.
    assert main(["export", "--weights", str(checkpoint), "--out", str(out), "--score-threshold", "0.9"]) == 0
    program, _ = load_exported(out)
    with torch.no_grad():
        boxes, labels, scores, masks = program.module()(shapes_sample(1)[0])
    assert boxes.shape == (0, 4)
    assert labels.shape == scores.shape == (0,)
    assert masks.shape == (0, 1, 28, 28)


def _with_pickled_weight(source: Path, target: Path) -> Path:
    """A copy of a .pt2 whose weights config says one weight is a pickle (what torch.export.load would
    unpickle with weights_only=False)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                next(iter(config["config"].values()))["use_pickle"] = True
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    return target


def test_unsafe_or_broken_programs_are_refused(exported: tuple[Path, str, str], tmp_path: Path):
    out = exported[0]
    with pytest.raises(ValueError, match=r"stores 'model\.backbone.*' as a pickle; refusing to load it"):
        load_exported(_with_pickled_weight(out, tmp_path / "pickled.pt2"))
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"\x00not a zip" * 10)
    with pytest.raises(ValueError, match=r"junk\.pt2: not a \.pt2 archive"):
        load_exported(junk)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--weights", "missing.safetensors"], "weights missing.safetensors: no such file"),
        (["--out", "{tmp}"], "is a folder; name the file to write"),
    ],
)
def test_errors_exit_1_with_one_line(checkpoint: Path, tmp_path: Path, capsys, arguments, message):
    argv = ["export", "--weights", str(checkpoint), *(a.replace("{tmp}", str(tmp_path)) for a in arguments)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["1.5", "-0.1", "x"])
def test_a_bad_threshold_is_a_usage_error(value: str, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--weights", "w.safetensors", "--score-threshold", value])
    assert exit_info.value.code == 2
    assert "--score-threshold" in capsys.readouterr().err
