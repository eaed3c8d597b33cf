"""End to end: tiny training runs (a few seconds each)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.config import Config, load_config, override, preset, save_config
from maskrcnn.engine.hooks import Hook, TensorBoard
from maskrcnn.engine.train import TrainingError, train
from maskrcnn.modeling.roi_heads import RoIHeads
from maskrcnn.weights import load_checkpoint

TINY = {
    "model.backbone.width": 16,
    "model.backbone.fpn_channels": 32,
    "model.roi_heads.representation_size": 64,
    "model.roi_heads.mask_head_channels": [32, 32],
    "model.roi_heads.mask_predictor_channels": 32,
    "model.roi_heads.batch_size_per_image": 16,
    "model.rpn.batch_size_per_image": 32,
    "data.train_options": {"count": 8, "seed": 0, "image_size": 96, "buffer": 16, "max_size": 24},
    "data.val_options": {},
    "data.batch_size": 2,
    "train.epochs": 2,
    "train.warmup_steps": 2,
    "train.log_every": 1,
}


def tiny(**more: object) -> Config:
    return override(preset("shapes"), {**TINY, **more})


pytestmark = pytest.mark.usefixtures("one_thread")


def _state(run_dir):
    return torch.load(run_dir / "last.state.pt", weights_only=True)


def test_resume_after_ctrl_c_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = tiny(**{"train.max_steps": 5})
    straight = train(cfg, tmp_path / "a", progress=False)
    assert straight.steps == 5

    # The same run, interrupted by Ctrl-C during its third step, then resumed.
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", interrupt)
    stopped = train(tiny(**{"train.max_steps": 5}), tmp_path / "b", progress=False)
    assert stopped.stopped == "interrupted"
    assert stopped.steps == 2
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    resumed = train(load_config(tmp_path / "b" / "config.yaml"), tmp_path / "b", resume=True, progress=False)
    assert resumed.steps == 5
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for group_a, group_b in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(group_a["exp_avg"], group_b["exp_avg"])
    losses_a = [r["loss"] for r in a["history"] if r["kind"] == "train"]
    losses_b = [r["loss"] for r in b["history"] if r["kind"] == "train"]
    assert losses_a == losses_b


def test_fixed_seed_gives_the_same_losses(tmp_path):
    cfg = tiny(**{"train.max_steps": 3, "data.augment.color_jitter": 0.2, "data.augment.copy_paste": 0.5})
    runs = [train(cfg, tmp_path / name, progress=False) for name in ("a", "b")]
    logs = [(r.run_dir / "log.jsonl").read_text().splitlines() for r in runs]
    strip = [
        [
            {k: v for k, v in json.loads(line).items() if not k.endswith("_per_s") and k != "time"}
            for line in log
        ]
        for log in logs
    ]
    assert strip[0] == strip[1]
    assert len(strip[0]) == 3


def test_outputs_validation_and_best(tmp_path):
    cfg = tiny(
        **{"data.val_options": {"count": 3, "seed": 5, "image_size": 96, "buffer": 16, "max_size": 24}}
    )
    result = train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert result.stopped == "finished"
    assert result.steps == 8  # 2 epochs of 4 batches
    names = {p.name for p in run.iterdir()}
    assert {
        "config.yaml",
        "log.jsonl",
        "last.safetensors",
        "last.json",
        "last.state.pt",
        "best.safetensors",
    } <= names
    assert {
        "loss_curve.png",
        "metrics.json",
        "per_class.txt",
        "pr_curve.png",
        "confusion_matrix.png",
    } <= names
    assert set(json.loads((run / "metrics.json").read_text())) == {"bbox", "segm"}
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    validations = [r for r in records if r["kind"] == "validation"]
    assert [r["epoch"] for r in validations] == [1, 2]
    assert all("val_loss" in r and "segm" in r["metrics"] for r in validations)
    ckpt = load_checkpoint(run / "last.safetensors")
    assert ckpt.class_names == ["square", "circle", "triangle"]
    assert ckpt.extra["step"] == 8
    assert load_config(run / "config.yaml").model == ckpt.config


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = RoIHeads.losses
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        losses = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            losses["loss_mask"] = losses["loss_mask"] * float("nan")
        return losses

    monkeypatch.setattr(RoIHeads, "losses", poisoned)
    with pytest.raises(
        TrainingError, match=r"loss is not finite at step 3 \(epoch 1\): .*loss_mask=nan"
    ) as err:
        train(tiny(**{"train.checkpoint_every": 1}), tmp_path / "run", progress=False)
    assert "last.safetensors" in str(err.value)
    assert load_checkpoint(tmp_path / "run" / "last.safetensors").extra["step"] == 2
    assert _state(tmp_path / "run")["step"] == 2


def test_a_kill_while_saving_leaves_the_previous_state(tmp_path, monkeypatch):
    train(tiny(**{"train.max_steps": 2}), tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "last.state.pt").read_bytes()
    real_save = torch.save

    def killed(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(tmp_path / "run" / "config.yaml"), tmp_path / "run", resume=True, progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert (tmp_path / "run" / "last.state.pt").read_bytes() == before
    assert _state(tmp_path / "run")["step"] == 2


def wait_for_steps(run_dir, steps, process, timeout=120):
    """Until the run in ``run_dir`` logged ``steps`` records (``process`` must stay alive meanwhile)."""
    log = run_dir / "log.jsonl"
    deadline = time.monotonic() + timeout
    while not (log.exists() and log.read_text().count("\n") >= steps):
        assert time.monotonic() < deadline, "training did not start"
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.1)


def test_learning_rate_follows_the_linear_scaling_rule(tmp_path):
    constant = {"train.max_steps": 1, "train.schedule": "constant", "train.warmup_steps": 0, "train.lr": 0.01}
    messages = []
    cases = [
        ({}, 0.01),  # lr is for one process's batch by default
        ({"train.lr_reference_batch": 8}, 0.01 * 2 / 8),  # global batch 2 (batch_size 2, one process)
        ({"train.lr_reference_batch": 8, "train.accumulate": 2}, 0.01 * 4 / 8),
        ({"train.lr_reference_batch": 8, "train.scale_lr": False}, 0.01),
    ]
    for i, (settings, expected) in enumerate(cases):
        train(tiny(**constant, **settings), tmp_path / str(i), progress=False, announce=messages.append)
        record = json.loads((tmp_path / str(i) / "log.jsonl").read_text().splitlines()[0])
        assert record["lr"] == pytest.approx(expected)
    assert any(m.startswith("learning rate 0.0025 = train.lr 0.01 x global batch 2 / 8") for m in messages)


def test_sigterm_saves_and_stops_like_ctrl_c_even_when_repeated(tmp_path):
    """What a scheduler (SLURM) or torchrun sends before killing a job; torchrun forwards a terminal's
    Ctrl-C a second time, which must not cut the save short."""
    save_config(tiny(**{"train.max_steps": 100_000, "train.epochs": 100_000}), tmp_path / "cfg.yaml")
    run = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maskrcnn",
            "train",
            "--config",
            str(tmp_path / "cfg.yaml"),
            "--out",
            str(run),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_steps(run, 3, process)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr[-3000:]
    assert "interrupted: saved" in stderr
    state = _state(run)
    assert state["step"] >= 3
    assert (
        main(["train", "--out", str(run), "--resume", "--set", f"train.max_steps={state['step'] + 1}"]) == 0
    )
    assert _state(run)["step"] == state["step"] + 1


def test_demo_again_replaces_a_finished_demo_and_resumes_an_interrupted_one(tmp_path, capsys):
    from maskrcnn.engine.demo import run_demo

    small = {**TINY, "data.val_options": {}, "train.max_steps": 1}
    out = tmp_path / "demo"
    run_demo(out, small)
    first = (out / "last.safetensors").read_bytes()
    (out / "notes.md").write_text("mine")
    run_demo(out, small)
    assert "replacing the previous demo" in capsys.readouterr().err
    assert (out / "last.safetensors").read_bytes() == first  # the same seed: the same model again
    assert (out / "notes.md").read_text() == "mine"  # only the demo's own files are replaced
    (out / "predictions.png").unlink()  # as if the first run had been interrupted before the end
    assert "demo finished" in run_demo(out, {**small, "train.max_steps": 5})
    assert "resumed from" in capsys.readouterr().err
    other = tmp_path / "other"
    train(tiny(**{"train.max_steps": 1, "data.format": "shapes"}), other, progress=False)
    (other / "config.yaml").write_text(
        (other / "config.yaml").read_text().replace("format: shapes", "format: coco")
    )
    with pytest.raises(TrainingError, match="not a demo"):
        run_demo(other, small)


def test_tensorboard_hook_receives_the_log(tmp_path):
    class Recorder:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

        def flush(self):
            pass

    recorder = Recorder()
    cfg = tiny(
        **{"train.max_steps": 2, "data.val_options": {"count": 2, "seed": 1, "image_size": 96, "buffer": 16}}
    )
    train(cfg, tmp_path / "run", progress=False, hooks=[TensorBoard(recorder)])
    tags = {tag for tag, _, _ in recorder.scalars}
    assert {
        "train/loss",
        "train/loss_mask",
        "train/lr",
        "validation/val_loss",
        "validation/metrics/segm/AP",
    } <= tags
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert ("train/loss", first["loss"], 1) in recorder.scalars


# The keys of last.state.pt as runs before the engine redesign wrote them: such runs must still resume.
STATE_KEYS = {
    "version", "model", "optimizer", "scheduler", "scaler", "ema", "step", "epoch", "batch_in_epoch",
    "best", "bad_validations", "history", "rng", "config",
}  # fmt: skip


class Counter(Hook):
    """Counts the steps it sees; its count is saved with the run and comes back on resume."""

    def __init__(self):
        self.seen = []
        self.count = 0

    def after_step(self, trainer):
        self.seen.append(trainer.step)
        self.count += 1

    def state_dict(self):
        return {"counter_count": self.count}

    def load_state_dict(self, state):
        self.count = state.get("counter_count", 0)


def test_a_custom_hook_sees_every_step_and_its_state_survives_a_resume(tmp_path):
    first = Counter()
    cfg = tiny(**{"train.max_steps": 3})
    train(cfg, tmp_path / "run", progress=False, hooks=[first])
    assert first.seen == [1, 2, 3]
    state = _state(tmp_path / "run")
    assert state["counter_count"] == 3
    assert set(state) == STATE_KEYS | {"counter_count"}
    again = Counter()
    resumed = override(load_config(tmp_path / "run" / "config.yaml"), {"train.max_steps": 5})
    train(resumed, tmp_path / "run", resume=True, progress=False, hooks=[again])
    assert again.seen == [4, 5]
    assert again.count == 5
    assert _state(tmp_path / "run")["counter_count"] == 5


def test_a_hook_may_not_take_the_trainers_state_keys(tmp_path):
    class Greedy(Hook):
        def state_dict(self):
            return {"step": 0}

    with pytest.raises(TrainingError, match=r"Greedy's state keys \['step'\] are taken"):
        train(tiny(**{"train.max_steps": 1}), tmp_path / "run", progress=False, hooks=[Greedy()])


def test_train_leaves_the_callers_config_alone_and_returns_the_resolved_one(tmp_path):
    cfg = tiny(**{"train.max_steps": 1, "train.layers": "heads", "model.num_classes": 91})
    before = Config(**{f: getattr(cfg, f) for f in ("model", "data", "train", "eval")})
    snapshot = json.dumps(__import__("dataclasses").asdict(cfg), sort_keys=True)
    result = train(cfg, tmp_path / "run", progress=False)
    assert json.dumps(__import__("dataclasses").asdict(cfg), sort_keys=True) == snapshot
    assert cfg == before
    assert result.config.model.num_classes == 4  # three shapes + background
    assert result.config.model.backbone.trainable_layers == 0
    assert load_config(tmp_path / "run" / "config.yaml") == result.config


def test_run_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        cfg = tiny(**{"train.max_steps": 2, "data.val_options": {"count": 2, "seed": 1, "image_size": 96}})
        train(cfg, tmp_path / "run", progress=False)
    finally:
        os.umask(old)
    run = tmp_path / "run"
    for name in ("config.yaml", "last.safetensors", "last.json", "last.state.pt", "best.safetensors",
                 "loss_curve.png", "metrics.json", "results.json", "pr_curve.png"):  # fmt: skip
        assert (run / name).stat().st_mode & 0o777 == 0o644, name
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left
