"""optuna's slice and contour plots in a study's report: at the headline budget, over the
hyperparameters the importance table ranks first, without touching the hand-written figures."""
from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import optuna
import pandas as pd
import pytest

from src.analysis import study_figures

NAMES = ["learning_rate", "batch_norm", "augmentation", "dropout"]


def trials() -> pd.DataFrame:
    """Hyperband-like trials at 1 and 3 epochs; the objective follows augmentation and the learning rate."""
    rng = np.random.default_rng(0)
    rows = []
    for epochs, count in ((1, 12), (3, 9)):
        for _ in range(count):
            values = {"learning_rate": float(10 ** rng.uniform(-3.5, -2.5)), "batch_norm": bool(rng.integers(2)),
                      "augmentation": str(rng.choice(["none", "flip", "flip_shift"])),
                      "dropout": round(float(rng.choice([0.1, 0.3, 0.5])), 1)}
            score = (0.5 + 0.1 * ["none", "flip", "flip_shift"].index(values["augmentation"])
                     - 20 * abs(values["learning_rate"] - 1e-3) + rng.normal(0, 1e-3))
            rows.append({**values, "epochs": epochs, "best_val_accuracy": score * epochs / 3,
                         "trial_id": f"{len(rows):04d}", "status": "FINISHED",
                         "seconds_from_scratch": 10.0 * epochs, "parameters": 1000})
    return pd.DataFrame(rows)


@pytest.fixture
def drawn(monkeypatch):
    """What each optuna figure showed before it was saved and closed: its axes' labels and scales."""
    seen = {}

    def recording(plot):
        def wrapper(study, params, objective, title):
            figure = plot(study, params, objective, title)
            plotted = [a for a in figure.axes if a.get_xlabel() in NAMES]
            seen[plot.__name__] = {"x": [a.get_xlabel() for a in plotted], "y": [a.get_ylabel() for a in plotted],
                                   "scale": {a.get_xlabel(): a.get_xscale() for a in plotted},
                                   "labels": [a.get_ylabel() for a in figure.axes], "trials": len(study.trials),
                                   "title": title}
            return figure
        return wrapper

    for plot in (study_figures.plot_slice, study_figures.plot_contour):
        monkeypatch.setattr(study_figures, plot.__name__, recording(plot))
    return seen


def test_slice_and_contour_show_the_headline_budgets_trials_and_its_two_most_important(tmp_path, drawn):
    import matplotlib.pyplot as plt

    style, figures_before = dict(matplotlib.rcParams), plt.get_fignums()
    focus = study_figures.Focus(budget_value=3, ranked=["augmentation", "learning_rate", "dropout", "batch_norm"],
                                log=["learning_rate"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)  # silenced inside, not leaked
        lines = study_figures.write_figures(trials(), NAMES, "best_val_accuracy", "epochs", None, tmp_path, focus)
    assert (tmp_path / "figures" / "slice.png").is_file() and (tmp_path / "figures" / "contour.png").is_file()
    text = "\n".join(lines)
    assert "![slice](figures/slice.png)" in text and "![contour](figures/contour.png)" in text
    assert "the two most important hyperparameters at 3 epochs by the importance table, augmentation and " \
           "learning_rate" in text

    # Every hyperparameter's slice (optuna orders them by name), only the 9 trials at 3 epochs,
    # the learning rate on the log scale it was searched on, the objective named on the y axis.
    assert drawn["plot_slice"]["x"] == sorted(NAMES) and drawn["plot_slice"]["trials"] == 9
    assert drawn["plot_slice"]["y"][0] == "best_val_accuracy"
    assert drawn["plot_slice"]["scale"]["learning_rate"] == "log" and drawn["plot_slice"]["scale"]["dropout"] == "linear"
    # The contour: the importance table's first two, one per axis, the objective on its colour bar.
    assert drawn["plot_contour"]["x"] == ["augmentation"] and drawn["plot_contour"]["y"] == ["learning_rate"]
    assert "best_val_accuracy" in drawn["plot_contour"]["labels"] and drawn["plot_contour"]["trials"] == 9
    assert drawn["plot_contour"]["title"] == "best_val_accuracy at 3 epochs: augmentation and learning_rate"

    # optuna's ggplot style and pyplot figures stay inside: the hand-written figures drawn after are unchanged.
    assert dict(matplotlib.rcParams) == style and plt.get_fignums() == figures_before


def test_without_two_ranked_hyperparameters_there_is_a_slice_and_no_contour(tmp_path, drawn):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "contour.png").write_bytes(b"an earlier report's")
    focus = study_figures.Focus(budget_value=1, ranked=["augmentation"])  # the rest had no importance
    lines = study_figures.write_figures(trials(), NAMES, "best_val_accuracy", "epochs", None, tmp_path, focus)
    assert drawn["plot_slice"]["trials"] == 12 and "plot_contour" not in drawn
    assert (tmp_path / "figures" / "slice.png").is_file() and not (tmp_path / "figures" / "contour.png").exists()
    assert "figures/contour.png" not in "\n".join(lines)


def test_a_study_without_budgets_slices_every_trial_and_skips_what_never_varied(tmp_path, drawn):
    frame = trials().drop(columns="epochs").assign(dropout=0.5)  # dropout fixed: nothing to slice
    study_figures.write_figures(frame, NAMES, "best_val_accuracy", None, None, tmp_path,
                                study_figures.Focus(ranked=["learning_rate", "augmentation"]))
    assert drawn["plot_slice"]["x"] == ["augmentation", "batch_norm", "learning_rate"]
    assert drawn["plot_slice"]["trials"] == 21 and drawn["plot_slice"]["scale"]["learning_rate"] == "linear"
    assert (drawn["plot_contour"]["x"], drawn["plot_contour"]["y"]) == (["augmentation"], ["learning_rate"])
    assert drawn["plot_slice"]["title"] == "best_val_accuracy against each hyperparameter, 21 trials"
