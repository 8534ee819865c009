"""Running the commands as a user does: `python -m src.run ...` in a process of its own
(run_cli, start_cli), or through the same entry point inside the test process (run_here,
call_here)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from helpers.paths import PROJECT_ROOT


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
