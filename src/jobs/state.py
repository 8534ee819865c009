"""A study's saved keras-tuner state: where it lives and whether a run may resume it.

Light on purpose (no TensorFlow): a stale or foreign state is refused before
any data is loaded or run created.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from src.config import Config, ConfigError, ProjectError
from src.config.schema import NOT_HYPERPARAMETERS
from src.tracking.runs import flatten

RESTART = ("pass tuner.overwrite=true to start the study afresh (its runs so far stay in MLflow), "
           "or pick another tuner.project_name")


class StudyStateError(ProjectError):
    """The study's saved state, or its record in MLflow, cannot be resumed from as it is."""


def write_atomically(path: Path, text: str) -> None:
    """`text` into `path` through a temporary file in the same folder and os.replace (atomic on
    POSIX): a kill or a full disk mid-write leaves the old file whole, never one cut short."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # as open() would make it, not mkstemp's 0o600
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def save_tuner_json_atomically() -> None:
    """keras-tuner 1.4 writes all its state (oracle.json, trial.json, tuner0.json,
    build_config.json) through `utils.save_json`, opening the file with "w" in place: a kill
    or a full disk mid-write leaves it cut short, and the next reload fails on it. Replaced
    here by a write-then-rename; its callers look the function up on the module each time."""
    from keras_tuner.src import utils  # deferred: TensorFlow, ~5 s; open_job checks the state before it

    if getattr(utils.save_json, "atomic", False):
        return

    def save_json(path, obj):
        text = json.dumps(obj)
        write_atomically(Path(path), text)
        return text

    save_json.atomic = True
    utils.save_json = save_json


def save_state_config(cfg: Config, directory: Path) -> None:
    """The config beside the tuner state, which a resume is checked against."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / "study_config.yaml", OmegaConf.to_yaml(OmegaConf.create(_comparable(cfg))))


def check_state_files(directory: Path) -> None:
    """Every JSON file of the tuner's state reads, and every trial the oracle started has its
    file: else one line naming the file, where keras-tuner's reload would raise JSONDecodeError
    or KeyError deep inside."""
    for path in sorted([*directory.glob("*.json"), *directory.glob("trial_*/*.json")]):
        try:
            state = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise StudyStateError(f"the study's tuner state file {path} is cut short or damaged ({err}); "
                                  f"it cannot be resumed from: restore the file, or {RESTART}") from None
        if path.name == "oracle.json" and isinstance(state, dict):
            started = [*state.get("start_order", []), *state.get("ongoing_trials", {}).values()]
            missing = [directory / f"trial_{trial_id}" / "trial.json" for trial_id in started
                       if not (directory / f"trial_{trial_id}" / "trial.json").is_file()]
            if missing:
                raise StudyStateError(f"the study's tuner state lacks {missing[0]}, a trial its oracle.json "
                                      f"started; it cannot be resumed from: restore the file, or {RESTART}")


def state_dir(cfg: Config) -> Path:
    return Path(cfg.tuner.directory).expanduser().resolve() / cfg.tuner.project_name


def _comparable(cfg: Config) -> dict:
    """The config as saved beside the tuner state, less what a resume may change."""
    config = OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
    for key in NOT_HYPERPARAMETERS:
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node.get(parent) or {}
        node.pop(leaf, None)
    return config


def check_resumable(cfg: Config, directory: Path) -> bool:
    """True if a study is to be resumed; refuses state written by another config."""
    saved = directory / "study_config.yaml"
    if cfg.tuner.overwrite or not (directory / "oracle.json").is_file():
        return False
    check_state_files(directory)
    if saved.is_file():
        before, now = OmegaConf.to_container(OmegaConf.load(saved)), _comparable(cfg)
        if before != now:
            changed = sorted(k for k in set(flatten(before)) | set(flatten(now))
                             if flatten(before).get(k) != flatten(now).get(k))
            raise ConfigError(
                f"tuner.project_name={cfg.tuner.project_name!r} has saved state in {directory} from a different "
                f"config (differs in {', '.join(changed)}): pass tuner.overwrite=true to start afresh, "
                "or pick another tuner.project_name")
    return True
