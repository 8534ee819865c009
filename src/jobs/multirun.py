"""Hydra multirun <-> MLflow: one parent run per sweep, created before the jobs fan out.

`SweepTracking` is a Hydra callback (configured under `hydra.callbacks` in
conf/config.yaml). On multirun start, in the launching process, it creates
the SQLite store and the experiment once, opens a parent run, and writes its id
into the sweep directory, where every job, whichever launcher ran it, finds
it. When the sweep ends, even by a failed job, Ctrl-C or SIGTERM, the parent
run is closed with a status derived from its children and their mean/std
test accuracy. Jobs tag their runs with the sweep too, so a filter on
`tags.sweep` finds them in the UI.
"""
from __future__ import annotations

import atexit
import json
import logging
import statistics
from pathlib import Path
from typing import Any, Dict, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from src.core import interrupt

PARENT_FILE = "mlflow_sweep.json"
JOB_STATUS_FILE = "job_status.json"
log = logging.getLogger(__name__)


def sweep_name(sweep_dir: str) -> str:
    path = Path(sweep_dir)
    return f"{path.parent.name}/{path.name}" if path.parent.name not in ("", ".") else path.name


def job_context() -> Dict[str, Any]:
    """Inside a job: the sweep tags and parent run id ({} outside a multirun)."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return {}
    sweep_dir = Path(hydra_cfg.sweep.dir).resolve()
    context: Dict[str, Any] = {"tags": {"sweep": sweep_name(str(sweep_dir)), "sweep_dir": str(sweep_dir),
                                        "sweep_job": str(hydra_cfg.job.num)}}
    parent_file = sweep_dir / PARENT_FILE
    if parent_file.is_file():
        context["parent_run_id"] = json.loads(parent_file.read_text())["run_id"]
    return context


class SweepTracking(Callback):
    def __init__(self) -> None:
        self.parent: Optional[Dict[str, str]] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from src.tracking import reconcile, runs, store

        uri = store.resolve_uri(config.tracking.uri)
        experiment_id = store.ensure_experiment(uri, config.tracking.experiment)
        client = store.client(uri)
        reconcile.close_orphans(client)
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        name = sweep_name(str(sweep_dir))
        overrides = list(config.hydra.overrides.task)
        tags = {**runs.git_commit(), **runs.process_tags(), "sweep": name, "sweep_dir": str(sweep_dir),
                "sweep_role": "parent", "command": runs.command_line(["-m", *overrides])}
        run = client.create_run(experiment_id, run_name=f"sweep {name}", tags=tags)
        self.parent = {"uri": uri, "run_id": run.info.run_id, "experiment_id": experiment_id,
                       "sweep_dir": str(sweep_dir)}
        (sweep_dir / PARENT_FILE).write_text(json.dumps(self.parent, indent=2))
        runs.HEARTBEAT.add(run.info.run_id)  # the launcher's sign of life while its jobs run
        atexit.register(self.close)
        interrupt.install()
        log.info("MLflow sweep run %s (experiment '%s'), tag sweep=%s", run.info.run_id,
                 config.tracking.experiment, name)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Leave the job's outcome in its folder: a job can fail before it has
        a run (a bad value), and the sweep's parent run should still count it."""
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return
        outcome = {"job": hydra_cfg.job.num, "status": job_return.status.name,
                   "overrides": list(hydra_cfg.overrides.task)}
        if job_return.status == JobStatus.FAILED:
            outcome["error"] = str(job_return._return_value)
        (Path(hydra_cfg.runtime.output_dir) / JOB_STATUS_FILE).write_text(json.dumps(outcome, indent=2))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.close()

    def close(self) -> None:
        """End the parent run: FAILED if a job failed, KILLED if one was
        interrupted, else FINISHED; log the children's summary."""
        if self.parent is None:
            return
        from src.tracking import store
        from src.tracking.runs import HEARTBEAT

        parent, self.parent = self.parent, None
        HEARTBEAT.remove(parent["run_id"])
        client = store.client(parent["uri"])
        children = store.child_runs(client, parent["experiment_id"], parent["run_id"])
        statuses = [child.info.status for child in children]
        outcomes = [json.loads(path.read_text()) for path in Path(parent["sweep_dir"]).glob(f"*/{JOB_STATUS_FILE}")]
        failed = [o for o in outcomes if o["status"] == "FAILED"]
        accuracies = [c.data.metrics["test_accuracy"] for c in children
                      if c.info.status == "FINISHED" and "test_accuracy" in c.data.metrics]
        summary = {"jobs_finished": statuses.count("FINISHED"),
                   "jobs_failed": max(len(failed), statuses.count("FAILED")),
                   "jobs_killed": statuses.count("KILLED")}
        if accuracies:
            summary["test_accuracy_mean"] = statistics.fmean(accuracies)
            summary["test_accuracy_std"] = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        for key, value in summary.items():
            client.log_metric(parent["run_id"], key, value)
        status = "KILLED" if "KILLED" in statuses or "RUNNING" in statuses else \
            "FAILED" if summary["jobs_failed"] or not statuses else "FINISHED"  # none ran: the launcher failed
        if failed:
            client.log_text(parent["run_id"], json.dumps(failed, indent=2), "failed_jobs.json")
        client.set_terminated(parent["run_id"], status)
