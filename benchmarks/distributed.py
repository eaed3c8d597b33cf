"""Training throughput with 1 and with N processes: prints one JSON object.

    python benchmarks/distributed.py [--processes 1 2] [--threads 2] [--steps 40] [--repeats 3]
    python benchmarks/distributed.py --preset coco --set data.format=shapes ... --device cuda  # on GPUs

Each configuration trains ``maskrcnn train`` (the shapes preset by default: the demo's model, batch 8
per process, bf16 where the CPU computes it) for ``--steps`` optimizer steps as a subprocess, one process
directly and several with ``torchrun --standalone``, without validation; the rate is taken from the
run's own log (``log.jsonl``: a record every ``--log-every`` steps with its wall-clock time) between the
first record and the last, so process start-up, data generation and the first, slower steps are left out.
``--threads`` CPU threads are shared out evenly among the processes (2 threads: 1 process x 2 threads,
or 2 processes x 1 thread). Reported: the median over ``--repeats`` runs of images per second (all
processes together) and of optimizer steps per second, and the scaling against one process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _one_run(processes: int, args: argparse.Namespace, out: Path) -> dict[str, float]:
    threads = max(1, args.threads // processes)
    settings = {
        "train.max_steps": args.steps,
        "train.log_every": args.log_every,
        "train.threads": threads,
        "data.val_options": "{}",  # no validation: training throughput only
        **dict(item.split("=", 1) for item in args.set),
    }
    if args.device:
        settings["train.device"] = args.device
    command = ["-m", "maskrcnn", "train", "--preset", args.preset, "--out", str(out)]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
        command = launcher + command
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *command], env=env, stdout=sys.stderr, stderr=sys.stderr, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es): maskrcnn train exited with {done.returncode}")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    if len(steps) < 2:
        raise SystemExit(f"{out / 'log.jsonl'}: fewer than 2 training records; raise --steps")
    first, last = steps[0], steps[-1]
    seconds = last["time"] - first["time"]
    step_rate = (last["step"] - first["step"]) / seconds
    batch = int(yaml.safe_load((out / "config.yaml").read_text())["data"]["batch_size"])
    return {
        "images_per_s": step_rate * batch * processes,
        "steps_per_s": step_rate,
        "wall_s": wall,
        "batch_per_process": batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads in all")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--device", help="train.device (default: the preset's, auto)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for processes in args.processes:
            runs = [_one_run(processes, args, Path(tmp) / f"p{processes}-{i}") for i in range(args.repeats)]
            results[processes] = {
                "images_per_s": statistics.median(r["images_per_s"] for r in runs),
                "steps_per_s": statistics.median(r["steps_per_s"] for r in runs),
                "images_per_s_runs": [round(r["images_per_s"], 2) for r in runs],
                "threads_per_process": max(1, args.threads // processes),
                "batch_per_process": runs[0]["batch_per_process"],
                "wall_s_median": statistics.median(r["wall_s"] for r in runs),
            }
    base = results.get(args.processes[0], {}).get("images_per_s")
    report = {
        "benchmark": "distributed_training",
        "preset": args.preset,
        "settings": args.set,
        "steps": args.steps,
        "repeats": args.repeats,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "results": {
            f"{p}_processes": {
                **{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()},
                "scaling": round(r["images_per_s"] / base, 3) if base else None,
            }
            for p, r in results.items()
        },
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
