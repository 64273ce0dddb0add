"""Small-sample statistics for the experiments: Wilson intervals, Fisher's exact test, t intervals.

The experiments compare a handful to a few dozen runs per arm, so each claim carries its uncertainty:
a success rate its 95% Wilson score interval (Wilson 1927, JASA 22:209), a difference of two rates
the two-sided p-value of Fisher's exact test (Fisher 1935, §2.1; the conditional test on the 2x2
table), and a mean over seeds its Student-t interval. Pure Python (``math`` only): the tests check
every function against SciPy where it is installed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["Interval", "fisher_exact", "mean_interval", "student_t_quantile", "wilson_interval"]

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
