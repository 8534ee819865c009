"""Does the fast setting measure what the faithful one does? Rank fidelity, side by side.

    python -m src.bench fidelity [--limit-train 20000] [--epochs 3] [--candidates P:B:S,...] [--quick]

A fixed sample of configurations from the study's space (conv width x
dropout) is trained under the faithful setting (trainer/default: float32,
batch 32) and under the fast one (trainer/fast: bfloat16, batch 64, sqrt
learning-rate rule), at equal epochs, on the same held-out split and seed,
alternating faithful/fast per configuration so that drift in the machine's
speed hits both alike. It prints each configuration's best validation
accuracy under both, the Spearman rank correlation between them
(scipy.stats.spearmanr), how far the fast setting puts the faithful winner,
and the training throughput of each setting.

Several candidate fast settings (precision:batch:lr_scaling) can be checked in
one invocation against the same faithful runs. One line per candidate, the
first candidate's (by default trainer/fast) last:
fidelity_spearman=<r> best_gap_points=<g> faithful_img_s=<n> fast_img_s=<n> fast_speedup=<x> setting=<p:b:s>
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from typing import List, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from scipy import stats  # noqa: E402

from src.config import DataConfig, LrScaling, ModelConfig, Precision, TrainerConfig  # noqa: E402
from src.core import data as data_module  # noqa: E402
from src.core import train  # noqa: E402

log = logging.getLogger(__name__)

FAITHFUL = TrainerConfig(verbose=0)
FAST = TrainerConfig(batch_size=64, precision=Precision.mixed_bfloat16, lr_scaling=LrScaling.sqrt, verbose=0)  # trainer/fast
# (width, dropout): two of each width, dropouts spread over the card's 0-0.6.
SAMPLE: List[Tuple[float, float]] = [(0.5, 0.0), (0.5, 0.4), (1.0, 0.2), (1.0, 0.6),
                                     (1.5, 0.0), (1.5, 0.4), (2.0, 0.2), (2.0, 0.6)]


def score(splits, width: float, dropout: float, trainer: TrainerConfig, epochs: int, seed: int):
    """(best validation accuracy, training images per second)."""
    model_cfg = dataclasses.replace(ModelConfig(), width=width, dropout=dropout)
    trainer = dataclasses.replace(trainer, epochs=epochs)
    model = train.prepare_model(model_cfg, trainer, seed=seed)
    result = train.fit(model, splits, trainer)
    return max(result.history["val_accuracy"]), result.images_per_second


def parse_candidate(text: str) -> TrainerConfig:
    """'mixed_bfloat16:256:sqrt' -> the trainer settings of a candidate fast setting."""
    precision, batch, scaling = text.split(":")
    return dataclasses.replace(FAST, precision=Precision(precision), batch_size=int(batch),
                               lr_scaling=LrScaling(scaling))


def describe(trainer: TrainerConfig) -> str:
    return f"{trainer.precision.value}:{trainer.batch_size}:{trainer.lr_scaling.value}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.bench fidelity", description=__doc__.splitlines()[0])
    parser.add_argument("--limit-train", type=int, default=20000, help="training images before the 10%% split")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    parser.add_argument("--quick", action="store_true", help="3 configurations, 1 epoch, 3,000 images")
    parser.add_argument("--candidates", default=describe(FAST),
                        help="comma-separated fast settings to check, precision:batch:lr_scaling "
                             f"(default: trainer/fast, {describe(FAST)}); the first gives the last line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    candidates = [parse_candidate(text) for text in args.candidates.split(",")]
    sample = SAMPLE
    if args.quick:
        args.limit_train, args.epochs, sample = 3000, 1, [SAMPLE[0], SAMPLE[3], SAMPLE[6]]
    splits = data_module.load(DataConfig(dir=args.data_dir, limit_train=args.limit_train, limit_test=100), args.seed)
    log.info("%d training, %d validation images; %d epochs per run; seed %d", len(splits.x_train),
             len(splits.x_val), args.epochs, args.seed)
    settings = {"faithful": FAITHFUL, **{describe(c): c for c in candidates}}
    accuracy = {name: [] for name in settings}
    speed = {name: [] for name in settings}
    started = time.perf_counter()
    for width, dropout in sample:  # every setting per configuration, in turn: drift hits all alike
        for name, trainer in settings.items():
            value, images_per_s = score(splits, width, dropout, trainer, args.epochs, args.seed)
            accuracy[name].append(value)
            speed[name].append(images_per_s)
        log.info("width %-4g dropout %-4g best val accuracy: %s", width, dropout,
                 "  ".join(f"{name} {values[-1]:.4f}" for name, values in accuracy.items()))
    best = max(range(len(sample)), key=accuracy["faithful"].__getitem__)
    faithful_speed = sum(speed["faithful"]) / len(sample)
    lines = []
    for name in list(settings)[1:]:
        rho = stats.spearmanr(accuracy["faithful"], accuracy[name]).statistic
        gap = 100 * (accuracy[name][best] - accuracy["faithful"][best])
        fast_speed = sum(speed[name]) / len(sample)
        log.info("%s: Spearman %.3f; faithful winner (width %g, dropout %g) %+.2f points; %.0f images/s, "
                 "%.2fx the faithful %.0f", name, rho, *sample[best], gap, fast_speed, fast_speed / faithful_speed,
                 faithful_speed)
        lines.append(f"fidelity_spearman={rho:.3f} best_gap_points={gap:+.2f} faithful_img_s={faithful_speed:.0f} "
                     f"fast_img_s={fast_speed:.0f} fast_speedup={fast_speed / faithful_speed:.2f} setting={name}")
    log.info("%.0f s in all", time.perf_counter() - started)
    print("\n".join(reversed(lines)))  # the first candidate's line last


if __name__ == "__main__":
    sys.exit(main())
