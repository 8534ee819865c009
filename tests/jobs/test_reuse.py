"""Reuse, not retrain: a confirmation run of a recipe the store already holds is taken into a
new study (tag reused_from, the source's numbers and predictions); a changed recipe never is."""
from __future__ import annotations

import dataclasses

import pytest

from src.tracking import store

from helpers.cifar import splits_of
from helpers.commands import run_here
from helpers.configs import composed


def test_a_recipe_changes_with_whatever_changes_the_numbers_and_nothing_else():
    from src.jobs import confirm, reuse

    cfg = composed("+experiment=card_study")
    baseline = confirm.Candidate("baseline", {}, 20)
    splits = splits_of()
    first = reuse.recipe(confirm.run_config(cfg, baseline, 42), splits, "val_accuracy")
    assert first == reuse.recipe(confirm.run_config(cfg, baseline, 42), splits, "val_accuracy")
    # How a run is shown or where it runs changes no number: the same recipe.
    quiet = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, verbose=0, intra_op_threads=1),
                                tracking=dataclasses.replace(cfg.tracking, experiment="another"))
    assert reuse.recipe(confirm.run_config(quiet, baseline, 42), splits, "val_accuracy") == first
    changed = {
        "another seed": reuse.recipe(confirm.run_config(cfg, baseline, 43), splits, "val_accuracy"),
        "another trainer": reuse.recipe(confirm.run_config(
            dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, batch_size=128)), baseline, 42),
            splits, "val_accuracy"),
        "other data": reuse.recipe(confirm.run_config(cfg, baseline, 42), splits_of(1), "val_accuracy"),
        "other epochs": reuse.recipe(confirm.run_config(cfg, confirm.Candidate("baseline", {}, 10), 42), splits,
                                     "val_accuracy"),
        "another configuration": reuse.recipe(confirm.run_config(
            cfg, confirm.Candidate("trial 1", {"model.dropout": 0.3}, 20), 42), splits, "val_accuracy"),
        "another objective": reuse.recipe(confirm.run_config(cfg, baseline, 42), splits, "val_loss"),
    }
    assert first not in changed.values() and len(set(changed.values())) == len(changed)


def tiny_study(synthetic_cifar, uri, tmp_path, experiment, *extra):
    return run_here("+experiment=tune_random", f"data.dir={synthetic_cifar}", f"tracking.uri={uri}",
                    f"tracking.experiment={experiment}", f"tuner.directory={tmp_path / 'tuner'}",
                    "tuner/search_space=width_dropout_epochs", "tuner.search_space.epochs.type=fixed",
                    "tuner.search_space.epochs.value=2", "trainer.epochs=2", "tuner.max_trials=2",
                    "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]", "tracking.log_model=false",
                    "tuner.confirm.seeds=2", "tuner.confirm.max_seeds=2", "tuner.confirm.top_k=1", *extra)


def confirm_runs(client, experiment):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], "tags.study_role = 'confirm'")
    return {(r.data.tags["confirm_candidate"], r.data.params["seed"]): r for r in runs}


@pytest.mark.slow  # two tiny studies in this process (~60 s)
def test_a_second_study_reuses_the_first_studys_baseline_seeds(synthetic_cifar, tracking_uri, tmp_path):
    assert tiny_study(synthetic_cifar, tracking_uri, tmp_path, "first").returncode == 0
    second = tiny_study(synthetic_cifar, tracking_uri, tmp_path, "second")
    assert second.returncode == 0, second.stderr[-3000:]
    client = store.client(tracking_uri)
    before, after = confirm_runs(client, "first"), confirm_runs(client, "second")
    first_ids = {run.info.run_id for run in before.values()}
    for seed in ("42", "43"):
        copy = after[("baseline", seed)]
        # From the first study: its baseline's run of this seed, or its candidate's where the search's
        # best was the baseline configuration itself (trial 0 is the baseline: the same recipe).
        assert copy.data.tags["reused_from"] in first_ids
        source = client.get_run(copy.data.tags["reused_from"])
        assert source.data.params["seed"] == seed
        assert copy.data.tags["recipe"] == source.data.tags["recipe"]
        assert copy.data.metrics["test_accuracy"] == source.data.metrics["test_accuracy"]
        assert copy.data.metrics["best_val_accuracy"] == source.data.metrics["best_val_accuracy"]
        history = [m.value for m in client.get_metric_history(copy.info.run_id, "val_accuracy")]
        assert history == [m.value for m in client.get_metric_history(source.info.run_id, "val_accuracy")]
        assert {a.path for a in client.list_artifacts(copy.info.run_id, "predictions")} == \
            {a.path for a in client.list_artifacts(source.info.run_id, "predictions")}
    assert "reused run" in second.stdout
    # The report counts them.
    parent = next(r for r in client.search_runs([client.get_experiment_by_name("second").experiment_id],
                                                 "tags.study_role = 'parent'"))
    report = client.download_artifacts(parent.info.run_id, "report/REPORT.md", str(tmp_path / "r"))
    assert "confirmation runs were not retrained: the store held a finished run of the same recipe" in \
        open(report).read()
    # A changed recipe (another seed, trainer, data, epochs...) is never reused: the recipe test above.
