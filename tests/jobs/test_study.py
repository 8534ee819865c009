"""keras-tuner studies on tiny synthetic data: one parent run per study, one
child run per trial, leaderboard and best model logged, resume without duplicates."""
from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from src.tracking import store

from helpers.commands import run_here, start_cli

# The confirmation stage has its own tests (test_confirm.py); these check the search.
TINY = ("trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]", "trainer.batch_size=32",
        "tuner.confirm.seeds=0")
SHORT_EPOCHS = {
    "random": ("tuner.search_space.epochs.min=1", "tuner.search_space.epochs.max=2",
               "tuner.search_space.epochs.step=1"),
    "bayesian": ("tuner.search_space.epochs.min=1", "tuner.search_space.epochs.max=2",
                 "tuner.search_space.epochs.step=1"),
    "grid": ("tuner.search_space.epochs.values=[1,2]",),
    "hyperband": ("tuner.max_epochs=2", "tuner.factor=2"),
}


def study_overrides(kind, synthetic_cifar, uri, tmp_path, *extra):
    # The card's space sets each of 3 conv blocks; the tiny models of these tests have 2.
    space = "width_dropout" if kind == "hyperband" else "width_dropout_epochs"
    if kind == "grid":
        space = "grid"
    return (f"+experiment=tune_{kind}", f"data.dir={synthetic_cifar}", f"tracking.uri={uri}",
            f"tuner.directory={tmp_path / 'tuner'}", f"tuner/search_space={space}", *TINY, *SHORT_EPOCHS[kind],
            *extra)


def study_runs(uri, experiment):
    client = store.client(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("study_role") == "parent"]
    trials = [r for r in runs if r.data.tags.get("study_role") == "trial"]
    return client, parents, trials


def artifacts(client, run_id, path=None):
    found = []
    for item in client.list_artifacts(run_id, path):
        found += artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return set(found)


# The developer's loop runs one tuner; the full suite runs each.
@pytest.mark.parametrize("kind", ["random", *(pytest.param(kind, marks=pytest.mark.slow) for kind in ("bayesian", "grid", "hyperband"))])
def test_tiny_study_gives_one_child_run_per_trial(kind, synthetic_cifar, tracking_uri, tmp_path):
    result = run_here(*study_overrides(kind, synthetic_cifar, tracking_uri, tmp_path, "tuner.max_trials=3"))
    assert result.returncode == 0, result.stderr[-3000:]
    client, parents, trials = study_runs(tracking_uri, f"tune_{kind}")
    trial_dirs = list((tmp_path / "tuner" / f"tune_{kind}").glob("trial_*"))
    assert len(parents) == 1 and len(trials) == len(trial_dirs) >= 2
    if kind != "hyperband":
        assert len(trials) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    assert all(t.info.status == "FINISHED" for t in trials)

    # Children: hyperparameters, per-epoch curves, validation report and confusion matrix.
    for trial in trials:
        assert any(key.startswith("hp.") for key in trial.data.params)
        assert trial.data.params["data.validation"] == "split"
        assert "best_val_accuracy" in trial.data.metrics and "trial_seconds" in trial.data.metrics
        steps = [p.step for p in client.get_metric_history(trial.info.run_id, "val_accuracy")]
        assert steps and steps == sorted(steps) and steps[0] >= 1
        assert {"reports/val_classification_report.json", "figures/val_confusion_matrix.png",
                "figures/learning_curves.png"} <= artifacts(client, trial.info.run_id)
    if kind == "hyperband":
        continued = [t for t in trials if int(t.data.params["hp.tuner/initial_epoch"]) > 0]
        assert continued
        # Each continued round starts from its previous round's optimizer state (Adam's step count > 0).
        assert all(int(t.data.params["optimizer.start_step"]) > 0 for t in continued)
        assert all(int(t.data.params["optimizer.start_step"]) == 0 for t in trials if t not in continued)

    # Parent: settings, leaderboard, best hyperparameters, test evaluation, figures, model.
    params = parent.data.params
    assert params["tuner.kind"] == kind and params["data.validation"] == "split"
    assert params["final.mode"] == "retrain" and any(k.startswith("best.") for k in params)
    names = artifacts(client, parent.info.run_id)
    assert {"leaderboard.json", "leaderboard.csv", "best_hyperparameters.json", "search_space.json",
            "reports/test_classification_report.json", "figures/test_confusion_matrix.png",
            "report/figures/objective_vs_hyperparameters.png", "report/figures/validation_curves.png"} <= names
    # The study's figures have one home, its report: not drawn a second time beside it.
    assert "figures/objective_vs_hyperparameters.png" not in names
    local = Path(client.download_artifacts(parent.info.run_id, "", str(tmp_path / "dl")))
    board = pd.read_csv(local / "leaderboard.csv")
    assert len(board) == len(trials)
    assert list(board["best_val_accuracy"]) == sorted(board["best_val_accuracy"], reverse=True)
    best = json.loads((local / "best_hyperparameters.json").read_text())
    top = board.iloc[0]
    assert top["best_val_accuracy"] == pytest.approx(parent.data.metrics["best_val_accuracy"])
    assert all(str(best[name]) == params[f"best.{name}"] for name in best)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"tune_{kind}")
    table = mlflow.load_table("leaderboard.json", run_ids=[parent.info.run_id])  # the MLflow table
    assert len(table) == len(trials) and set(board.columns) <= set(table.columns)
    assert "test_accuracy" in parent.data.metrics
    model = mlflow.pyfunc.load_model(f"runs:/{parent.info.run_id}/model")
    assert np.asarray(model.predict(np.zeros((3, 32, 32, 3), np.float32))).shape == (3, 10)
    assert "leaderboard" in result.stdout and "[study] trial" in result.stdout
    # A quiet console: keras-tuner's print()ed banners and TensorFlow's retracing warnings are not on it.
    console = result.stdout + result.stderr
    assert not re.search(r"Trial \d+ Complete \[|Best val_accuracy So Far|Total elapsed time|Search: Running Trial"
                         r"|retracing", console), console[-3000:]
    # The winner is registered, and the alias `champion` points at it.
    champion = mlflow.pyfunc.load_model("models:/cifar10-cnn@champion")
    assert champion.metadata.run_id == parent.info.run_id


@pytest.mark.slow  # a second tiny study (~15 s): the loop keeps one (the random tuner's, above)
def test_checkpoint_final_fit_is_logged(synthetic_cifar, tracking_uri, tmp_path):
    result = run_here(*study_overrides("random", synthetic_cifar, tracking_uri, tmp_path, "tuner.max_trials=2",
                                       "tuner.final_fit=checkpoint", "tracking.log_model=false"))
    assert result.returncode == 0, result.stderr[-3000:]
    _, parents, _ = study_runs(tracking_uri, "tune_random")
    assert parents[0].data.params["final.mode"] == "checkpoint"
    assert parents[0].data.params["final.train_images"] == "180"  # the split's training part only
    params = parents[0].data.params  # the final model's trial and its hyperparameters, on record
    assert {k[len("final.hp."):] for k in params if k.startswith("final.hp.")} == \
        {k[len("best."):] for k in params if k.startswith("best.")}


@pytest.mark.slow  # starts src.run in a process of its own
def test_interrupted_study_resumes_without_losing_or_repeating_trials(synthetic_cifar, tracking_uri, tmp_path):
    overrides = study_overrides("random", synthetic_cifar, tracking_uri, tmp_path, "tuner.max_trials=4",
                                "tracking.log_model=false", "tuner.search_space.epochs.min=2",
                                "tuner.search_space.epochs.max=3")
    process = start_cli(*overrides)
    client = store.client(tracking_uri)
    deadline = time.time() + 300
    finished = []
    while time.time() < deadline and process.poll() is None:
        exp = client.get_experiment_by_name("tune_random")
        if exp:
            finished = client.search_runs([exp.experiment_id], "tags.study_role = 'trial' and "
                                          "attributes.status = 'FINISHED'")
            if finished:
                break
        time.sleep(0.2)
    assert finished, "no trial finished in time"
    process.send_signal(signal.SIGINT)  # Ctrl-C, during or right after the second trial
    output = "".join(process.communicate(timeout=120))
    assert process.returncode == 130, output[-3000:]
    assert "interrupted by SIGINT: the run was recorded as KILLED; the same command resumes the study" in output
    assert "Traceback" not in output, output[-3000:]

    _, parents, trials = study_runs(tracking_uri, "tune_random")
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    assert "RUNNING" not in {t.info.status for t in trials}
    done_before = {t.data.tags["trial_id"] for t in trials if t.info.status == "FINISHED"}
    assert len(done_before) < 4

    result = run_here(*overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    _, parents_after, trials_after = study_runs(tracking_uri, "tune_random")
    assert [p.info.run_id for p in parents_after] == [parents[0].info.run_id]  # the same study run, reopened
    assert parents_after[0].info.status == "FINISHED"
    finished_ids = [t.data.tags["trial_id"] for t in trials_after if t.info.status == "FINISHED"]
    assert sorted(finished_ids) == sorted(set(finished_ids))  # no finished trial ran twice
    assert len(finished_ids) == 4 and done_before <= set(finished_ids)
    assert parents_after[0].data.metrics["trials_finished"] == 4
    assert "(resumed)" in result.stdout


@pytest.mark.slow  # two studies, one after the other
def test_changed_config_refuses_to_resume_stale_state(synthetic_cifar, tracking_uri, tmp_path):
    first = run_here(*study_overrides("random", synthetic_cifar, tracking_uri, tmp_path, "tuner.max_trials=2",
                                      "tracking.log_model=false"))
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_here(*study_overrides("random", synthetic_cifar, tracking_uri, tmp_path, "tuner.max_trials=2",
                                       "tracking.log_model=false", "model.kernel_size=5"))
    assert second.returncode != 0
    assert "model.kernel_size" in second.stderr and "tuner.overwrite=true" in second.stderr
    fresh = run_here(*study_overrides("random", synthetic_cifar, tracking_uri, tmp_path, "tuner.max_trials=2",
                                      "tracking.log_model=false", "model.kernel_size=5", "tuner.overwrite=true"))
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    _, parents, _ = study_runs(tracking_uri, "tune_random")
    assert len(parents) == 2


@pytest.mark.slow  # a study of ten trials
def test_ten_trials_keep_memory_flat(synthetic_cifar, tracking_uri, tmp_path):
    """Keras sessions are cleared between trials: resident memory after the 10th
    trial stays within 150 MiB of what it was after the 3rd (first trials warm
    up TensorFlow's caches)."""
    # In this test process: what is measured is the growth from trial to trial, which a
    # warm process shows as well as a new one.
    result = run_here(*study_overrides("random", synthetic_cifar, tracking_uri, tmp_path, "tuner.max_trials=10",
                                       "tracking.log_model=false", "tuner.search_space.epochs.type=fixed",
                                       "tuner.search_space.epochs.value=1"))
    assert result.returncode == 0, result.stderr[-3000:]
    _, _, trials = study_runs(tracking_uri, "tune_random")
    rss = [t.data.metrics["process_rss_mb"] for t in sorted(trials, key=lambda t: t.info.start_time)]
    assert len(rss) == 10
    growth = rss[-1] - rss[2]
    print(f"resident memory per trial (MiB): {[round(v) for v in rss]}; growth 3rd->10th {growth:.0f} MiB")
    assert growth < 150, rss


def test_selecting_on_the_test_set_is_refused(tracking_uri):
    result = run_here("+experiment=tune_random", "data.validation=test", f"tracking.uri={tracking_uri}")
    assert result.returncode != 0
    assert "data.validation='test'" in result.stderr and "never on the test set" in result.stderr


def test_hyperband_may_not_tune_epochs(tracking_uri):
    result = run_here("+experiment=tune_hyperband", f"tracking.uri={tracking_uri}",
                      "tuner/search_space=filters_dropout_epochs")
    assert result.returncode != 0
    assert "tuner.search_space.epochs.key='trainer.epochs'" in result.stderr and "Hyperband" in result.stderr


@pytest.mark.slow  # the plan probes training speed on four models
def test_plan_prints_the_cost_and_creates_no_run(synthetic_cifar, tmp_path):
    tracking_uri = f"sqlite:///{tmp_path / 'never-created.db'}"
    result = run_here(*study_overrides("hyperband", synthetic_cifar, tracking_uri, tmp_path, "tuner.plan=true"))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "plan for study tune_hyperband: hyperband" in out, out[-2000:]
    # max_epochs 2, factor 2: bracket 1 trains 2 trials 1 epoch, then 1 of them 1 more; bracket 0 2 x 2.
    assert "search: 5 trials, 7 epochs, 1,260 training images" in out, out[-2000:]
    assert "throughput probe (images/s per worker)" in out and "estimated wall time on this machine" in out
    assert not Path(tracking_uri[len("sqlite:///"):]).exists()  # no store, no run
    assert not (tmp_path / "tuner").exists()  # no tuner state
