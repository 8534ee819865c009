"""The paired difference between two configurations over seeds and test images, on
constructed predictions whose answer is known (`src/analysis/stats.py`)."""
from __future__ import annotations

import numpy as np
import pytest

from src.analysis.stats import paired_difference

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
