"""Benchmark: the same small random search with 1 tuner worker and with 2.

    python -m src.bench tuner [--trials 6] [--limit-train 5000] [--epochs 2] [--quick]

Runs `python -m src.run +experiment=tune_random` twice into a throwaway MLflow
store and tuner folder: `tuner.workers=1` (one process, TensorFlow using every
core), then `tuner.workers=2` (two worker processes, 1 thread each, plus the
oracle). Every trial trains `--epochs` epochs and the oracle's seed is the
same, so both searches run the same trials. Trials per hour = trials / (end of
the last trial - start of the first), from the trial runs' MLflow times: the
search itself, without start-up, the final fit or the test evaluation.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from src.benchmarks.commands import search_seconds, timed_study

WORKERS = (1, 2)


def run_search(workers: int, args, store: Path) -> dict:
    overrides = ["+experiment=tune_random", f"tuner.workers={workers}", f"tuner.max_trials={args.trials}",
                 "tuner.search_space.epochs.type=fixed", f"tuner.search_space.epochs.value={args.epochs}",
                 f"data.limit_train={args.limit_train}", f"data.limit_test={args.limit_test}"]
    wall, trials = timed_study(f"tuner.workers={workers}", overrides, store, f"bench_tuner_{workers}", args.data_dir)
    span = search_seconds(trials)
    return {"workers": workers, "trials": len(trials), "search_s": span, "wall_s": wall,
            "trials_per_hour": len(trials) / span * 3600}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.bench tuner", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--limit-train", type=int, default=5000)
    parser.add_argument("--limit-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of every trial")
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    parser.add_argument("--quick", action="store_true", help="a tiny run, to check that it works")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.limit_train, args.limit_test, args.epochs = 2, 500, 100, 1

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_tuner_") as tmp:
        for workers in WORKERS:
            result = results[workers] = run_search(workers, args, Path(tmp))
            print(f"tuner.workers={workers}: {result['trials']} trials, search {result['search_s']:.1f} s "
                  f"(command {result['wall_s']:.1f} s): {result['trials_per_hour']:.0f} trials/hour", flush=True)
    one, two = results[1]["trials_per_hour"], results[2]["trials_per_hour"]
    print(f"\n1 worker (TensorFlow on every core):   {one:.0f} trials/hour")
    print(f"2 workers (1 TensorFlow thread each): {two:.0f} trials/hour")
    print(f"tuner_speedup={two / one:.2f} trials_per_hour_1={one:.0f} trials_per_hour_2={two:.0f}")


if __name__ == "__main__":
    main()
