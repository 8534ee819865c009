"""What the study benchmarks share: one study through the real command line, timed,
into a throwaway store, and its finished trial runs read back from MLflow."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from src.config.paths import PROJECT_ROOT

# A benchmark measures the search: no confirmation stage, no retraining of the winner,
# no model logged or registered.
SEARCH_ONLY = ("trainer.verbose=0", "tuner.final_fit=checkpoint", "tuner.confirm.seeds=0",
               "tracking.log_model=false", "tracking.register_best_as=null")


def timed_command(label: str, args: Sequence[str], uri: str) -> float:
    """`python -m src.run <args>` logging to the store at `uri`; returns its wall seconds.
    A failed command ends the benchmark with its stderr, naming `label`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "src.run", *args, f"tracking.uri={uri}"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
    return wall


def timed_study(label: str, overrides: Sequence[str], store: Path, experiment: str,
                data_dir: Optional[str]) -> Tuple[float, List]:
    """One study with its store, tuner state and Hydra folder under `store`; returns the wall
    seconds of the whole command and its FINISHED trial runs."""
    uri = f"sqlite:///{store / 'mlflow.db'}"
    wall = timed_command(label, [*overrides, *SEARCH_ONLY, f"tracking.experiment={experiment}",
                                 f"tuner.directory={store / 'tuner'}", f"hydra.run.dir={store / 'hydra' / experiment}",
                                 *([f"data.dir={data_dir}"] if data_dir else [])], uri)

    from src.tracking.store import client as store_client  # deferred: mlflow (~3 s), not for --help

    client = store_client(uri)
    exp = client.get_experiment_by_name(experiment)
    return wall, client.search_runs([exp.experiment_id],
                                    "tags.study_role = 'trial' and attributes.status = 'FINISHED'", max_results=1000)


def search_seconds(trials: List) -> float:
    """From the first trial's start to the last one's end (MLflow's times): the search alone."""
    return (max(t.info.end_time for t in trials) - min(t.info.start_time for t in trials)) / 1000
