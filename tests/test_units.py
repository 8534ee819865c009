"""Fast in-process tests of the pure logic: the leaderboard, resume checks,
worker configuration, and config inheritance (each group's YAML agrees with
its schema; tuner files hold only their kind and budget; experiments only
what they change)."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.analysis import compare
from src.config import ConfigError, register, validate
from src.config import schema as schema_module
from src.jobs import state

from helpers import CONF_DIR

register()


def composed(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return validate(compose(config_name="config", overrides=list(overrides)))


# ---- the leaderboard -------------------------------------------------------

def frame(rows):
    return pd.DataFrame(rows, columns=["run_name", "status", "trial_id", "best_val_accuracy"])


def test_leaderboard_ranks_finished_runs_best_first():
    board = compare.leaderboard(frame([("a", "FINISHED", "0", 0.5), ("b", "FAILED", "1", 0.9),
                                       ("c", "FINISHED", "2", 0.7)]))
    assert list(board["run_name"]) == ["c", "a", "b"]


def test_leaderboard_counts_a_retried_trial_once_by_its_finished_run():
    board = compare.leaderboard(frame([("t1 first try", "FAILED", "1", 0.8), ("t1 again", "FINISHED", "1", 0.6),
                                       ("t2", "FINISHED", "2", 0.5)]))
    assert list(board["run_name"]) == ["t1 again", "t2"]


def test_leaderboard_sorts_a_loss_ascending():
    rows = pd.DataFrame({"run_name": ["a", "b"], "status": ["FINISHED"] * 2, "trial_id": ["0", "1"],
                         "best_val_loss": [0.9, 0.3]})
    assert list(compare.leaderboard(rows, "best_val_loss")["run_name"]) == ["b", "a"]


# ---- resume checks -----------------------------------------------------------

def study_config(tmp_path, *overrides):
    return composed("+experiment=tune_random", f"tuner.directory={tmp_path}", *overrides)


def test_a_fresh_study_does_not_resume(tmp_path):
    cfg = study_config(tmp_path)
    assert state.check_resumable(cfg, state.state_dir(cfg)) is False


def test_saved_state_resumes_with_the_same_config_or_other_execution_settings(tmp_path):
    cfg = study_config(tmp_path)
    directory = state.state_dir(cfg)
    state.save_state_config(cfg, directory)
    (directory / "oracle.json").write_text("{}")
    assert state.check_resumable(cfg, directory) is True
    # Threads, workers, verbosity and tracking do not change what a study computes.
    other = study_config(tmp_path, "tuner.workers=2", "trainer.verbose=0", "trainer.intra_op_threads=1",
                         "tracking.run_name=again")
    assert state.check_resumable(other, directory) is True


def test_saved_state_from_another_config_is_refused_naming_the_difference(tmp_path):
    cfg = study_config(tmp_path)
    directory = state.state_dir(cfg)
    state.save_state_config(cfg, directory)
    (directory / "oracle.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"differs in model\.dense_units.*tuner\.overwrite=true"):
        state.check_resumable(study_config(tmp_path, "model.dense_units=[64]"), directory)
    assert state.check_resumable(study_config(tmp_path, "model.dense_units=[64]", "tuner.overwrite=true"),
                                 directory) is False


# ---- worker configuration ------------------------------------------------------

def test_workers_get_one_thread_each_unless_the_command_line_says_otherwise(tmp_path):
    from src.jobs import workers

    cfg = study_config(tmp_path, "tuner.workers=2", "tuner.overwrite=true")
    child = workers.worker_config(cfg, overrides=["tuner.workers=2"])
    assert (child.trainer.intra_op_threads, child.trainer.inter_op_threads) == (1, 1)
    assert child.tuner.overwrite is False  # the launcher has cleared the state once
    given = study_config(tmp_path, "tuner.workers=2", "trainer.intra_op_threads=4")
    child = workers.worker_config(given, overrides=["trainer.intra_op_threads=4"])
    assert (child.trainer.intra_op_threads, child.trainer.inter_op_threads) == (4, 1)
    assert workers.worker_ids(3) == ["tuner0", "tuner1", "tuner2"]


# ---- config inheritance ----------------------------------------------------------

SCHEMAS = {"model/cnn.yaml": schema_module.ModelConfig, "trainer/default.yaml": schema_module.TrainerConfig,
           "tracking/mlflow.yaml": schema_module.TrackingConfig, "data/cifar10.yaml": schema_module.DataConfig}


@pytest.mark.parametrize("path", list(SCHEMAS))
def test_group_yaml_agrees_with_its_schema_defaults(path):
    """A group file may spell out the schema's defaults for readers; it must not contradict them
    (values read from the environment apart)."""
    values = yaml.safe_load((CONF_DIR / path).read_text())
    defaults = dataclasses.asdict(SCHEMAS[path]())
    for key, value in values.items():
        if isinstance(value, str) and value.startswith("${oc.env:"):
            continue
        expected = defaults[key]
        assert value == getattr(expected, "value", expected), (path, key)


def test_tuner_files_hold_only_their_kind_and_budget():
    budget = {"defaults", "kind", "max_trials", "max_epochs", "factor", "hyperband_iterations"}
    for path in (CONF_DIR / "tuner").glob("*.yaml"):
        keys = set(yaml.safe_load(path.read_text()))
        assert keys <= budget, (path.name, keys - budget)
        assert "base_tuner" in yaml.safe_load(path.read_text())["defaults"]


def test_experiments_hold_only_what_they_change():
    """No experiment sets a key to the value it already has without it."""
    base = composed()
    defaults = {k: v for entry in yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]
                if isinstance(entry, dict) for k, v in entry.items()}
    for path in (CONF_DIR / "experiment").glob("*.yaml"):
        text = yaml.safe_load(path.read_text())
        for group in ("data", "model", "trainer"):
            for key, value in (text.get(group) or {}).items():
                current = getattr(getattr(base, group), key)
                assert value != getattr(current, "value", current), (path.name, f"{group}.{key}")
        for entry in text.get("defaults", []):  # a group override picks an option other than the default
            for key, option in (entry.items() if isinstance(entry, dict) else []):
                group = key.removeprefix("override /")
                assert option != defaults.get(group), (path.name, entry)


# ---- the search space ------------------------------------------------------------

def test_search_space_declares_each_entry_and_maps_it_to_its_config_key():
    import keras_tuner

    from src.config import search_space

    cfg = composed("+experiment=tune_random")
    hp = keras_tuner.HyperParameters()
    values = search_space.declare(hp, cfg.tuner.search_space)
    assert set(values) == {spec.key for spec in cfg.tuner.search_space.values()}
    assert set(hp.values) == set(cfg.tuner.search_space)
    trial_cfg = search_space.apply(cfg, values)
    applied = OmegaConf.structured(trial_cfg)
    for key, value in values.items():  # e.g. model.filters.0: one conv block's filters
        assert OmegaConf.select(applied, key) == value
    assert search_space.config_values({**hp.values, "tuner/epochs": 3}, cfg.tuner.search_space) == values


def test_applying_a_value_re_runs_the_schema_checks():
    from src.config import search_space

    cfg = composed("+experiment=tune_random")
    with pytest.raises(ConfigError, match=r"model\.dropout=1\.5 is not allowed"):
        search_space.apply(cfg, {"model.dropout": 1.5})
    assert cfg.model.dropout == 0.5  # the base config is untouched


def test_a_range_that_reaches_an_invalid_value_is_refused_before_any_trial():
    with pytest.raises(ConfigError, match=r"tuner\.search_space\.dropout can take 1\.2"):
        composed("+experiment=tune_random", "tuner.search_space.dropout.max=1.2")


def test_the_card_space_on_a_model_with_fewer_blocks_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"tuner\.search_space\.filters3\.key='model\.filters\.2' is not allowed with "
                       r"model\.filters=\[8, 16\]: it sets entry 2 of a list of 2"):
        composed("+experiment=tune_hyperband", "model.filters=[8,16]")


def test_hyperband_may_not_tune_the_epochs_it_sets_itself():
    with pytest.raises(ConfigError, match="Hyperband sets the epochs itself"):
        composed("+experiment=tune_hyperband", "tuner/search_space=filters_dropout_epochs")


# ---- the plan --------------------------------------------------------------------

def test_hyperband_plan_follows_keras_tuners_schedule():
    from src.jobs import plan

    rounds = plan.hyperband_rounds(max_epochs=20, factor=3, iterations=1)
    assert [(r.bracket, r.round, r.trials, r.epochs) for r in rounds] == [
        (2, 0, 12, 3), (2, 1, 4, 4), (2, 2, 2, 13), (1, 0, 6, 7), (1, 1, 2, 13), (0, 0, 4, 20)]
    card = plan.plan(composed("+experiment=tune_hyperband"))
    assert (card.trials, card.search_epochs) == (30, 226)  # the ~226 epochs the README quotes
    assert (card.confirm_runs, card.confirm_epochs) == (12, 12 * 20)  # (top 3 + baseline) x 3 seeds x 20


def test_plan_of_a_random_search_counts_the_middle_of_its_epochs_range():
    from src.jobs import plan

    the_plan = plan.plan(composed("+experiment=tune_random", "tuner.max_trials=7", "tuner.confirm.seeds=0"))
    assert (the_plan.trials, the_plan.search_epochs, the_plan.confirm_epochs) == (7, 7 * 13, 0)  # 5..20 -> 12.5


def test_progress_counts_trials_and_projects_the_remaining_epochs():
    from src.jobs import plan

    progress = plan.Progress(composed("+experiment=tune_hyperband", "tuner.workers=2"))
    progress.started -= 60  # one minute for the 6 epochs below
    line = progress.line(2, 6, 6, {"tuner/bracket": 2, "tuner/round": 0})
    # 220 epochs remain at 10 s each, shared by 2 workers: 1,100 s.
    assert line == "trial 2 of 30 (bracket 2, round 0), search ETA 18 min"
