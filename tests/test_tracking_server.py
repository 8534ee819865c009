"""The project against a team's tracking server: PostgreSQL behind `mlflow server`
with basic auth and host protection (the `mlflow_server` fixture,
tests/tracking_server.py), through the real commands.

The server starts once per test session; conftest runs these tests first, on one xdist worker."""
from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import matplotlib.image
import numpy as np
import pytest

from src import predict
from src.analysis.report import main as report_command
from src.tracking import store

from helpers.cifar import CLASS_NAMES
from helpers.commands import call_here, run_cli, run_here
from helpers.stores import EXPECTED_ARTIFACTS
from helpers.sweeps import RAY_MISSING, TINY, TINY_STUDY, ray_multirun, sweep_runs
from store_race import race_datasets

pytestmark = pytest.mark.slow  # starts PostgreSQL, mlflow server and the commands' processes

EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


@pytest.fixture(autouse=True)
def logged_in(mlflow_server, monkeypatch):
    """This process, and the commands it starts, log in as a team member would: with
    MLflow's standard variables in the environment."""
    for name, value in mlflow_server.env.items():
        monkeypatch.setenv(name, value)


def artifact_files(client, run_id, path=None) -> set:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_files(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def check_complete(client, server, run, epochs: Optional[int], artifacts: set) -> None:
    """FINISHED, every epoch's point of each curve (`epochs` of them), and each artifact
    listed by the server and stored in its artifact destination."""
    assert run.info.status == "FINISHED", run.info.run_name
    for key in EPOCH_METRICS if epochs else ():
        steps = [point.step for point in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == list(range(1, epochs + 1)), (run.info.run_name, key, steps)
    listed = artifact_files(client, run.info.run_id)
    assert artifacts <= listed, artifacts - listed
    # Proxied artifacts: the server wrote them under --artifacts-destination.
    stored = server.artifacts / run.info.experiment_id / run.info.run_id / "artifacts"
    assert all((stored / name).is_file() for name in listed), stored


def secrets_absent(server, client, *texts: str, folders=()) -> None:
    """The client's password is in no run's params or tags, no output and no file written."""
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=10000)
    for run in runs:
        for value in [*run.data.params.values(), *run.data.tags.values()]:
            assert server.password not in value, run.info.run_name
    assert all(server.password not in text for text in texts)
    for folder in (*folders, server.artifacts):
        for path in Path(folder).rglob("*"):
            assert not path.is_file() or server.password.encode() not in path.read_bytes(), path


def test_a_client_without_credentials_is_refused(mlflow_server, synthetic_cifar, tmp_path, monkeypatch, capsys):
    uri = mlflow_server.uri
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    result = run_here("+experiment=baseline", f"data.dir={synthetic_cifar}", f"tracking.uri={uri}",
                      "tracking.experiment=refused", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: tracking server {uri} requires a login (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD in the environment (never on the command line)"), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    image = tmp_path / "image.png"
    matplotlib.image.imsave(image, np.zeros((32, 32, 3)))
    capsys.readouterr()
    assert predict.main([str(image), "--tracking-uri", uri]) == 1  # in this process: a second start-up saved
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: cannot load model models:/cifar10-cnn@champion from {uri}: tracking server {uri} requires a login "
        "(HTTP 401): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment (never on the "
        "command line)"]
    # A wrong password, and an address outside --allowed-hosts, are refused as clearly.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", mlflow_server.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    with pytest.raises(store.TrackingError, match="refused the credentials of MLFLOW_TRACKING_USERNAME=tester"):
        store.check_reachable(uri)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_server.password)
    store.check_reachable(uri)
    with pytest.raises(store.TrackingError, match=r"refuses the host name localhost:\d+ .*--allowed-hosts"):
        store.check_reachable(uri.replace("127.0.0.1", "localhost"))
    with pytest.raises(store.TrackingError, match=r"tracking.uri=http://tester:\*\*\*@127.0.0.1:\d+ carries a password"):
        store.check_reachable(uri.replace("//", f"//tester:{mlflow_server.password}@"))  # it would be logged
    client = store.client(uri)
    assert client.get_experiment_by_name("refused") is None  # nothing was created
    # The server itself, asked directly: no login, no answer.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30)
    assert refused.value.code == 401


def test_baseline_study_report_and_predict(mlflow_server, synthetic_cifar, tmp_path):
    """A user's day on the team server: the baseline, a 2-worker study that registers its
    winner, the study's report, and predictions from the registered model."""
    uri = mlflow_server.uri
    common = (f"data.dir={synthetic_cifar}", f"tracking.uri={uri}", "trainer.verbose=0", "model.filters=[8,16]",
              "model.dense_units=[16]")
    baseline = run_here("+experiment=baseline", *common, "trainer.epochs=2", "tracking.log_model=false",
                        f"hydra.run.dir={tmp_path / 'baseline'}")
    assert baseline.returncode == 0, baseline.stderr[-3000:]
    # The study logs and registers its winner's model (TINY_STUDY turns that off for speed).
    study_overrides = [o for o in TINY_STUDY if o != "tracking.log_model=false"]
    study = run_cli(*study_overrides, *common, f"tuner.directory={tmp_path / 'tuner'}",
                    f"hydra.run.dir={tmp_path / 'study'}")
    assert study.returncode == 0, study.stderr[-3000:]
    # The report and predict commands in this process (their own start-up is not what is tested here).
    report = call_here(report_command, "--study", "tune_random", "--tracking-uri", uri, "--out",
                       str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-3000:]
    image = tmp_path / "image.png"
    matplotlib.image.imsave(image, np.random.default_rng(0).random((32, 32, 3)))
    predicted = call_here(predict.main, str(image), "--tracking-uri", uri)  # models:/cifar10-cnn@champion
    assert predicted.returncode == 0, predicted.stderr[-3000:]

    client = store.client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("baseline").experiment_id])
    check_complete(client, mlflow_server, run, epochs=2, artifacts=EXPECTED_ARTIFACTS)
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"cifar10-train", "cifar10-test"}

    runs = client.search_runs([client.get_experiment_by_name("tune_random").experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("study_role") == "parent"]
    trials = [r for r in runs if r.data.tags.get("study_role") == "trial"]
    assert len(trials) == 4 and len({t.data.tags["trial_id"] for t in trials}) == 4
    assert {t.data.tags["tuner_worker"] for t in trials} == {"tuner0", "tuner1"}
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    for trial in trials:
        check_complete(client, mlflow_server, trial, epochs=int(trial.data.params["hp.epochs"]),
                       artifacts={"reports/val_classification_report.json", "figures/learning_curves.png"})
    check_complete(client, mlflow_server, parent, epochs=None,
                   artifacts={"leaderboard.csv", "best_hyperparameters.json", "reports/test_classification_report.json"})
    assert parent.data.metrics["trials_finished"] == 4 and "test_accuracy" in parent.data.metrics
    # The winner's model (an MLflow 3 logged model, beside the run's artifacts) and its registration.
    (output,) = parent.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.source_run_id == parent.info.run_id
    stored = mlflow_server.artifacts / parent.info.experiment_id / "models" / model.model_id / "artifacts"
    assert (stored / "MLmodel").is_file() and list(stored.rglob("*.keras")), stored
    champion = client.get_model_version_by_alias("cifar10-cnn", "champion")
    assert champion.source == f"models:/{model.model_id}" and champion.run_id == parent.info.run_id
    assert champion.status == "READY"

    board = (tmp_path / "report" / "leaderboard.csv").read_text().splitlines()
    assert len(board) == 1 + 4 and (tmp_path / "report" / "REPORT.md").is_file()
    ((path, name, probability),) = [line.split("\t") for line in predicted.stdout.splitlines()]
    assert path == str(image) and name in CLASS_NAMES and 0 <= float(probability) <= 1
    secrets_absent(mlflow_server, client, *(r.stdout + r.stderr for r in (baseline, study, report, predicted)),
                   folders=[tmp_path])


def test_four_job_joblib_multirun(mlflow_server, synthetic_cifar, tmp_path):
    result = run_cli("-m", "+launcher=joblib", f"data.dir={synthetic_cifar}", f"tracking.uri={mlflow_server.uri}",
                     "tracking.experiment=sweep_joblib", f"hydra.sweep.dir={tmp_path / 'sweep'}", *TINY,
                     "model.dropout=0.2,0.4", "seed=1,2")
    assert result.returncode == 0, result.stderr[-3000:]
    client = store.client(mlflow_server.uri)
    (parent,), children = sweep_runs(mlflow_server.uri, "sweep_joblib")
    assert parent.info.status == "FINISHED" and parent.data.metrics["jobs_finished"] == 4
    assert len(children) == 4 and {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    for child in children:
        check_complete(client, mlflow_server, child, epochs=1, artifacts=EXPECTED_ARTIFACTS)


def test_eight_processes_logging_the_same_dataset_at_once(mlflow_server):
    """tests/tracking/test_races.py's race, on PostgreSQL through the server: every process
    logs every dataset."""
    assert race_datasets(mlflow_server.uri, guarded=True) == []
    client = store.client(mlflow_server.uri)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert len(runs) == 8
    for run in runs:
        assert sorted(d.dataset.name for d in run.inputs.dataset_inputs) == [f"cifar10-{i}" for i in range(4)]


@pytest.mark.skipif(RAY_MISSING, reason="ray / hydra-ray-launcher not installed (pip install -e '.[ray]')")
def test_ray_multirun_is_one_sweep_on_the_server(mlflow_server, synthetic_cifar, tmp_path):
    """tests/jobs/test_ray_launcher.py's sweep: Ray's worker processes log in too."""
    ray_multirun(synthetic_cifar, mlflow_server.uri, tmp_path)
