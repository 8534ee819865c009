"""A study's cost before launch (`tuner.plan=true`) and its progress during the search.

The plan counts what the tuner will train (its kind's schedule,
src/config/tuner_kinds.py), plus the confirmation stage. Its wall-time estimate comes from a short
throughput probe on this machine: the space's smallest and largest models,
each trained for a few batches at the study's trainer settings (one thread
per worker when the study runs workers), so the estimate is a range.
"""
from __future__ import annotations

import dataclasses
import logging
import random
import statistics
import time
from typing import Dict, List, Optional, Tuple

import keras_tuner  # imports TensorFlow here, where run.py catches its start-up noise
import numpy as np

from src.analysis import decision
from src.config import Config, search_space, tuner_kinds
from src.config.tuner_kinds import Round
from src.core import data as data_module
from src.core import memory, train
from src.jobs.distributed import roles
from src.tracking import disk

log = logging.getLogger(__name__)
PROBE_BATCHES = 64  # after one warm-up call: long enough to reach the steady rate, ~2-10 s per model
PROBE_MODELS = 4
EVAL_SPEEDUP = 3.0  # a forward pass alone, against forward + backward (measured 2.7-3.4x here)


@dataclasses.dataclass
class Plan:
    rounds: List[Round]  # Hyperband's schedule; one entry for the other tuners
    search_epochs: int
    confirm_runs: int  # before the first look: the top-k and the baseline, each over tuner.confirm.seeds
    confirm_epochs: int  # those, plus the seed pairs the rule is expected to add with no true difference
    confirm_epochs_max: int = 0  # every pair up to tuner.confirm.max_seeds
    expected_pairs: Optional[Dict[float, float]] = None  # mean seed pairs by true difference (simulated)

    @property
    def trials(self) -> int:
        return sum(r.trials for r in self.rounds)

    @property
    def epochs(self) -> int:
        return self.search_epochs + self.confirm_epochs


def plan(cfg: Config, confirm_cost: bool = True) -> Plan:
    """`confirm_cost=False`: the search's part only (no simulation of the confirmation's rule)."""
    tuner, kind = cfg.tuner, tuner_kinds.of(cfg.tuner.kind)
    rounds = kind.schedule(cfg)
    confirm_epochs = kind.candidate_epochs(cfg, tuner_kinds.expected_epochs(cfg))
    search = sum(r.trials * r.epochs for r in rounds) * tuner.executions_per_trial
    settings = tuner.confirm
    runs = (settings.top_k + 1) * settings.seeds
    if not runs or not confirm_cost:
        return Plan(rounds, search, runs, runs * confirm_epochs)
    cap = max(settings.max_seeds, settings.seeds)
    # The rule's cost depends on the truth: simulated with the card study's seed noise (src/analysis/decision.py).
    expected = decision.expected_pairs(settings.seeds, cap, settings.margin / 100, runs=100) \
        if cap > settings.seeds else {0.0: float(settings.seeds), settings.margin / 100: float(settings.seeds)}
    extra = 2 * (expected[0.0] - settings.seeds)  # the candidate's and the baseline's runs per added pair
    return Plan(rounds, search, runs, round((runs + extra) * confirm_epochs),
                (runs + 2 * (cap - settings.seeds)) * confirm_epochs, expected)


def _declared(cfg: Config) -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    search_space.declare(hp, cfg.tuner.search_space)
    return hp


def sample_models(cfg: Config, count: int = PROBE_MODELS) -> List[Config]:
    """`count` configurations of the space's model.* hyperparameters, drawn as keras-tuner's
    random search draws them (seeded): the study's models differ in cost by an order of
    magnitude, so one probe would mislead. Dropout costs nothing and is left as configured."""
    rng = random.Random(cfg.tuner.seed)
    declared = _declared(cfg).space
    samples = []
    for _ in range(count):
        drawn = {spec.name: spec.random_sample(rng.randrange(2 ** 31)) for spec in declared}
        values = search_space.config_values(drawn, cfg.tuner.search_space)
        samples.append(search_space.apply(cfg, {key: value for key, value in values.items()
                                                if key.startswith("model.") and key != "model.dropout"}))
    return samples


def probe_rate(cfg: Config) -> float:
    """Training images/s of this config's model at its trainer settings, on random data."""
    trainer = cfg.trainer
    model = train.prepare_model(cfg.model, trainer, seed=cfg.seed)
    batches = max(PROBE_BATCHES, trainer.steps_per_execution)
    rng = np.random.default_rng(0)
    x = rng.random((batches * trainer.batch_size, 32, 32, 3), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(x))]
    model.fit(x[: trainer.batch_size * trainer.steps_per_execution], y[: trainer.batch_size * trainer.steps_per_execution],
              batch_size=trainer.batch_size, epochs=1, verbose=0)  # builds the graph
    started = time.perf_counter()
    model.fit(x, y, batch_size=trainer.batch_size, epochs=1, verbose=0)
    return len(x) / (time.perf_counter() - started)


def estimate_minutes(the_plan: Plan, train_images: int, val_images: int, seconds_per_image: float,
                     workers: int) -> float:
    """Wall minutes at `seconds_per_image` per worker: training plus per-epoch validation."""
    seconds_per_epoch = seconds_per_image * (train_images + val_images / EVAL_SPEEDUP)
    search = the_plan.search_epochs * seconds_per_epoch / workers
    return (search + the_plan.confirm_epochs * seconds_per_epoch) / 60  # confirmation runs one at a time


def describe(cfg: Config, the_plan: Plan, train_images: int, val_images: int,
             rates: Optional[List[Tuple[str, float]]] = None) -> str:
    tuner = cfg.tuner
    lines = [f"plan for study {tuner.project_name}: {tuner.kind.value}, "
             f"{tuner.workers} worker(s), trainer batch {cfg.trainer.batch_size}, precision "
             f"{getattr(cfg.trainer.precision, 'value', cfg.trainer.precision)}"]
    lines += tuner_kinds.of(tuner.kind).schedule_lines(the_plan.rounds)
    lines.append(f"  search: {the_plan.trials} trials, {the_plan.search_epochs} epochs, "
                 f"{the_plan.search_epochs * train_images:,} training images")
    lines += confirmation_lines(cfg, the_plan, train_images)
    largest = max(memory.count(sample.model)[0] for sample in sample_models(cfg))  # parameters: its checkpoints' size
    lines += disk.short_of(tuner.directory, (the_plan.trials + the_plan.confirm_runs) * (
        disk.CHECKPOINT_BYTES_PER_PARAM * largest + disk.RUN_FILES_BYTES), "the study's checkpoints and run files")
    lines.append(f"  in all: {the_plan.epochs} epochs of {train_images:,} training and {val_images:,} "
                 f"validation images ({the_plan.epochs * train_images:,} training images)")
    if rates:
        lines.append("  throughput probe (images/s per worker): "
                     + ", ".join(f"{name} {rate:,.0f}" for name, rate in rates))
        mean_cost = statistics.fmean(1 / rate for _, rate in rates)  # seconds per image, averaged over models
        low, high = (estimate_minutes(the_plan, train_images, val_images, 1 / rate, tuner.workers)
                     for rate in (max(r for _, r in rates), min(r for _, r in rates)))
        lines.append(f"  estimated wall time on this machine: about "
                     f"{_duration(estimate_minutes(the_plan, train_images, val_images, mean_cost, tuner.workers))} "
                     f"(from {_duration(low)} if every model were the fastest probed to {_duration(high)} "
                     "if the slowest), besides start-up and per-trial logging")
        if tuner.budget_minutes:
            lines.append(budget_line(cfg, the_plan, estimate_minutes(the_plan, train_images, val_images, mean_cost,
                                                                   tuner.workers)))
    return "\n".join(lines)


def budget_line(cfg: Config, the_plan: Plan, minutes: float) -> str:
    """How the design fits `tuner.budget_minutes`: whole, or the share of the search it leaves
    once the confirmation's expected time is set aside (src/jobs/budget.py stops the search there)."""
    budget = cfg.tuner.budget_minutes
    if minutes <= budget:
        return f"  budget: {budget:g} min; the whole study fits (about {_duration(minutes)})"
    per_epoch = minutes / max(the_plan.epochs, 1)
    search_minutes = budget - the_plan.confirm_epochs * per_epoch
    if search_minutes <= 0:
        return (f"  budget: {budget:g} min is less than the confirmation's expected {_duration(the_plan.confirm_epochs * per_epoch)}: "
                "raise it, or lower tuner.confirm.top_k, seeds or max_seeds")
    share = search_minutes / (the_plan.search_epochs * per_epoch)
    return (f"  budget: {budget:g} min; the confirmation is expected to need {_duration(the_plan.confirm_epochs * per_epoch)} "
            f"(cap {the_plan.confirm_epochs_max} epochs), so the search stops after about {share:.0%} of its "
            + tuner_kinds.of(cfg.tuner.kind).budget_cut(the_plan.search_epochs, the_plan.trials)
            + "; more where the store already holds the baseline's seeds (the study reuses them and gives their time "
              "to the search)")


def confirmation_lines(cfg: Config, the_plan: Plan, train_images: int) -> List[str]:
    settings = cfg.tuner.confirm
    if not the_plan.confirm_runs:
        return ["  confirmation: none (tuner.confirm.seeds=0)"]
    cap = max(settings.max_seeds, settings.seeds)
    expected = the_plan.expected_pairs or {}
    return [f"  confirmation: {the_plan.confirm_runs} runs before the first look (the top {settings.top_k} and the "
            f"baseline x {settings.seeds} seeds), then the best and the baseline in seed pairs until decided, "
            f"up to {cap} pairs (margin {settings.margin:g} points)",
            "    expected " + ", ".join(f"{pairs:.1f} pairs if the true difference is {100 * truth:g} points"
                                        for truth, pairs in expected.items())
            + " (simulated, the card study's seed noise)",
            f"    expected {the_plan.confirm_epochs} epochs ({the_plan.confirm_epochs * train_images:,} training "
            f"images), at most {the_plan.confirm_epochs_max} ({the_plan.confirm_epochs_max * train_images:,})"]


def _duration(minutes: float) -> str:
    return f"{minutes * 60:.0f} s" if minutes < 2 else f"{minutes:.0f} min"


def show(cfg: Config) -> None:
    """`tuner.plan=true`: the plan and its time estimate; trains nothing, creates no run."""
    probed = roles.worker_config(cfg) if cfg.tuner.workers > 1 else cfg
    train.set_threads(probed.trainer)  # first: only possible before TensorFlow runs an op
    splits = data_module.load(cfg.data, cfg.seed)
    the_plan = plan(cfg)
    rates = [("filters " + "/".join(map(str, model.model.conv_filters)), probe_rate(model))
             for model in sample_models(probed)]
    log.info("%s", describe(cfg, the_plan, len(splits.x_train), len(splits.x_val), rates))


class Progress:
    """Trial k of N (Hyperband: bracket and round) and an ETA at this process's own rate: the
    seconds its trials took over their epochs (not the time since it was built, which would
    leave out its first trial)."""

    def __init__(self, cfg: Config):
        self.plan = plan(cfg, confirm_cost=False)
        self.workers = cfg.tuner.workers
        self.seconds_here = 0.0
        self.epochs_done_here = 0

    def line(self, trials_done: int, epochs_done: int, epochs_this_trial: int, values: Dict,
             seconds_this_trial: float) -> str:
        self.epochs_done_here += epochs_this_trial
        self.seconds_here += seconds_this_trial
        where = f"trial {trials_done} of {self.plan.trials}"
        if "tuner/bracket" in values:
            where += f" (bracket {values['tuner/bracket']}, round {values['tuner/round']})"
        remaining = max(self.plan.search_epochs - epochs_done, 0)
        if not self.epochs_done_here or not remaining:
            return where
        # Every worker trains at about this process's rate, on the remaining epochs together.
        eta = remaining * self.seconds_here / self.epochs_done_here / self.workers
        return f"{where}, search ETA {eta / 60:.0f} min"
