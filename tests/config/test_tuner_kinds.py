"""What differs between tuner kinds, asked of one place (src/config/tuner_kinds.py)."""
from __future__ import annotations

import pandas as pd
import pytest

from src.config import ConfigError, TunerKind, register, tuner_kinds

from helpers.configs import composed

register()


def test_hyperbands_schedule_is_keras_tuners():
    rounds = tuner_kinds.hyperband_rounds(max_epochs=20, factor=3, iterations=1)
    assert [(r.bracket, r.round, r.trials, r.epochs) for r in rounds] == [
        (2, 0, 12, 3), (2, 1, 4, 4), (2, 2, 2, 13), (1, 0, 6, 7), (1, 1, 2, 13), (0, 0, 4, 20)]


def test_every_kind_of_the_schema_has_its_behaviour():
    assert set(tuner_kinds.KINDS) == set(TunerKind)
    assert all(tuner_kinds.of(kind.value) is tuner_kinds.KINDS[kind] for kind in TunerKind)
    assert tuner_kinds.of(None) is tuner_kinds.of("random")  # a run recorded before the param


def test_only_hyperband_sets_epochs_and_compares_trials_of_one_budget():
    board = pd.DataFrame({"trial_id": ["a", "b", "c"], "epochs": [20, 7, 20]})
    hyperband, random = tuner_kinds.of("hyperband"), tuner_kinds.of("random")
    assert list(hyperband.top_budget(board)["trial_id"]) == ["a", "c"]
    assert list(random.top_budget(board)["trial_id"]) == ["a", "b", "c"]
    assert hyperband.leaderboard_columns() == {"epochs": "hp.tuner/epochs", "initial_epoch": "hp.tuner/initial_epoch"}
    assert random.leaderboard_columns() == {}
    cfg = composed("+experiment=tune_hyperband")
    assert hyperband.candidate_epochs(cfg, 7) == cfg.tuner.max_epochs == 20  # a candidate at the full budget
    assert random.candidate_epochs(cfg, 7) == 7  # its own epochs
    assert hyperband.tuner_arguments(cfg.tuner) == {"max_epochs": 20, "factor": 3, "hyperband_iterations": 1}
    assert random.tuner_arguments(cfg.tuner) == {"max_trials": cfg.tuner.max_trials}


def test_hyperband_refuses_a_space_that_tunes_its_epochs():
    cfg = composed("+experiment=tune_random")  # a space with trainer.epochs, allowed here
    tuner_kinds.of("random").check_space(cfg.tuner.search_space)
    with pytest.raises(ConfigError, match=r"key='trainer.epochs' is not allowed with tuner.kind=hyperband"):
        tuner_kinds.of("hyperband").check_space(cfg.tuner.search_space)


def test_a_grid_counts_keras_tuners_own_grid():
    cfg = composed("+experiment=tune_random", "tuner.kind=grid", "tuner.max_trials=1000",
                   "tuner/search_space=width_dropout")
    grid = tuner_kinds.of("grid").trials(cfg)
    assert 1 < grid < 1000
    assert tuner_kinds.of("grid").trials(composed("+experiment=tune_random", "tuner.kind=grid",
                                                  "tuner.max_trials=2", "tuner/search_space=width_dropout")) == 2
