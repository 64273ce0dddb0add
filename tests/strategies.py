"""Hypothesis strategies shared by the test modules."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

NORM_TYPES = (1.0, 2.0, 3.5, math.inf)

shapes = st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple)


@st.composite
def grad_lists(draw: st.DrawFn, *, max_tensors: int = 6) -> list[np.ndarray]:
    """A list of float64 arrays of random shapes and scales (some tiny, some huge)."""
    n = draw(st.integers(1, max_tensors))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = 10.0 ** draw(st.integers(-3, 4))
    return [np.asarray(rng.standard_normal(draw(shapes)) * scale) for _ in range(n)]


thresholds = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)
norm_types = st.sampled_from(NORM_TYPES)

# The explorer's maps: a start inside the cliff's (w, b) domain, and a 2-D gradient.
cliff_starts = st.tuples(st.floats(2.0, 10.0), st.floats(-7.0, 0.0))
vectors_2d = st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3))
# Sequences of finite gradient norms fed to the threshold policies.
norm_sequences = st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=60)
