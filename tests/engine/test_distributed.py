"""Several processes on the CPU (gloo), launched as users launch them: torchrun, or the environment alone."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.config import save_config
from maskrcnn.engine.train import train
from maskrcnn.weights import load_checkpoint
from tests.engine.prediction_helpers import random_image, save_image, tiny_checkpoint, write_text, write_video
from tests.engine.test_train import tiny, wait_for_steps

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="this torch has no gloo",
)

# One image per process and per batch, so that two processes take the two batches that one process
# accumulates into the same step; float32 so that the comparison is tight; a constant learning rate
# meant for the global batch of 2 in both cases (no scaling differences to account for); GroupNorm,
# because BatchNorm's running statistics are each process's own (those of rank 0 are kept) and would
# make the models differ in evaluation although their parameters agree.
SETTINGS = {
    "model.backbone.norm": "gn",
    "data.batch_size": 1,
    "train.amp": "off",
    "train.schedule": "constant",
    "train.warmup_steps": 0,
    "train.lr": 0.05,
    "train.lr_reference_batch": 2,
    "train.optimizer": "sgd",
    "train.threads": 1,
    "data.val_options": {"count": 6, "seed": 5, "image_size": 96, "buffer": 16, "max_size": 24},
    "eval.batch_size": 2,
}


def _torchrun(*args: str, module: str = "maskrcnn", timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node 2 -m MODULE ARGS`` (2 processes on this machine)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run(
        [*command, "-m", module, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _parameters(path):
    model = load_checkpoint(path).model
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process accumulating two batches per step (1 and 2 steps), one process without accumulating
    (1 step), and two processes (1 step, then resumed to 2)."""
    root = tmp_path_factory.mktemp("ddp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for name, steps, accumulate in (("one_1", 1, 2), ("one_2", 2, 2), ("single_batch", 1, 1)):
        cfg = tiny(**SETTINGS, **{"train.max_steps": steps, "train.accumulate": accumulate})
        if name == "single_batch":
            cfg.train.lr_reference_batch = 1  # the same learning rate, on half the data
        train(cfg, root / name, progress=False)
    save_config(tiny(**SETTINGS, **{"train.max_steps": 1}), root / "two.yaml")
    first = _torchrun("train", "--config", str(root / "two.yaml"), "--out", str(root / "two"))
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.copytree(root / "two", root / "two_at_1")
    second = _torchrun("train", "--resume", "--set", "train.max_steps=2", "--out", str(root / "two"))
    assert second.returncode == 0, second.stderr[-3000:]
    yield root, first, second
    torch.set_num_threads(threads)


def test_two_processes_make_the_step_of_one_process_with_the_same_global_batch(runs):
    root, first, _ = runs
    two = _parameters(root / "two_at_1" / "last.safetensors")
    one = _parameters(root / "one_1" / "last.safetensors")
    half = _parameters(root / "single_batch" / "last.safetensors")
    assert two.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6, msg=name)
    # The second process's batch counted: without it the step is clearly another one.
    largest = max(float((half[n] - one[n]).abs().max()) for n in one)
    assert largest > 1e-3
    # Rank 0 alone printed and wrote: one training record and one validation record.
    assert "training 1 steps" in first.stderr
    assert first.stderr.count("training data:") == 1
    kinds = [r["kind"] for r in _log(root / "two_at_1")]
    assert kinds == ["train", "validation"]


def test_resumed_two_process_run_equals_the_uninterrupted_one_process_run(runs):
    root, _, second = runs
    assert "resumed from" in second.stderr
    two = _parameters(root / "two" / "last.safetensors")
    one = _parameters(root / "one_2" / "last.safetensors")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    # The losses logged (means over both processes' batches) are the one process's.
    one_losses = [r["loss"] for r in _log(root / "one_2") if r["kind"] == "train"]
    two_losses = [r["loss"] for r in _log(root / "two") if r["kind"] == "train"]
    assert two_losses == pytest.approx(one_losses, rel=1e-4)
    # Validation was shared out and gathered: the same numbers as one process (same weights).
    one_val = [r for r in _log(root / "one_2") if r["kind"] == "validation"][-1]
    two_val = [r for r in _log(root / "two") if r["kind"] == "validation"][-1]
    assert two_val["val_loss"] == pytest.approx(one_val["val_loss"], rel=1e-4)


def test_distributed_evaluation_equals_one_process(tmp_path):
    from tests.engine import distributed_evaluation

    one = json.loads(json.dumps(distributed_evaluation.summary(distributed_evaluation.run())))
    assert 0.2 < one["metrics"]["segm"]["AP"] < 0.9  # neither trivial nor perfect
    assert one["num_images"] == 6
    assert len(one["skipped"]) == 1
    out = tmp_path / "evaluation"
    done = _torchrun(str(out), module="tests.engine.distributed_evaluation", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = json.loads(out.with_name("evaluation.0").read_text())
    rank1 = json.loads(out.with_name("evaluation.1").read_text())
    assert rank0 == one
    assert rank1 == {**one, "results": []}  # the scores reach every process; the results stay on rank 0


def test_evaluate_command_under_torchrun_writes_the_one_process_report(runs, tmp_path):
    root, _, _ = runs
    checkpoint = root / "one_2" / "last.safetensors"
    data = ["--format", "shapes", "-o", "count=7", "-o", "seed=3", "-o", "image_size=96"]
    options = ["--device", "cpu", "--batch-size", "1"]  # the same batches: the same floats
    assert (
        main(["evaluate", "--weights", str(checkpoint), *data, *options, "--out", str(tmp_path / "one")]) == 0
    )
    two = _torchrun("evaluate", "--weights", str(checkpoint), *data, *options, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("evaluated 7 images") == 1  # rank 0 reports
    one_results = json.loads((tmp_path / "one" / "results.json").read_text())
    assert len(one_results) > 0
    assert json.loads((tmp_path / "two" / "results.json").read_text()) == one_results
    one_metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert json.loads((tmp_path / "two" / "metrics.json").read_text()) == one_metrics


def test_a_process_that_dies_stops_the_others_with_a_message(tmp_path):
    """Started from the environment alone (as a scheduler may): nobody watches over the processes, the
    survivors must notice by themselves."""
    cfg = tiny(**SETTINGS, **{"train.max_steps": 10_000, "train.dist_timeout": 30, "train.epochs": 10_000})
    save_config(cfg, tmp_path / "cfg.yaml")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(29_500 + os.getpid() % 1000)}
    env.update(WORLD_SIZE="2", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "maskrcnn", "train", "--config", str(tmp_path / "cfg.yaml")]
    processes = [
        subprocess.Popen(
            [*command, "--out", str(tmp_path / "run")],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        wait_for_steps(tmp_path / "run", 2, processes[0])
        processes[1].send_signal(signal.SIGKILL)
        start = time.monotonic()
        _, stderr = processes[0].communicate(timeout=90)
        waited = time.monotonic() - start
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert processes[0].returncode == 1, stderr[-3000:]
    assert "another process of the run failed or stopped answering" in stderr
    assert "Traceback" not in stderr
    assert waited < 60


@pytest.mark.usefixtures("one_thread")  # as each torchrun process: the same sums in the same order
def test_predict_under_torchrun_writes_the_one_process_results(tmp_path_factory, tmp_path):
    """Five images (one unreadable) and two videos, split between two processes: the same results.json
    as one process (image ids included), every picture written, and one summary (rank 0's)."""
    checkpoint = tiny_checkpoint(tmp_path_factory)
    folder = tmp_path / "in"
    folder.mkdir()
    for seed, name in enumerate(("a.png", "b.jpg", "c.png", "d.png")):
        save_image(folder, name, seed)
    write_text(folder / "e.png")
    write_video(folder / "v1.mp4", [random_image(s) for s in range(3)])
    write_video(folder / "v2.mp4", [random_image(s) for s in range(3, 5)])
    options = ["--weights", str(checkpoint), "--score-threshold", "0", "--device", "cpu", "--save-masks"]
    options += ["--precision", "fp32", "--semantic"]
    assert main(["predict", str(folder), *options, "--out", str(tmp_path / "one")]) == 0
    two = _torchrun("predict", str(folder), *options, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("predict: 4 images and 2 videos (5 frames)") == 1  # rank 0 reports
    one_results = json.loads((tmp_path / "one" / "results.json").read_text())
    assert len({r["image_id"] for r in one_results}) == 9  # 4 images and 5 frames
    assert json.loads((tmp_path / "two" / "results.json").read_text()) == one_results
    pictures = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.*"))
    assert sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.*")) == pictures
    # Pictures, videos, results, and per image or frame 10 masks and a class map.
    assert len(pictures) == 4 + 2 + 1 + 90 + 9
    for picture in pictures:
        if picture.parts[0] == "semantic":
            with Image.open(tmp_path / "one" / picture) as one, Image.open(tmp_path / "two" / picture) as two:
                assert np.array_equal(np.asarray(one), np.asarray(two))


@pytest.mark.usefixtures("one_thread")
def test_save_as_under_torchrun_writes_the_one_process_annotations(tmp_path_factory, tmp_path):
    """Three images, split between two processes: rank 0 writes the annotations of all of them, in
    order, as one process does."""
    checkpoint = tiny_checkpoint(tmp_path_factory)
    folder = tmp_path / "in"
    folder.mkdir()
    for seed, name in enumerate(("a.png", "b.png", "c.png")):
        save_image(folder, name, seed)
    options = ["--weights", str(checkpoint), "--score-threshold", "0", "--device", "cpu"]
    options += ["--precision", "fp32", "--save-as", "coco"]
    assert main(["predict", str(folder), *options, "--out", str(tmp_path / "one")]) == 0
    two = _torchrun("predict", str(folder), *options, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    one_coco = json.loads((tmp_path / "one" / "coco" / "instances.json").read_text())
    assert len(one_coco["images"]) == 3
    assert json.loads((tmp_path / "two" / "coco" / "instances.json").read_text()) == one_coco
