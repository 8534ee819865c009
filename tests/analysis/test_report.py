"""`python -m src.report` on a store of tiny runs: grouping by seeds, CSVs,
importances, the baseline comparison, and identical files on a second run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from helpers.cifar import make_synthetic_cifar
from helpers.commands import call_here, run_here
from helpers.session import once_per_session

TINY = ("trainer.epochs=2", "tracking.log_model=false", "trainer.verbose=0", "model.filters=[8,16]",
        "model.dense_units=[16]")


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """Built by one xdist worker, read by the tests of both: the reports only read it."""
    with once_per_session(tmp_path_factory, "report_store") as (tmp_path, build):
        tracking_uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
        if build:
            build_store(tmp_path, tracking_uri)
    return tracking_uri


def build_store(tmp_path, tracking_uri):
    synthetic_cifar = make_synthetic_cifar(tmp_path / "cifar-10-batches-py")
    baseline = run_here("+experiment=baseline", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}", *TINY)
    assert baseline.returncode == 0, baseline.stderr[-3000:]
    sweep = run_here("-m", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}", "tracking.experiment=grid",
                     f"hydra.sweep.dir={tmp_path / 'sweeps' / 'grid'}", *TINY,
                     "model.dropout=0.1,0.5", "model.width=1,2", "seed=1,2")
    assert sweep.returncode == 0, sweep.stderr[-3000:]


def report(uri, selector, out):
    """`python -m src.report <selector> ...`, in this process (its own start-up is no part of what is tested)."""
    from src.analysis.report import main

    return call_here(main, selector, "--tracking-uri", uri, "--out", str(out))


@pytest.mark.slow  # reads a store built by an 8-job multirun
def test_report_of_a_sweep(store, tmp_path):
    out = tmp_path / "report"
    result = report(store, "sweeps/grid", out)
    assert result.returncode == 0, result.stderr[-3000:]
    board = pd.read_csv(out / "leaderboard.csv")
    # 2 dropouts x 2 widths, each over 2 seeds.
    assert len(board) == 4 and set(board["runs"]) == {2}
    assert {"model.dropout", "model.width"} <= set(board.columns)
    assert "seed" not in board.columns  # seeds are what the spread is taken over
    assert list(board["best_val_accuracy_mean"]) == sorted(board["best_val_accuracy_mean"], reverse=True)
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and set(runs["seed"]) == {1, 2}
    for _, row in board.iterrows():
        same = runs[(runs["model.dropout"] == row["model.dropout"]) & (runs["model.width"] == row["model.width"])]
        assert row["test_accuracy_mean"] == pytest.approx(same["test_accuracy"].mean(), abs=1e-5)
        assert row["test_accuracy_std"] == pytest.approx(same["test_accuracy"].std(), abs=1e-5)
    importance = pd.read_csv(out / "importance.csv")  # fANOVA over all runs: a sweep has no budget
    assert set(importance["hyperparameter"]) == {"model.dropout", "model.width"}
    assert importance["importance"].sum() == pytest.approx(1.0) and (importance["trials"] == 8).all()
    text = (out / "REPORT.md").read_text()
    assert "Best configuration against the baseline" in text and "difference" in text and "Welch" not in text
    for figure in ("objective_vs_hyperparameters.png", "validation_curves.png", "test_confusion_matrix.png"):
        assert (out / "figures" / figure).stat().st_size > 1000, figure


@pytest.mark.slow  # reads a store built by an 8-job multirun
def test_report_is_reproducible(store, tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    assert report(store, "grid", first).returncode == 0
    assert report(store, "grid", second).returncode == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.slow  # reads a store built by an 8-job multirun
def test_unknown_selector_lists_the_experiments(store, tmp_path):
    result = report(store, "no-such-thing", tmp_path / "x")
    assert result.returncode != 0
    assert "no-such-thing" in result.stderr and "grid" in result.stderr and "baseline" in result.stderr


@pytest.mark.parametrize("a, b", [([0.71, 0.72, 0.70], [0.65, 0.66]), ([0.5, 0.52], [0.4, 0.45, 0.41, 0.43]),
                                  ([0.8, 0.8, 0.81, 0.79, 0.8], [0.8, 0.7, 0.75])])
def test_difference_is_welchs_interval(a, b):
    from src.analysis.stats import difference

    a, b = np.array(a), np.array(b)
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)  # the textbook formula
    dof = (var_a + var_b) ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1))
    diff = difference(a, b, test_size=10000)
    assert diff.estimate == pytest.approx(a.mean() - b.mean())
    assert diff.half_width == pytest.approx(scipy_stats.t.ppf(0.975, dof) * np.sqrt(var_a + var_b), rel=1e-9)
    assert "Welch" in diff.method


def test_runs_that_all_scored_alike_get_the_sampling_error_not_a_zero_width_interval():
    """Welch over [0.5, 0.5] and [0.4, 0.4] is the single point 0.1: significant at any level."""
    from src.analysis.stats import difference

    diff = difference(np.array([0.5, 0.5]), np.array([0.4, 0.4]), test_size=100)
    se = np.sqrt(0.5 * 0.5 / 100 + 0.4 * 0.6 / 100)
    assert diff.half_width == pytest.approx(1.96 * se, rel=1e-4) and "scored alike" in diff.method
    assert not diff.significant  # 10 points on 100 images: within the sampling error


def test_difference_of_single_runs_is_the_test_sets_sampling_error():
    from src.analysis.stats import difference

    diff = difference(np.array([0.7]), np.array([0.6, 0.62]), test_size=10000)
    se = np.sqrt(0.7 * 0.3 / 10000 + 0.61 * 0.39 / 10000)
    assert diff.half_width == pytest.approx(1.96 * se, rel=1e-4) and "sampling error" in diff.method


@pytest.mark.slow  # a new interpreter, so that nothing this process imported counts
def test_the_report_command_starts_without_tensorflow():
    """`python -m src.report` reads a store: TensorFlow's ~5 s import has no place on its path
    (src.core.evaluate, which it reaches through tracking.logged, imports training's callback
    only when it evaluates a model)."""
    import subprocess
    import sys

    from helpers.paths import PROJECT_ROOT

    loaded = subprocess.run([sys.executable, "-c", "import sys, src.analysis.report; "
                             "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip() == "[]", loaded.stdout
