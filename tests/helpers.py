"""Test helpers: a tiny synthetic CIFAR-10 in the real on-disk layout, the
CLI as a user runs it, and where the real data is."""
from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from src.tracking import store

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"
SHARED_CIFAR = (PROJECT_ROOT.parent / "shared" / "data" / "cifar-10-batches-py").resolve()
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray, name: str) -> None:
    """One batch the way the official files are laid out (bytes keys, N x 3072 uint8)."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": data,
             b"filenames": [f"{name}/{i:04d}.png".encode() for i in range(len(images))]}
    with path.open("wb") as handle:
        pickle.dump(batch, handle, protocol=2)


def make_synthetic_cifar(root: Path, per_batch: int = 40, test_size: int = 60, seed: int = 0) -> Path:
    """Five train batches and a test batch of learnable images: each class has
    its own mean colour, so a few epochs separate them."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    palette = rng.integers(30, 225, size=(10, 3))

    def images_for(labels):
        noise = rng.normal(0, 20, size=(len(labels), 32, 32, 3))
        return np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)

    for index in range(1, 6):
        labels = rng.permutation(np.arange(per_batch) % 10)
        write_batch(root / f"data_batch_{index}", images_for(labels), labels, f"train{index}")
    labels = rng.permutation(np.arange(test_size) % 10)
    write_batch(root / "test_batch", images_for(labels), labels, "test")
    with (root / "batches.meta").open("wb") as handle:
        pickle.dump({b"label_names": [n.encode() for n in CLASS_NAMES], b"num_vis": 3072,
                     b"num_cases_per_batch": per_batch}, handle, protocol=2)
    return root


def run_cli(*overrides: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m src.run ...` as a user types it, from the project root."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "src.run", *overrides], cwd=PROJECT_ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


def start_cli(*overrides: str, env: dict | None = None, new_session: bool = False) -> subprocess.Popen:
    """`python -m src.run ...` started in the background, as run_cli runs it, for a test that
    acts on it while it runs (a signal, a second command). `new_session`: in a process group
    of its own, as a terminal's foreground job is, so that `os.killpg(process.pid, SIGINT)`
    is a Ctrl-C on that terminal."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "src.run", *overrides], cwd=PROJECT_ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=new_session)


def call_here(main, *args: str) -> subprocess.CompletedProcess:
    """A command's `main(argv)` (src.report, src.predict; src.run through run_here) inside
    this test process, its output captured and its exit status as the interpreter would
    give it."""
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            returncode = main(list(args)) or 0
        except SystemExit as stop:  # what the interpreter does with sys.exit(...)
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
            returncode = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
    return subprocess.CompletedProcess([main.__module__, *args], returncode, stdout.getvalue(), stderr.getvalue())


def run_here(*overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m src.run ...` inside this test process: the same Hydra entry point parsing
    the same command line, minus a new interpreter (a new process spends ~10 s importing
    TensorFlow, MLflow and keras-tuner before its first line of work). What only a process
    of its own can show (signals, kills, exit codes of a crash, resident memory, launchers
    that fork) stays with run_cli. What the run changes in the process (signal handlers,
    environment, working folder, logging, Keras' global policy, MLflow's tracking URI) is
    put back afterwards, so the next test starts as it would in a new process."""
    import gc
    import logging
    import signal

    import keras
    import mlflow
    from absl import logging as absl_logging

    from src.core import interrupt
    from src.run import main

    # Hydra's logging set-up closes every handler there is; absl's closes its stream (the
    # test's captured stderr) unless it is one of sys's own, which only a process's end does.
    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    saved_environ, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_unraisablehook = sys.unraisablehook  # pytest's own, which interrupt.install wraps
    root = logging.getLogger()
    saved_logging = (list(root.handlers), root.level, logging.getLogger("src").level)
    saved_uri = mlflow.get_tracking_uri()
    # Hydra finds conf/ relative to src/run.py only for a __main__ module (as under `python -m`).
    os.environ.update({"TF_CPP_MIN_LOG_LEVEL": "3", "HYDRA_MAIN_MODULE": "__main__", **(env or {})})
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    def hydra_main(argv: list) -> None:  # Hydra reads its command line from sys.argv
        sys.argv = [str(PROJECT_ROOT / "src" / "run.py"), *argv]
        main()

    try:
        os.chdir(PROJECT_ROOT)
        return call_here(hydra_main, *overrides)
    finally:
        while mlflow.active_run() is not None:  # as MLflow's atexit hook would at a process's end
            mlflow.end_run()
        mlflow.set_tracking_uri(saved_uri)
        gc.unfreeze()  # the run froze what it found (train.freeze_long_lived_objects); a process's end frees it
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("float32")
        interrupt.reset()
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)
        sys.unraisablehook = saved_unraisablehook
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved_logging[0]:
            root.addHandler(handler)
        root.setLevel(saved_logging[1])
        logging.getLogger("src").setLevel(saved_logging[2])
        os.environ.clear()
        os.environ.update(saved_environ)
        os.chdir(saved_cwd)
        sys.argv = saved_argv


def requires_shared_data():
    return pytest.mark.skipif(not (SHARED_CIFAR / "data_batch_1").is_file(),
                              reason=f"real CIFAR-10 not found at {SHARED_CIFAR}")


def all_runs(uri: str) -> list:
    """Every run in a test's SQLite store ([] if the store was never created)."""
    path = store.sqlite_path(uri)
    if path is None or not path.exists():
        return []
    client = store.client(uri)  # waits if a command under test is creating this store right now
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def logged_run(experiment_id: str, name: str, tags: dict | None = None, params: dict | None = None,
               metrics: dict | None = None, parent: str | None = None, test_classes: tuple | None = None,
               evaluation: bool = False, artifacts: dict | None = None) -> str:
    """A finished MLflow run built directly (no training), in the store `mlflow` points at.
    `test_classes`: (true, predicted) classes per test image, logged with the test accuracy
    they give; `evaluation`: as a whole test evaluation (reports and figures too, slower);
    `artifacts`: {file: dict}, as JSON."""
    import mlflow

    from src.core import evaluate
    from src.tracking import logged

    tags = {**(tags or {}), **({"mlflow.parentRunId": parent} if parent else {})}
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run:
        mlflow.log_params(params or {})
        mlflow.log_metrics(metrics or {})
        if test_classes is not None:
            truth, predicted = (np.asarray(c) for c in test_classes)
            accuracy = float((truth == predicted).mean())
            if evaluation:
                logged.log_evaluation(evaluate.summarize(1.0 - accuracy, accuracy, truth, predicted, CLASS_NAMES),
                                      "test")
            else:
                mlflow.log_metrics({"test_accuracy": accuracy, "test_loss": 1.0 - accuracy})
                logged.log_test_classes(truth, predicted)
        for path, content in (artifacts or {}).items():
            mlflow.log_dict(content, path)
    return run.info.run_id


@contextlib.contextmanager
def once_per_session(tmp_path_factory, name: str):
    """Yields (path, build): build is True in the one test process (of pytest-xdist's
    workers) that must make `path`; the others wait for it and reuse it, as xdist's
    docs advise for costly session fixtures."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this session's folder, shared by its workers (never an older session's)
    target = root / name
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / f"{name}.done"
        yield target, not done.exists()
        done.touch()


def copy_template_store(template: Path, target: Path) -> None:
    """A fresh, migrated MLflow store at `target`, copied from `template`: MLflow's first
    use of a new SQLite file runs its ~50 schema migrations (3.3 s of CPU, measured),
    which most tests would otherwise pay for once or twice each. Experiment 0's artifact
    folder is set beside the copy, where MLflow would have put it for this file."""
    import shutil
    import sqlite3
    from contextlib import closing

    shutil.copyfile(template, target)
    with closing(sqlite3.connect(target)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   ((target.parent / "mlruns" / "0").as_uri(),))


def composed(*overrides: str):
    """The typed config of `src.run` with these overrides, validated, without running anything."""
    from hydra import compose, initialize_config_dir

    from src.config import register, validate

    register()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return validate(compose(config_name="config", overrides=list(overrides)))


def study_config(tmp_path, *overrides: str):
    """A random-search study's typed config with its tuner state under `tmp_path`."""
    return composed("+experiment=tune_random", f"tuner.directory={tmp_path}", *overrides)


# ---- shared by the sweep, Ray, distributed and team-server tests ----

TINY = ("trainer.epochs=1", "trainer.batch_size=32", "tracking.log_model=false", "trainer.verbose=0",
        "model.filters=[8,16]", "model.dense_units=[16]")


def sweep_runs(uri, experiment):
    client = store.client(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


EXPECTED_ARTIFACTS = {
    "config/config.yaml", "config/overrides.yaml", "model_summary.txt",
    "figures/learning_curves.png", "figures/test_confusion_matrix.png",
    "figures/test_confusion_matrix_normalized.png",
    "reports/test_classification_report.txt", "reports/test_classification_report.json",
    "reports/test_confusion_matrix.csv", "reports/test_confusion_matrix_normalized.csv",
}


TINY_STUDY = ("+experiment=tune_random", "tuner.confirm.seeds=0", "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]",
              "tuner/search_space=width_dropout_epochs",
              "tuner.search_space.epochs.min=1", "tuner.search_space.epochs.max=2",
              "tuner.search_space.epochs.step=1", "tuner.max_trials=4", "tracking.log_model=false",
              "tuner.workers=2")


RAY_MISSING = (importlib.util.find_spec("ray") is None
               or importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None)


def processes_using(path: str) -> list:
    """Ray's own processes (raylet, gcs_server, workers) name its temp dir on their command line."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(path in arg for arg in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def stop(processes: list) -> None:
    for proc in processes:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=10)


def ray_multirun(synthetic_cifar, tracking_uri, tmp_path):
    """A four-job sweep on a local Ray instance, checked; also run against the
    PostgreSQL-backed server (tests/test_tracking_server.py)."""
    # A short temp dir of its own: Ray's unix socket paths must stay under 107
    # characters, and it tells Ray's processes apart from any others here.
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    sweep_dir = tmp_path / "sweep"
    try:
        result = run_cli("-m", "+launcher=ray", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                         "tracking.experiment=ray", f"hydra.sweep.dir={sweep_dir}", *TINY, "seed=1,2,3,4",
                         # a local instance bound to loopback, without the dashboard
                         "hydra.launcher.ray.init.address=null",
                         "+hydra.launcher.ray.init._node_ip_address=127.0.0.1",
                         "+hydra.launcher.ray.init.include_dashboard=false",
                         f"+hydra.launcher.ray.init._temp_dir={ray_tmp}",
                         timeout=400)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Started a local Ray instance" in result.stderr + result.stdout

        parents, children = sweep_runs(tracking_uri, "ray")
        assert len(parents) == 1 and len(children) == 4
        parent = parents[0]
        assert parent.info.status == "FINISHED" and parent.data.metrics["jobs_finished"] == 4
        assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
        assert {c.info.status for c in children} == {"FINISHED"}
        assert sorted(c.info.run_name for c in children) == [f"f8-16_d0.5_e1_s{seed}" for seed in (1, 2, 3, 4)]
        assert {c.data.params["trainer.intra_op_threads"] for c in children} == {"1"}

        # The driver shut its Ray instance down on exit: nothing of it is left running.
        deadline = time.monotonic() + 15
        while processes_using(ray_tmp) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers = processes_using(ray_tmp)
        assert not leftovers, [" ".join(p.cmdline()[:3]) for p in leftovers]
    finally:
        stop(processes_using(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
