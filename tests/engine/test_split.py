"""``data.val_split``: a seeded, stratified, saved split of the training images."""

import json

import pytest

from maskrcnn.engine.errors import TrainingError
from maskrcnn.engine.hooks import Hook
from maskrcnn.engine.split import held_out_indices
from maskrcnn.engine.train import train
from tests.engine.test_train import tiny

pytestmark = pytest.mark.usefixtures("one_thread")

# 100 images: class 1 in 80, class 2 (rare) in 10, class 3 (rarer) in 5, 5 without objects.
LABELS = [[1]] * 70 + [[1, 2]] * 10 + [[3, 1]] * 5 + [[]] * 5 + [[1, 1]] * 10


def test_the_split_is_deterministic_disjoint_and_stratified():
    held_out = held_out_indices(LABELS, 0.2, seed=0)
    assert held_out == held_out_indices(LABELS, 0.2, seed=0)
    assert held_out != held_out_indices(LABELS, 0.2, seed=1)
    assert len(held_out) == 20 == len(set(held_out))
    assert held_out == sorted(held_out)
    assert all(0 <= i < len(LABELS) for i in held_out)
    for seed in range(5):
        chosen = held_out_indices(LABELS, 0.2, seed=seed)
        # Every group gives up its share: 2 of the 10 images of class 2, 1 of the 5 of class 3, 1 of
        # the 5 negatives, 16 of the 80 images with class 1 alone.
        assert sum(2 in LABELS[i] for i in chosen) == 2
        assert sum(3 in LABELS[i] for i in chosen) == 1
        assert sum(not LABELS[i] for i in chosen) == 1


def test_a_class_in_one_image_stays_in_training_and_both_parts_are_never_empty():
    labels = [[1]] * 9 + [[2]]
    for seed in range(10):
        chosen = held_out_indices(labels, 0.3, seed=seed)
        assert len(chosen) == 3
        assert 9 not in chosen
    assert len(held_out_indices([[1], [1]], 0.01, seed=0)) == 1
    assert len(held_out_indices([[1], [1]], 0.99, seed=0)) == 1
    with pytest.raises(ValueError, match="at least 2 images"):
        held_out_indices([[1]], 0.2, seed=0)


class Parts(Hook):
    """Records which images the run trained and validated on."""

    def before_train(self, trainer):
        self.train = list(trainer.train_data.indices)
        self.val = list(trainer.val_data.indices)


def test_the_split_is_saved_and_a_resume_keeps_it(tmp_path):
    cfg = tiny(**{"data.val_split": 0.25, "train.max_steps": 1})
    run = tmp_path / "run"
    parts = Parts()
    result = train(cfg, run, progress=False, hooks=[parts])
    saved = json.loads((run / "split.json").read_text())
    assert saved["val"] == parts.val
    assert len(parts.val) == 2
    assert sorted(parts.train + parts.val) == list(range(8))
    assert saved["images"] == 8
    assert len(saved["val_images"]) == 2
    assert "segm" in result.metrics  # validated on the held-out images

    # A resume takes the saved split, whatever the seed would draw now.
    saved["val"], saved["val_images"] = [0, 7], [saved_ref(run, 0), saved_ref(run, 7)]
    (run / "split.json").write_text(json.dumps(saved))
    again = Parts()
    train(override_steps(run, 2), run, resume=True, progress=False, hooks=[again])
    assert again.val == [0, 7]
    assert 0 not in again.train

    # A split made for other data is refused, naming the file.
    saved["images"] = 9
    (run / "split.json").write_text(json.dumps(saved))
    with pytest.raises(TrainingError, match=r"split\.json: the split was made for other data"):
        train(override_steps(run, 3), run, resume=True, progress=False)


def saved_ref(run, index):
    from maskrcnn.config import load_config
    from maskrcnn.data import load_dataset

    data = load_config(run / "config.yaml").data
    return load_dataset(data.format, data.train, **data.train_options).image_reference(index)


def override_steps(run, steps):
    from maskrcnn.config import load_config, override

    return override(load_config(run / "config.yaml"), {"train.max_steps": steps})


def test_evaluate_takes_the_images_a_run_held_out(tmp_path, capsys):
    from maskrcnn.cli import main

    cfg = tiny(**{"data.val_split": 0.25, "train.max_steps": 1})
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    argv = ["evaluate", "--weights", str(run / "last.safetensors"), "--format", "shapes"]
    for key, value in cfg.data.train_options.items():  # the run's training data, read again
        argv += ["-o", f"{key}={value}"]
    assert main([*argv, "--out", str(tmp_path / "val"), "--run", str(run), "--split", "val"]) == 0
    assert "evaluated 2 images" in capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path / "train"), "--run", str(run), "--split", "train"]) == 0
    assert "evaluated 6 images" in capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path / "x"), "--split", "val"]) == 1
    assert "--split val|train and --run DIR go together" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "x"), "--run", str(tmp_path), "--split", "val"]) == 1
    assert "was not trained with data.val_split" in capsys.readouterr().err
