"""The clipping API for NumPy arrays (no torch import), used by the NumPy sandbox.

Same functions and rules as :mod:`gradclip.clip`, for a single array, a list of arrays or a dict
of arrays, clipped in place: an exhausted generator warns as torch does, integer and boolean arrays
raise, and an array passed twice (the same object) is counted and scaled once. Norms accumulate
in float64 and come back as Python floats.
Formulas: ``||g||_p = (sum |g_ij|^p)^(1/p)`` (``max |g_ij|`` for inf); when ``||g|| > c`` every
array is multiplied by ``c / (||g|| + eps)`` (Pascanu et al. 2013, arXiv:1211.5063).
"""

from __future__ import annotations

import math
import types
import warnings
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np

from gradclip._validate import (
    check_eps,
    check_nonfinite,
    check_norm_type,
    check_threshold,
    nonfinite_message,
)

__all__ = [
    "ClipStats",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "tensor_norms",
]

Arrays = np.ndarray | Iterable[np.ndarray] | Mapping[str, np.ndarray]


class ClipStats(NamedTuple):
    """What one norm-clipping call saw: floats and bools, plus the per-array norms."""

    total_norm: float
    scale: float
    clipped: bool
    finite: bool
    tensor_norms: list[float]


def _arrays(grads: Arrays) -> list[np.ndarray]:
    """The arrays to clip: None skipped, each array object once, torch's empty-generator warning."""
    if isinstance(grads, np.ndarray):
        items = [grads]
    elif isinstance(grads, Mapping):
        items = list(grads.values())
    else:
        items = list(grads)
        if not items and isinstance(grads, types.GeneratorType):
            warnings.warn(
                "`grads` is an empty generator (was it consumed already?): no gradient clipping will occur",
                UserWarning,
                stacklevel=3,
            )
    out = [g for g in items if g is not None]
    for i, g in enumerate(out):
        if not isinstance(g, np.ndarray):
            raise TypeError(f"gradients must be NumPy arrays, got {type(g).__name__} at position {i}")
        if not np.issubdtype(g.dtype, np.floating):
            raise TypeError(
                f"gradients must be floating point arrays, got dtype {g.dtype} at position {i} "
                "(integer and boolean arrays are never clipped)"
            )
    if len(out) > 1 and len({id(g) for g in out}) != len(out):
        out = list({id(g): g for g in out}.values())  # the same array twice: counted, scaled once
    return out


def _norm(g: np.ndarray, p: float) -> float:
    a = g.ravel()
    if a.dtype != np.float64:
        a = a.astype(np.float64)
    if a.size == 0:
        return 0.0
    if p == 2.0:  # the common case, kept free of temporaries and of errstate's cost (BLAS never warns)
        return math.sqrt(float(np.dot(a, a)))
    if math.isinf(p):
        return float(np.max(np.abs(a)))
    with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN norms are reported, not warned about
        if p == 1.0:
            return float(np.abs(a).sum())
        return float(np.sum(np.abs(a) ** p) ** (1.0 / p))


def _combine(norms: list[float], p: float) -> float:
    if not norms:
        return 0.0
    if len(norms) == 1:  # ||(n)||_p = n: skip the array round trip for a single array
        return norms[0]
    return _norm(np.asarray(norms, dtype=np.float64), p)


def tensor_norms(grads: Arrays, norm_type: float | str = 2.0) -> list[float]:
    """Per-array p-norms in float64, in input order."""
    p = check_norm_type(norm_type)
    return [_norm(g, p) for g in _arrays(grads)]


def get_total_norm(grads: Arrays, norm_type: float | str = 2.0, error_if_nonfinite: bool = False) -> float:
    """Total p-norm of all arrays taken together, accumulated in float64."""
    p = check_norm_type(norm_type)
    total = _combine(tensor_norms(grads, p), p)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(nonfinite_message(p))
    return total


def _scale_(arrays: list[np.ndarray], max_norm: float, total: float, eps: float, nonfinite: str) -> float:
    """Apply ``min(c / (total + eps), 1)`` in place when ``total > c``; return the scale used."""
    if total <= max_norm:  # False for NaN, so NaN falls through
        return 1.0
    if not math.isfinite(total) and nonfinite == "keep":
        return 1.0
    scale = min(max_norm / (total + eps), 1.0) if not math.isnan(total) else math.nan
    for g in arrays:
        # Multiply in at least float32 and round once, as torch does for fp16 gradients.
        factor = scale if g.dtype == np.float64 else np.result_type(g.dtype, np.float32).type(scale)
        with np.errstate(invalid="ignore"):  # inf * 0 -> NaN, as in torch
            np.multiply(g, factor, out=g, casting="unsafe")
    return scale


def clip_grads_with_norm_(
    grads: Arrays, max_norm: float, total_norm: float, *, eps: float = 1e-6, nonfinite: str = "propagate"
) -> None:
    """Scale the arrays in place given a precomputed total norm."""
    c = check_threshold(max_norm, "max_norm")
    _scale_(_arrays(grads), c, float(total_norm), check_eps(eps), check_nonfinite(nonfinite))


def clip_grad_norm_(
    grads: Arrays,
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
    *,
    eps: float = 1e-6,
    nonfinite: str = "propagate",
    return_stats: bool = False,
) -> float | ClipStats:
    """Clip the global p-norm of the arrays to ``max_norm`` in place; return the pre-clip norm.

    Arguments and the non-finite policy are those of :func:`gradclip.clip.clip_grad_norm_`.
    """
    c = check_threshold(max_norm, "max_norm")
    p = check_norm_type(norm_type)
    eps, nonfinite = check_eps(eps), check_nonfinite(nonfinite)
    arrays = _arrays(grads)
    norms = [_norm(g, p) for g in arrays]
    total = _combine(norms, p)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(nonfinite_message(p))
    scale = _scale_(arrays, c, total, eps, nonfinite)
    if not return_stats:
        return total
    return ClipStats(total, scale, bool(total > c), math.isfinite(total), norms)


def clip_grad_value_(grads: Arrays, clip_value: float) -> None:
    """Clamp every element to ``[-clip_value, clip_value]`` in place (NaN stays NaN)."""
    c = check_threshold(clip_value, "clip_value")
    for g in _arrays(grads):
        np.clip(g, -c, c, out=g)
