"""Compile and fit: the notebook's training, with its settings as config values."""
from __future__ import annotations

import functools
import gc
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import keras
import tensorflow as tf

from src.config import ModelConfig, Optimizer, Precision, ProjectError, TrainerConfig, machine
from src.config.schema import effective_learning_rate
from src.core import interrupt
from src.core.data import Splits, batches
from src.core.model import build_cnn

log = logging.getLogger(__name__)


class TrainingClock(keras.callbacks.Callback):
    """Seconds spent in the training part of each epoch (validation excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch_seconds: List[float] = []
        self._epoch_started: Optional[float] = None

    @property
    def seconds(self) -> float:
        return sum(self.epoch_seconds)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def _stop(self) -> None:
        if self._epoch_started is not None:
            self.epoch_seconds.append(time.perf_counter() - self._epoch_started)
            self._epoch_started = None

    def on_test_begin(self, logs=None):
        self._stop()

    def on_epoch_end(self, epoch, logs=None):
        self._stop()


class InterruptCheck(keras.callbacks.Callback):
    """Re-raises a Ctrl-C/SIGTERM that Python dropped (see src/interrupt.py)."""

    def on_train_batch_end(self, batch, logs=None):
        interrupt.check()
        interrupt.failpoint("train_batch")

    def on_test_batch_end(self, batch, logs=None):
        interrupt.check()

    def on_predict_batch_end(self, batch, logs=None):
        interrupt.check()


class DivergenceGuard(keras.callbacks.TerminateOnNaN):
    """Stops training at the first NaN/inf loss, and remembers that it did."""

    def __init__(self) -> None:
        super().__init__()
        self.diverged = False

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = True
        super().on_batch_end(batch, logs)


@dataclass
class TrainingResult:
    keras_history: keras.callbacks.History  # what keras-tuner consumes
    initial_epoch: int
    history: Dict[str, List[float]]  # per epoch, from epoch initial_epoch + 1
    seconds: float  # training only, validation excluded
    fit_seconds: float  # the whole fit call
    images: int  # training images seen, summed over epochs
    epochs: int = field(init=False)

    def __post_init__(self) -> None:
        self.epochs = len(self.history.get("loss", []))

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def best_epoch(self, monitor: str = "val_accuracy") -> Optional[int]:
        """0-based index into `history` of the highest `monitor` (None if not recorded)."""
        values = self.history.get(monitor)
        if not values:
            return None
        return max(range(len(values)), key=values.__getitem__)


class TrainingDiverged(ProjectError):
    """The loss became NaN or infinite: the run cannot produce a model."""


def set_threads(cfg: TrainerConfig) -> None:
    """Size TensorFlow's thread pools; only possible before TensorFlow runs an op."""
    wanted = (cfg.intra_op_threads, cfg.inter_op_threads)
    current = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    if wanted == current:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cfg.intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(cfg.inter_op_threads)
    except RuntimeError as err:  # a reused worker process: its pools are fixed
        raise RuntimeError(f"cannot set trainer.intra_op_threads={cfg.intra_op_threads}/"
                           f"inter_op_threads={cfg.inter_op_threads}: TensorFlow already runs with "
                           f"{current[0]}/{current[1]} in this process ({err})") from None


def set_precision(precision: Precision | str) -> None:
    # A global Keras policy: set it before building the model.
    if Precision(precision) is Precision.auto:
        raise ValueError("trainer.precision=auto reached training unresolved: src.config.validate resolves it")
    keras.mixed_precision.set_global_policy(Precision(precision).value)
    if Precision(precision) is Precision.mixed_bfloat16:
        warn_emulated_bfloat16()


def bfloat16_is_native(cpuinfo: Optional[str] = None) -> bool:
    """Whether bfloat16 runs in hardware here (src/config/machine.py): elsewhere oneDNN emulates
    it, and on a Zen 3 the fast setting was the slow one. With `cpuinfo` given, only its flags."""
    return machine.native_bfloat16(cpuinfo, gpu=False if cpuinfo is not None else None) is not None


@functools.lru_cache(maxsize=None)  # looks and warns once per process, not once per trial
def warn_emulated_bfloat16() -> None:
    if bfloat16_is_native():
        return
    log.warning("trainer.precision=mixed_bfloat16 on a CPU without bfloat16 instructions (no avx512_bf16 or "
                "amx_bf16 flag): TensorFlow emulates it, measured ~7x slower than float32; use trainer=default "
                "(float32) on this machine")


def make_optimizer(cfg: TrainerConfig) -> keras.optimizers.Optimizer:
    config = {"learning_rate": effective_learning_rate(cfg)}
    if cfg.weight_decay:  # Keras' decoupled decay (lr x decay per step); absent = the notebook's optimizer
        config["weight_decay"] = cfg.weight_decay
    return keras.optimizers.get({"class_name": Optimizer(cfg.optimizer).value, "config": config})


def compile_model(model: keras.Model, cfg: TrainerConfig) -> keras.Model:
    model.compile(optimizer=make_optimizer(cfg), loss="categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=cfg.steps_per_execution)
    return model


def prepare_model(model_cfg: ModelConfig, trainer: TrainerConfig, seed: Optional[int] = None) -> keras.Model:
    """The one way every run, trial, final fit and benchmark gets a model: a fresh
    Keras session, threads, the seed (None: keras-tuner's own), the precision
    policy, then the notebook's CNN, compiled."""
    set_threads(trainer)  # first: only possible before TensorFlow starts
    freeze_long_lived_objects()
    keras.backend.clear_session()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    set_precision(trainer.precision)
    return compile_model(build_cnn(model_cfg), trainer)


def freeze_long_lived_objects() -> None:
    """Once a process: move what exists before its first model (imported modules,
    the data, the store's client) out of the garbage collector's reach. Keras's
    clear_session runs a full collection for every model, and walking the ~500k
    objects of TensorFlow, MLflow and keras-tuner took 0.3-0.9 s of each trial;
    afterwards it walks only what the runs themselves made."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def fit(model: keras.Model, data: Splits, cfg: TrainerConfig,
        callbacks: Optional[list] = None, initial_epoch: int = 0, validate: bool = True) -> TrainingResult:
    """`model.fit` on the arrays' batches (`batches`), validating on `data.x_val` (the test set in
    the notebook's mode, a held-out split otherwise) unless `validate` is off.
    Trains epochs `initial_epoch + 1` .. `cfg.epochs` (Hyperband continues
    a previous round's model)."""
    clock, guard = TrainingClock(), DivergenceGuard()
    started = time.perf_counter()
    with interrupt.raised_at_checks():  # by InterruptCheck, after each batch
        history = model.fit(
            batches(data.x_train, data.y_train, cfg.batch_size, shuffle=True),
            epochs=cfg.epochs,
            initial_epoch=initial_epoch,
            shuffle=False,  # the batches are shuffled already
            validation_data=batches(data.x_val, data.y_val, cfg.batch_size, shuffle=False) if validate else None,
            callbacks=[clock, guard, InterruptCheck(), *(callbacks or [])],
            verbose=cfg.verbose,
        )
    fit_seconds = time.perf_counter() - started
    if guard.diverged:
        raise TrainingDiverged(
            f"training diverged: the loss became NaN/inf (trainer.optimizer={Optimizer(cfg.optimizer).value}, "
            f"trainer.learning_rate={cfg.learning_rate}); try a smaller learning rate")
    epochs_run = len(history.history.get("loss", []))
    return TrainingResult(
        keras_history=history,
        initial_epoch=initial_epoch,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        seconds=clock.seconds,
        fit_seconds=fit_seconds,
        images=epochs_run * int(data.x_train.shape[0]),
    )
