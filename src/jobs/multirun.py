"""Hydra multirun <-> MLflow: one parent run per sweep, created before the jobs fan out.

`SweepTracking` is a Hydra callback (configured under `hydra.callbacks` in
conf/config.yaml). On multirun start, in the launching process, it takes the
sweep directory's lock (a second launch of the same sweep directory is refused
while the first is alive), creates the SQLite store and the experiment once,
opens a parent run, and writes its id into the sweep directory, where every
job, whichever launcher ran it, finds it. A parent that cannot be created stops
the sweep before any job starts. When the sweep ends, even by a failed job,
Ctrl-C or SIGTERM, the parent run is closed with a status derived from its
children and their mean/std test accuracy. Jobs tag their runs with the sweep
too, so a filter on `tags.sweep` finds them in the UI.

A stopped sweep (SIGTERM or SIGINT to the launcher, Ctrl-C on the terminal)
ends every run it started. Each job process registers itself in the sweep
directory while it runs (`job_process`); at the first signal the launcher marks
the sweep as stopping (jobs not yet started then refuse to), forwards the signal
to the job processes on this host and waits up to JOB_STOP_S for them to end
their runs KILLED, before joblib, on the KeyboardInterrupt, kills its workers
with SIGKILL. `stop_sweep` then kills what is left of the launcher's processes,
closes any run of the sweep still RUNNING as KILLED, and the parent KILLED.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import socket
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import psutil
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from src.config import ProjectError
from src.core import interrupt
from src.tracking import owner, reconcile
from src.tracking.reconcile import CLOSED_BECAUSE, process_alive

PARENT_FILE = "mlflow_sweep.json"
JOB_STATUS_FILE = "job_status.json"
LOCK_FILE = ".sweep.lock"
STOPPING_FILE = ".stopping"  # written by the launcher at the first signal
RUNNING_DIR = ".running"  # <job num>.json: the process running that job, while it runs
# How long a stopped sweep's jobs get to end their runs KILLED before they are killed:
# a job checks for the signal after every batch, then ends its MLflow run (a few seconds
# on a busy machine); the command must be gone within 30 s.
JOB_STOP_S = 10.0
log = logging.getLogger(__name__)
_ACTIVE: Optional["SweepTracking"] = None  # the sweep this process launched, for stop_sweep


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


@contextmanager
def job_process() -> Iterator[None]:
    """Around a job of a multirun: refuse to start once the sweep is stopping (a worker
    of joblib takes the next queued job as soon as its job was interrupted), and
    register this process meanwhile, so that the launcher can stop it. Nothing outside
    a multirun."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        yield
        return
    sweep_dir = Path(hydra_cfg.sweep.dir).resolve()
    if (sweep_dir / STOPPING_FILE).exists():
        raise KeyboardInterrupt("the sweep is stopping")
    from src.tracking.runs import process_tags  # deferred: mlflow (~3 s), not at src.run's start

    entry = sweep_dir / RUNNING_DIR / f"{hydra_cfg.job.num}.json"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(json.dumps(process_tags()))
    try:
        yield
    finally:
        entry.unlink(missing_ok=True)


def _running_jobs(sweep_dir: Path) -> Dict[Path, Dict[str, str]]:
    jobs = {}
    for path in (sweep_dir / RUNNING_DIR).glob("*.json"):
        try:
            jobs[path] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # ended meanwhile, or being written
    return jobs


class SweepTracking(Callback):
    def __init__(self) -> None:
        self.parent: Optional[Dict[str, str]] = None
        self.lock = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra turns an Exception raised here into a warning and launches the jobs anyway,
        without their parent; so a refusal or a failure exits (SystemExit passes through)."""
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        try:
            self.lock = owner.OwnerLock(sweep_dir / LOCK_FILE, f"sweep {sweep_dir}").acquire()
        except ProjectError as err:
            sys.exit(f"error: {err}")
        try:
            self._open_parent(config, sweep_dir)
        except Exception as err:  # noqa: BLE001 - whatever it is, no job may start without its parent
            self.lock.release()
            first_line = (str(err).strip() or type(err).__name__).splitlines()[0]
            why = first_line if isinstance(err, ProjectError) else f"{type(err).__name__}: {first_line}"
            sys.exit(f"error: the sweep's MLflow parent run could not be created, so no job was started: {why}")
        global _ACTIVE
        _ACTIVE = self
        atexit.register(self.close)
        if str(config.hydra.launcher.get("_target_", "")).endswith("RayLauncher"):
            _start_ray_first(config)
        interrupt.install(first_only=True)
        interrupt.on_first_signal(self.stop_jobs)

    def _open_parent(self, config: DictConfig, sweep_dir: Path) -> None:
        from src.tracking import runs, store  # deferred: mlflow (~3 s), not at src.run's start

        (sweep_dir / STOPPING_FILE).unlink(missing_ok=True)  # left by an earlier, stopped launch
        for entry in (sweep_dir / RUNNING_DIR).glob("*.json"):
            entry.unlink(missing_ok=True)
        uri = store.resolve_uri(config.tracking.uri)
        experiment_id = store.ensure_experiment(uri, config.tracking.experiment)
        client = store.client(uri)
        reconcile.close_orphans(client)
        name = sweep_name(str(sweep_dir))
        overrides = list(config.hydra.overrides.task)
        tags = {**runs.git_commit(), **runs.process_tags(), "sweep": name, "sweep_dir": str(sweep_dir),
                "sweep_role": "parent", "command": runs.command_line(["-m", *overrides])}
        run = client.create_run(experiment_id, run_name=f"sweep {name}", tags=tags)
        self.parent = {"uri": uri, "run_id": run.info.run_id, "experiment_id": experiment_id,
                       "sweep_dir": str(sweep_dir), "sweep": name}
        (sweep_dir / PARENT_FILE).write_text(json.dumps(self.parent, indent=2))
        runs.HEARTBEAT.add(run.info.run_id)  # the launcher's sign of life while its jobs run
        log.info("MLflow sweep run %s (experiment '%s'), tag sweep=%s", run.info.run_id,
                 config.tracking.experiment, name)

    def stop_jobs(self, signum: int) -> None:
        """At the first signal, in the launcher: no new job starts, the running ones on this
        host get the signal (a job in this very process gets it as KeyboardInterrupt), and
        they have JOB_STOP_S to end their runs KILLED."""
        if self.parent is None:
            return
        sweep_dir = Path(self.parent["sweep_dir"])
        (sweep_dir / STOPPING_FILE).write_text(signal.Signals(signum).name)
        here, me, stopping = socket.gethostname(), str(os.getpid()), {}
        for path, job in _running_jobs(sweep_dir).items():
            if job.get("host") != here or job.get("pid") == me or not process_alive(job["pid"], job["process_start"]):
                continue
            try:
                os.kill(int(job["pid"]), signum)
                stopping[path] = job
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + JOB_STOP_S
        while stopping and time.monotonic() < deadline:
            time.sleep(0.1)
            stopping = {path: job for path, job in stopping.items()
                        if path.exists() and process_alive(job["pid"], job["process_start"])}

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
        from src.tracking import store  # deferred: mlflow (~3 s), not at src.run's start
        from src.tracking.runs import HEARTBEAT  # deferred: mlflow (~3 s), not at src.run's start

        parent, self.parent = self.parent, None
        interrupt.remove_hook(self.stop_jobs)
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
        status = "KILLED" if "KILLED" in statuses or "RUNNING" in statuses or interrupt.received() else \
            "FAILED" if summary["jobs_failed"] or not statuses else "FINISHED"  # none ran: the launcher failed
        if failed:
            client.log_text(parent["run_id"], json.dumps(failed, indent=2), "failed_jobs.json")
        client.set_terminated(parent["run_id"], status)
        if self.lock is not None:
            self.lock.release()
        global _ACTIVE
        if _ACTIVE is self:
            _ACTIVE = None


def _start_ray_first(config: DictConfig) -> None:
    """Start Ray as hydra-ray-launcher would (it starts none if one is running), so that the
    stop handling can be installed after it: ray.init replaces the SIGTERM handler with
    sys.exit, and Ray's C++ failure handler aborts the process on SIGTERM (exit 134, a
    job left RUNNING) unless RAY_DISABLE_FAILURE_SIGNAL_HANDLER is set, in the launcher
    and in the Ray workers it starts."""
    # deferred: it imports ray, which only the Ray launcher needs
    from hydra_plugins.hydra_ray_launcher._launcher_util import start_ray

    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    init = config.hydra.launcher.ray.init
    with open_dict(init):
        init.setdefault("object_store_memory", 78643200)  # as hydra-ray-launcher's launch() sets it
    start_ray(init)


def _kill_descendants(grace: float = 3.0) -> None:
    """Every process this launcher started and that is still there (joblib's loky workers,
    a local Ray instance): SIGTERM, then SIGKILL after `grace`. Not the resource trackers
    of loky and multiprocessing: they ignore both signals and end with this process (their
    pipe closes); killed, the launcher's exit would start a new one, which complains of
    resources it never saw."""
    def tracker(process) -> bool:
        try:
            return any("resource_tracker" in part for part in process.cmdline())
        except psutil.Error:
            return True

    left = [process for process in psutil.Process().children(recursive=True) if not tracker(process)]
    for process in left:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, left = psutil.wait_procs(left, timeout=grace)
    for process in left:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=grace)


def _close_left_runs(parent: Dict[str, str], signum: int) -> None:
    """Runs of the sweep (its jobs, and a study job's trials, which carry the sweep's tag)
    still RUNNING though their process on this host is gone: a job killed before it could
    end its run. They end KILLED, as the ones that could do."""
    from src.tracking import store  # deferred: mlflow (~3 s), not at src.run's start

    client = store.client(parent["uri"])
    here = socket.gethostname()
    experiments = [e.experiment_id for e in client.search_experiments()]
    for run in client.search_runs(experiments, f"tags.sweep = '{parent['sweep']}' and attributes.status = 'RUNNING'",
                                  max_results=10000):
        tags = run.data.tags
        if run.info.run_id == parent["run_id"] or tags.get("host") != here or \
                reconcile.process_alive(tags.get("pid", ""), tags.get("process_start", "0")):
            continue
        client.set_tag(run.info.run_id, CLOSED_BECAUSE, f"the sweep was stopped by {signal.Signals(signum).name} "
                                                          "and its process was ended before it could end the run")
        client.set_terminated(run.info.run_id, "KILLED")


def stop_sweep(signum: int) -> str:
    """In the launcher, after a signal stopped the multirun: nothing left running, no run
    left RUNNING, the parent KILLED. Returns the one line for the console."""
    name = signal.Signals(signum).name if interrupt.received() else "a signal to one of its jobs"
    sweep = _ACTIVE
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()  # the local instance it started, now, not from an exit hook that waits on it
    _kill_descendants()
    if sweep is None or sweep.parent is None:
        return f"interrupted by {name}"
    parent = dict(sweep.parent)
    from src.tracking import store  # deferred: mlflow (~3 s), not at src.run's start

    try:
        _close_left_runs(parent, signum)
        children = store.child_runs(store.client(parent["uri"]), parent["experiment_id"], parent["run_id"])
        sweep.close()
    except Exception as err:  # noqa: BLE001 - the store is gone or locked: the next command reconciles
        log.debug("closing the stopped sweep's runs failed", exc_info=True)
        return (f"interrupted by {name}: the sweep {parent['sweep']} stopped, but its runs could not be closed "
                f"({type(err).__name__}); the next command on the store closes them")
    statuses = [child.info.status for child in children]
    finished = statuses.count("FINISHED")
    return (f"interrupted by {name}: sweep {parent['sweep']} stopped; {statuses.count('KILLED') + statuses.count('RUNNING')} "
            f"running job(s) and the sweep's parent run recorded as KILLED, {finished} finished job(s) kept")
