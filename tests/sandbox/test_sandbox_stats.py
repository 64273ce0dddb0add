"""Wilson intervals, Fisher's exact test, t and median intervals, Mann-Whitney U: SciPy and hand values."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest

from gradclip.sandbox.stats import (
    fisher_exact,
    mann_whitney_u,
    mean_interval,
    median_interval,
    student_t_quantile,
    wilson_interval,
)


@pytest.fixture
def scipy_stats():
    return pytest.importorskip("scipy.stats")


TABLES = [(3, 20, 15, 20), (0, 20, 0, 20), (20, 20, 0, 20), (7, 10, 10, 10), (5, 8, 3, 8), (1, 3, 9, 40)]


@pytest.mark.parametrize("table", TABLES)
def test_fisher_exact_matches_scipy(table, scipy_stats) -> None:
    k1, n1, k2, n2 = table
    want = scipy_stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue
    assert fisher_exact(k1, n1, k2, n2) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(("k", "n"), [(0, 20), (7, 10), (20, 20), (1, 3), (13, 40)])
def test_wilson_interval_matches_scipy(k: int, n: int, scipy_stats) -> None:
    want = scipy_stats.binomtest(k, n).proportion_ci(method="wilson")
    got = wilson_interval(k, n)
    assert got.estimate == k / n
    assert (got.low, got.high) == pytest.approx((want.low, want.high), abs=1e-12)


@pytest.mark.parametrize("df", [1, 2, 4, 19, 100])
def test_t_quantile_and_mean_interval_match_scipy(df: int, scipy_stats) -> None:
    assert student_t_quantile(0.975, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-10)
    values = [1.0, 2.0, 4.0, 3.0, 2.5]
    low, high = scipy_stats.t.interval(0.95, 4, loc=2.5, scale=scipy_stats.sem(values))
    got = mean_interval(values)
    assert (got.estimate, got.low, got.high) == pytest.approx((2.5, low, high), rel=1e-10)


def test_one_value_has_no_interval_and_bad_counts_are_named() -> None:
    assert mean_interval([2.0]) == (2.0, -math.inf, math.inf)
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match="k1 must be an integer >= 0, got -1"):
        fisher_exact(-1, 3, 0, 3)
    with pytest.raises(ValueError, match="values must hold at least one number"):
        mean_interval([])


def _samples(seed: int) -> tuple[list[float], list[float]]:
    """Two samples of final-error-like values: 20 each, rounded so that ties occur, one of them shifted."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(0.5, 0.8, 20), 2)
    y = np.round(rng.uniform(0.45, 0.78, 20) - 0.02 * seed, 2)
    return x.tolist(), y.tolist()


@pytest.mark.parametrize("seed", range(5))
def test_mann_whitney_matches_scipy_with_ties(seed: int, scipy_stats) -> None:
    x, y = _samples(seed)
    assert len(set(x + y)) < 40  # the rounding made ties: the tie correction is exercised
    want = scipy_stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)
    got = mann_whitney_u(x, y)
    assert got.u == want.statistic
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-12)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1.0, 2.0], [3.0]),
        ([0.75] * 20, [0.75] * 19 + [0.6]),
        ([1.0, math.inf, math.inf], [0.5, 2.0, math.inf]),
    ],
)
def test_mann_whitney_matches_scipy_in_small_and_degenerate_samples(x, y, scipy_stats) -> None:
    want = scipy_stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic")
    got = mann_whitney_u(x, y)
    assert (got.u, got.p_value) == pytest.approx((want.statistic, want.pvalue), rel=1e-12)


def test_mann_whitney_by_hand_and_u_counts_the_pairs() -> None:
    # x = 1 1 2, y = 2 3 3: mid-ranks 1.5 1.5 3.5 | 3.5 5.5 5.5, U = 6.5 - 6 = 0.5; three tie pairs
    # give sum(t^3 - t) = 18, so var = 9/12 (7 - 18/30) = 4.8 and z = (4 - 0.5) / sqrt(4.8).
    got = mann_whitney_u([1.0, 1.0, 2.0], [2.0, 3.0, 3.0])
    assert got.u == 0.5
    want = 2 * (1 - statistics.NormalDist().cdf(3.5 / math.sqrt(4.8)))
    assert got.p_value == pytest.approx(want, rel=1e-12)
    # U is also the number of pairs (x_i, y_j) with x_i > y_j, a tie counting one half.
    x, y = _samples(3)
    pairs = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(x, y))
    assert mann_whitney_u(x, y).u == pairs
    assert mann_whitney_u(y, x).u == len(x) * len(y) - pairs  # the two U's add up to n1 n2
    assert mann_whitney_u([0.3] * 4, [0.3] * 5) == (10.0, 1.0)  # all tied: no evidence at all


def test_mann_whitney_rejects_nan_and_empty_samples() -> None:
    with pytest.raises(ValueError, match="x must hold at least one number"):
        mann_whitney_u([], [1.0])
    with pytest.raises(ValueError, match="y must not hold NaN"):
        mann_whitney_u([1.0], [math.nan])


@pytest.mark.parametrize("n", [6, 7, 11, 20, 40, 101])
def test_median_interval_matches_scipy_quantile_test(n: int, scipy_stats) -> None:
    values = np.random.default_rng(n).normal(size=n).tolist()
    want = scipy_stats.quantile_test(values, q=0.0, p=0.5).confidence_interval(0.95)
    got = median_interval(values)
    assert got.estimate == statistics.median(values)
    assert (got.low, got.high) == (want.low, want.high)


def test_median_interval_by_hand() -> None:
    # n = 20: P(B <= 5) = 21700 / 2^20 = 0.0207 and P(B <= 6) = 0.0577 for B ~ Bin(20, 1/2), so the
    # 95% interval is [x_(6), x_(15)] (coverage 1 - 2 x 0.0207 = 95.9%).
    values = [float(v) for v in range(20, 0, -1)]
    assert median_interval(values) == (10.5, 6.0, 15.0)
    assert median_interval(values, level=0.9) == (10.5, 6.0, 15.0)  # 2 x 0.0577 = 11.5% > 10%: still x_(6)
    assert median_interval(values, level=0.88) == (10.5, 7.0, 14.0)  # 11.5% <= 12%: one step in
    assert median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (3.0, -math.inf, math.inf)  # 2/32 > 5%
    assert median_interval([1.0] * 5 + [2.0]) == (1.0, 1.0, 2.0)  # n = 6: 2/64 <= 5%, min and max
    with pytest.raises(ValueError, match="level must be in"):
        median_interval(values, level=1.0)
