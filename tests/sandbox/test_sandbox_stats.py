"""Wilson intervals, Fisher's exact test and Student-t intervals against SciPy and hand values."""

from __future__ import annotations

import math

import pytest

from gradclip.sandbox.stats import fisher_exact, mean_interval, student_t_quantile, wilson_interval

scipy_stats = pytest.importorskip("scipy.stats")

TABLES = [(3, 20, 15, 20), (0, 20, 0, 20), (20, 20, 0, 20), (7, 10, 10, 10), (5, 8, 3, 8), (1, 3, 9, 40)]


@pytest.mark.parametrize("table", TABLES)
def test_fisher_exact_matches_scipy(table) -> None:
    k1, n1, k2, n2 = table
    want = scipy_stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue
    assert fisher_exact(k1, n1, k2, n2) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(("k", "n"), [(0, 20), (7, 10), (20, 20), (1, 3), (13, 40)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    want = scipy_stats.binomtest(k, n).proportion_ci(method="wilson")
    got = wilson_interval(k, n)
    assert got.estimate == k / n
    assert (got.low, got.high) == pytest.approx((want.low, want.high), abs=1e-12)


@pytest.mark.parametrize("df", [1, 2, 4, 19, 100])
def test_t_quantile_and_mean_interval_match_scipy(df: int) -> None:
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
