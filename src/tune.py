"""keras-tuner studies: search on a held-out split, every trial a nested MLflow run.

One parent MLflow run per study (tag `study=<tuner.project_name>`); each trial
is a child run with its hyperparameters, per-epoch curves and a validation
classification report. The winner is chosen on validation data only, then
evaluated once on the test set. Re-running the same command resumes an
interrupted study: keras-tuner reloads its state from
`<tuner.directory>/<tuner.project_name>/`, finished trials are not run (or
logged) again, and the same parent run is reopened.
"""
from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from pathlib import Path
from typing import Dict, Mapping, Optional

import keras
import keras_tuner
import mlflow
import numpy as np
import psutil
from mlflow import MlflowClient
from omegaconf import OmegaConf

from src import compare, evaluate, interrupt, pipeline, search_space, track, train
from src import data as data_module
from src.config import Config, ConfigError, FinalFit, TunerKind
from src.model import build_cnn

TUNER_CLASSES = {
    TunerKind.hyperband: keras_tuner.Hyperband,
    TunerKind.random: keras_tuner.RandomSearch,
    TunerKind.bayesian: keras_tuner.BayesianOptimization,
    TunerKind.grid: keras_tuner.GridSearch,
}
# Changing these does not change what a study computes, so a resume may differ in them.
RESUMABLE_DIFFERENCES = ("tuner.overwrite", "tuner.workers", "tracking", "trainer.verbose", "data.dir")


class CifarHyperModel(keras_tuner.HyperModel):
    """The project's model and training, with the search space applied to the config."""

    def __init__(self, base: Config, splits: data_module.Splits):
        super().__init__(name="cifar10_cnn")
        self.base, self.splits = base, splits

    def trial_config(self, hp) -> Config:
        return search_space.apply(self.base, search_space.declare(hp, self.base.tuner.search_space))

    def build(self, hp):
        cfg = self.trial_config(hp)
        train.set_precision(cfg.trainer.precision)
        return train.compile_model(build_cnn(cfg.model), cfg.trainer)

    def fit(self, hp, model, callbacks=None, epochs=None, initial_epoch=0, **ignored):
        """Train inside the trial's MLflow run; Hyperband passes its own epochs."""
        cfg = self.trial_config(hp)
        trainer = dataclasses.replace(cfg.trainer, epochs=epochs or cfg.trainer.epochs)
        trial_cfg = dataclasses.replace(cfg, trainer=trainer, tuner=None)
        mlflow.log_params(track.flatten(dataclasses.asdict(trial_cfg)))
        training = train.fit(model, self.splits, trainer, initial_epoch=initial_epoch,
                             callbacks=[*(callbacks or []), track.epoch_logger()])
        pipeline.log_training(training, self.splits.validation)
        result = evaluate.evaluate(model, self.splits.x_val, self.splits.y_val, self.splits.class_names)
        pipeline.log_evaluation(result, "val", metrics=False)
        return training.keras_history


def trial_name(trial_id: str, values: Mapping) -> str:
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items() if "/" not in k]
    if "tuner/epochs" in values:
        parts.append(f"epochs={values['tuner/initial_epoch']}-{values['tuner/epochs']}")
    return f"trial {trial_id} " + " ".join(parts)


class TrackedTrials:
    """Tuner mixin: each trial runs inside its own nested MLflow run: under the
    active (study) run, or in a worker process under `parent_run_id`."""

    study_tags: Dict[str, str] = {}
    parent_run_id: Optional[str] = None

    def run_trial(self, trial, *args, **kwargs):
        interrupt.check()
        values = dict(trial.hyperparameters.values)
        tags = {**self.study_tags, "study_role": "trial", "trial_id": trial.trial_id,
                "tuner_worker": self.tuner_id}
        started = time.perf_counter()
        with track.tracked_run(trial_name(trial.trial_id, values), tags, nested=True,
                               parent_run_id=self.parent_run_id):
            mlflow.log_params({f"hp.{key}": value for key, value in values.items()})
            histories = super().run_trial(trial, *args, **kwargs)
            objective = self.oracle.objective.name
            pick = min if self.oracle.objective.direction == "min" else max
            score = statistics.fmean(pick(h.history[objective]) for h in histories)
            gc.collect()
            interrupt.check()
            mlflow.log_metrics({f"best_{objective}": score, "trial_seconds": time.perf_counter() - started,
                                "process_rss_mb": psutil.Process().memory_info().rss / 2**20})
            # A trial finished in MLflow must also be saved by keras-tuner, or a resume
            # runs it again: hold signals until on_trial_end has saved it.
            interrupt.defer()
        print(f"[study] {trial_name(trial.trial_id, values)} -> {objective} {score:.4f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        return histories

    def on_trial_end(self, trial):
        try:
            super().on_trial_end(trial)
        finally:
            interrupt.undefer()


def make_tuner(cfg: Config, hypermodel: CifarHyperModel, directory: Path, tags: Dict[str, str],
               parent_run_id: Optional[str] = None):
    """The study's tuner; with tuner.overwrite=false it carries on from the saved state."""
    kind = TunerKind(cfg.tuner.kind)
    base = TUNER_CLASSES[kind]
    tuner_class = type(f"Tracked{base.__name__}", (TrackedTrials, base),
                       {"study_tags": tags, "parent_run_id": parent_run_id})
    common = dict(hypermodel=hypermodel, objective=cfg.tuner.objective, seed=cfg.tuner.seed,
                  executions_per_trial=cfg.tuner.executions_per_trial, overwrite=cfg.tuner.overwrite,
                  directory=str(directory.parent), project_name=directory.name)
    if kind is TunerKind.hyperband:
        tuner = tuner_class(max_epochs=cfg.tuner.max_epochs, factor=cfg.tuner.factor,
                            hyperband_iterations=cfg.tuner.hyperband_iterations, **common)
    else:
        tuner = tuner_class(max_trials=cfg.tuner.max_trials, **common)
    oracle = tuner.oracle
    # keras-tuner reloads the oracle only if `<tuner id>.json` exists: state written under
    # another id (tuner0 alone, or the chief and workers of a parallel study) is reloaded here.
    if (isinstance(oracle, keras_tuner.Oracle) and not cfg.tuner.overwrite and not oracle.trials
            and (directory / "oracle.json").is_file()):
        oracle.reload()
    return tuner


def save_state_config(cfg: Config, directory: Path) -> None:
    """The config beside the tuner state, which a resume is checked against."""
    directory.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(_comparable(cfg)), directory / "study_config.yaml")


def state_dir(cfg: Config) -> Path:
    return Path(cfg.tuner.directory).expanduser().resolve() / cfg.tuner.project_name


def _comparable(cfg: Config) -> dict:
    """The config as saved beside the tuner state, less what a resume may change."""
    config = OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
    for key in RESUMABLE_DIFFERENCES:
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node.pop(leaf, None)
    return config


def check_resumable(cfg: Config, directory: Path) -> bool:
    """True if a study is to be resumed; refuses state written by another config."""
    saved = directory / "study_config.yaml"
    if cfg.tuner.overwrite or not (directory / "oracle.json").is_file():
        return False
    if saved.is_file():
        before, now = OmegaConf.to_container(OmegaConf.load(saved)), _comparable(cfg)
        if before != now:
            changed = sorted(k for k in set(track.flatten(before)) | set(track.flatten(now))
                             if track.flatten(before).get(k) != track.flatten(now).get(k))
            raise ConfigError(
                f"tuner.project_name={cfg.tuner.project_name!r} has saved state in {directory} from a different "
                f"config (differs in {', '.join(changed)}): pass tuner.overwrite=true to start afresh, "
                "or pick another tuner.project_name")
    return True


def find_study_run(client: MlflowClient, experiment_id: str, project: str) -> Optional[str]:
    runs = client.search_runs([experiment_id], f"tags.study = '{project}' and tags.study_role = 'parent'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def whole_training_set(splits: data_module.Splits) -> data_module.Splits:
    """Training plus validation images, for retraining the chosen configuration."""
    return dataclasses.replace(splits, x_train=np.concatenate([splits.x_train, splits.x_val]),
                               y_train=np.concatenate([splits.y_train, splits.y_val]))


def final_model(cfg: Config, tuner, hypermodel: CifarHyperModel, best_trial, best_row,
                splits: data_module.Splits):
    """The winner, ready for its one test evaluation, and how it was obtained."""
    if FinalFit(cfg.tuner.final_fit) is FinalFit.checkpoint:
        return tuner.get_best_models(1)[0], {"final.mode": "checkpoint", "final.trial_id": best_trial.trial_id,
                                             "final.train_images": splits.x_train.shape[0]}
    best_cfg = hypermodel.trial_config(best_trial.hyperparameters)
    epochs = int(best_row["best_val_epoch"])
    keras.backend.clear_session()
    keras.utils.set_random_seed(cfg.seed)
    model = train.compile_model(build_cnn(best_cfg.model), best_cfg.trainer)
    full = whole_training_set(splits)
    train.fit(model, full, dataclasses.replace(best_cfg.trainer, epochs=epochs), validate=False)
    return model, {"final.mode": "retrain", "final.trial_id": best_trial.trial_id, "final.epochs": epochs,
                   "final.train_images": full.x_train.shape[0]}


def log_study_results(client, experiment_id: str, parent_id: str, cfg: Config, best_trial_id: str):
    """Leaderboard (MLflow table + CSV) and the comparison figures, from the child runs."""
    objective = f"best_{cfg.tuner.objective}"
    names = list(cfg.tuner.search_space)
    columns = {name: f"hp.{name}" for name in names}
    if TunerKind(cfg.tuner.kind) is TunerKind.hyperband:
        columns.update({"epochs": "hp.tuner/epochs", "initial_epoch": "hp.tuner/initial_epoch"})
    runs = compare.child_runs(client, experiment_id, parent_id)
    board = compare.leaderboard(compare.runs_frame(runs, columns), objective)
    track.replace_table(board, "leaderboard.json")
    mlflow.log_text(board.to_csv(index=False), "leaderboard.csv")
    mlflow.log_figure(compare.plot_objective_vs_params(board, names, objective),
                      "figures/objective_vs_hyperparameters.png")
    finished = [r for r in runs if r.info.run_id in set(board["run_id"]) and r.info.status == "FINISHED"]
    best_name = board.loc[board["trial_id"] == best_trial_id, "run_name"]
    mlflow.log_figure(compare.plot_curves(compare.metric_histories(client, finished),
                                          highlight=best_name.iloc[0] if len(best_name) else ""),
                      "figures/validation_curves.png")
    return board


def search_here(cfg: Config, hypermodel: CifarHyperModel, directory: Path, study_tags: Dict[str, str]):
    """The search in this process, trials one after another; returns the tuner."""
    tuner = make_tuner(cfg, hypermodel, directory, study_tags)
    save_state_config(cfg, directory)
    tuner.search(verbose=1)
    return tuner


def run_study(cfg: Config, config_yaml: str, overrides: Optional[list] = None,
              tags: Optional[Mapping[str, str]] = None, parent_run_id: Optional[str] = None) -> float:
    directory = state_dir(cfg)
    resuming = check_resumable(cfg, directory)
    splits = data_module.load(cfg.data, cfg.seed)
    uri = track.resolve_uri(cfg.tracking.uri)
    experiment_id = track.ensure_experiment(uri, cfg.tracking.experiment)
    client = MlflowClient(uri)
    project = cfg.tuner.project_name
    study_run_id = find_study_run(client, experiment_id, project) if resuming else None
    study_tags = {"study": project, **{k: v for k, v in (tags or {}).items() if k.startswith("sweep")}}
    run_tags = track.run_tags({**cfg.tracking.tags, **(tags or {}), **study_tags, "study_role": "parent",
                               "tuner": TunerKind(cfg.tuner.kind).value}, overrides)
    keras.utils.set_random_seed(cfg.seed)
    train.set_threads(cfg.trainer)
    with track.tracked_run(cfg.tracking.run_name or f"study {project}", run_tags, experiment_id=experiment_id,
                           parent_run_id=parent_run_id, run_id=study_run_id) as run:
        if study_run_id is None:
            pipeline.log_run_inputs(cfg, splits, config_yaml, overrides)
            mlflow.log_dict(OmegaConf.to_container(OmegaConf.structured(cfg.tuner), enum_to_str=True),
                            "search_space.json")
        hypermodel = CifarHyperModel(cfg, splits)
        workers = f" with {cfg.tuner.workers} workers" if cfg.tuner.workers > 1 else ""
        print(f"[study] {project}: {TunerKind(cfg.tuner.kind).value} search{workers}, state in {directory}"
              f"{' (resumed)' if study_run_id else ''}; MLflow run {run.info.run_id}", flush=True)
        if cfg.tuner.workers > 1:
            from src import distributed

            tuner = distributed.search(cfg, hypermodel, directory, study_tags, run.info.run_id, uri,
                                       experiment_id, overrides)
        else:
            tuner = search_here(cfg, hypermodel, directory, study_tags)

        best_trial = tuner.oracle.get_best_trials(1)[0]
        board = log_study_results(client, experiment_id, run.info.run_id, cfg, best_trial.trial_id)
        best_row = board[board["trial_id"] == best_trial.trial_id].iloc[0]
        mlflow.log_dict(best_trial.hyperparameters.values, "best_hyperparameters.json")
        mlflow.log_params({f"best.{k}": v for k, v in best_trial.hyperparameters.values.items()})
        statuses = board["status"].value_counts()
        mlflow.log_metrics({f"best_{cfg.tuner.objective}": float(best_row[f"best_{cfg.tuner.objective}"]),
                            "trials_finished": int(statuses.get("FINISHED", 0)),
                            "trials_failed": int(statuses.get("FAILED", 0))})

        model, final = final_model(cfg, tuner, hypermodel, best_trial, best_row, splits)
        mlflow.log_params(final)
        result = evaluate.evaluate(model, splits.x_test, splits.y_test, splits.class_names)
        pipeline.log_evaluation(result, "test")
        if cfg.tracking.log_model:
            model_info = track.log_keras_model(model, splits.x_test)
            if cfg.tracking.register_best_as:
                track.register_champion(model_info.model_uri, cfg.tracking.register_best_as)
    print_leaderboard(board, cfg, result, run.info.run_id, final, uri)
    return result.accuracy


def print_leaderboard(board, cfg: Config, result, run_id: str, final: dict, uri: str) -> None:
    objective = f"best_{cfg.tuner.objective}"
    shown = ["trial_id", *[c for c in board.columns if c in cfg.tuner.search_space or c in ("epochs",)],
             objective, "best_val_epoch", "status", "seconds"]
    print("\nleaderboard (validation on a held-out split of the training set):")
    print(board[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nbest trial {final['final.trial_id']} ({final['final.mode']}): test accuracy {result.accuracy:.4f}"
          f" (test loss {result.loss:.4f})")
    print(f"mlflow run      {run_id}  (experiment '{cfg.tracking.experiment}')")
    print(f"open the UI     {track.ui_command(uri)}", flush=True)
