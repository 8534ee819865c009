"""Several processes logging to one SQLite store at once lose nothing."""
from __future__ import annotations

import subprocess
import sys

from mlflow import MlflowClient

from conftest import PROJECT_ROOT
from src import track

WRITER = """
import sys, mlflow
from src import track
uri, worker = sys.argv[1], int(sys.argv[2])
track.ensure_experiment(uri, "concurrent")
with track.tracked_run(f"writer-{worker}", {"worker": str(worker)}):
    mlflow.log_params({f"p{i}": i * worker for i in range(20)})
    for step in range(1, 101):
        mlflow.log_metrics({"loss": 1.0 / step + worker, "val_accuracy": step / 100}, step=step)
    mlflow.log_text(f"writer {worker}", "note.txt")
"""


def test_four_processes_log_to_one_sqlite_store(tracking_uri):
    track.ensure_experiment(tracking_uri, "concurrent")  # created once before fanning out, as sweeps do
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, tracking_uri, str(worker)], cwd=PROJECT_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for worker in range(1, 5)]
    for writer in writers:
        _, stderr = writer.communicate(timeout=300)
        assert writer.returncode == 0, stderr[-3000:]
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("concurrent").experiment_id])
    assert sorted(r.data.tags["worker"] for r in runs) == ["1", "2", "3", "4"]
    for run in runs:
        worker = int(run.data.tags["worker"])
        assert run.info.status == "FINISHED"
        assert len(run.data.params) == 20 and run.data.params["p19"] == str(19 * worker)
        for key in ("loss", "val_accuracy"):
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(p.step for p in history) == list(range(1, 101)), key
        assert client.download_artifacts(run.info.run_id, "note.txt")
