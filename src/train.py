"""Compile and fit: the notebook's training, with its settings as config values."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import keras

from src.config import Optimizer, Precision, TrainerConfig
from src.data import Splits


class TrainingClock(keras.callbacks.Callback):
    """Seconds spent in the training part of each epoch (validation excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self._epoch_started: Optional[float] = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def _stop(self) -> None:
        if self._epoch_started is not None:
            self.seconds += time.perf_counter() - self._epoch_started
            self._epoch_started = None

    def on_test_begin(self, logs=None):
        self._stop()

    def on_epoch_end(self, epoch, logs=None):
        self._stop()


@dataclass
class TrainingResult:
    history: Dict[str, List[float]]
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
        """0-based epoch with the highest `monitor` (None if it was not recorded)."""
        values = self.history.get(monitor)
        if not values:
            return None
        return max(range(len(values)), key=values.__getitem__)


def set_precision(precision: Precision | str) -> None:
    # A global Keras policy: set it before building the model.
    keras.mixed_precision.set_global_policy(Precision(precision).value)


def make_optimizer(cfg: TrainerConfig) -> keras.optimizers.Optimizer:
    return keras.optimizers.get({"class_name": Optimizer(cfg.optimizer).value,
                                 "config": {"learning_rate": cfg.learning_rate}})


def compile_model(model: keras.Model, cfg: TrainerConfig) -> keras.Model:
    model.compile(optimizer=make_optimizer(cfg), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def fit(model: keras.Model, data: Splits, cfg: TrainerConfig,
        callbacks: Optional[list] = None) -> TrainingResult:
    """`model.fit` on the arrays, validating on `data.x_val` (the test set in
    the notebook's mode, a held-out split otherwise)."""
    clock = TrainingClock()
    started = time.perf_counter()
    history = model.fit(
        data.x_train, data.y_train,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        validation_data=(data.x_val, data.y_val),
        callbacks=[clock, *(callbacks or [])],
        verbose=cfg.verbose,
    )
    fit_seconds = time.perf_counter() - started
    epochs_run = len(history.history.get("loss", []))
    return TrainingResult(
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        seconds=clock.seconds,
        fit_seconds=fit_seconds,
        images=epochs_run * int(data.x_train.shape[0]),
    )
