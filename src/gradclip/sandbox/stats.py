"""Small-sample statistics for the experiments: Wilson intervals, Fisher's exact test, rank tests.

The experiments compare a handful to a few dozen runs per arm, so each claim carries its uncertainty:
a success rate its 95% Wilson score interval (Wilson 1927, JASA 22:209), a difference of two rates
the two-sided p-value of Fisher's exact test (Fisher 1935, §2.1; the conditional test on the 2x2
table), a mean over seeds its Student-t interval, a median its distribution-free order-statistic
interval, and a shift between two samples the two-sided Mann-Whitney U test (Mann & Whitney 1947,
Ann. Math. Stat. 18:50). Pure Python (``math`` only): the tests check every function against SciPy
where it is installed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "Interval",
    "RankTest",
    "fisher_exact",
    "mann_whitney_u",
    "mean_interval",
    "median_interval",
    "student_t_quantile",
    "wilson_interval",
]

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal


class Interval(NamedTuple):
    """A point estimate and its interval [low, high]."""

    estimate: float
    low: float
    high: float


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def wilson_interval(successes: int, trials: int, *, z: float = Z95) -> Interval:
    """Wilson score interval of a binomial proportion p̂ = k/n.

    centre = (p̂ + z²/2n) / (1 + z²/n), half-width = z / (1 + z²/n) · sqrt(p̂(1-p̂)/n + z²/4n²).
    Unlike p̂ ± z·sqrt(p̂(1-p̂)/n) it stays inside [0, 1] and does not collapse at 0/n or n/n.

    Args:
        successes: k, 0 <= k <= n.
        trials: n >= 1.
        z: normal quantile (1.96 for 95%).

    Returns:
        Interval(p̂, low, high).
    """
    k, n = _count(successes, "successes"), _count(trials, "trials")
    if n == 0 or k > n:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {k}/{n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of Fisher's exact test that two success rates k1/n1 and k2/n2 are equal.

    Conditioned on the margins, the number of successes in arm 1 is hypergeometric:
    P(x) = C(n1, x) C(n2, K - x) / C(n1 + n2, K) with K = k1 + k2. The p-value sums P(x) over every
    table at most as probable as the observed one (exact integer arithmetic; a relative tolerance
    of 1e-7 counts ties as SciPy does).
    """
    for name, value in (("k1", k1), ("n1", n1), ("k2", k2), ("n2", n2)):
        _count(value, name)
    if k1 > n1 or k2 > n2:
        raise ValueError(f"successes exceed trials: {k1}/{n1}, {k2}/{n2}")
    total = k1 + k2
    lo, hi = max(0, total - n2), min(n1, total)
    weights = {x: math.comb(n1, x) * math.comb(n2, total - x) for x in range(lo, hi + 1)}
    observed = weights[k1]
    tail = sum(w for w in weights.values() if w <= observed * (1 + 1e-7))
    return min(1.0, tail / math.comb(n1 + n2, total))


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below the mean: use symmetry
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # fmt: skip
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f / a


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with ``df`` degrees of freedom (bisection on its CDF)."""
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < q else (lo, mid)
    return (lo + hi) / 2


def mean_interval(values: Sequence[float], *, level: float = 0.95) -> Interval:
    """Mean of ``values`` and its Student-t interval: x̄ ± t_{(1+level)/2, n-1} · s / sqrt(n).

    With one value the interval is (-inf, inf): one seed says nothing about the spread.
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("values must hold at least one number, got none")
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        return Interval(mean, -math.inf, math.inf)
    half = student_t_quantile((1 + level) / 2, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return Interval(mean, mean - half, mean + half)


def _numbers(values: Sequence[float], name: str) -> list[float]:
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError(f"{name} must hold at least one number, got none")
    if any(math.isnan(v) for v in xs):
        raise ValueError(f"{name} must not hold NaN (inf is allowed and ranks last), got {xs!r}")
    return xs


def median_interval(values: Sequence[float], *, level: float = 0.95) -> Interval:
    """Median of ``values`` and its distribution-free order-statistic interval [x_(j), x_(n+1-j)].

    The number of values below the true median is Binomial(n, 1/2) for any continuous
    distribution, so [x_(j), x_(n+1-j)] (1-based order statistics) covers it with probability
    1 - 2 P(B <= j - 1); j is the largest for which that is at least ``level`` (Conover 1999,
    §3.2). For n = 20 and 95% that is [x_(6), x_(15)] (coverage 95.9%). With too few values for
    any order statistic to reach ``level`` (n < 6 at 95%) the interval is (-inf, inf).

    Examples:
        >>> median_interval([float(v) for v in range(20)])
        Interval(estimate=9.5, low=5.0, high=14.0)
    """
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    xs = sorted(_numbers(values, "values"))
    n = len(xs)
    tail, j = 0, 0  # tail = sum_{i < j} C(n, i): 2^n P(B <= j - 1), kept exact in integers
    while j < n and 2 * (tail + math.comb(n, j)) / 2**n <= 1 - level:
        tail += math.comb(n, j)
        j += 1
    median = statistics.median(xs)
    if j == 0:
        return Interval(median, -math.inf, math.inf)
    return Interval(median, xs[j - 1], xs[n - j])


class RankTest(NamedTuple):
    """A two-sample rank test: U of the first sample and the two-sided p-value."""

    u: float  # pairs (x, y) with x > y, a tie counting 1/2; n1 n2 / 2 when neither sample is larger
    p_value: float


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> RankTest:
    """Two-sided Mann-Whitney U test that ``x`` and ``y`` come from one distribution.

    U = R_x - n_x (n_x + 1) / 2, with R_x the sum of x's mid-ranks in the pooled sample (ties share
    the mean of their ranks). Under the null U has mean n_x n_y / 2 and, with ties,
    variance n_x n_y / 12 · (n + 1 - Σ (t³ - t) / (n (n - 1))) over the tie groups of size t;
    the p-value is that of the normal approximation with a continuity correction,
    2 · (1 - Φ((|U - n_x n_y / 2| - 1/2) / σ)), capped at 1 (SciPy's ``method="asymptotic"``).
    When every value is tied, σ = 0 and p = 1. ``inf`` ranks above every finite value.

    Examples:
        >>> mann_whitney_u([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
        RankTest(u=0.0, p_value=0.08085...)
    """
    xs, ys = _numbers(x, "x"), _numbers(y, "y")
    pooled = sorted([(v, 0) for v in xs] + [(v, 1) for v in ys])
    n1, n2, n = len(xs), len(ys), len(pooled)
    rank_sum, ties, i = 0.0, 0, 0
    while i < n:
        k = i
        while k + 1 < n and pooled[k + 1][0] == pooled[i][0]:
            k += 1
        t = k - i + 1
        rank_sum += (i + k + 2) / 2 * sum(1 for _, arm in pooled[i : k + 1] if arm == 0)  # mid-rank
        ties += t**3 - t
        i = k + 1
    u = rank_sum - n1 * (n1 + 1) / 2
    variance = n1 * n2 / 12 * ((n + 1) - (ties / (n * (n - 1)) if n > 1 else 0.0))
    if variance <= 0:
        return RankTest(u, 1.0)
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return RankTest(u, min(1.0, math.erfc(z / math.sqrt(2))))
