"""What differs between tuner kinds, in one place per kind.

A trial-budget tuner (random, Bayesian, grid) trains `tuner.max_trials` trials,
each for its configuration's own epochs. Hyperband is multi-fidelity: it sets
each trial's epochs itself and continues the best of a round at the next, so
its trials have a budget (`tuner/epochs`), its candidates are the trials of the
highest budget reached, and its plan has brackets and rounds.

Every module that needs a difference asks the kind (`of(cfg.tuner.kind)`):
config checks, the tuner's arguments, the leaderboard's columns, the
confirmation's candidates, the plan, the report. Adding a tuner is a class here
(or an entry in KINDS), its value in `schema.TunerKind`, its one-line tracked
class in `src/jobs/tuner.py`, its `conf/tuner/<kind>.yaml` and docs/tuning.md.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Union

from src.config import search_space
from src.config.schema import Config, ConfigError, HyperParameter, HyperParameterType, TunerConfig, TunerKind

if TYPE_CHECKING:
    import pandas as pd


@dataclasses.dataclass
class Round:
    bracket: int
    round: int
    trials: int
    epochs: int  # trained in this round by each trial (Hyperband continues from the round before)


class TrialBudget:
    """Random, Bayesian, grid: `tuner.max_trials` trials, each for its configuration's epochs."""

    sets_epochs = False  # the search space may hold trainer.epochs
    budget_param: Optional[str] = None  # a trial's hyperparameter naming its budget (Hyperband's epochs)

    def __init__(self, kind: TunerKind, keras_tuner_class: str):
        self.kind, self.keras_tuner_class = kind, keras_tuner_class

    def check_space(self, space: Mapping[str, HyperParameter]) -> None:
        """What this kind forbids in a search space (the space's own checks are search_space.check's)."""

    def tuner_arguments(self, tuner: TunerConfig) -> Dict[str, int]:
        return {"max_trials": tuner.max_trials}

    def leaderboard_columns(self) -> Dict[str, str]:
        """Extra columns of the leaderboard: its name -> the trial run's param."""
        return {}

    def top_budget(self, finished: pd.DataFrame) -> pd.DataFrame:
        """The finished trials whose scores compare with each other: all of them."""
        return finished

    def candidate_epochs(self, cfg: Config, trial_epochs: int) -> int:
        """A confirmation run's epochs: the candidate's own."""
        return cfg.tuner.confirm.epochs or trial_epochs

    def schedule(self, cfg: Config) -> List[Round]:
        return [Round(0, 0, self.trials(cfg), expected_epochs(cfg))]

    def trials(self, cfg: Config) -> int:
        return cfg.tuner.max_trials

    def schedule_lines(self, rounds: List[Round]) -> List[str]:
        return [f"  {sum(r.trials for r in rounds)} trials x {rounds[0].epochs} epochs"]

    def budget_cut(self, search_epochs: int, trials: int) -> str:
        """What a time budget's cut leaves of the search, in the plan's words."""
        return f"{trials} trials"

    def describe_settings(self, params: Mapping[str, str]) -> str:
        """The tuner's settings, from a study run's params (the report's heading)."""
        return f"max_trials={params.get('tuner.max_trials')}"


class Grid(TrialBudget):
    def trials(self, cfg: Config) -> int:
        """keras-tuner's own grid: its GridSearch walks each hyperparameter's default, then its
        other `values` (a float without a step: min, then 10 midpoints)."""
        import keras_tuner  # deferred: keras-tuner imports TensorFlow; the config checks stay light

        hp = keras_tuner.HyperParameters()
        search_space.declare(hp, cfg.tuner.search_space)
        return min(cfg.tuner.max_trials, math.prod(len({spec.default, *spec.values}) for spec in hp.space))


class Hyperband(TrialBudget):
    """Multi-fidelity: Hyperband sets each trial's epochs and continues a round's best at the next."""

    sets_epochs = True
    budget_param = "tuner/epochs"

    def check_space(self, space: Mapping[str, HyperParameter]) -> None:
        for name, spec in space.items():
            if spec.key == search_space.HYPERBAND_EPOCHS_KEY:
                raise ConfigError(f"tuner.search_space.{name}.key={spec.key!r} is not allowed with tuner.kind=hyperband: "
                                  "Hyperband sets the epochs itself (use tuner.max_epochs and tuner.factor)")

    def tuner_arguments(self, tuner: TunerConfig) -> Dict[str, int]:
        return {"max_epochs": tuner.max_epochs, "factor": tuner.factor,
                "hyperband_iterations": tuner.hyperband_iterations}

    def leaderboard_columns(self) -> Dict[str, str]:
        return {"epochs": "hp.tuner/epochs", "initial_epoch": "hp.tuner/initial_epoch"}

    def top_budget(self, finished: pd.DataFrame) -> pd.DataFrame:
        """Only the trials of the highest budget reached: a 3-epoch score is not a 20-epoch one."""
        return finished[finished["epochs"] == finished["epochs"].max()] if "epochs" in finished else finished

    def candidate_epochs(self, cfg: Config, trial_epochs: int) -> int:
        return cfg.tuner.confirm.epochs or cfg.tuner.max_epochs

    def schedule(self, cfg: Config) -> List[Round]:
        """keras-tuner's Hyperband schedule: brackets from the most aggressive down, each
        a sequence of rounds; a trial of round r trains from epochs(r-1) to epochs(r)."""
        return hyperband_rounds(cfg.tuner.max_epochs, cfg.tuner.factor, cfg.tuner.hyperband_iterations)

    def schedule_lines(self, rounds: List[Round]) -> List[str]:
        return ["  bracket round  trials  epochs each",
                *[f"  {r.bracket:>7} {r.round:>5} {r.trials:>7} {r.epochs:>12}" for r in rounds]]

    def budget_cut(self, search_epochs: int, trials: int) -> str:
        return f"{search_epochs} epochs (Hyperband: its first brackets, the most aggressive)"

    def describe_settings(self, params: Mapping[str, str]) -> str:
        return (f"max_epochs={params.get('tuner.max_epochs')}, factor={params.get('tuner.factor')}, "
                f"hyperband_iterations={params.get('tuner.hyperband_iterations')}")


def hyperband_rounds(max_epochs: int, factor: int, iterations: int) -> List[Round]:
    import keras_tuner  # deferred: keras-tuner imports TensorFlow; the config checks stay light

    oracle = keras_tuner.oracles.HyperbandOracle(objective="val_accuracy", max_epochs=max_epochs, factor=factor,
                                                 hyperband_iterations=iterations)
    rounds = []
    for _ in range(iterations):
        for bracket in reversed(range(oracle._get_num_brackets())):
            for index in range(oracle._get_num_rounds(bracket)):
                before = oracle._get_epochs(bracket, index - 1) if index else 0
                rounds.append(Round(bracket, index, oracle._get_size(bracket, index),
                                    oracle._get_epochs(bracket, index) - before))
    return rounds


def expected_epochs(cfg: Config) -> int:
    """Epochs per trial: the config's, or the middle of the space's epochs range (sampled uniformly)."""
    for spec in cfg.tuner.search_space.values():
        if spec.key == search_space.HYPERBAND_EPOCHS_KEY:
            kind = HyperParameterType(spec.type)
            if kind is HyperParameterType.choice:
                return math.ceil(statistics.fmean(spec.values))
            if kind is HyperParameterType.fixed:
                return int(spec.value)
            return math.ceil((spec.min + spec.max) / 2)
    return cfg.trainer.epochs


KINDS: Dict[TunerKind, TrialBudget] = {
    TunerKind.hyperband: Hyperband(TunerKind.hyperband, "Hyperband"),
    TunerKind.random: TrialBudget(TunerKind.random, "RandomSearch"),
    TunerKind.bayesian: TrialBudget(TunerKind.bayesian, "BayesianOptimization"),
    TunerKind.grid: Grid(TunerKind.grid, "GridSearch"),
}


def of(kind: Union[TunerKind, str, None]) -> TrialBudget:
    """The kind's behaviour; a recorded study's `tuner.kind` param (a string) works too.
    An unknown or missing kind (a run from before the param) reads as a trial-budget tuner."""
    try:
        return KINDS[TunerKind(kind)]
    except ValueError:
        return KINDS[TunerKind.random]
