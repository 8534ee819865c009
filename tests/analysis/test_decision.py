"""The deciding confirmation: four outcomes, looks that are counted, and confirmations of known
truth showing its error rates, its interval's coverage and the seeds it uses."""
from __future__ import annotations

import numpy as np
import pytest

from src.analysis import decision

FIRST, CAP, MARGIN = 3, 6, 0.01  # the defaults: 3 pairs before the first look, up to 6, 1 point


def fixed(estimate, half):
    """An interval function whose half-width grows with the confidence as a normal one does."""
    from scipy import stats

    def interval_at(confidence):
        width = half * stats.norm.ppf((1 + confidence) / 2) / stats.norm.ppf(0.975)
        return estimate, estimate - width, estimate + width
    return interval_at


def test_looks_share_alpha_and_one_look_is_the_fixed_design():
    shares = [decision.spent(pairs, FIRST, CAP) for pairs in range(FIRST, CAP + 1)]
    assert sum(shares) == pytest.approx(decision.ALPHA)
    assert all(share < decision.ALPHA for share in shares) and shares[0] == max(shares)
    assert decision.spent(3, 3, 3) == decision.ALPHA


@pytest.mark.parametrize("estimate, half, outcome", [
    (0.030, 0.010, decision.CANDIDATE_BETTER),
    (-0.030, 0.010, decision.BASELINE_BETTER),
    (0.001, 0.003, decision.EQUIVALENT),
    (0.004, 0.012, decision.UNDECIDED),
])
def test_each_of_the_four_outcomes(estimate, half, outcome):
    found = decision.decide(fixed(estimate, half), CAP, FIRST, CAP, MARGIN)
    assert found.outcome == outcome and found.final and found.done
    assert found.low < found.estimate < found.high
    words = found.words("trial 7", "the baseline")
    assert words.startswith({decision.CANDIDATE_BETTER: "trial 7 is better", decision.BASELINE_BETTER: "the baseline is",
                             decision.EQUIVALENT: "trial 7 and the baseline are equivalent",
                             decision.UNDECIDED: "trial 7 against the baseline on test"}[outcome])
    assert found.tags()["confirm_decision"] == outcome and found.tags()["confirm_seeds"] == str(CAP)
    # The smallest detectable difference grows with the interval.
    assert found.mde > (found.high - found.low) / 2


def test_an_undecided_look_before_the_cap_asks_for_another_pair():
    found = decision.decide(fixed(0.004, 0.012), FIRST, FIRST, CAP, MARGIN)
    assert found.outcome == decision.UNDECIDED and not found.done


def test_the_simulations_normal_interval_agrees_with_the_bootstrap():
    """The simulation uses the image bootstrap's normal equivalent to afford thousands of
    confirmations; on the same runs both give the same interval to a few hundredths of a point."""
    rng = np.random.default_rng(3)
    shared, difficulty = rng.random(10_000) < 0.6, rng.random(10_000)
    a = [decision._correct(rng, 0.70, shared, difficulty) for _ in range(3)]
    b = [decision._correct(rng, 0.69, shared, difficulty) for _ in range(3)]
    for confidence in (0.95, 0.99):
        boot = decision.paired_interval(a, b, "bootstrap")(confidence)
        normal = decision.paired_interval(a, b, "normal")(confidence)
        assert boot[0] == normal[0]
        assert abs(boot[1] - normal[1]) < 0.0005 and abs(boot[2] - normal[2]) < 0.0005


@pytest.mark.slow  # ~20 s: 800 simulated confirmations
def test_confirmations_of_known_truth(capsys):
    """True difference 0, +-margin and twice the smallest detectable difference, with the card
    study's seed noise: a false 'better' at most 5 % of the time, the reported interval covering
    the truth at least 95 %, and the mean seed pairs used, each with its Monte Carlo interval."""
    runs = 200
    truths = {"none": 0.0, "+margin": MARGIN, "-margin": -MARGIN}
    results = {name: decision.simulate(truth, FIRST, CAP, MARGIN, runs, seed=1) for name, truth in truths.items()}
    # Twice the smallest difference the first look could detect (from one simulated confirmation's numbers).
    detectable = 2 * _first_look_mde()
    results["2 x mde"] = decision.simulate(detectable, FIRST, CAP, MARGIN, runs, seed=2)
    with capsys.disabled():
        print(f"\nconfirmations of known truth ({runs} each, first look {FIRST} pairs, cap {CAP}, margin 1 point, "
              f"2 x mde = {100 * detectable:.2f} points):")
        for name, found in results.items():
            better, low, high = found.rate(decision.CANDIDATE_BETTER)
            coverage = found.coverage
            print(f"  {name:>8}: candidate_better {better:.3f} ({low:.3f}-{high:.3f}), coverage {coverage[0]:.3f} "
                  f"({coverage[1]:.3f}-{coverage[2]:.3f}), mean pairs {found.mean_pairs:.2f}, {found.outcomes}")
    for name in ("none", "-margin"):
        assert results[name].rate(decision.CANDIDATE_BETTER)[0] <= 0.05, name
    assert results["+margin"].rate(decision.EQUIVALENT)[0] <= 0.05  # a real 1-point gain is not called a tie
    assert results["-margin"].rate(decision.EQUIVALENT)[0] <= 0.05
    assert all(found.coverage[0] >= 0.95 for found in results.values())
    assert results["2 x mde"].rate(decision.CANDIDATE_BETTER)[0] >= 0.80  # it has the power it claims
    assert all(FIRST <= found.mean_pairs <= CAP for found in results.values())
    assert results["2 x mde"].mean_pairs < results["none"].mean_pairs  # a clear win stops early


def _first_look_mde() -> float:
    rng = np.random.default_rng(11)
    shared, difficulty = rng.random(10_000) < 0.6, rng.random(10_000)
    noise = np.sqrt(decision.CARD_STUDY_TEST_SD ** 2 - 0.4 * 0.69 * 0.31 / 10_000)
    a = [decision._correct(rng, 0.69 + rng.normal(0, noise), shared, difficulty) for _ in range(FIRST)]
    b = [decision._correct(rng, 0.69 + rng.normal(0, noise), shared, difficulty) for _ in range(FIRST)]
    return decision.decide(decision.paired_interval(a, b, "normal"), FIRST, FIRST, CAP, MARGIN).mde


def test_a_decision_rebuilt_from_recorded_rows_matches_the_one_from_predictions():
    """A study whose store is gone (the card study): the per-seed differences and the 95 % paired
    interval it recorded give back the interval at any confidence, so the decision is the same."""
    from src.analysis import stats

    rng = np.random.default_rng(4)
    shared, difficulty = rng.random(10_000) < 0.6, rng.random(10_000)
    a = [decision._correct(rng, 0.69 + rng.normal(0, 0.003), shared, difficulty) for _ in range(3)]
    b = [decision._correct(rng, 0.69 + rng.normal(0, 0.003), shared, difficulty) for _ in range(3)]
    recorded = stats.paired_difference(a, b, image_method="normal")
    rebuilt = decision.recorded_interval(recorded.seed_differences, (recorded.high - recorded.low) / 2)
    for confidence in (0.9, 0.95, 0.99):
        truth = decision.paired_interval(a, b, "normal")(confidence)
        assert rebuilt(confidence) == pytest.approx(truth, abs=1e-4)
    assert decision.decide(rebuilt, 3, 3, 3, MARGIN).outcome == decision.decide(
        decision.paired_interval(a, b, "normal"), 3, 3, 3, MARGIN).outcome


def test_the_card_studys_committed_rows_decide_equivalent():
    """The card study's committed per-seed test accuracies (experiments/card_study/
    confirmation_seeds.csv) and 95 % interval (-1.26 to +0.84 points, trial 0025 minus baseline)."""
    import pandas as pd

    from src.config.paths import PROJECT_ROOT

    rows = pd.read_csv(PROJECT_ROOT / "experiments" / "card_study" / "confirmation_seeds.csv")
    test = rows.pivot(index="seed", columns="candidate", values="test_accuracy")
    found = decision.decide(decision.recorded_interval(test["trial 0025"] - test["baseline"], 0.0105), 3, 3, 3, 0.01)
    assert found.outcome == decision.EQUIVALENT
    assert (round(100 * found.equivalence[0], 2), round(100 * found.equivalence[1], 2)) == (-0.97, 0.56)
    assert round(100 * found.mde, 1) == 1.5


def test_a_candidate_far_behind_on_validation_stops_and_a_close_one_does_not():
    import pandas as pd

    def table(rows):
        return pd.DataFrame([{"candidate": c, "seed": s, "val_accuracy": v} for c, s, v in rows])

    # One seed each: the card study's seed SD (0.79 points) is the noise; z at 1 % over 2 comparisons, 2 looks.
    one = table([("trial 1", 42, 0.70), ("trial 2", 42, 0.69), ("trial 3", 42, 0.64), ("baseline", 42, 0.50)])
    stopped = decision.hopeless(one, looks=2)
    assert list(stopped) == ["trial 3"]  # 6 points behind; trial 2 (1 point) goes on; the baseline always runs
    assert stopped["trial 3"].startswith("trial 3 stopped after 1 seed(s): 6.00 points behind trial 1")
    assert "(the card study's)" in stopped["trial 3"]
    # Two seeds: the study's own pooled seed SD replaces the prior (here far smaller, so 1 point is decisive).
    two = table([("trial 1", 42, 0.700), ("trial 1", 43, 0.701), ("trial 2", 42, 0.690), ("trial 2", 43, 0.691)])
    assert list(decision.hopeless(two, looks=2)) == ["trial 2"]
    assert decision.hopeless(table([("trial 1", 42, 0.7), ("baseline", 42, 0.1)]), looks=2) == {}
