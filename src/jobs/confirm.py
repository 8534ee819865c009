"""The confirmation stage of a study: is the winner really better than the baseline?

A search ranks configurations by one noisy validation score each. Here the
top-k configurations (by the objective at the highest budget the search
reached) and the study's baseline configuration are each trained from scratch
with N seeds, on the same training/validation split. Every such run is a child
of the study (`study_role=confirm`) with its seed, validation and test metrics
and its per-image test predictions. The answer is the configuration with the
best mean validation accuracy over seeds (never chosen on the test set); its
test accuracy is then compared with the baseline's, seed by seed on the same
test images (`analysis.pairing.compare_runs`). Finished confirmation runs
are found in MLflow and not repeated when a study resumes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
from typing import Dict, List, Optional, Tuple

import mlflow
import pandas as pd

from src.analysis import decision, pairing
from src.analysis.confirmation import BASELINE, Confirmed, confirmed_winner, decide_runs
from src.config import Config, search_space
from src.core import data as data_module
from src.core import interrupt
from src.jobs import reuse, training
from src.jobs.context import StudyContext
from src.jobs.distributed import roles
from src.tracking import logged
from src.tracking.runs import tracked_run
from src.tracking.store import child_runs

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Candidate:
    label: str  # "baseline" or "trial <id>"
    values: Dict[str, object]  # config key -> value (empty for the baseline)
    epochs: int


def candidates(study: StudyContext, board: pd.DataFrame, trials: Dict[str, dict]) -> List[Candidate]:
    """The top-k configurations at the highest budget reached, and the baseline."""
    cfg = study.cfg
    finished = study.kind.top_budget(board[board["status"] == "FINISHED"])
    chosen, seen = [], set()
    for trial_id in finished["trial_id"]:  # the board is best first
        values = search_space.config_values(trials[trial_id], cfg.tuner.search_space)
        if tuple(sorted(map(str, values.items()))) in seen:
            continue
        seen.add(tuple(sorted(map(str, values.items()))))
        epochs = study.kind.candidate_epochs(cfg, search_space.apply(cfg, values).trainer.epochs)
        chosen.append(Candidate(f"trial {trial_id}", values, epochs))
        if len(chosen) == cfg.tuner.confirm.top_k:
            break
    return [*chosen, baseline_candidate(cfg)]


def baseline_candidate(cfg: Config) -> Candidate:
    """The study's baseline configuration, as confirmed: its own epochs unless the confirmation sets them."""
    return Candidate(BASELINE, {}, cfg.tuner.confirm.epochs or cfg.trainer.epochs)


def run_config(cfg: Config, candidate: Candidate, seed: int) -> Config:
    run_cfg = search_space.apply(cfg, candidate.values)
    trainer = dataclasses.replace(run_cfg.trainer, epochs=candidate.epochs)
    return dataclasses.replace(run_cfg, trainer=trainer, seed=seed, tuner=None)


def train_one(cfg: Config, candidate: Candidate, seed: int, splits: data_module.Splits,
              study_tags: Dict[str, str], parent_run_id: Optional[str] = None) -> None:
    """One confirmation run, in this process or a confirmation worker."""
    run_cfg = run_config(cfg, candidate, seed)
    tags = {**study_tags, "study_role": "confirm", "confirm_candidate": candidate.label,
            reuse.RECIPE_TAG: reuse.recipe(run_cfg, splits, cfg.tuner.objective)}
    with tracked_run(f"confirm {candidate.label} seed {seed}", tags, nested=True, parent_run_id=parent_run_id):
        # Score the weights of the best validation epoch, as the search did (keras-tuner's best-epoch
        # checkpoint): the last epoch's weights of a configuration that overfits after its peak measure
        # something the search never selected (experiments/card_study_2026-11-25/NOTES.md).
        mlflow.log_param("confirm.weights", "best validation epoch")
        trained = training.train_evaluate_log(run_cfg, splits, training.CONFIRMATION, objective=cfg.tuner.objective)
    log.info("[study] confirm %s seed %d: val %.4f, test %.4f", candidate.label, seed,
             trained.scores["val"].accuracy, trained.scores["test"].accuracy)


_SPLITS: Optional[data_module.Splits] = None  # a confirmation worker's data, loaded once per process


def _start_worker(cfg: Config, uri: str, experiment_id: str) -> None:
    global _SPLITS
    interrupt.install()  # SIGTERM from the launcher ends the run KILLED, like Ctrl-C
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("src").addHandler(handler)
    logging.getLogger("src").setLevel(logging.INFO)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    _SPLITS = data_module.load(cfg.data, cfg.seed)  # the launcher's split: same config, same seed


def _train_in_worker(task) -> None:
    cfg, candidate, seed, study_tags, parent_id = task
    train_one(cfg, candidate, seed, _SPLITS, study_tags, parent_run_id=parent_id)


class Workers:
    """`tuner.workers` processes for the confirmation runs, started once for the whole stage (its
    seed rounds and pairs: a process spends ~10 s importing TensorFlow), one TensorFlow thread
    each as the search's workers (two single-thread processes train ~1.9x as fast as one process
    on 2 cores here). Each loads the cached split itself; on any error or interrupt the others
    are stopped (their runs end KILLED) and the error is raised."""

    def __init__(self, cfg: Config, experiment_id: str):
        self.cfg, self.experiment_id, self.pool = roles.worker_config(cfg), experiment_id, None
        # On this machine only: a study whose workers ran on a cluster confirms on the launching node.
        self.size = min(cfg.tuner.workers, max(1, (os.cpu_count() or 1) // max(1, self.cfg.trainer.intra_op_threads)))

    def train(self, pending: List[Tuple[Candidate, int]], study_tags: Dict[str, str], parent_id: str) -> None:
        if self.pool is None:
            context = multiprocessing.get_context("spawn")  # never fork a process that runs TensorFlow
            self.pool = context.Pool(self.size, _start_worker, (self.cfg, mlflow.get_tracking_uri(), self.experiment_id))
        tasks = [(self.cfg, candidate, seed, study_tags, parent_id) for candidate, seed in pending]
        for _ in self.pool.imap_unordered(_train_in_worker, tasks):
            pass

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self.pool is not None:
            self.pool.close() if kind is None else self.pool.terminate()
            self.pool.join()


class ConfirmStage:
    """The stage's runs: trained, reused, or found finished in the store (a resumed study)."""

    def __init__(self, study: StudyContext, workers: Optional[Workers] = None):
        self.study, self.workers, self.client = study, workers, mlflow.MlflowClient()

    def done(self) -> Dict[Tuple[str, int], object]:
        runs = child_runs(self.client, self.study.experiment_id, self.study.run_id, status="FINISHED", role="confirm")
        return {(r.data.tags["confirm_candidate"], int(r.data.params["seed"])): r for r in runs}

    def train_missing(self, wanted: List[Tuple[Candidate, int]]) -> Dict[Tuple[str, int], object]:
        """Train the (candidate, seed) runs not yet finished in the store; returns every finished one."""
        done = self.done()
        pending = [(candidate, seed) for candidate, seed in wanted
                   if (candidate.label, seed) not in done and not self.reused(candidate, seed)]
        if self.workers is not None and pending:
            self.workers.train(pending, self.study.tags, self.study.run_id)
        else:
            for candidate, seed in pending:
                train_one(self.study.cfg, candidate, seed, self.study.splits, self.study.tags)
        return self.done()

    def reused(self, candidate: Candidate, seed: int) -> bool:
        """A finished run of the same recipe in the store, taken into this study instead of training."""
        study = self.study
        digest = reuse.recipe(run_config(study.cfg, candidate, seed), study.splits, study.cfg.tuner.objective)
        source = reuse.find(self.client, digest)
        if source is None:
            return False
        tags = {**study.tags, "study_role": "confirm", "confirm_candidate": candidate.label, reuse.RECIPE_TAG: digest}
        reuse.copy_run(self.client, source, f"confirm {candidate.label} seed {seed} (reused)", tags, study.run_id)
        log.info("[study] confirm %s seed %d: reused run %s (the same recipe, finished), not retrained",
                 candidate.label, seed, source.info.run_id)
        return True

    def first_look(self, chosen: List[Candidate], first: List[int]):
        """The top-k and the baseline, seed round by seed round; after each round but the last, a
        searched candidate the best already rules out on validation stops (`decision.hopeless`).
        Recomputed from the store on resume, so a resumed study drops the same ones."""
        active, dropped, done = list(chosen), {}, {}
        for index, seed in enumerate(first):
            done = self.train_missing([(c, seed) for c in active])
            if index + 1 == len(first):
                break
            table = _table(active, {key: run for key, run in done.items() if key[1] in first[:index + 1]})
            for label, why in decision.hopeless(table, looks=len(first) - 1).items():
                dropped[label] = why
                log.info("[study] confirm: %s", why)
            active = [c for c in active if c.label not in dropped]
        if dropped:
            mlflow.set_tag("confirm_dropped", " | ".join(dropped.values()))
        return done, dropped

    def look_until_decided(self, chosen: List[Candidate]):
        """The first look's seed rounds, the candidate chosen on validation, then seed pairs until the
        paired test comparison decides. Returns (finished runs, dropped, candidate, decision, seeds)."""
        cfg, splits = self.study.cfg, self.study.splits
        settings = cfg.tuner.confirm
        cap = max(settings.max_seeds, settings.seeds)
        first = [cfg.seed + index for index in range(settings.seeds)]
        done, dropped = self.first_look(chosen, first)
        kept = [c for c in chosen if c.label not in dropped]
        winner = confirmed_winner(_table(kept, {k: v for k, v in done.items() if k[1] in first}))
        pair = [c for c in chosen if c.label in (winner, BASELINE)]
        truth = splits.y_test.argmax(axis=1)  # pairs runs resumed from before the true classes were logged
        pairs = settings.seeds
        while True:
            seeds = [cfg.seed + index for index in range(pairs)]
            decided = decide_runs(self.client, [done[(winner, s)] for s in seeds],
                                  [done[(BASELINE, s)] for s in seeds], settings.seeds, cap, settings.margin, truth)
            if decided is None or decided.done:
                return done, dropped, winner, decided, seeds
            log.info("[study] confirm: undecided after %d seed pairs (%s); adding seed %d", pairs,
                     f"{100 * decided.low:+.2f} to {100 * decided.high:+.2f} points", cfg.seed + pairs)
            pairs += 1
            done = self.train_missing([(c, cfg.seed + pairs - 1) for c in pair])


def _table(chosen: List[Candidate], done: Dict[Tuple[str, int], object]) -> pd.DataFrame:
    rows = [{"candidate": candidate.label, "seed": seed, "epochs": candidate.epochs,
             "val_accuracy": run.data.metrics["best_val_accuracy"],
             "test_accuracy": run.data.metrics["test_accuracy"], "run_id": run.info.run_id, **candidate.values}
            for candidate in chosen for (label, seed), run in sorted(done.items(), key=lambda item: item[0][1])
            if label == candidate.label]
    return pd.DataFrame(rows)


def confirm(study: StudyContext, board: pd.DataFrame, trials: Dict[str, dict]) -> Optional[Confirmed]:
    """Inside the study's run: the top-k and the baseline over the first seeds; the best on
    validation against the baseline in seed pairs until the paired test comparison decides
    (`tuner.confirm.max_seeds` at most); then the tables, tags and metrics of the answer."""
    cfg, settings = study.cfg, study.cfg.tuner.confirm
    if settings.seeds == 0:
        return None
    logged.log_params_once({"confirm.max_seeds": max(settings.max_seeds, settings.seeds),
                            "confirm.margin": settings.margin})
    chosen = candidates(study, board, trials)
    with Workers(cfg, study.experiment_id) if cfg.tuner.workers > 1 else contextlib.nullcontext() as workers:
        stage = ConfirmStage(study, workers)
        done, dropped, winner, decided, seeds = stage.look_until_decided(chosen)
    comparison = pairing.compare_runs(stage.client, [done[(winner, s)] for s in seeds],
                                      [done[(BASELINE, s)] for s in seeds], winner, BASELINE,
                                      truth=study.splits.y_test.argmax(axis=1))
    result = Confirmed(_table(chosen, done), winner, comparison, decided, settings.seeds, dropped)
    _log_answer(result)
    return result


def _log_answer(result: Confirmed) -> None:
    logged.replace_table(result.table, "confirmation.json")
    mlflow.log_text(result.table.to_csv(index=False), "confirmation.csv")
    difference = result.comparison.difference
    mlflow.log_metrics({"confirm_difference": difference.estimate, "confirm_difference_low": difference.low,
                        "confirm_difference_high": difference.high})
    # The winner is the baseline unless the candidate was decided better; the best candidate stays named.
    mlflow.set_tags({"confirm_winner": result.answer, "confirm_best_candidate": result.winner,
                     "confirm_significant": str(difference.significant).lower(),
                     **(result.decision.tags() if result.decision is not None else {})})
    if result.decision is not None:
        log.info("[study] confirm: %s", result.decision.words(result.winner, "the baseline configuration"))
