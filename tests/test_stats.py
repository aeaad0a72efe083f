"""Paired differences and their 95 % t-intervals against scipy.stats, and the conclusion sentence they allow."""

import math

import numpy as np
import pytest
from scipy import stats

from cpm.experiments.stats import (
    PairedDifference,
    conclusion,
    format_difference,
    paired_difference,
    pck_standard_error,
)

A = [0.712, 0.698, 0.731, 0.705]
B = [0.684, 0.690, 0.702, 0.688]


def test_paired_interval_matches_scipy_ttest_rel():
    difference = paired_difference(A, B)
    interval = stats.ttest_rel(A, B).confidence_interval(0.95)
    assert difference.n == 4
    assert difference.mean == pytest.approx(np.mean(np.subtract(A, B)), abs=1e-12)
    assert (difference.low, difference.high) == (pytest.approx(interval.low, abs=1e-12),
                                                 pytest.approx(interval.high, abs=1e-12))


def test_paired_interval_by_hand_for_three_pairs():
    # d = (1, 2, 3): mean 2, sd 1, t_{0.975, 2} = 4.3026527 -> half-width 4.3027 / sqrt(3) = 2.48414.
    difference = paired_difference([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert difference.mean == 2.0
    assert difference.high - 2.0 == pytest.approx(4.3026527 / math.sqrt(3), rel=1e-7)


def test_non_finite_pairs_are_dropped_and_one_pair_has_no_interval():
    difference = paired_difference([0.5, float("nan"), 0.7], [0.4, 0.3, None])
    assert difference.n == 1 and difference.mean == pytest.approx(0.1) and math.isnan(difference.low)
    assert format_difference(difference) == "+10.00"
    assert paired_difference([], []).n == 0 and format_difference(paired_difference([], [])) == "–"
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


def test_conclusion_follows_the_interval():
    higher = conclusion("IS", "no IS", paired_difference(A, B), what="PCK@0.2 (T = 4)")
    assert higher.startswith("IS minus no IS, PCK@0.2 (T = 4): +2.05 points, 95 % CI [+0.47, +3.63], n = 4")
    assert higher.endswith(": IS is higher.")
    mixed = conclusion("IS", "no IS", paired_difference([0.70, 0.60, 0.72], [0.65, 0.66, 0.70]), what="PCK@0.2")
    assert mixed.endswith("no difference detected at this budget.")
    lower = conclusion("a", "b", PairedDifference(-0.02, -0.03, -0.01, 3), what="x")
    assert lower.endswith(": a is lower.") and "[-3.00, -1.00]" in lower
    assert conclusion("a", "b", paired_difference([0.5], [0.4]), what="x").endswith("no interval, no conclusion.")


def test_pck_standard_error_is_binomial():
    assert pck_standard_error(0.8, 2000, 15) == pytest.approx(math.sqrt(0.16 / 30000))
    assert pck_standard_error(1.0, 10, 15) == 0.0
