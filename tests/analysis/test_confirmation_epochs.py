"""The confirmation runs per seed and per epoch (`src/analysis/confirmation_epochs.py`): read
back in the confirmation table's order, and the Epochs section's means over seeds, their
t-intervals, where each mean curve peaks and which configurations still rise at the end.
(tests/analysis/test_study_report.py checks the same files and section in a whole report.)"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from src.analysis.confirmation_epochs import confirmation_frames, epochs_lines

PEAKS = {1: 5, 2: 6, 3: 7}  # "trial 0001": each seed's best epoch, so its mean curve peaks at 6


def accuracy(candidate: str, seed: int, epoch: int) -> float:
    if candidate == "baseline":  # still rising at its last epoch
        return 0.5 + 0.01 * epoch + 0.001 * seed
    return 0.6 - 0.01 * (epoch - PEAKS[seed]) ** 2


def curves(epochs: int = 9) -> pd.DataFrame:
    return pd.DataFrame([{"candidate": c, "seed": s, "epoch": e, "val_accuracy": accuracy(c, s, e)}
                         for c in ("trial 0001", "baseline") for s in (1, 2, 3) for e in range(1, epochs + 1)])


def rows_of(lines: list) -> dict:
    """{candidate: its row's cells} of the Epochs table."""
    table = [line for line in "\n".join(lines).splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header, cells)) for cells in
            ([cell.strip() for cell in line.strip("|").split("|")] for line in table[1:])}


def test_the_epochs_section_gives_each_configurations_mean_its_peak_and_who_still_rises():
    lines, rising = epochs_lines(curves())
    assert lines[0] == "### Epochs: accuracy against training length"
    assert rising == ["baseline"]  # its mean curve peaks at its last epoch: more epochs may help
    rows = rows_of(lines)
    assert set(rows) == {"trial 0001", "baseline"}
    trial = rows["trial 0001"]
    assert trial["seeds"] == "3" and trial["each seed's best epoch"] == "5, 6, 7"
    assert trial["mean curve peaks at"] == "epoch 6 (0.5933)"  # 0.6 - 0.01 * (1 + 0 + 1) / 3
    at_5 = np.array([accuracy("trial 0001", s, 5) for s in (1, 2, 3)])
    low, high = scipy_stats.t.interval(0.95, 2, loc=at_5.mean(), scale=scipy_stats.sem(at_5))
    assert trial["epoch 5"] == f"{at_5.mean():.4f} ({low:.4f}-{high:.4f})"
    # The marks up to the last epoch every seed reached (5 of 5, 10, 15, 20), and that last one.
    assert [key for key in trial if key.startswith("epoch ")] == ["epoch 5", "epoch 9"]
    assert rows["baseline"]["mean curve peaks at"].startswith("epoch 9 (")
    assert "![confirmation curves](figures/confirmation_curves.png)" in lines


def test_a_candidate_without_spread_gets_its_mean_alone_and_no_curves_no_section():
    same = curves().assign(val_accuracy=lambda f: f["epoch"] * 0.01 + 0.5)  # every seed alike
    assert rows_of(epochs_lines(same)[0])["baseline"]["epoch 5"] == "0.5500"
    assert epochs_lines(curves().iloc[:0]) == ([], [])


def test_confirmation_runs_are_read_in_the_tables_order_with_their_seeds_ascending():
    table = pd.DataFrame({"candidate": ["trial 0001", "baseline", "trial 0001", "baseline"], "seed": [2, 1, 1, 2],
                          "val_accuracy": [0.61, 0.55, 0.60, 0.56], "test_accuracy": [0.7, 0.6, 0.71, 0.62],
                          "run_id": ["t2", "b1", "t1", "b2"]})
    metrics = {"t1": {"best_val_epoch": 5, "epochs_trained": 9}, "t2": {"best_val_epoch": 6, "epochs_trained": 9},
               "b1": {"epochs_trained": 3}, "b2": {}}

    class Client:
        def get_run(self, run_id):
            return SimpleNamespace(data=SimpleNamespace(metrics=metrics[run_id]))

        def get_metric_history(self, run_id, key):
            # val_accuracy over two epochs (steps logged from 1), nothing else logged
            return [SimpleNamespace(step=e, value=0.1 * e) for e in (1, 2)] if key == "val_accuracy" else []

    seeds, per_epoch = confirmation_frames(Client(), SimpleNamespace(table=table))
    assert list(zip(seeds["candidate"], seeds["seed"])) == [("trial 0001", 1), ("trial 0001", 2),
                                                            ("baseline", 1), ("baseline", 2)]
    assert list(seeds["run_id"]) == ["t1", "t2", "b1", "b2"]
    assert seeds["best_epoch"].tolist()[:2] == [5, 6] and seeds["best_epoch"].isna().tolist() == [False] * 2 + [True] * 2
    assert seeds["epochs_trained"].tolist()[:3] == [9, 9, 3]
    assert list(per_epoch.columns) == ["candidate", "seed", "epoch", "val_accuracy", "val_loss", "accuracy", "loss"]
    assert len(per_epoch) == 8 and per_epoch["val_accuracy"].tolist() == pytest.approx([0.1, 0.2] * 4)
    assert per_epoch["val_loss"].isna().all()
