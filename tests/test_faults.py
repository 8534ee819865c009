"""Bad input and faults, through the real command line: each gives a clear
error (key/value/allowed, or the file), a non-zero exit, and either no MLflow
run at all or a run that ended FAILED/KILLED, never RUNNING.

docs/faults.md lists every case here with what the user sees; a test keeps
the two in step.
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.tracking import store

from helpers.commands import run_cli, run_here
from helpers.paths import PROJECT_ROOT
from helpers.stores import all_runs

TINY = ("trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]", "tracking.log_model=false")


def truncate(root: Path) -> None:
    path = root / "data_batch_2"
    path.write_bytes(path.read_bytes()[:3000])


def corrupt(root: Path) -> None:
    (root / "test_batch").write_bytes(os.urandom(4096))


def wrong_shape(root: Path) -> None:
    with (root / "data_batch_1").open("wb") as handle:
        pickle.dump({b"data": [[1, 2, 3]] * 4, b"labels": [0, 1, 2, 3]}, handle)


def missing_file(root: Path) -> None:
    (root / "batches.meta").unlink()


def block_artifacts(root: Path, uri: str) -> None:
    """An experiment whose artifact location is under a regular file: no artifact can be written."""
    blocker = root.parent / "not-a-directory"
    blocker.write_text("a file where the artifact folder should be")
    store.client(uri).create_experiment("faults", artifact_location=(blocker / "artifacts").as_uri())


# (id, overrides, damage to the dataset or store, what stderr must say, how the run ends: None = no run)
CASES = [
    ("dropout-out-of-range", ["model.dropout=1.5"], None, ["model.dropout=1.5", "[0, 1)"], None),
    ("negative-dropout", ["model.dropout=-0.1"], None, ["model.dropout=-0.1", "[0, 1)"], None),
    ("zero-filters", ["model.filters=[32,0,128]"], None, ["model.filters=[32, 0, 128]", ">= 1"], None),
    ("empty-filters", ["model.filters=[]"], None, ["model.filters=[]", "non-empty"], None),
    ("too-many-conv-blocks", ["model.filters=[8,8,8,8]"], None, ["model.filters", "at most 3 conv blocks"], None),
    ("zero-dense-units", ["model.dense_units=[0]"], None, ["model.dense_units=[0]", ">= 1"], None),
    ("zero-epochs", ["trainer.epochs=0"], None, ["trainer.epochs=0", ">= 1"], None),
    ("zero-batch-size", ["trainer.batch_size=0"], None, ["trainer.batch_size=0", ">= 1"], None),
    ("epochs-not-a-number", ["trainer.epochs=ten"], None, ["trainer.epochs", "ten"], None),
    ("val-fraction-one", ["data.val_fraction=1.0"], None, ["data.val_fraction=1.0", "(0, 1)"], None),
    ("unknown-validation-mode", ["data.validation=train"], None, ["validation", "train", "test", "split"], None),
    ("unknown-optimizer", ["trainer.optimizer=adagradx"], None, ["optimizer", "adagradx", "adam"], None),
    ("unknown-tuner-kind", ["+experiment=tune_random", "tuner.kind=evolution"], None,
     ["kind", "evolution", "hyperband"], None),
    ("tuning-on-the-test-set", ["+experiment=tune_random", "data.validation=test"], None,
     ["data.validation='test'", "never on the test set"], None),
    ("search-space-unknown-key", ["+experiment=tune_random", "tuner/search_space=width_dropout_epochs",
                                  "tuner.search_space.dropout.key=model.dropot"], None,
     ["tuner.search_space.dropout.key='model.dropot'", "expected a config key"], None),
    ("missing-data-dir", ["data.dir=/nonexistent/cifar"], None, ["/nonexistent/cifar", "does not exist"], None),
    ("missing-batch-file", [], missing_file, ["batches.meta"], None),
    ("truncated-batch", [], truncate, ["data_batch_2", "truncated"], None),
    ("corrupted-batch", [], corrupt, ["test_batch"], None),
    ("wrong-array-shape", [], wrong_shape, ["data_batch_1", "(N, 3072) uint8"], None),
    ("unreachable-tracking-server", ["tracking.uri=http://127.0.0.1:9"], None,
     ["tracking.uri=http://127.0.0.1:9", "not reachable"], None),
    ("artifact-store-unwritable", ["tracking.experiment=faults"], "block_artifacts",
     ["could not record the run", "ended FAILED"], "FAILED"),
    ("diverging-loss", ["trainer.optimizer=sgd", "trainer.learning_rate=1e6"], None,
     ["diverged", "trainer.learning_rate=1000000.0"], "FAILED"),
]


@pytest.mark.parametrize("case_id, overrides, damage, expected, status", CASES, ids=[c[0] for c in CASES])
def test_fault(case_id, overrides, damage, expected, status, synthetic_cifar, tracking_uri):
    if damage == "block_artifacts":
        store.ensure_experiment(tracking_uri, "Default")
        block_artifacts(synthetic_cifar, tracking_uri)
    elif damage:
        damage(synthetic_cifar)
    started = time.perf_counter()
    result = run_here(f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}", "trainer.epochs=1", *TINY,
                      *overrides)
    elapsed = time.perf_counter() - started
    assert result.returncode != 0, result.stdout[-2000:]
    for text in expected:
        assert text in result.stderr, (text, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    runs = all_runs(tracking_uri)
    if status is None:
        assert runs == [], [(r.info.run_name, r.info.status) for r in runs]
    else:
        assert [r.info.status for r in runs] == [status]
    if case_id == "unreachable-tracking-server":
        assert elapsed < 15 + 10, elapsed  # the check itself waits at most 5 s; the rest is start-up


@pytest.mark.slow  # starts src.run in a process of its own
def test_no_data_dir_and_no_download_is_one_line_naming_what_to_set(tmp_path, tracking_uri):
    # An unreachable proxy makes the download fail the same way with or without internet.
    offline = {"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
               "https_proxy": "http://127.0.0.1:9"}
    result = run_cli("data.dir=null", f"tracking.uri={tracking_uri}", *TINY, env=offline, timeout=300)
    assert result.returncode != 0
    assert "data.dir is not set and CIFAR-10 could not be downloaded" in result.stderr, result.stderr[-2000:]
    assert "CIFAR10_DIR" in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert all(run.info.status != "RUNNING" for run in all_runs(tracking_uri))


@pytest.mark.slow  # starts src.run in a process of its own
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_epoch_ends_the_run_killed(signum, synthetic_cifar, tracking_uri):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "src.run", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
         "trainer.epochs=500", "trainer.batch_size=4", *TINY, "tracking.experiment=signals"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client, run = store.client(tracking_uri), None
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        runs = all_runs(tracking_uri)
        if runs and client.get_metric_history(runs[0].info.run_id, "loss"):
            run = runs[0]
            break
        time.sleep(0.2)
    if run is None:
        process.kill()
        pytest.fail(f"training did not start; the command's stderr ends:\n{process.communicate()[1][-3000:]}")
    time.sleep(0.3)  # well inside an epoch of 45 batches
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    # One line and a shell's status for that signal (130 for SIGINT, 143 for SIGTERM), no traceback.
    assert process.returncode == 128 + signum, stderr[-2000:]
    assert f"interrupted by {signal.Signals(signum).name}: the run was recorded as KILLED" in stderr
    assert "Traceback" not in stderr, stderr[-2000:]
    finished = client.get_run(run.info.run_id)
    assert finished.info.status == "KILLED", stderr[-2000:]
    epochs = len(client.get_metric_history(run.info.run_id, "loss"))
    assert 1 <= epochs < 500
    # Nothing is claimed as a final result: no test metrics, reports, figures or model.
    assert "test_accuracy" not in finished.data.metrics
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names <= {"config", "model_summary.txt"}, names


def test_docs_list_every_case():
    table = (PROJECT_ROOT / "docs" / "faults.md").read_text()
    missing = [case[0] for case in CASES if f"`{case[0]}`" not in table]
    assert not missing, f"docs/faults.md does not describe: {missing}"
    for name in ("test_signal_mid_epoch", "test_four_processes"):
        assert name in table
