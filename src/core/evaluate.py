"""Evaluation on held-out images: loss, accuracy, scikit-learn's reports, figures.

Figures are built with matplotlib's object API (no pyplot state), so nothing
leaks between the many runs of a sweep in one process.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import ConfusionMatrixDisplay, classification_report, confusion_matrix

from src.core import interrupt
from src.core.data import batches


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    y_true: np.ndarray
    y_pred: np.ndarray
    report_text: str
    report: Dict  # classification_report(output_dict=True)
    confusion: np.ndarray  # counts, rows = true class
    class_names: List[str]

    @property
    def confusion_normalized(self) -> np.ndarray:
        """Row-normalised: each row is the share of a true class predicted as each class
        (a class absent from y_true gets a row of zeros)."""
        return confusion_matrix(self.y_true, self.y_pred, labels=list(range(len(self.class_names))),
                                normalize="true")


def evaluate(model, images: np.ndarray, one_hot_labels: np.ndarray,
             class_names: Sequence[str], batch_size: int = 256) -> Evaluation:
    from src.core.train import InterruptCheck  # deferred: TensorFlow (~5 s), off src.report's path

    # As in training: a signal is raised after a batch, never inside TensorFlow's own code.
    checks = [InterruptCheck()]
    with interrupt.raised_at_checks():
        loss, accuracy = model.evaluate(batches(images, one_hot_labels, batch_size, shuffle=False), verbose=0,
                                        callbacks=checks)
        probabilities = model.predict(batches(images, None, batch_size, shuffle=False), verbose=0,
                                      callbacks=checks)
    y_true = one_hot_labels.argmax(axis=1)
    y_pred = probabilities.argmax(axis=1)
    return summarize(float(loss), float(accuracy), y_true, y_pred, class_names)


def summarize(loss: float, accuracy: float, y_true: np.ndarray, y_pred: np.ndarray,
              class_names: Sequence[str]) -> Evaluation:
    labels = list(range(len(class_names)))
    kwargs = dict(labels=labels, target_names=list(class_names), digits=4, zero_division=0)
    return Evaluation(
        loss=loss,
        accuracy=accuracy,
        y_true=y_true,
        y_pred=y_pred,
        report_text=classification_report(y_true, y_pred, **kwargs),
        report=classification_report(y_true, y_pred, output_dict=True, **kwargs),
        confusion=confusion_matrix(y_true, y_pred, labels=labels),
        class_names=list(class_names),
    )


def confusion_csv(matrix: np.ndarray, class_names: Sequence[str], float_format: Optional[str] = None) -> str:
    return pd.DataFrame(matrix, index=list(class_names), columns=list(class_names)).to_csv(
        index_label="true\\predicted", float_format=float_format, lineterminator="\n")


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], normalized: bool,
                          title: str = "Confusion matrix") -> Figure:
    # Fixed margins, sized for CIFAR-10's class names: matplotlib's layout engines lay the
    # figure out by drawing its text once more, ~40 % of its cost, and every trial draws two.
    figure = Figure(figsize=(7, 6), dpi=80)
    figure.subplots_adjust(left=0.17, right=0.99, bottom=0.17, top=0.94)
    axes = figure.add_subplot()
    # Given `ax`, it draws on this Figure: no pyplot figure is made.
    display = ConfusionMatrixDisplay(matrix, display_labels=list(class_names)).plot(
        ax=axes, cmap="Blues", xticks_rotation=45, values_format=".2f" if normalized else "d",
        im_kw={"vmin": 0, "vmax": 1} if normalized else None, text_kw={"fontsize": 7})
    # scikit-learn picks each number's colour from the data's midpoint, not the colour scale's
    # (scikit-learn#16048): on the fixed 0-1 scale a weak model's 0.2 got white text on a pale
    # cell. Light text goes on the darker half of the scale actually drawn.
    shade = display.im_.norm
    for (row, column), text in np.ndenumerate(display.text_):
        text.set_color("white" if shade(matrix[row, column]) > 0.5 else "black")
    for label in axes.get_xticklabels():
        label.set_horizontalalignment("right")
    axes.set_title(f"{title} ({'row-normalised' if normalized else 'counts'})")
    return figure


def plot_learning_curves(history: Dict[str, List[float]], validation_label: str = "validation",
                         first_epoch: int = 1) -> Figure:
    figure = Figure(figsize=(10, 4), dpi=80)  # fixed margins, as plot_confusion_matrix
    figure.subplots_adjust(left=0.07, right=0.99, bottom=0.13, top=0.92, wspace=0.22)
    for index, metric in enumerate(("accuracy", "loss")):
        axes = figure.add_subplot(1, 2, index + 1)
        for key, label in ((metric, "train"), (f"val_{metric}", validation_label)):
            values = history.get(key)
            if values:
                axes.plot(range(first_epoch, first_epoch + len(values)), values, marker="o", markersize=3, label=label)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(f"{metric}: train vs {validation_label}")
        axes.grid(alpha=0.3)
        axes.legend()
    return figure
