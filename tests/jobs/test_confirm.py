"""The confirmation stage: the top-k configurations and the baseline retrained with N
seeds as children of the study, the answer chosen on validation, compared with the
baseline on the test set, and nothing repeated when the study resumes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from src.tracking import store

from helpers.commands import run_cli, run_here

TOP_K, SEEDS, MAX_SEEDS = 2, 2, 3


def study(synthetic_cifar, uri, tmp_path):
    return ("+experiment=tune_random", f"data.dir={synthetic_cifar}", f"tracking.uri={uri}",
            f"tuner.directory={tmp_path / 'tuner'}", "tuner.max_trials=3", "tracking.log_model=false",
            "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]",
            "tuner/search_space=width_dropout_epochs", "tuner.search_space.epochs.type=fixed", "tuner.search_space.epochs.value=2",
            f"tuner.confirm.top_k={TOP_K}", f"tuner.confirm.seeds={SEEDS}", f"tuner.confirm.max_seeds={MAX_SEEDS}",
            "tuner.workers=2")


@pytest.mark.slow
def test_confirmation_runs_are_children_of_the_study_and_a_resume_repeats_none(synthetic_cifar, tracking_uri,
                                                                               tmp_path):
    args = study(synthetic_cifar, tracking_uri, tmp_path)
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    client = store.client(tracking_uri)
    experiment = client.get_experiment_by_name("tune_random").experiment_id
    runs = client.search_runs([experiment], max_results=1000)
    parent = next(r for r in runs if r.data.tags.get("study_role") == "parent")
    confirms = [r for r in runs if r.data.tags.get("study_role") == "confirm"]
    # The top 2 and the baseline over the first 2 seeds, then the best and the baseline in pairs until decided.
    pairs = int(parent.data.tags["confirm_seeds"])
    assert SEEDS <= pairs <= MAX_SEEDS
    assert len(confirms) == (TOP_K + 1) * SEEDS + 2 * (pairs - SEEDS)
    assert {r.data.tags["mlflow.parentRunId"] for r in confirms} == {parent.info.run_id}
    assert {r.info.status for r in confirms} == {"FINISHED"}
    # With tuner.workers=2 the confirmation runs train in worker processes, not the launcher: at most 2
    # per seed round (how they share a round's runs depends on which starts first).
    pids = {r.data.tags["pid"] for r in confirms}
    assert 1 <= len(pids) <= 2 * pairs and parent.data.tags["pid"] not in pids, pids
    by_candidate = {}
    for run in confirms:
        by_candidate.setdefault(run.data.tags["confirm_candidate"], set()).add(run.data.params["seed"])
        assert {"best_val_accuracy", "test_accuracy"} <= set(run.data.metrics)
        # The test set scores the best validation epoch's weights, as the search selected them.
        assert run.data.metrics["val_accuracy_scored"] == pytest.approx(run.data.metrics["best_val_accuracy"])
        predicted = np.load(client.download_artifacts(run.info.run_id, "predictions/test_predicted_class.npy",
                                                      str(tmp_path / run.info.run_id)), allow_pickle=False)
        assert predicted.dtype == np.uint8 and predicted.shape == (60,)  # one class per test image
    assert "baseline" in by_candidate and len(by_candidate) == TOP_K + 1
    best = parent.data.tags["confirm_best_candidate"]
    every_pair = {str(42 + index) for index in range(pairs)}
    assert by_candidate["baseline"] == by_candidate[best] == every_pair
    assert all(seeds == {"42", "43"} for name, seeds in by_candidate.items() if name not in ("baseline", best))
    # The answer: best mean validation accuracy among the searched configurations, never the test set.
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "confirmation.csv", str(tmp_path / "t")))
    first = table[table["seed"] < 42 + SEEDS]  # the candidate is chosen on the first seeds' validation
    means = first[first["candidate"] != "baseline"].groupby("candidate")["val_accuracy"].mean()
    assert best == means.idxmax()
    # The decision, one of four, on the paired test comparison; the baseline stays the answer unless
    # the candidate was decided better.
    tags = parent.data.tags
    assert tags["confirm_decision"] in ("candidate_better", "baseline_better", "equivalent", "undecided")
    assert tags["confirm_margin_points"] == "1" and float(tags["confirm_mde_points"]) > 0
    assert tags["confirm_winner"] == (best if tags["confirm_decision"] == "candidate_better" else "baseline")
    assert tags["confirm_significant"] in ("true", "false")
    assert tags["mlflow.note.content"].startswith(f"**Study `tune_random`.** Decision: "
                                                  f"{tags['confirm_decision'].replace('_', ' ')}.")
    # Undecided before the cap means another pair; a decision before it stops.
    assert pairs == MAX_SEEDS or tags["confirm_decision"] != "undecided"
    # The study ends by logging its report into its run, the answer as the run's description.
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/REPORT.md", "report/figures"} <= report
    assert "Importance" in parent.data.tags["mlflow.note.content"]
    assert parent.data.metrics["confirm_difference_low"] <= parent.data.metrics["confirm_difference"] \
        <= parent.data.metrics["confirm_difference_high"]

    again = run_here(*args)  # in this process: nothing is left to search, so no worker process starts
    assert again.returncode == 0, again.stderr[-3000:]
    assert "no chief or worker started" in again.stdout, again.stdout[-3000:]  # nothing was left to search
    confirms_after = [r for r in client.search_runs([experiment], max_results=1000)
                      if r.data.tags.get("study_role") == "confirm"]
    assert sorted(r.info.run_id for r in confirms_after) == sorted(r.info.run_id for r in confirms)


def test_the_first_look_trains_a_hopeless_candidate_no_further(monkeypatch):
    from types import SimpleNamespace

    from src.jobs import confirm

    # Seed noise of about 0.6 points; trial 2 trails by 1 point (inside it), trial 3 by 10.
    accuracy = {"trial 1": 0.70, "trial 2": 0.69, "trial 3": 0.60, "baseline": 0.65}
    trained = []

    def fake_train(stage, wanted):
        for candidate, seed in wanted:
            trained.append((candidate.label, seed))
        return {(label, seed): SimpleNamespace(data=SimpleNamespace(metrics={
            "best_val_accuracy": accuracy[label] + (0.0, 0.008, -0.004)[seed - 42], "test_accuracy": accuracy[label]}),
            info=SimpleNamespace(run_id=f"{label}-{seed}")) for label, seed in trained}

    monkeypatch.setattr(confirm.ConfirmStage, "train_missing", fake_train)
    monkeypatch.setattr(confirm.mlflow, "set_tag", lambda *args: None)
    chosen = [confirm.Candidate(label, {}, 20) for label in accuracy]
    done, dropped = confirm.ConfirmStage(study=None).first_look(chosen, [42, 43, 44])
    assert list(dropped) == ["trial 3"]
    assert [seed for label, seed in trained if label == "trial 3"] == [42]  # stopped after its first seed
    assert all([seed for label, seed in trained if label == other] == [42, 43, 44]
               for other in ("trial 1", "trial 2", "baseline"))
