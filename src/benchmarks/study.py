"""Benchmark: one small Hyperband study of the card's space, faithful and fast, side by side.

    python -m src.bench study [--max-epochs 9] [--limit-train 10000] [--quick]

Runs `python -m src.run +experiment=tune_hyperband` twice into a throwaway
MLflow store: the faithful setting (trainer/default: float32, batch 32, one
process) and the fast one (`+experiment=card_study`'s settings: trainer/fast, one
tuner process; trainer=fast is the faithful float32 setting on a CPU without native
bfloat16, so there the two should tie). The oracle's seed is the same, so every first-round trial of
a bracket (drawn before any result is known) trains the same configuration
at the same budget in both; the Spearman rank correlation of their validation
accuracies (scipy) says whether the fast study ranks them the same way.
Both skip the confirmation stage and take the best checkpoint: this measures
the search. Wall time is the whole command, start-up included.

Last line: study_speedup=<x> fidelity_spearman=<r> faithful_min=<m> fast_min=<m>
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from scipy import stats

from src.benchmarks.commands import search_seconds, timed_study

SETTINGS = {"faithful": ("trainer=default", "tuner.workers=1"),
            "fast": ("trainer=fast", "tuner.workers=1")}


def run_study(name: str, args, store: Path) -> dict:
    overrides = ["+experiment=tune_hyperband", *SETTINGS[name], f"tuner.max_epochs={args.max_epochs}", "tuner.factor=3",
                 f"data.limit_train={args.limit_train}", f"data.limit_test={args.limit_test}"]
    wall, trials = timed_study(f"the {name} study", overrides, store, f"bench_study_{name}", args.data_dir)
    span = search_seconds(trials)
    images = sum(t.data.metrics["train_images_per_s"] * t.data.metrics["train_seconds"] for t in trials)
    first_rounds = {_configuration(t): t.data.metrics["best_val_accuracy"] for t in trials
                    if t.data.params.get("hp.tuner/initial_epoch") == "0"}
    return {"wall_s": wall, "trials": len(trials), "search_s": span, "images_per_s": images / span,
            "trials_per_hour": len(trials) / span * 3600, "first_rounds": first_rounds}


def _configuration(trial) -> tuple:
    """A trial's hyperparameters and budget, as the key that pairs it across the two studies."""
    return tuple(sorted((k, v) for k, v in trial.data.params.items()
                        if k.startswith("hp.") and k not in ("hp.tuner/trial_id", "hp.tuner/round")))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.bench study", description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=9, help="Hyperband's max_epochs (factor 3)")
    parser.add_argument("--limit-train", type=int, default=10000)
    parser.add_argument("--limit-test", type=int, default=1000)
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    parser.add_argument("--quick", action="store_true", help="a small run (about 2 minutes), to check that it works")
    args = parser.parse_args(argv)
    if args.quick:
        # 1,000 images: under 3 minutes even where bfloat16 is emulated (3.4 min on 2,000 on a Zen 3)
        args.max_epochs, args.limit_train, args.limit_test = 3, 1000, 500

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_study_") as tmp:
        for name in SETTINGS:  # one after the other: never two trainings timed at once
            result = results[name] = run_study(name, args, Path(tmp) / name)
            print(f"{name:>8} ({' '.join(SETTINGS[name])}): {result['wall_s'] / 60:.2f} min wall, "
                  f"{result['trials']} trials, {result['trials_per_hour']:.0f} trials/hour, "
                  f"{result['images_per_s']:,.0f} training images/s over the search", flush=True)
    faithful, fast = results["faithful"], results["fast"]
    paired = sorted(set(faithful["first_rounds"]) & set(fast["first_rounds"]))
    spearman = (stats.spearmanr([faithful["first_rounds"][k] for k in paired],
                                [fast["first_rounds"][k] for k in paired]).statistic
                if len(paired) >= 3 else float("nan"))
    speedup = faithful["wall_s"] / fast["wall_s"]
    print(f"\nsame configurations at the same budget in both: {len(paired)} (every bracket's first round); "
          f"Spearman of their validation accuracies {spearman:.3f}")
    print(f"speedup: wall {speedup:.2f}x, trials/hour {fast['trials_per_hour'] / faithful['trials_per_hour']:.2f}x, "
          f"training images/s {fast['images_per_s'] / faithful['images_per_s']:.2f}x")
    print(f"study_speedup={speedup:.2f} fidelity_spearman={spearman:.3f} "
          f"faithful_min={faithful['wall_s'] / 60:.2f} fast_min={fast['wall_s'] / 60:.2f}")


if __name__ == "__main__":
    main()
