"""Benchmark: the same multirun through the sequential and the parallel launcher.

    python -m src.bench sweep [--jobs 2] [--limit-train 50000] [--epochs 2] [--rounds 1] [--quick]

Runs `python -m src.run -m ...` with `+launcher=basic` (one job after another,
TensorFlow using every core) and `+launcher=joblib` (2 jobs at once, 1 thread
each), alternating A B A B for `--rounds`, into a throwaway MLflow store, and
prints for each the aggregate training throughput: training images of all
jobs / wall-clock seconds of the whole multirun (start-up included), the mean
per-job training images/s, and the ratio parallel / sequential.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from src.config.paths import PROJECT_ROOT

LAUNCHERS = ("basic", "joblib")


def run_sweep(launcher: str, args, store: Path, index: int) -> dict:
    experiment = f"bench_{launcher}_{index}"
    seeds = ",".join(str(seed) for seed in range(1, args.jobs + 1))
    command = [sys.executable, "-m", "src.run", "-m", f"+launcher={launcher}", f"seed={seeds}",
               f"tracking.uri=sqlite:///{store / 'mlflow.db'}", f"tracking.experiment={experiment}",
               f"data.limit_train={args.limit_train}", f"data.limit_test={args.limit_test}",
               f"trainer.epochs={args.epochs}", "trainer.verbose=0", "tracking.log_model=false",
               f"hydra.sweep.dir={store / experiment}"]
    if args.data_dir:
        command.append(f"data.dir={args.data_dir}")
    started = time.perf_counter()
    subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.perf_counter() - started

    from src.tracking.store import client as store_client

    client = store_client(f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    jobs = [run for run in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in run.data.tags]
    images = sum(run.data.metrics["train_images_per_s"] * run.data.metrics["train_seconds"] for run in jobs)
    return {"launcher": launcher, "jobs": len(jobs), "wall_s": wall, "images": images,
            "aggregate_img_s": images / wall,
            "per_job_img_s": statistics.fmean(run.data.metrics["train_images_per_s"] for run in jobs)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Full-size jobs by default: with short ones each parallel worker's start-up
    # (TensorFlow import, data loading: ~25 s) eats the gain (experiments/perf/).
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit-train", type=int, default=50000)
    parser.add_argument("--limit-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    parser.add_argument("--quick", action="store_true", help="a tiny run, to check that it works")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.limit_train, args.limit_test, args.epochs, args.rounds = 2, 500, 100, 1, 1

    results = {launcher: [] for launcher in LAUNCHERS}
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        store = Path(tmp)
        for round_index in range(args.rounds):
            for launcher in LAUNCHERS:  # A B A B: drift in the machine's speed hits both alike
                result = run_sweep(launcher, args, store, round_index)
                results[launcher].append(result)
                print(f"round {round_index + 1} {launcher:7s} {result['jobs']} jobs in {result['wall_s']:6.1f} s: "
                      f"aggregate {result['aggregate_img_s']:7.0f} training images/s, "
                      f"per job {result['per_job_img_s']:7.0f} images/s", flush=True)
    sequential = statistics.median(r["aggregate_img_s"] for r in results["basic"])
    parallel = statistics.median(r["aggregate_img_s"] for r in results["joblib"])
    print(f"\nsequential (basic launcher, all cores per job): {sequential:.0f} training images/s")
    print(f"parallel (joblib, 2 jobs x 1 thread):            {parallel:.0f} training images/s")
    per_job = statistics.fmean(r["images"] / r["jobs"] for r in results["basic"])
    print(f"launcher_speedup={parallel / sequential:.2f} sequential_img_s={sequential:.0f} "
          f"parallel_img_s={parallel:.0f} jobs={args.jobs} images_per_job={per_job:.0f}")


if __name__ == "__main__":
    main()
