"""Small statistics for comparing runs: spreads, and differences (paired over seeds and test images, or not)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List

import numpy as np
from scipy import stats as scipy_stats


def mean_std(values: np.ndarray) -> str:
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return f"{values.mean():.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f} (sd)"


def verdict(estimate: float, low: float, high: float, confidence: float, detail: str,
            a: str = "A", b: str = "B") -> str:
    """One sentence, in points, from the better model's side: the difference, its
    interval, what it rests on (`detail`) and whether it is significant."""
    if estimate > 0:
        head, low, high = f"{a} is {100 * estimate:.2f} points more accurate than {b}", low, high
    elif estimate < 0:
        head, low, high = f"{b} is {-100 * estimate:.2f} points more accurate than {a}", -high, -low
    else:
        head = f"{a} and {b} are equally accurate"
    significant = low > 0 or high < 0
    words = "significant" if significant else "not significant (the interval includes 0)"
    return (f"{head} ({100 * confidence:g}% interval {100 * low:.2f} to {100 * high:.2f} points, "
            f"{detail}): {words}")


@dataclass
class Difference:
    """mean(A) - mean(B) with a 95 % interval, from accuracies alone (no per-image answers)."""

    estimate: float
    low: float
    high: float
    method: str

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def words(self, a: str = "A", b: str = "B") -> str:
        return verdict(self.estimate, self.low, self.high, 0.95, self.method, a, b)


def difference(a: np.ndarray, b: np.ndarray, test_size: int) -> Difference:
    """mean(a) - mean(b) with a 95 % interval.

    With at least two runs on each side, Welch's t-interval over runs (it
    covers seed-to-seed variation). Otherwise only the test set's sampling
    error can be estimated: a binomial standard error per accuracy on
    `test_size` images, which understates the uncertainty (seeds vary too).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    estimate = a.mean() - b.mean()
    several = len(a) >= 2 and len(b) >= 2
    if several and (np.ptp(a) > 0 or np.ptp(b) > 0):
        low, high = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        return Difference(estimate, float(low), float(high), f"Welch t over {len(a)} and {len(b)} runs")
    se = math.sqrt(sum(p * (1 - p) / test_size for p in (a.mean(), b.mean())))
    half_width = float(scipy_stats.norm.ppf(0.975) * se)
    # Runs that all scored alike give Welch a zero-width interval (and scipy a precision
    # warning): it would call any difference significant. They show no seed variation to
    # estimate, so the test set's sampling error is all that can be said.
    why = (f"the {len(a)} and {len(b)} runs each scored alike, so no seed variation to estimate" if several
           else "seed variation not included")
    return Difference(estimate, estimate - half_width, estimate + half_width,
                      f"test-set sampling error only ({test_size} images); {why}")


@dataclass
class PairedDifference:
    """Model A's accuracy minus model B's, both trained with the same seeds and
    scored on the same test images. Accuracies are fractions (0.0123 = 1.23 points)."""

    estimate: float  # mean over seeds of acc_a_i - acc_b_i
    low: float
    high: float
    confidence: float
    n_seeds: int
    n_images: int
    seed_differences: np.ndarray  # acc_a_i - acc_b_i, one per seed
    image_interval: tuple  # the test-image bootstrap's interval alone (no seed variation)
    seed_half_width: float  # the t half-width from the spread over seeds; 0 with one seed
    discordant: list  # per seed: (images only A got right, images only B got right)
    mcnemar_p: list  # per seed: McNemar's exact two-sided p-value on the discordant images
    method: str

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def words(self, a: str = "A", b: str = "B") -> str:
        """One sentence, in points, from the better model's side."""
        seeds = f"{self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}"
        # One seed cannot show training-to-training variation; say so where the reader looks.
        caveat = "; seed-to-seed variation not estimated" if self.n_seeds == 1 else ""
        return verdict(self.estimate, self.low, self.high, self.confidence,
                       f"{seeds} x {self.n_images} test images{caveat}", a, b)

    def __str__(self) -> str:
        return self.words()


def paired_difference(correct_a: List[np.ndarray], correct_b: List[np.ndarray], confidence: float = 0.95,
                      n_resamples: int = 2000, seed: int = 0, image_method: str = "bootstrap") -> PairedDifference:
    """Accuracy of A minus accuracy of B over N paired seeds on one shared test set.

    `correct_a[i]` and `correct_b[i]` are per-image correctness (same images, same order) of
    the models trained with seed i. The interval adds the two independent sources of
    variation: which images are in the test set (a paired percentile bootstrap over images,
    `scipy.stats.bootstrap`, keeping A's and B's answers on an image together) and which runs
    the seeds gave (a t half-width over the seeds' differences: a bootstrap over 3 seeds has
    10 distinct resamples). McNemar's exact test is reported per seed, never combined: the
    seeds share their test images. Why each choice: docs/reports.md, "The paired interval".
    """

    if len(correct_a) != len(correct_b) or not correct_a:
        raise ValueError(f"need the same number (>= 1) of seeds for A and B, got {len(correct_a)} and {len(correct_b)}")
    a = np.stack([np.asarray(x, dtype=bool) for x in correct_a])
    b = np.stack([np.asarray(x, dtype=bool) for x in correct_b])
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"each seed needs one correctness value per test image (>= 2), the same images "
                         f"for A and B; got shapes {a.shape} and {b.shape}")
    n_seeds, n_images = a.shape
    per_image = (a.astype(np.int8) - b.astype(np.int8)).mean(axis=0)
    # From integer counts, so that k more right images out of n come out as exactly k / n.
    seed_differences = (a.sum(axis=1) - b.sum(axis=1)) / n_images
    estimate = float((a.sum() - b.sum()) / (n_seeds * n_images))

    if image_method == "normal":
        half = scipy_stats.norm.ppf((1 + confidence) / 2) * per_image.std(ddof=1) / math.sqrt(n_images)
        images = scipy_stats._common.ConfidenceInterval(per_image.mean() - half, per_image.mean() + half)
    else:
        images = scipy_stats.bootstrap((per_image,), np.mean, n_resamples=n_resamples,
                                       confidence_level=confidence, method="percentile", vectorized=True,
                                       batch=200, rng=np.random.default_rng(seed)).confidence_interval
    if n_seeds >= 2:
        seed_half_width = float(scipy_stats.t.ppf((1 + confidence) / 2, n_seeds - 1)
                                * scipy_stats.sem(seed_differences))
    else:
        seed_half_width = 0.0
    low = estimate - math.hypot(max(estimate - images.low, 0.0), seed_half_width)
    high = estimate + math.hypot(max(images.high - estimate, 0.0), seed_half_width)

    discordant, mcnemar_p = [], []
    for seed_a, seed_b in zip(a, b):
        only_a, only_b = int((seed_a & ~seed_b).sum()), int((~seed_a & seed_b).sum())
        discordant.append((only_a, only_b))
        # No discordant image is no evidence either way; binomtest needs n >= 1.
        mcnemar_p.append(float(scipy_stats.binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0)

    method = ((f"paired bootstrap over {n_images} test images ({n_resamples} resamples, percentile)"
               if image_method != "normal" else f"paired normal interval over {n_images} test images")
              + (f" combined with a t interval over {n_seeds} seeds" if n_seeds >= 2 else
                 "; one seed, so seed variation is not included"))
    return PairedDifference(estimate=estimate, low=float(low), high=float(high), confidence=confidence,
                            n_seeds=n_seeds, n_images=n_images, seed_differences=seed_differences,
                            image_interval=(float(images.low), float(images.high)),
                            seed_half_width=seed_half_width, discordant=discordant, mcnemar_p=mcnemar_p,
                            method=method)
