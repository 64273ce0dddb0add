"""Threshold advice from observed gradient norms (framework-free).

Two rules side by side: the 90th-95th percentile of the pre-clip norms seen after a warm-up
(AutoClip, Seetharaman et al. 2020, arXiv:2007.14469, clips at a percentile of past norms), and
Pascanu et al. 2013 (arXiv:1211.5063, section 3.2): look at the average norm over many updates;
training is not very sensitive to c, and half to ten times the average is usually safe.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Real
from typing import NamedTuple

import numpy as np

__all__ = ["Advice", "threshold_advice"]


class Advice(NamedTuple):
    """Suggested thresholds: ``[low, high]`` = 90th-95th percentile of norms; ``mean`` for Pascanu's rule.

    Examples:
        >>> from gradclip.advice import threshold_advice
        >>> advice = threshold_advice([float(n) for n in range(1, 101)])
        >>> round(advice.low, 2), round(advice.high, 2), advice.mean, advice.samples
        (90.1, 95.05, 50.5, 100)
        >>> advice.text().startswith("suggested max_norm: 90.1 to 95")
        True
    """

    low: float
    high: float
    mean: float
    samples: int

    def text(self) -> str:
        return (
            f"suggested max_norm: {self.low:.3g} to {self.high:.3g} (90th-95th percentile of "
            f"{self.samples} pre-clip norms after warm-up); Pascanu's rule: average norm {self.mean:.3g}, "
            f"half to ten times it ({0.5 * self.mean:.3g} to {10 * self.mean:.3g}) is usually safe"
        )


def threshold_advice(
    norms: Iterable[float], *, mean: float | None = None, min_samples: int = 20
) -> Advice | None:
    """90th/95th percentiles (linear interpolation) and mean of the finite ``norms``; None if too few.

    ``mean`` overrides the sample mean (the monitor passes its exact running mean, the percentiles
    coming from a reservoir sample).

    Examples:
        >>> import gradclip
        >>> advice = gradclip.threshold_advice([1.0, 2.0, 3.0] * 10)
        >>> advice.low, advice.high, advice.mean
        (3.0, 3.0, 2.0)
        >>> gradclip.threshold_advice([1.0, 2.0]) is None  # fewer than min_samples norms
        True
    """
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise ValueError(f"min_samples must be a whole number >= 1, got {min_samples!r:.60}")
    if mean is not None and (isinstance(mean, bool) or not isinstance(mean, Real) or math.isnan(mean)):
        raise TypeError(f"mean must be None or a real number, got {mean!r:.60}")
    if isinstance(norms, (str, bytes)) or not hasattr(norms, "__iter__"):
        raise TypeError(f"norms must be an iterable of real numbers, got {norms!r:.60}")
    norms = list(norms)
    for i, v in enumerate(norms):
        if isinstance(v, bool) or not isinstance(v, Real):
            raise TypeError(f"norms[{i}] must be a real number, got {v!r:.60} ({type(v).__name__})")
    values = np.asarray([v for v in norms if math.isfinite(v)], dtype=np.float64)
    if len(values) < min_samples:
        return None
    p90, p95 = np.percentile(values, [90, 95])
    return Advice(float(p90), float(p95), float(values.mean()) if mean is None else mean, len(values))
