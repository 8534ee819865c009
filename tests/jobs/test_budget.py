"""A study's time budget: the search stops when the time left is what the confirmation needs,
then the study confirms; the parent run says what the budget cut."""
from __future__ import annotations

import pytest

from src.config import ConfigError
from src.tracking import store

from helpers.cifar import splits_of
from helpers.commands import run_here
from helpers.configs import composed


def test_a_budget_must_be_positive_minutes():
    with pytest.raises(ConfigError, match=r"^tuner.budget_minutes=0.0 is not allowed: expected null \(no budget\)"):
        composed("+experiment=tune_random", "tuner.budget_minutes=0")


def test_a_parallel_study_refuses_a_budget_it_would_not_apply():
    """A parallel study's trials come from its chief's oracle, which has no budget: refused in one
    line at config time rather than ignored."""
    with pytest.raises(ConfigError, match=r"^tuner.budget_minutes=30.0 is not allowed: expected null in a "
                                          r"parallel study \(tuner.workers > 1"):
        composed("+experiment=tune_random", "tuner.budget_minutes=30", "tuner.workers=2")
    assert composed("+experiment=tune_random", "tuner.budget_minutes=30", "tuner.workers=1").tuner.budget_minutes == 30


@pytest.mark.slow  # a tiny random study cut by its budget, then confirmed (~60 s)
def test_the_search_stops_within_its_budget_and_the_study_confirms(synthetic_cifar, tracking_uri, tmp_path):
    budget_minutes, max_trials = 0.6, 40
    result = run_here("+experiment=tune_random", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                      f"tuner.directory={tmp_path / 'tuner'}", "tuner/search_space=width_dropout_epochs",
                      "tuner.search_space.epochs.min=1", "tuner.search_space.epochs.max=2",
                      "tuner.search_space.epochs.step=1", "trainer.epochs=2", f"tuner.max_trials={max_trials}",
                      "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]", "tracking.log_model=false",
                      "tuner.confirm.seeds=2", "tuner.confirm.max_seeds=2", "tuner.confirm.top_k=1",
                      f"tuner.budget_minutes={budget_minutes}")
    assert result.returncode == 0, result.stderr[-3000:]
    client = store.client(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("tune_random").experiment_id], max_results=1000)
    parent = next(r for r in runs if r.data.tags.get("study_role") == "parent")
    trials = [r for r in runs if r.data.tags.get("study_role") == "trial"]
    confirms = [r for r in runs if r.data.tags.get("study_role") == "confirm"]
    assert 1 <= len(trials) < max_trials  # the budget, not max_trials, ended the search
    assert parent.data.tags["budget_cut"].startswith(f"the search stopped after {len(trials)} trials")
    assert "the confirmation needs about" in parent.data.tags["budget_cut"]
    assert len(confirms) == 4  # then it confirmed: the best and the baseline x 2 seeds
    # Kept within its tolerance: the search checks before each trial, so it overruns by at most
    # one trial, and the confirmation by the error of its estimate (the trials' seconds per epoch).
    minutes = [(r.info.end_time - r.info.start_time) / 60_000 for r in trials + confirms]
    search = sum((r.info.end_time - r.info.start_time) / 60_000 for r in trials)
    assert search <= budget_minutes + max(minutes)
    assert sum(minutes) <= budget_minutes + 2 * max(minutes), (sum(minutes), max(minutes))


@pytest.mark.parametrize("override, words", [
    ("tuner.confirm.max_seeds=0", "tuner.confirm.max_seeds=0 is not allowed: expected an integer >= 1"),
    ("tuner.confirm.margin=0", "tuner.confirm.margin=0.0 is not allowed: expected accuracy points in (0, 100)"),
])
def test_the_deciding_confirmations_keys_are_checked_in_one_line(override, words):
    with pytest.raises(ConfigError) as raised:
        composed("+experiment=tune_random", override)
    assert str(raised.value).startswith(words) and "\n" not in str(raised.value)


def test_the_budget_sets_aside_only_what_the_confirmation_must_train(tracking_uri, tmp_path):
    """The baseline configuration's seeds that the store already holds with the same recipe are
    taken, not trained (src/jobs/reuse.py), so the budget does not keep their time for them: more
    of it goes to the search."""
    import mlflow

    from src.jobs import budget, confirm, reuse

    cfg = composed("+experiment=card_study_lean", "tuner.confirm.seeds=3", "tuner.confirm.max_seeds=3",
                   "tuner.confirm.top_k=1", f"tuner.directory={tmp_path}")
    splits = splits_of()
    experiment = store.ensure_experiment(tracking_uri, "earlier")
    parent = mlflow.MlflowClient().create_run(experiment).info.run_id
    whole = budget.Budget(cfg, parent, splits)
    assert whole.confirm_epochs == 2 * 3 * 20 and whole.reused_note == ""  # the best and the baseline x 3 seeds
    baseline = confirm.baseline_candidate(cfg)  # as the confirmation takes it (confirm.candidates)
    for seed, status in ((42, "FINISHED"), (43, "FINISHED"), (44, "KILLED")):  # a killed run is no result
        with mlflow.start_run(tags={"study_role": "confirm", reuse.RECIPE_TAG: reuse.recipe(
                confirm.run_config(cfg, baseline, seed), splits, cfg.tuner.objective)}) as run:
            pass
        mlflow.MlflowClient().set_terminated(run.info.run_id, status)
    lean = budget.Budget(cfg, parent, splits)
    assert lean.confirm_epochs == whole.confirm_epochs - 2 * 20
    assert lean.reused_note == ", less 40 epochs of the baseline's seeds the store holds"
    # Another recipe (here: other data) is not the baseline's: nothing is set aside less.
    assert budget.Budget(cfg, parent, splits_of(1)).confirm_epochs == whole.confirm_epochs
