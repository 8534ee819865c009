"""Benchmark: the same multirun through the sequential and the parallel launcher.

    python -m src.bench sweep [--jobs 2] [--limit-train 50000] [--epochs 2] [--rounds 1]
                              [--threads-per-job 1 [2 ...]] [--quick]

Runs `python -m src.run -m ...` with `+launcher=basic` (one job after another,
TensorFlow using every core) and `+launcher=joblib` (2 jobs at once, 1 thread
each; `--threads-per-job 1 2` also times it with 2 intra-op threads per job,
oversubscribing the cores), alternating A B A B for `--rounds`, into a
throwaway MLflow store, and prints for each the aggregate training throughput:
training images of all jobs / wall-clock seconds of the whole multirun
(start-up included), the mean per-job training images/s, and the ratio
parallel / sequential.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from src.benchmarks.commands import timed_command


def run_sweep(launcher: str, args, store: Path, index: int, threads: int = 0) -> dict:
    experiment = f"bench_{launcher}{threads or ''}_{index}"
    seeds = ",".join(str(seed) for seed in range(1, args.jobs + 1))
    uri = f"sqlite:///{store / 'mlflow.db'}"
    command = ["-m", f"+launcher={launcher}", f"seed={seeds}", f"tracking.experiment={experiment}",
               f"data.limit_train={args.limit_train}", f"data.limit_test={args.limit_test}",
               f"trainer.epochs={args.epochs}", "trainer.verbose=0", "tracking.log_model=false",
               f"hydra.sweep.dir={store / experiment}"]
    if threads:
        command.append(f"trainer.intra_op_threads={threads}")
    if args.data_dir:
        command.append(f"data.dir={args.data_dir}")
    wall = timed_command(f"the {launcher} sweep", command, uri)

    from src.tracking.store import client as store_client  # deferred: mlflow (~3 s), not for --help

    client = store_client(uri)
    exp = client.get_experiment_by_name(experiment)
    jobs = [run for run in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in run.data.tags]
    images = sum(run.data.metrics["train_images_per_s"] * run.data.metrics["train_seconds"] for run in jobs)
    return {"launcher": launcher, "jobs": len(jobs), "wall_s": wall, "images": images,
            "aggregate_img_s": images / wall,
            "per_job_img_s": statistics.fmean(run.data.metrics["train_images_per_s"] for run in jobs)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.bench sweep", description=__doc__.splitlines()[0])
    # Full-size jobs by default: with short ones each parallel worker's start-up
    # (TensorFlow import, data loading: ~25 s) eats the gain (experiments/perf/).
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit-train", type=int, default=50000)
    parser.add_argument("--limit-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    parser.add_argument("--threads-per-job", type=int, nargs="+", default=[1],
                        help="intra-op threads of each parallel job: one parallel variant per value")
    parser.add_argument("--quick", action="store_true", help="a tiny run, to check that it works")
    args = parser.parse_args(argv)
    if min(args.threads_per_job) < 1:  # 0 would mean "every core" to TensorFlow, not a parallel variant
        parser.error(f"--threads-per-job {min(args.threads_per_job)} is not allowed: each value is an integer >= 1")
    if args.quick:
        args.jobs, args.limit_train, args.limit_test, args.epochs, args.rounds = 2, 500, 100, 1, 1

    # (launcher, intra-op threads per job; 0 = TensorFlow's default, every core)
    variants = [("basic", 0), *(("joblib", threads) for threads in args.threads_per_job)]
    results = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        store = Path(tmp)
        for round_index in range(args.rounds):
            for launcher, threads in variants:  # A B A B: drift in the machine's speed hits all alike
                result = run_sweep(launcher, args, store, round_index, threads)
                results[launcher, threads].append(result)
                label = f"{launcher} x{threads or 'all'}"
                print(f"round {round_index + 1} {label:10s} {result['jobs']} jobs in {result['wall_s']:6.1f} s: "
                      f"aggregate {result['aggregate_img_s']:7.0f} training images/s, "
                      f"per job {result['per_job_img_s']:7.0f} images/s", flush=True)
    aggregate = {variant: statistics.median(r["aggregate_img_s"] for r in runs) for variant, runs in results.items()}
    sequential = aggregate["basic", 0]
    print(f"\nsequential (basic launcher, all cores per job): {sequential:.0f} training images/s")
    for threads in args.threads_per_job:
        print(f"parallel (joblib, 2 jobs x {threads} thread(s)):        {aggregate['joblib', threads]:.0f} training "
              f"images/s ({aggregate['joblib', threads] / sequential:.2f}x)")
    # The headline is the launcher's own setting (conf/launcher/joblib.yaml: 1 thread per job).
    parallel = aggregate["joblib", args.threads_per_job[0]]
    per_job = statistics.fmean(r["images"] / r["jobs"] for r in results["basic", 0])
    print(f"launcher_speedup={parallel / sequential:.2f} sequential_img_s={sequential:.0f} "
          f"parallel_img_s={parallel:.0f} jobs={args.jobs} images_per_job={per_job:.0f}")


if __name__ == "__main__":
    main()
