"""Warm start: the baseline configuration is the search's first trial, then tuner.enqueue's
configurations, then the tuner's own draws; bad entries are one line at config time."""
from __future__ import annotations

import pytest

from src.config import ConfigError
from src.tracking import store

from helpers.commands import run_here
from helpers.configs import composed


def test_the_baseline_configuration_by_hyperparameter_name():
    from src.jobs import warm_start

    cfg = composed("+experiment=card_study")
    assert warm_start.queue(cfg) == [("baseline", {"filters1": 32, "filters2": 64, "filters3": 128, "dropout": 0.5})]
    beyond = composed("+experiment=beyond_study", "tuner.enqueue=[{batch_norm: true, augmentation: flip_shift}]")
    (_, baseline), (_, enqueued) = warm_start.queue(beyond)
    assert baseline == {"learning_rate": 0.001, "weight_decay": 0.0, "batch_norm": False, "augmentation": "none",
                        "filters2": 64, "dropout": 0.5}
    assert enqueued == {**baseline, "batch_norm": True, "augmentation": "flip_shift"}  # the rest is the baseline's


def test_a_baseline_outside_the_space_is_not_a_trial():
    from src.jobs import warm_start

    cfg = composed("+experiment=decide_handicapped")  # filters 8/8/8, dropout 0.8: outside the card's space
    assert warm_start.queue(cfg) == []


@pytest.mark.parametrize("entry, words", [
    ("{filters9: 32}", "filters9 is not a hyperparameter of the search space"),
    ("{filters2: 48}", "the space cannot take filters2=48 (not in [32, 64, 128])"),
    ("{dropout: 0.9}", "the space cannot take dropout=0.9 (outside 0.0..0.6)"),
])
def test_a_bad_enqueued_configuration_is_one_line(entry, words):
    with pytest.raises(ConfigError, match="^tuner.enqueue.0=") as raised:
        composed("+experiment=card_study", f"tuner.enqueue=[{entry}]")
    assert words in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.slow  # a tiny random study of 3 trials in this process (~40 s)
def test_the_baseline_then_the_enqueued_configuration_run_first(synthetic_cifar, tracking_uri, tmp_path):
    result = run_here("+experiment=tune_random", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                      f"tuner.directory={tmp_path / 'tuner'}", "tuner/search_space=width_dropout_epochs",
                      "tuner.search_space.epochs.min=1", "tuner.search_space.epochs.max=2",
                      "tuner.search_space.epochs.step=1", "trainer.epochs=2", "tuner.max_trials=3",
                      "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]",
                      "tuner.confirm.seeds=0", "tracking.log_model=false",
                      "tuner.enqueue=[{width: 2.0, dropout: 0.2, epochs: 1}]")
    assert result.returncode == 0, result.stderr[-3000:]
    client = store.client(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("tune_random").experiment_id], max_results=100)
    trials = {r.data.tags["trial_id"]: r for r in runs if r.data.tags.get("study_role") == "trial"}
    assert len(trials) == 3
    first, second = trials[min(trials)], trials[sorted(trials)[1]]
    assert {k: first.data.params[f"hp.{k}"] for k in ("width", "dropout", "epochs")} == \
        {"width": "1.0", "dropout": "0.5", "epochs": "2"}
    assert first.data.tags["warm_start"] == "baseline"
    assert {k: second.data.params[f"hp.{k}"] for k in ("width", "dropout", "epochs")} == \
        {"width": "2.0", "dropout": "0.2", "epochs": "1"}
    assert second.data.tags["warm_start"] == "enqueued"
    assert "warm_start" not in trials[max(trials)].data.tags  # then the tuner's own draws
    parent = next(r for r in runs if r.data.tags.get("study_role") == "parent")
    assert 1 <= parent.data.metrics["baseline_search_rank"] <= 3
    assert "the baseline configuration (trial" in result.stdout
