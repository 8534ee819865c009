"""keras-tuner studies: search on a held-out split, every trial a nested MLflow run.

One parent MLflow run per study (tag `study=<tuner.project_name>`); each trial
is a child run with its hyperparameters, per-epoch curves and a validation
classification report. The winner is chosen on validation data only, then
evaluated once on the test set. Re-running the same command resumes an
interrupted study: keras-tuner reloads its state from
`<tuner.directory>/<tuner.project_name>/`, finished trials are not run (or
logged) again, and the same parent run is reopened.

`Study.run` is the recipe: open -> search -> leaderboard -> confirm -> final
model -> report. Each step takes the study's context (src/jobs/context.py);
the rare cases sit where the job was opened (src/jobs/job.py), where a run
starts and ends (src/tracking/runs.py) and where a trial starts
(src/jobs/trial_seams.py).
"""
from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional

import keras
import mlflow
from omegaconf import OmegaConf

from src.analysis import report
from src.config import Config, cluster
from src.core import interrupt, train
from src.jobs import confirm, distributed, resume
from src.jobs.context import StudyContext
from src.jobs.final_model import FinalModel, final_model
from src.jobs.job import OpenedJob
from src.jobs.leaderboard import Leaderboard, leaderboard, show
from src.jobs.state import save_state_config, state_dir
from src.jobs.tuner import CifarHyperModel, make_tuner
from src.tracking import logged, store
from src.tracking.runs import run_tags, tracked_run

log = logging.getLogger(__name__)


def step(name: str):
    """A step of the recipe: its heading in the debug log, and the kill tests' failpoint
    `<name>_stage` (src/core/interrupt.py) at its start."""
    def wrap(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            log.debug("[study] %s: %s", self.context.project, name)
            interrupt.failpoint(f"{name}_stage")
            return method(self, *args, **kwargs)
        return run
    return wrap


class Study:
    """One study, as the steps a user would name."""

    def __init__(self, cfg: Config, job: OpenedJob, config_yaml: str, overrides: Optional[list] = None,
                 tags: Optional[Mapping[str, str]] = None, parent_run_id: Optional[str] = None):
        study_tags = {"study": cfg.tuner.project_name, **{k: v for k, v in (tags or {}).items() if k.startswith("sweep")}}
        self.context = StudyContext(cfg, job.splits, job.uri, job.experiment_id, store.client(job.uri),
                                    state_dir(cfg), study_tags, overrides)
        self.job, self.config_yaml, self.extra_tags, self.parent_run_id = job, config_yaml, dict(tags or {}), parent_run_id

    def run(self) -> float:
        with self.open():
            tuner = self.search()
            board = self.leaderboard(tuner)
            confirmation = self.confirm(board, tuner)
            final = self.final_model(tuner, board, confirmation)
        self.report(board, final)
        return final.result.accuracy

    @contextmanager
    def open(self) -> Iterator[None]:
        """The study's MLflow run: created with its inputs, or reopened on resume."""
        study, cfg = self.context, self.context.cfg
        earlier = store.find_study_run(study.client, study.experiment_id, study.project) if self.job.resuming else None
        parent_tags = run_tags({**cfg.tracking.tags, **self.extra_tags, **study.tags, "study_role": "parent",
                                "tuner": cfg.tuner.kind.value}, study.overrides)
        keras.utils.set_random_seed(cfg.seed)
        train.set_threads(cfg.trainer)
        with tracked_run(cfg.tracking.run_name or f"study {study.project}", parent_tags,
                         experiment_id=study.experiment_id, parent_run_id=self.parent_run_id, run_id=earlier) as run:
            study.run_id = run.info.run_id
            if earlier is None:
                self.log_inputs()
            log.info("%s: %s search%s, state in %s%s; MLflow run %s", study.project, cfg.tuner.kind.value,
                     f" with {cfg.tuner.workers} workers" if cfg.tuner.workers > 1 else "", study.directory,
                     " (resumed)" if earlier else "", study.run_id)
            yield

    def log_inputs(self) -> None:
        """The study's inputs at its start; a resume is checked against its data (src/jobs/resume.py).
        Its commit (tags git_commit, git_commits) and trainer.resolved are recorded with them."""
        study = self.context
        logged.log_run_inputs(study.cfg, study.splits, self.config_yaml, study.overrides)
        mlflow.set_tag(resume.DATA_DIGEST_TAG, resume.data_digest(study.splits))
        mlflow.log_dict(OmegaConf.to_container(OmegaConf.structured(study.cfg.tuner), enum_to_str=True),
                        "search_space.json")

    @step("search")
    def search(self):
        """keras-tuner's search, in this process (trials one after another) or on the study's
        workers (src/jobs/distributed/). Returns the tuner."""
        study = self.context
        hypermodel = CifarHyperModel(study.cfg, study.splits)
        if cluster.distributed(study.cfg.tuner):
            return distributed.search(study.cfg, hypermodel, study.directory, study.tags, study.run_id, study.uri,
                                      study.experiment_id, study.overrides)
        tuner = make_tuner(study.cfg, hypermodel, study.directory, study.tags)
        save_state_config(study.cfg, study.directory)
        # verbose=0: without keras-tuner's print()ed banners ("Trial 3 Complete [...]", "Best val_accuracy
        # So Far"); the study's own line per trial says it. Keras' progress stays trainer.verbose.
        tuner.search(verbose=0)
        return tuner

    @step("leaderboard")
    def leaderboard(self, tuner) -> Leaderboard:
        return leaderboard(self.context, tuner)

    @step("confirm")
    def confirm(self, board: Leaderboard, tuner):
        trials = {trial_id: trial.hyperparameters.values for trial_id, trial in tuner.oracle.trials.items()}
        confirmation = confirm.confirm(self.context, board.frame, trials)
        if confirmation is not None:
            mlflow.set_tag("mlflow.note.content", confirmation.summary())
            log.info("%s", confirmation.summary())
        return confirmation

    @step("final")
    def final_model(self, tuner, board: Leaderboard, confirmation) -> FinalModel:
        return final_model(self.context, tuner, board, confirmation)

    @step("report")
    def report(self, board: Leaderboard, final: FinalModel) -> None:
        """The console's leaderboard; the study's REPORT.md and figures into its run (`report/`),
        its answer as the run's description, read back from MLflow, nothing retrained."""
        show(self.context, board, final)
        try:
            report.publish_study_report(self.context.client, self.context.run_id)
        except Exception:  # noqa: BLE001 - the results are logged and the run has ended; the report can be rebuilt
            log.warning("the study's report could not be logged; `python -m src.report --study %s` retries",
                        self.context.project, exc_info=True)


def run_study(cfg: Config, job: OpenedJob, config_yaml: str, overrides: Optional[list] = None,
              tags: Optional[Mapping[str, str]] = None, parent_run_id: Optional[str] = None) -> float:
    """The entry point's call (src/run.py): a study, run as its recipe."""
    return Study(cfg, job, config_yaml, overrides, tags, parent_run_id).run()
