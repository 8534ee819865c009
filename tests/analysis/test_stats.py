"""The statistics behind "which hyperparameters matter, and by how much", on
constructed data whose answer is known: paired differences over seeds and
test images, per-budget importances, marginal effects, edges of the space."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from src.analysis.importance import (
    budget_importances,
    edge_of_space,
    edge_of_what_was_tried,
    headline_budget,
    marginal_effects,
    seed_variance,
    trial_counts,
)
from src.analysis.stats import paired_difference
from src.config.schema import HyperParameter, HyperParameterType

N_IMAGES = 10_000


def correctness(n_images: int = N_IMAGES, accuracy: float = 0.7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n_images) < accuracy


def shifted(correct: np.ndarray, k: int) -> np.ndarray:
    """The same answers, except right on k more images (k < 0: wrong on -k more)."""
    out = correct.copy()
    flip = np.flatnonzero(~correct)[:k] if k >= 0 else np.flatnonzero(correct)[:-k]
    out[flip] = k >= 0
    return out


# --- paired_difference -------------------------------------------------------------------------

@pytest.mark.parametrize("n_seeds", [1, 3])
def test_identical_predictions_give_zero_and_not_significant(n_seeds):
    seeds = [correctness(seed=i) for i in range(n_seeds)]
    result = paired_difference(seeds, [s.copy() for s in seeds])
    assert result.estimate == 0 and result.low == 0 and result.high == 0
    assert not result.significant
    assert result.mcnemar_p == [1.0] * n_seeds
    assert str(result).endswith(": not significant (the interval includes 0)")


def test_k_more_right_images_give_the_exact_size_and_sign():
    base = correctness()
    result = paired_difference([shifted(base, 300)] * 3, [base] * 3)
    assert result.estimate == 300 / N_IMAGES
    assert result.low < result.estimate < result.high
    assert result.significant
    assert result.discordant == [(300, 0)] * 3
    assert max(result.mcnemar_p) < 1e-50
    assert str(result) == ("A is 3.00 points more accurate than B (95% interval "
                           f"{100 * result.low:.2f} to {100 * result.high:.2f} points, "
                           "3 seeds x 10000 test images): significant")

    swapped = paired_difference([base] * 3, [shifted(base, 300)] * 3)
    assert swapped.estimate == -300 / N_IMAGES
    assert swapped.significant
    assert swapped.words("baseline", "wide").startswith("wide is 3.00 points more accurate than baseline")


def test_a_few_more_right_images_are_not_significant():
    base = correctness()
    result = paired_difference([shifted(base, 3)] * 3, [base] * 3)
    assert result.estimate == 3 / N_IMAGES
    assert result.low <= 0 < result.high
    assert not result.significant
    assert result.mcnemar_p == [0.25] * 3  # 3 of 3 discordant images one way: 2 * 0.5 ** 3


def test_one_seed_resamples_images_only_and_says_so():
    base = correctness()
    result = paired_difference([shifted(base, 300)], [base])
    assert result.n_seeds == 1 and result.seed_half_width == 0
    assert (result.low, result.high) == result.image_interval
    assert result.significant
    assert "1 seed x 10000 test images; seed-to-seed variation not estimated" in str(result)


def test_seed_noise_widens_the_interval():
    n = 6000  # +2, -1, +3 points are 120, -60, 180 images; their mean, 80 images, is the constant
    bases = [correctness(n, seed=i) for i in range(3)]
    varying = paired_difference([shifted(b, k) for b, k in zip(bases, (120, -60, 180))], bases)
    constant = paired_difference([shifted(b, 80) for b in bases], bases)
    assert varying.estimate == pytest.approx(constant.estimate) == pytest.approx(80 / n)
    assert varying.seed_half_width > 0 == constant.seed_half_width
    assert varying.high - varying.low > 2 * (constant.high - constant.low)
    # Three seeds that disagree about the sign cannot settle it; three that agree can.
    assert not varying.significant and constant.significant


def test_mismatched_inputs_are_refused():
    base = correctness(100)
    with pytest.raises(ValueError):
        paired_difference([base, base], [base])
    with pytest.raises(ValueError):
        paired_difference([base], [base[:50]])


# --- budget_importances ------------------------------------------------------------------------

def hyperband_table(seed: int = 0) -> pd.DataFrame:
    """Trials at four rungs (fewer at the higher ones, as Hyperband runs them);
    only dropout moves the objective, and more so with more epochs."""
    rng = np.random.default_rng(seed)
    rows = []
    for epochs, trials in ((2, 24), (6, 12), (18, 8), (54, 3)):
        for _ in range(trials):
            dropout = float(rng.choice(np.round(np.arange(0.1, 0.65, 0.1), 1)))
            rows.append({"trainer.epochs": epochs, "model.dropout": dropout,
                         "model.width": float(rng.choice([0.5, 1.0, 2.0])),
                         "model.filters": [[32, 64, 128], [64, 128, 256]][rng.integers(2)],
                         "optimizer": "adam",
                         "best_val_accuracy": 0.5 + 0.3 * dropout * epochs / 54 + rng.normal(0, 1e-4)})
    return pd.DataFrame(rows)


@pytest.mark.slow  # fANOVA with permutations over many synthetic trials
def test_importances_per_budget_rank_the_driving_hyperparameter_first():
    frame = hyperband_table()
    params = ["trainer.epochs", "model.dropout", "model.width", "model.filters", "optimizer"]
    result = budget_importances(frame, params, "best_val_accuracy", budget="trainer.epochs")
    counts = trial_counts(frame, "best_val_accuracy", "trainer.epochs")
    assert counts == {2: 24, 6: 12, 18: 8, 54: 3}
    assert sorted(result) == [2, 6, 18]  # 3 trials at 54 epochs are too few
    for epochs, table in result.items():
        assert "trainer.epochs" not in set(table["hyperparameter"])
        assert table.iloc[0]["hyperparameter"] == "model.dropout", (epochs, table)
        assert table.iloc[0]["importance"] > 0.5
        assert table["importance"].sum() == pytest.approx(1.0)
        # One optimizer throughout: nothing to attribute, so no number, listed last.
        assert table.iloc[-1]["hyperparameter"] == "optimizer" and math.isnan(table.iloc[-1]["importance"])
        assert (table["trials"] == counts[epochs]).all()
    assert headline_budget(result, counts) == 18
    assert headline_budget(result, {**counts, 18: 5}) == 6


def test_importances_without_a_budget_pool_all_trials():
    frame = hyperband_table().query("`trainer.epochs` == 2")
    # The ranking is what is checked here, so no extra shuffles for the p-values (test_importance.py).
    result = budget_importances(frame, ["model.dropout", "model.width"], "best_val_accuracy", budget=None,
                                permutations=20, max_permutations=20)
    assert list(result) == [None]
    assert result[None].iloc[0]["hyperparameter"] == "model.dropout"
    assert budget_importances(frame.head(4), ["model.dropout"], "best_val_accuracy", budget=None) == {}


def test_a_constant_objective_has_no_importances():
    frame = hyperband_table().query("`trainer.epochs` == 2").assign(best_val_accuracy=0.7)
    table = budget_importances(frame, ["model.dropout", "model.width"], "best_val_accuracy", None)[None]
    assert table["importance"].isna().all()


# --- marginal_effects --------------------------------------------------------------------------

def test_marginal_effects_use_the_pooled_variance_and_test_across_values():
    frame = pd.DataFrame({"model.width": [0.5, 0.5, 0.5, 1.0, 1.0, 2.0],
                          "best_val_accuracy": [0.60, 0.62, 0.64, 0.70, 0.70, 0.80]})
    table = marginal_effects(frame, "model.width", "best_val_accuracy")
    assert list(table["value"]) == [0.5, 1.0, 2.0]
    assert list(table["count"]) == [3, 2, 1]
    assert table["mean"].tolist() == pytest.approx([0.62, 0.70, 0.80])
    # One-way ANOVA's residual variance: (0.02^2 + 0 + 0.02^2) / (6 - 3) over 3 degrees of freedom.
    pooled = 0.0008 / 3
    for row in table.itertuples():
        half = scipy_stats.t.ppf(0.975, 3) * math.sqrt(pooled / row.count)
        assert (row.low, row.high) == pytest.approx((row.mean - half, row.mean + half))  # one trial too
    groups = [[0.60, 0.62, 0.64], [0.70, 0.70], [0.80]]
    assert table.attrs["p_value"] == pytest.approx(scipy_stats.f_oneway(*groups).pvalue)
    assert table.attrs["variance_source"] == "within values"


def test_marginal_effects_are_never_narrower_than_seed_noise():
    """Single-seed trials of different configurations that happen to agree: the study's
    confirmation seeds say how much one configuration moves from seed to seed."""
    frame = pd.DataFrame({"dropout": [0.0, 0.0, 0.5, 0.5], "best_val_accuracy": [0.60, 0.60, 0.62, 0.62]})
    assert marginal_effects(frame, "dropout", "best_val_accuracy").attrs["p_value"] == 0.0 or \
        math.isnan(marginal_effects(frame, "dropout", "best_val_accuracy").attrs["p_value"])
    seed_var, seed_df = seed_variance({"trial 3": [0.60, 0.62, 0.64], "baseline": [0.61, 0.63, 0.65]})
    assert (seed_var, seed_df) == (pytest.approx(0.0004), 4)
    table = marginal_effects(frame, "dropout", "best_val_accuracy", seed_var=seed_var, seed_df=seed_df)
    half = scipy_stats.t.ppf(0.975, 4) * math.sqrt(0.0004 / 2)
    assert table.loc[0, "high"] - table.loc[0, "low"] == pytest.approx(2 * half)
    assert table.attrs["variance_source"] == "seed-to-seed"
    # 2 points between the values against a seed SD of 2 points, two trials each: inside the noise.
    assert table.attrs["p_value"] > 0.05
    assert seed_variance({"a": [0.6], "b": [0.7]}) == (pytest.approx(math.nan, nan_ok=True), 0)


# --- the noise floor of an importance ---------------------------------------------------------

def synthetic_study(rng: np.random.Generator, trials: int, effect: float, noise: float) -> pd.DataFrame:
    """A study whose truth is known: only `dropout` moves the objective (by `effect` per step
    of 0.25), plus normal noise of SD `noise`; the filters are tried but do nothing."""
    frame = pd.DataFrame({"dropout": rng.choice([0.0, 0.25, 0.5], trials),
                          "filters0": rng.choice([16, 32, 64], trials),
                          "filters1": rng.choice([32, 64, 128], trials)})
    frame["best_val_accuracy"] = 0.6 + effect * frame["dropout"] / 0.25 + rng.normal(0, noise, trials)
    return frame


def test_the_driving_hyperparameter_clears_the_noise_and_the_others_rarely_do():
    """Over 20 synthetic studies of 12 trials (effect 3 points a step, noise SD 1 point),
    dropout's permutation p-value is below 0.05 in most; the filters', which do nothing, in
    about 5 % (the test is conservative while another hyperparameter drives the objective:
    shuffling removes that effect too). Seeds are fixed, so the counts are the same every run;
    the bounds leave room for the binomial spread of 40 null p-values (5 % of 40 is 2). An
    8-tree forest keeps it to seconds; reports use optuna's 64, a steadier statistic. The count
    of shuffles is fixed (max_permutations): this checks the test's calibration, and
    tests/analysis/test_importance.py the extra shuffles a report adds near 0.05."""
    rng = np.random.default_rng(7)
    hits = {"dropout": 0, "filters0": 0, "filters1": 0}
    draws = 20
    for _ in range(draws):
        frame = synthetic_study(rng, 12, effect=0.03, noise=0.01)
        table = budget_importances(frame, list(hits), "best_val_accuracy", None, permutations=39,
                                   max_permutations=39, bootstraps=0, trees=8)[None].set_index("hyperparameter")
        for name in hits:
            hits[name] += table.loc[name, "p_value"] < 0.05
    print("significant in", hits, "of", draws)
    assert hits["dropout"] >= 0.8 * draws
    assert hits["filters0"] + hits["filters1"] <= 0.1 * 2 * draws


def test_pure_noise_is_significant_about_five_percent_of_the_time():
    """With no effect at all, the permutation p-values are uniform: about 5 % fall below 0.05
    (fixed seeds; 60 p-values, so 3 are expected and 8 would be a 1-in-100 excess)."""
    rng = np.random.default_rng(11)
    significant, total = 0, 0
    for _ in range(20):
        frame = synthetic_study(rng, 12, effect=0.0, noise=0.01)
        table = budget_importances(frame, ["dropout", "filters0", "filters1"], "best_val_accuracy", None,
                                   permutations=39, max_permutations=39, bootstraps=0, trees=8)[None]
        significant += int((table["p_value"] < 0.05).sum())
        total += len(table)
    print(f"pure noise: {significant} of {total} p-values below 0.05")
    assert significant <= 8


def test_the_bootstrap_interval_brackets_the_importance():
    frame = synthetic_study(np.random.default_rng(3), 16, effect=0.02, noise=0.005)
    table = budget_importances(frame, ["dropout", "filters0", "filters1"], "best_val_accuracy", None,
                               permutations=19, max_permutations=19, bootstraps=30)[None].set_index("hyperparameter")
    assert table.loc["dropout", "p_value"] == pytest.approx(1 / 20)  # no shuffle matches it
    assert 0 <= table.loc["dropout", "importance_low"] < table.loc["dropout", "importance_high"] <= 1
    assert table.loc["dropout", "importance_low"] > table.loc["filters0", "importance_high"] - 0.5


def test_marginal_effects_bin_a_continuous_hyperparameter():
    rng = np.random.default_rng(0)
    lr = rng.uniform(1e-4, 1e-2, 40)
    frame = pd.DataFrame({"trainer.learning_rate": lr, "best_val_accuracy": 0.6 + 10 * lr})
    table = marginal_effects(frame, "trainer.learning_rate", "best_val_accuracy")
    assert len(table) == 4 and table["count"].sum() == 40
    assert table["mean"].is_monotonic_increasing
    assert ((table["low"] < table["mean"]) & (table["mean"] < table["high"])).all()


def test_marginal_effects_of_list_values_group_by_their_text():
    frame = pd.DataFrame({"model.filters": [[32, 64], [32, 64], [64, 128]], "best_val_accuracy": [0.6, 0.7, 0.8]})
    table = marginal_effects(frame, "model.filters", "best_val_accuracy")
    assert dict(zip(table["value"], table["mean"])) == pytest.approx({"[32, 64]": 0.65, "[64, 128]": 0.8})


# --- edge_of_space -----------------------------------------------------------------------------

WIDTH = {"key": "model.width", "type": "choice", "values": [0.5, 1.0, 2.0]}
DROPOUT = {"key": "model.dropout", "type": "float", "min": 0.1, "max": 0.6, "step": 0.1}
EPOCHS = {"key": "trainer.epochs", "type": "int", "min": 5, "max": 20, "step": 5}


def test_edge_of_space_flags_both_ends_of_a_choice_list():
    assert edge_of_space(2.0, WIDTH) == ("model.width: best value 2.0 is the largest offered (max 2.0): "
                                         "at the edge of the space: widen it")
    assert "smallest offered (min 0.5)" in edge_of_space(0.5, WIDTH)
    assert edge_of_space(1.0, WIDTH) is None
    assert edge_of_space("2.0", WIDTH) is not None  # as MLflow logs it


def test_edge_of_space_is_silent_at_the_smallest_value_a_key_can_take():
    card_dropout = {**DROPOUT, "min": 0.0}  # conf/tuner/search_space/filters_dropout_epochs.yaml
    assert edge_of_space(0.0, card_dropout) is None  # no dropout: no wider space goes below it
    assert "largest offered (max 0.6)" in edge_of_space(0.6, card_dropout)
    assert edge_of_space(1, {**EPOCHS, "min": 1}) is None
    assert "smallest offered (min 0.1)" in edge_of_space(0.1, DROPOUT)  # 0.1 is not the floor
    assert "smallest offered (min 0.0)" in edge_of_space(0.0, {**card_dropout, "key": "model.width"})


def test_edge_of_space_flags_both_ends_of_a_range():
    assert "largest offered (max 0.6)" in edge_of_space(0.1 + 5 * 0.1, DROPOUT)  # float drift from stepping
    assert "smallest offered (min 0.1)" in edge_of_space(0.1, DROPOUT)
    assert edge_of_space(0.3, DROPOUT) is None
    assert "largest offered (max 20)" in edge_of_space(20, EPOCHS)
    assert edge_of_space(10, EPOCHS) is None
    # A step that does not divide the range stops short of max: 5, 10, 15, 20 of 5..22.
    assert "largest offered (max 20)" in edge_of_space(20, {**EPOCHS, "max": 22})
    log_range = {"key": "trainer.learning_rate", "type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"}
    assert "smallest" in edge_of_space(1e-4, log_range) and edge_of_space(1e-3, log_range) is None


def test_edge_of_space_accepts_the_schema_and_ignores_unordered_choices():
    spec = HyperParameter(key="model.dropout", type=HyperParameterType.float, min=0.1, max=0.6, step=0.1)
    assert edge_of_space(0.6, spec).startswith("model.dropout: best value 0.6 is the largest offered")
    filters = {"key": "model.filters", "type": "choice", "values": [[32, 64], [64, 128]]}
    assert edge_of_space([64, 128], filters) is None
    assert edge_of_space("adam", {"key": "optimizer", "type": "choice", "values": ["adam", "sgd"]}) is None
    assert edge_of_space(0.3, {"key": "x", "type": "fixed", "value": 0.3}) is None


def test_an_edge_of_what_the_trials_drew_is_flagged_where_the_space_offers_more():
    """The card study run before keras-tuner#1001's workaround drew dropout 0.0-0.5 from a space
    that reads 0.0-0.6: a winner at 0.5 is at the edge of what was searched."""
    card_dropout = {**DROPOUT, "min": 0.0}
    drawn = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.2]
    flag = edge_of_what_was_tried(0.5, drawn, card_dropout, "dropout")
    assert flag == "dropout: best value 0.5 is the largest any trial drew, and the space offers 0.6 that no trial drew: search there"
    assert edge_of_what_was_tried(0.3, drawn, card_dropout, "dropout") is None  # inside what was tried
    assert edge_of_what_was_tried(0.6, drawn + [0.6], card_dropout, "dropout") is None  # the space's own edge
    assert edge_of_what_was_tried(0.0, drawn, card_dropout, "dropout") is None  # no dropout: nothing below
    assert "smallest any trial drew" in edge_of_what_was_tried(20, [20, 30, 40], {**EPOCHS, "min": 10, "max": 50})
    assert edge_of_what_was_tried(64, [64, 64], {"type": "choice", "values": [16, 32, 64, 128]}) is None  # one value
    assert "offers 128" in edge_of_what_was_tried(64, [16, 64], {"type": "choice", "values": [16, 32, 64, 128]})
    # A continuous range: its extreme draw is never its bound, and says nothing.
    continuous = {"key": "trainer.learning_rate", "type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"}
    assert edge_of_what_was_tried(0.009, [0.0002, 0.001, 0.009], continuous) is None


def test_the_advice_tells_a_widening_from_an_untried_value():
    from src.analysis.study_report import next_step

    untried = edge_of_what_was_tried(0.5, [0.0, 0.3, 0.5], {**DROPOUT, "min": 0.0}, "dropout")
    at_edge = edge_of_space(2.0, WIDTH)
    assert next_step(None, [untried], []) == ("search the values the space offers beyond the winner's that no "
                                              "trial drew (dropout).")
    assert next_step(None, [at_edge], []) == "widen the space where the winner sits at its edge (model.width)."
    assert next_step(None, [at_edge], [], "best candidate") == ("widen the space where the best candidate sits at "
                                                               "its edge (model.width).")
