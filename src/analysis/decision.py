"""A confirmation that decides: candidate better, baseline better, equivalent within a margin,
or undecided with the smallest difference it could have seen.

The candidate (chosen on validation) and the baseline configuration are trained in seed pairs;
after the first `seeds` pairs, and after each pair added up to `max_seeds`, the paired test
comparison (`stats.paired_difference`: bootstrap over test images and t over seeds) is looked at.
Looking again after each pair and testing at 95 % each time would call chance a win far more
often than 5 % of the time, so every look is tested at its share of alpha from a Pocock-type
Lan-DeMets spending function, alpha * ln(1 + (e - 1) t) at t = pairs / max_seeds. The shares
sum to alpha, so by the union bound the chance of any wrong "better" over all looks, and of
the stopping look's interval missing the truth, stays within alpha whatever the looks' dependence
(exact group-sequential boundaries need a known correlation between looks; this interval mixes a
bootstrap and a t part, so the union bound is the one that holds). With max_seeds == seeds it is
the fixed design: one look at alpha.

Equivalence is two one-sided tests at the look's alpha: the (1 - 2 alpha_look) interval inside
(-margin, +margin). `simulate` runs the same rule on confirmations of known truth; the tests and
`tuner.plan` use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats as scipy_stats

from src.analysis import stats

ALPHA = 0.05
POWER = 0.80
CANDIDATE_BETTER, BASELINE_BETTER, EQUIVALENT, UNDECIDED = (
    "candidate_better", "baseline_better", "equivalent", "undecided")
OUTCOMES = (CANDIDATE_BETTER, BASELINE_BETTER, EQUIVALENT, UNDECIDED)
# The card study's confirmation (experiments/card_study/REPORT.md, 3 configurations x 3 seeds):
# the pooled seed-to-seed SD of one run's test accuracy, 10,000 images.
CARD_STUDY_TEST_SD = 0.0035

Interval = Tuple[float, float, float]  # estimate, low, high


def spent(pairs: int, first: int, cap: int, alpha: float = ALPHA) -> float:
    """The alpha this look may spend: its increment of the Pocock-type spending function."""
    if cap <= first:
        return alpha

    def spending(t: float) -> float:
        return alpha * math.log(1 + (math.e - 1) * min(t, 1.0))
    before = spending((pairs - 1) / cap) if pairs > first else 0.0
    return spending(pairs / cap) - before


@dataclass
class Decision:
    outcome: str  # one of OUTCOMES; UNDECIDED before the last look means "add a pair"
    pairs: int  # seed pairs behind it
    alpha: float  # the alpha this look spent
    estimate: float  # candidate minus baseline, test accuracy (fractions)
    low: float  # the (1 - alpha) interval: the one reported, valid under the looks
    high: float
    equivalence: Tuple[float, float]  # the (1 - 2 alpha) interval of the two one-sided tests
    margin: float  # fractions
    mde: float  # the smallest true difference this look detects with POWER (fractions)
    final: bool  # no further pair may be added

    @property
    def done(self) -> bool:
        return self.final or self.outcome != UNDECIDED

    def words(self, candidate: str = "the candidate", baseline: str = "the baseline") -> str:
        """The decision first, in words a user can act on, then its numbers."""
        interval = (f"{100 * self.estimate:+.2f} points, {100 * (1 - self.alpha):.1f} % interval "
                    f"{100 * self.low:+.2f} to {100 * self.high:+.2f}, after {self.pairs} seed pairs")
        if self.outcome == CANDIDATE_BETTER:
            return f"{candidate} is better than {baseline} on test ({interval}): use {candidate}."
        if self.outcome == BASELINE_BETTER:
            return f"{baseline} is better than {candidate} on test ({interval}): keep {baseline}."
        if self.outcome == EQUIVALENT:
            return (f"{candidate} and {baseline} are equivalent within {100 * self.margin:.2f} points on test "
                    f"({interval}; two one-sided tests, interval {100 * self.equivalence[0]:+.2f} to "
                    f"{100 * self.equivalence[1]:+.2f}): neither is worth choosing over the other for accuracy.")
        return (f"{candidate} against {baseline} on test ({interval}) is undecided: this confirmation could "
                f"detect a difference of {100 * self.mde:.2f} points or more ({100 * POWER:.0f} % power), and "
                f"cannot rule out one inside {100 * self.low:+.2f} to {100 * self.high:+.2f}.")

    def tags(self) -> Dict[str, str]:
        return {"confirm_decision": self.outcome, "confirm_margin_points": f"{100 * self.margin:g}",
                "confirm_mde_points": f"{100 * self.mde:.2f}", "confirm_seeds": str(self.pairs)}


def decide(interval_at: Callable[[float], Interval], pairs: int, first: int, cap: int,
           margin: float, alpha: float = ALPHA) -> Decision:
    """One look. `interval_at(confidence)`: (estimate, low, high) of candidate minus baseline."""
    alpha_look = spent(pairs, first, cap, alpha)
    estimate, low, high = interval_at(1 - alpha_look)
    _, eq_low, eq_high = interval_at(1 - 2 * alpha_look)
    z = scipy_stats.norm.ppf(1 - alpha_look / 2)
    mde = (high - low) / 2 * (1 + scipy_stats.norm.ppf(POWER) / z)  # normal approximation
    if low > 0:
        outcome = CANDIDATE_BETTER
    elif high < 0:
        outcome = BASELINE_BETTER
    elif -margin < eq_low and eq_high < margin:
        outcome = EQUIVALENT
    else:
        outcome = UNDECIDED
    return Decision(outcome, pairs, alpha_look, estimate, low, high, (eq_low, eq_high), margin, mde,
                    final=pairs >= cap)


def paired_interval(correct_candidate: Sequence[np.ndarray], correct_baseline: Sequence[np.ndarray],
                    image_method: str = "bootstrap") -> Callable[[float], Interval]:
    """`decide`'s interval from per-image correctness, seed by seed (`stats.paired_difference`)."""
    def interval_at(confidence: float) -> Interval:
        found = stats.paired_difference(list(correct_candidate), list(correct_baseline), confidence=confidence,
                                        image_method=image_method)
        return found.estimate, found.low, found.high
    return interval_at


# --- confirmations of known truth ---------------------------------------------------------

@dataclass
class Simulated:
    truth: float
    runs: int
    outcomes: Dict[str, int]
    covered: int  # the stopping look's interval held the truth
    pairs: List[int]

    def rate(self, outcome: str) -> Tuple[float, float, float]:
        """Its frequency with a 95 % Clopper-Pearson Monte Carlo interval."""
        count = self.outcomes.get(outcome, 0)
        ci = scipy_stats.binomtest(count, self.runs).proportion_ci(0.95)
        return count / self.runs, ci.low, ci.high

    @property
    def coverage(self) -> Tuple[float, float, float]:
        ci = scipy_stats.binomtest(self.covered, self.runs).proportion_ci(0.95)
        return self.covered / self.runs, ci.low, ci.high

    @property
    def mean_pairs(self) -> float:
        return float(np.mean(self.pairs))


def _correct(rng, accuracy: float, shared: np.ndarray, difficulty: np.ndarray) -> np.ndarray:
    """One run's per-image correctness with the given expected accuracy: on the `shared` images
    every run agrees on which are hard (as models trained alike do), the rest are its own."""
    own = rng.random(difficulty.shape) < accuracy
    return np.where(shared, difficulty < accuracy, own)


def simulate(truth: float, first: int, cap: int, margin: float, runs: int, seed: int = 0,
             run_sd: float = CARD_STUDY_TEST_SD, accuracy: float = 0.69, images: int = 10_000,
             shared_fraction: float = 0.6, image_method: str = "normal") -> Simulated:
    """`runs` confirmations whose candidate is truly `truth` more accurate than the baseline,
    each on a fresh test set of `images` shared by its runs, each run's accuracy off its
    configuration's by seed noise (`run_sd` in all, with the test set's own per-run part), pairs
    added under `decide` until it decides. image_method 'normal': the bootstrap's normal
    equivalent (their agreement is tested), so thousands of confirmations take seconds."""
    rng = np.random.default_rng(seed)
    own_part = (1 - shared_fraction) * accuracy * (1 - accuracy) / images
    shift_sd = math.sqrt(max(run_sd ** 2 - own_part, 0.0))
    outcomes: Dict[str, int] = {}
    covered, used = 0, []
    for _ in range(runs):
        shared, difficulty = rng.random(images) < shared_fraction, rng.random(images)
        a, b = [], []
        pairs = first
        while True:
            while len(a) < pairs:
                a.append(_correct(rng, accuracy + truth + rng.normal(0, shift_sd), shared, difficulty))
                b.append(_correct(rng, accuracy + rng.normal(0, shift_sd), shared, difficulty))
            decision = decide(paired_interval(a, b, image_method), pairs, first, cap, margin)
            if decision.done:
                break
            pairs += 1
        outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
        covered += decision.low <= truth <= decision.high
        used.append(pairs)
    return Simulated(truth, runs, outcomes, covered, used)


def expected_pairs(first: int, cap: int, margin: float, runs: int = 200,
                   truths: Optional[Sequence[float]] = None) -> Dict[float, float]:
    """Mean seed pairs the rule uses, by true difference (for the plan): none, and the margin."""
    return {truth: simulate(truth, first, cap, margin, runs, seed=1).mean_pairs
            for truth in (truths if truths is not None else (0.0, margin))}


def recorded_interval(seed_differences: Sequence[float], half_width_95: float) -> Callable[[float], Interval]:
    """`decide`'s interval rebuilt from what a report recorded when the runs' per-image predictions
    are gone (a study whose store no longer exists): the per-seed test differences, and the 95 %
    paired interval's half-width. Its test-image part is recovered from the quadrature
    `stats.paired_difference` uses (half^2 = image^2 + seeds^2) and scaled as a normal one."""
    differences = np.asarray(seed_differences, dtype=float)
    n = len(differences)
    sem = float(scipy_stats.sem(differences)) if n >= 2 else 0.0
    seeds_95 = float(scipy_stats.t.ppf(0.975, n - 1)) * sem if n >= 2 else 0.0
    image_se = math.sqrt(max(half_width_95 ** 2 - seeds_95 ** 2, 0.0)) / scipy_stats.norm.ppf(0.975)

    def interval_at(confidence: float) -> Interval:
        seeds = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1)) * sem if n >= 2 else 0.0
        half = math.hypot(scipy_stats.norm.ppf((1 + confidence) / 2) * image_se, seeds)
        estimate = float(differences.mean())
        return estimate, estimate - half, estimate + half
    return interval_at


# --- dropping the hopeless before the first look ----------------------------------------------

# The card study's confirmation: the seed-to-seed SD of one run's validation accuracy (5,000
# images), the noise assumed until this study's own runs measure it (two seeds of a configuration).
CARD_STUDY_VAL_SD = 0.0079
DROP_ALPHA = 0.01


def hopeless(table, looks: int, alpha: float = DROP_ALPHA, prior_sd: float = CARD_STUDY_VAL_SD,
             baseline: str = "baseline") -> Dict[str, str]:
    """Searched candidates already ruled out on validation by the current best, seed round by seed
    round before the first look: {label: the rule that stopped it, in words}. A candidate stops when
    its mean validation accuracy trails the best's by more than z * sd * sqrt(2 / n) (n its seeds),
    z at alpha over every comparison and look (Bonferroni), sd pooled within configurations once
    one has two seeds, else the card study's. Only the candidates compete: the baseline always runs."""
    searched = table[table["candidate"] != baseline]
    if searched["candidate"].nunique() < 2:
        return {}
    means = searched.groupby("candidate", sort=False)["val_accuracy"].mean()
    counts = searched.groupby("candidate", sort=False)["val_accuracy"].count()
    spread = searched.groupby("candidate", sort=False)["val_accuracy"].var(ddof=1).dropna()
    weights = counts[spread.index] - 1
    sd = math.sqrt(float((spread * weights).sum() / weights.sum())) if weights.sum() > 0 else prior_sd
    best = means.idxmax()
    z = scipy_stats.norm.ppf(1 - alpha / ((len(means) - 1) * max(looks, 1)))
    stopped = {}
    for label, mean in means.items():
        n = int(min(counts[label], counts[best]))
        bound = z * sd * math.sqrt(2 / n)
        if label != best and means[best] - mean > bound:
            stopped[label] = (f"{label} stopped after {int(counts[label])} seed(s): {100 * (means[best] - mean):.2f} "
                              f"points behind {best} on mean validation accuracy, beyond {100 * bound:.2f} (z "
                              f"{z:.2f} x seed SD {100 * sd:.2f} points"
                              f"{' (the card study' + chr(39) + 's)' if weights.sum() == 0 else ''} x sqrt(2/{n}); "
                              f"alpha {alpha:g} over {len(means) - 1} comparisons and {looks} looks)")
    return stopped
