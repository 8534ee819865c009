"""Does the fast setting choose what the faithful one would? Rank fidelity, replicated.

    python -m src.bench fidelity [--configs 8] [--seeds 3] [--epochs 3] [--limit-train 20000]
                                 [--candidates P:B:S,...] [--quick]

A single run per configuration cannot answer this: at 2,000 validation images two
seeds of one configuration differ by 2-4 points, about the spread between
configurations, so a one-seed Spearman is mostly noise. Here a fixed, seeded
sample of the card's per-block space (conf/tuner/search_space/filters_dropout.yaml,
the baseline included) is trained with several seeds in the faithful setting
(trainer/default: float32, batch 32) and in each fast candidate, at equal epochs,
on one held-out validation split (never the test set), each setting with its own
seeds as two independent studies would have. Every (seed, configuration) trains
all settings in turn, so drift in the machine's speed hits them alike.

Figures, on the configurations' seed means: the Spearman correlation between the
settings and the regret, the faithful mean of the fast setting's top configuration
minus the faithful best (<= 0, points): what choosing with the fast setting costs.
Each gets a percentile-bootstrap 95 % interval that resamples seeds within each
configuration and setting (`rank_fidelity`).

By default the candidate is what `trainer=fast` resolves to on this machine: where
bfloat16 is not native that is the faithful setting itself, and the figures are
then the benchmark's own noise floor; `--candidates float32:64:sqrt` checks a
float32 fast setting there. Emulated bfloat16 is ~7x slower: it is said, not refused.

Full default (8 configurations x 3 seeds x 2 settings, 3 epochs on 18,000 images): about 55 min on an idle 2-core Zen 3.

One line per candidate, the first candidate's last (each on one line; best_gap_points,
the fast score of the faithful winner, is gone: regret is the cost of choosing):
fidelity_spearman=<r> spearman_low=<r> spearman_high=<r> regret_points=<g> regret_low=<g>
regret_high=<g> faithful_img_s=<n> fast_img_s=<n> fast_speedup=<x> configs=<n> seeds=<n> setting=<p:b:s>
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from scipy import stats  # noqa: E402

from src.config import DataConfig, LrScaling, ModelConfig, Precision, TrainerConfig, machine  # noqa: E402
from src.core import data as data_module  # noqa: E402 - loads the data without TensorFlow
from src.core import memory  # noqa: E402 - analytic, no TensorFlow

log = logging.getLogger(__name__)

CONF = Path(__file__).resolve().parents[2] / "conf"
SPACE_FILE = CONF / "tuner" / "search_space" / "filters_dropout.yaml"
FAST_FILE = CONF / "trainer" / "fast.yaml"
FAITHFUL = TrainerConfig(verbose=0)  # trainer/default
SAMPLE_SEED = 0  # the sample of configurations: fixed, so runs of the benchmark compare
RESAMPLES = 2000


# ---------------------------------------------------------------- the configurations


def space_values(space_file: Path = SPACE_FILE) -> Dict[str, list]:
    """{config key: every value it can take} for a search space's choice/float/int entries."""
    values = {}
    for name, spec in OmegaConf.to_container(OmegaConf.load(space_file)).items():
        if spec["type"] == "choice":
            values[spec["key"]] = list(spec["values"])
        elif spec["type"] in ("float", "int"):
            count = int(round((spec["max"] - spec["min"]) / spec["step"])) + 1
            grid = [spec["min"] + i * spec["step"] for i in range(count)]
            values[spec["key"]] = [int(v) if spec["type"] == "int" else round(v, 10) for v in grid]
        else:
            raise ValueError(f"{space_file}: {name} has type {spec['type']!r}: expected choice, float or int")
    return values


def model_config(values: Dict[str, object]) -> ModelConfig:
    """The baseline model with the given `model.*` keys set (range-checked by the schema)."""
    node = OmegaConf.structured(ModelConfig())
    for key, value in values.items():
        OmegaConf.update(node, key.removeprefix("model."), value, merge=False)
    return OmegaConf.to_object(node)


def card_sample(count: int, seed: int = SAMPLE_SEED, space_file: Path = SPACE_FILE) -> List[Dict[str, object]]:
    """The baseline configuration, then `count - 1` distinct others drawn uniformly from
    the space's grid with a fixed seed: {config key: value} each. A smaller `count` gives
    a prefix of a larger one, so a short run checks the same configurations first."""
    values = space_values(space_file)
    baseline = model_config({})
    base = {key: (baseline.filters[int(key.rsplit(".", 1)[1])] if key.startswith("model.filters.")
                  else getattr(baseline, key.removeprefix("model.")))
            for key in values}
    grid = [dict(zip(values, combo)) for combo in itertools.product(*values.values())]
    others = [c for c in grid if c != base]
    order = np.random.default_rng(seed).permutation(len(others))
    return [base, *(others[i] for i in order[:count - 1])]


def label(config: Dict[str, object], baseline: bool = False) -> str:
    """'filters 32/64/128 dropout 0.5' (the baseline marked)."""
    model = model_config(config)
    text = f"filters {'/'.join(str(f) for f in model.conv_filters)} dropout {model.dropout:g}"
    return text + (" (baseline)" if baseline else "")


def relative_cost(config: Dict[str, object]) -> float:
    """Training FLOPs per image relative to the baseline: a rough guide to a configuration's
    training time."""
    return memory.training_flops_per_image(model_config(config)) / memory.training_flops_per_image(model_config({}))


# ---------------------------------------------------------------- the statistics


@dataclasses.dataclass
class Fidelity:
    spearman: float
    spearman_interval: Tuple[float, float]
    regret_points: float  # faithful mean of the fast top minus the faithful best; <= 0
    regret_interval: Tuple[float, float]
    faithful_best: int  # index of the configuration with the best faithful mean
    fast_top: int  # index of the configuration with the best fast mean
    top_agreement: float  # share of resamples in which the two tops coincide
    faithful_sd_points: float  # pooled seed-to-seed standard deviation of one run
    fast_sd_points: float
    faithful_means: np.ndarray
    fast_means: np.ndarray


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings():  # constant input (all means tied): nan, said as nan
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(x, y).statistic)


def _regret(faithful_means: np.ndarray, fast_means: np.ndarray) -> float:
    return 100.0 * float(faithful_means[np.argmax(fast_means)] - faithful_means.max())


def _pooled_sd(values: np.ndarray) -> float:
    if values.shape[1] < 2:
        return float("nan")
    return 100.0 * float(np.sqrt(values.var(axis=1, ddof=1).mean()))


def rank_fidelity(faithful: Sequence[Sequence[float]], fast: Sequence[Sequence[float]],
                  resamples: int = RESAMPLES, seed: int = 0, confidence: float = 0.95) -> Fidelity:
    """Spearman of the configurations' seed means and the regret of choosing by the fast
    means, each with a percentile-bootstrap interval.

    `faithful` and `fast` are (configurations x seeds) accuracies, same configurations in
    the same order. A resample draws each (configuration, setting) cell's seeds with
    replacement, independently (as scipy.stats.bootstrap does with one sample per cell,
    method='percentile'), written out so both statistics share the resamples. A fast
    tie for first goes to the earlier configuration."""
    faithful, fast = np.asarray(faithful, dtype=float), np.asarray(fast, dtype=float)
    if faithful.ndim != 2 or fast.ndim != 2 or faithful.shape[0] != fast.shape[0]:
        raise ValueError(f"expected (configurations x seeds) arrays with the same configurations, "
                         f"got {faithful.shape} and {fast.shape}")
    if faithful.shape[0] < 3:
        raise ValueError(f"a rank correlation needs at least 3 configurations, got {faithful.shape[0]}")
    means_a, means_b = faithful.mean(axis=1), fast.mean(axis=1)
    rng = np.random.default_rng(seed)
    rows = np.arange(faithful.shape[0])[None, :, None]

    def resampled(values: np.ndarray) -> np.ndarray:  # (resamples x configurations) of means
        picks = rng.integers(0, values.shape[1], size=(resamples, values.shape[0], values.shape[1]))
        return values[rows, picks].mean(axis=2)

    boot_a, boot_b = resampled(faithful), resampled(fast)
    rhos = np.array([_spearman(a, b) for a, b in zip(boot_a, boot_b)])
    regrets = np.array([_regret(a, b) for a, b in zip(boot_a, boot_b)])
    tail = 100 * (1 - confidence) / 2

    def interval(values: np.ndarray) -> Tuple[float, float]:
        values = values[np.isfinite(values)]
        if not values.size:
            return float("nan"), float("nan")
        low, high = np.percentile(values, [tail, 100 - tail])
        return float(low), float(high)

    return Fidelity(
        spearman=_spearman(means_a, means_b), spearman_interval=interval(rhos),
        regret_points=_regret(means_a, means_b), regret_interval=interval(regrets),
        faithful_best=int(np.argmax(means_a)), fast_top=int(np.argmax(means_b)),
        top_agreement=float(np.mean(boot_a.argmax(axis=1) == boot_b.argmax(axis=1))),
        faithful_sd_points=_pooled_sd(faithful), fast_sd_points=_pooled_sd(fast),
        faithful_means=means_a, fast_means=means_b)


# ---------------------------------------------------------------- the settings


def fast_trainer() -> TrainerConfig:
    """trainer/fast as conf/trainer/fast.yaml declares it (precision auto, unresolved)."""
    node = OmegaConf.load(FAST_FILE)
    return TrainerConfig(verbose=0, batch_size=int(node.batch_size), precision=Precision(node.precision),
                         lr_scaling=LrScaling(node.lr_scaling))


def parse_candidate(text: str) -> TrainerConfig:
    """'float32:64:sqrt' -> the trainer settings of a candidate fast setting; precision
    'auto' resolves as trainer=fast does on this machine."""
    try:
        precision, batch, scaling = text.split(":")
        trainer = TrainerConfig(verbose=0, precision=Precision(precision), batch_size=int(batch),
                                lr_scaling=LrScaling(scaling))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: expected precision:batch:lr_scaling, e.g. float32:64:sqrt "
                                         f"({err})") from None
    return machine.resolve(trainer)


def describe(trainer: TrainerConfig) -> str:
    return f"{Precision(trainer.precision).value}:{trainer.batch_size}:{LrScaling(trainer.lr_scaling).value}"


def score(splits, config: Dict[str, object], trainer: TrainerConfig, epochs: int, seed: int) -> Tuple[float, float]:
    """(best validation accuracy, training images per second) of one training, through the
    project's own path (prepare_model + fit), validated on the held-out split."""
    from src.core import train  # deferred: TensorFlow, ~5 s; the statistics and their tests need none

    trainer = dataclasses.replace(trainer, epochs=epochs)
    model = train.prepare_model(model_config(config), trainer, seed=seed)
    result = train.fit(model, splits, trainer)
    return max(result.history["val_accuracy"]), result.images_per_second


# ---------------------------------------------------------------- the benchmark


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.bench fidelity", description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=8, help="configurations of the card's space, the baseline "
                        "first, then a fixed seeded sample (default 8)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per configuration and setting (>= 2)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit-train", type=int, default=20000, help="training images before the 10%% split")
    parser.add_argument("--seed", type=int, default=42, help="the data split's seed; training seeds follow from it")
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 3 configurations, 2 seeds, 1 epoch, 1,000 images")
    parser.add_argument("--candidates", type=str, default=None,
                        help="comma-separated fast settings to check, precision:batch:lr_scaling (default: what "
                             "trainer=fast resolves to here; float32:64:sqrt is a float32 candidate for a CPU without "
                             "native bfloat16); the first gives the last line")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.seeds, args.epochs, args.limit_train = 3, 2, 1, 1000
    if args.configs < 3:
        parser.error(f"--configs {args.configs}: a rank correlation needs at least 3")
    if args.seeds < 2:
        parser.error(f"--seeds {args.seeds}: the interval needs at least 2 seeds per configuration")
    try:
        args.candidates = ([parse_candidate(t) for t in args.candidates.split(",")] if args.candidates
                           else [machine.resolve(fast_trainer())])
    except argparse.ArgumentTypeError as err:
        parser.error(f"--candidates {err}")
    return args


def say_what_is_compared(candidates: List[TrainerConfig]) -> None:
    if any(Precision(c.precision) is Precision.mixed_bfloat16 for c in candidates) \
            and not machine.native_bfloat16():
        log.warning("bfloat16 is emulated on this CPU (no avx512_bf16/amx_bf16, no GPU), ~7x slower than float32: "
                    "its ranking here is bfloat16's, its speed is not")
    for candidate in candidates:
        if describe(candidate) == describe(FAITHFUL):
            log.info("%s is the faithful setting itself: its figures are this benchmark's noise floor (two "
                     "independent sets of seeds)", describe(candidate))


def report(name: str, sample: List[Dict[str, object]], result: Fidelity, seeds: int,
           faithful_speed: float, fast_speed: float) -> str:
    """Prints the comparison of one candidate; returns its machine-readable line."""
    width = max(len(label(c, i == 0)) for i, c in enumerate(sample))
    print(f"\n{'configuration':<{width}}  faithful  {name}   (mean best val accuracy over {seeds} seeds)")
    for index, config in enumerate(sample):
        marks = ("  faithful best" if index == result.faithful_best else "") + \
                ("  fast top" if index == result.fast_top else "")
        print(f"{label(config, index == 0):<{width}}  {result.faithful_means[index]:.4f}    "
              f"{result.fast_means[index]:.4f}{marks}")
    low, high = result.spearman_interval
    print(f"{name} vs faithful: Spearman of seed means {result.spearman:.3f} (95 % bootstrap {low:.3f} to {high:.3f})")
    low, high = result.regret_interval
    print(f"regret: the fast top ({label(sample[result.fast_top])}) scores {result.regret_points:+.2f} points "
          f"against the faithful best ({label(sample[result.faithful_best])}), 95 % bootstrap {low:+.2f} to "
          f"{high:+.2f}; the tops coincide in {100 * result.top_agreement:.0f} % of resamples")
    spread = 100 * (result.faithful_means.max() - result.faithful_means.min())
    print(f"noise: one run's seed-to-seed sd {result.faithful_sd_points:.2f} points faithful, "
          f"{result.fast_sd_points:.2f} fast; faithful means span {spread:.2f} points; "
          f"{fast_speed:,.0f} vs {faithful_speed:,.0f} training images/s ({fast_speed / faithful_speed:.2f}x)")
    return (f"fidelity_spearman={result.spearman:.3f} spearman_low={result.spearman_interval[0]:.3f} "
            f"spearman_high={result.spearman_interval[1]:.3f} regret_points={result.regret_points:+.2f} "
            f"regret_low={result.regret_interval[0]:+.2f} regret_high={result.regret_interval[1]:+.2f} "
            f"faithful_img_s={faithful_speed:.0f} fast_img_s={fast_speed:.0f} "
            f"fast_speedup={fast_speed / faithful_speed:.2f} configs={len(sample)} seeds={seeds} setting={name}")


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    candidates: List[TrainerConfig] = args.candidates
    say_what_is_compared(candidates)
    sample = card_sample(args.configs)
    splits = data_module.load(DataConfig(dir=args.data_dir, limit_train=args.limit_train, limit_test=100), args.seed)
    settings = {"faithful": FAITHFUL, **{describe(c): c for c in candidates}}
    runs = len(sample) * args.seeds * len(settings)
    # ~1,550 images/s for the baseline in float32 on a 2-core Zen 3, ~5 s a training to build and validate
    rough_min = (sum(relative_cost(c) for c in sample) * args.seeds * len(settings) * args.epochs
                 * len(splits.x_train) / 1550 + 5 * runs) / 60
    log.info("%d configurations x %d seeds x %d settings = %d trainings of %d epoch(s) on %d images, validated on "
             "%d held-out; roughly %.0f min on an idle 2-core Zen 3 (more where bfloat16 is emulated)",
             len(sample), args.seeds, len(settings), runs, args.epochs, len(splits.x_train), len(splits.x_val),
             rough_min)
    # each setting its own training seeds, as independent studies would have
    seeds = {name: [args.seed + 1000 * k + i for i in range(args.seeds)] for k, name in enumerate(settings)}
    accuracy = {name: np.zeros((len(sample), args.seeds)) for name in settings}
    speed: Dict[str, List[float]] = {name: [] for name in settings}
    started, done = time.perf_counter(), 0
    for i in range(args.seeds):  # every setting per (seed, configuration) in turn: drift hits all alike
        for index, config in enumerate(sample):
            for name, trainer in settings.items():
                accuracy[name][index, i], images_per_s = score(splits, config, trainer, args.epochs, seeds[name][i])
                speed[name].append(images_per_s)
                done += 1
            log.info("seed %d/%d, %s: %s (%d/%d trainings, %.0f s)", i + 1, args.seeds, label(config, index == 0),
                     "  ".join(f"{name} {accuracy[name][index, i]:.4f}" for name in settings), done, runs,
                     time.perf_counter() - started)
    faithful_speed = float(np.mean(speed["faithful"]))
    lines = [report(name, sample, rank_fidelity(accuracy["faithful"], accuracy[name]), args.seeds,
                    faithful_speed, float(np.mean(speed[name]))) for name in list(settings)[1:]]
    log.info("%.0f s in all", time.perf_counter() - started)
    print("\n" + "\n".join(reversed(lines)))  # the first candidate's line last


if __name__ == "__main__":
    sys.exit(main())
