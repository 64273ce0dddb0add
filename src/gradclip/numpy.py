"""The clipping API for NumPy arrays (no torch import), used by the NumPy sandbox.

Same functions and rules as [`gradclip.clip`][gradclip.clip], for a single array, a list of arrays or a dict
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
from collections import deque
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

import numpy as np

from gradclip._validate import (
    check_eps,
    check_flag,
    check_nonfinite,
    check_norm_type,
    check_off_or_threshold,
    check_threshold,
    nonfinite_message,
)
from gradclip.result import ClipResult
from gradclip.skip import SpikeSkip, check_recent, check_step_options, decide, load_all_or_nothing

__all__ = [
    "ClipResult",
    "ClipStats",
    "ClipStep",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "tensor_norms",
]

Arrays = np.ndarray | Iterable[np.ndarray] | Mapping[str, np.ndarray]


if TYPE_CHECKING:  # the NumPy API's results hold Python floats and bools
    ClipStats: TypeAlias = ClipResult[float, bool]
else:  # at run time the class itself, so ``isinstance(x, ClipStats)`` works
    ClipStats = ClipResult  # the functional form's name for the one result type


def _arrays(grads: Arrays) -> list[np.ndarray]:
    """The arrays to clip: None skipped, each array object once, torch's empty-generator warning."""
    if isinstance(grads, np.ndarray):
        items = [grads]
    elif isinstance(grads, Mapping):
        items = list(grads.values())
    elif grads is None or isinstance(grads, (str, bytes)) or not hasattr(grads, "__iter__"):
        raise TypeError(f"grads must be a NumPy array, a mapping or an iterable of arrays, got {grads!r:.60}")
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
            raise TypeError(f"grads must hold NumPy arrays; grads[{i}] is {g!r:.60} ({type(g).__name__})")
        if not np.issubdtype(g.dtype, np.floating):
            raise TypeError(
                f"grads[{i}] must be a floating point array, got dtype {g.dtype} "
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
    """Per-array p-norms in float64, in input order.

    Examples:
        >>> import numpy as np
        >>> import gradclip.numpy as gnp
        >>> gnp.tensor_norms({"w": np.array([3.0, 4.0]), "b": np.array([-2.0])})
        [5.0, 2.0]
        >>> gnp.tensor_norms([np.array([3.0, -4.0])], norm_type="inf")
        [4.0]
    """
    p = check_norm_type(norm_type)
    return [_norm(g, p) for g in _arrays(grads)]


def get_total_norm(grads: Arrays, norm_type: float | str = 2.0, error_if_nonfinite: bool = False) -> float:
    """Total p-norm of all arrays taken together, accumulated in float64.

    Examples:
        >>> import numpy as np
        >>> import gradclip.numpy as gnp
        >>> gnp.get_total_norm([np.array([3.0]), np.array([4.0])])  # sqrt(3**2 + 4**2)
        5.0
    """
    p = check_norm_type(norm_type)
    check_flag(error_if_nonfinite, "error_if_nonfinite")
    total = _combine(tensor_norms(grads, p), p)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(nonfinite_message(p))
    return total


def _factor(max_norm: float, total: float, eps: float, nonfinite: str) -> float:
    """``c / (total + eps)`` (float64) when ``total > c``, else 1; 1 for a non-finite total under 'keep'."""
    if not math.isfinite(total):
        return 1.0 if nonfinite == "keep" else (math.nan if math.isnan(total) else 0.0)
    return min(max_norm / (total + eps), 1.0) if total > max_norm else 1.0


def _scale_(arrays: list[np.ndarray], scale: float) -> None:
    """Multiply the arrays by ``scale`` in place (nothing to do when it is exactly 1)."""
    if scale == 1.0:
        return
    for g in arrays:
        # Multiply in at least float32 and round once, as torch does for fp16 gradients.
        factor = scale if g.dtype == np.float64 else np.result_type(g.dtype, np.float32).type(scale)
        with np.errstate(invalid="ignore"):  # inf * 0 -> NaN, as in torch
            np.multiply(g, factor, out=g, casting="unsafe")


def clip_grads_with_norm_(
    grads: Arrays, max_norm: float, total_norm: float, *, eps: float = 1e-6, nonfinite: str = "propagate"
) -> None:
    """Scale the arrays in place given a precomputed total norm.

    Examples:
        >>> import numpy as np
        >>> import gradclip.numpy as gnp
        >>> grads = [np.array([3.0, 4.0])]
        >>> total = gnp.get_total_norm(grads)  # measured once, e.g. to log it before clipping
        >>> gnp.clip_grads_with_norm_(grads, 1.0, total)
        >>> grads[0].round(4)
        array([0.6, 0.8])
    """
    c = check_threshold(max_norm, "max_norm")
    zero_dim = isinstance(total_norm, np.ndarray) and total_norm.ndim == 0 and total_norm.dtype.kind in "iuf"
    if isinstance(total_norm, bool) or not (isinstance(total_norm, Real) or zero_dim):
        raise TypeError(f"total_norm must be a real number (get_total_norm's result), got {total_norm!r:.60}")
    _scale_(_arrays(grads), _factor(c, float(total_norm), check_eps(eps), check_nonfinite(nonfinite)))


@overload
def clip_grad_norm_(
    grads: Arrays,
    max_norm: float,
    norm_type: float | str = ...,
    error_if_nonfinite: bool = ...,
    *,
    eps: float = ...,
    nonfinite: str = ...,
    return_stats: Literal[False] = ...,
) -> float: ...
@overload
def clip_grad_norm_(
    grads: Arrays,
    max_norm: float,
    norm_type: float | str = ...,
    error_if_nonfinite: bool = ...,
    *,
    eps: float = ...,
    nonfinite: str = ...,
    return_stats: Literal[True],
) -> ClipStats: ...
@overload
def clip_grad_norm_(
    grads: Arrays,
    max_norm: float,
    norm_type: float | str = ...,
    error_if_nonfinite: bool = ...,
    *,
    eps: float = ...,
    nonfinite: str = ...,
    return_stats: bool,
) -> float | ClipStats: ...
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

    Arguments and the non-finite policy are those of
    [`gradclip.clip.clip_grad_norm_`][gradclip.clip.clip_grad_norm_].

    Examples:
        >>> import numpy as np
        >>> import gradclip.numpy as gnp
        >>> grads = {"w": np.array([3.0, 4.0]), "b": np.array([0.0])}
        >>> gnp.clip_grad_norm_(grads, 1.0)  # the pre-clip norm
        5.0
        >>> grads["w"].round(4)  # rescaled in place, direction kept
        array([0.6, 0.8])
        >>> stats = gnp.clip_grad_norm_(grads, 0.5, return_stats=True)
        >>> stats.clipped, round(stats.post_clip_norm, 4)
        (True, 0.5)
    """
    c = check_threshold(max_norm, "max_norm")
    p = check_norm_type(norm_type)
    eps, nonfinite = check_eps(eps), check_nonfinite(nonfinite)
    check_flag(error_if_nonfinite, "error_if_nonfinite")
    check_flag(return_stats, "return_stats")
    arrays = _arrays(grads)
    norms = [_norm(g, p) for g in arrays]
    total = _combine(norms, p)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(nonfinite_message(p))
    scale = _factor(c, total, eps, nonfinite)
    _scale_(arrays, scale)
    if not return_stats:
        return total
    finite = math.isfinite(total)
    clipped = total > c and (finite or nonfinite == "propagate")
    return ClipResult(total, c, scale, total * scale, clipped, finite, False, False, norms)


def clip_grad_value_(grads: Arrays, clip_value: float) -> None:
    """Clamp every element to ``[-clip_value, clip_value]`` in place (NaN stays NaN).

    Examples:
        >>> import numpy as np
        >>> import gradclip.numpy as gnp
        >>> grads = [np.array([-3.0, 0.5, 2.0])]
        >>> gnp.clip_grad_value_(grads, 1.0)
        >>> grads[0]
        array([-1. ,  0.5,  1. ])
    """
    c = check_threshold(clip_value, "clip_value")
    for g in _arrays(grads):
        np.clip(g, -c, c, out=g)


class ClipStep:
    """The NumPy twin of [`gradclip.step.ClipStep`][gradclip.step.ClipStep]: clip, decide the skip, report one
    step.

    Args:
        clipper: a float threshold ``c``, a policy from [`gradclip.policies`][gradclip.policies]
            (``ZScore()``...), or None / a number ``<= 0`` for no clipping (the step still measures and
            skips).
        mode: ``'norm'`` rescales when ``||g||_2 > c``; ``'value'`` clamps every element to
            ``[-c, c]`` (its total is the inf-norm, the quantity it bounds).
        eps: added to the norm in the denominator (norm mode).
        skip_nonfinite: skip the update when the norm is NaN/Inf, as the torch step does.
        skip_spikes: a [`SpikeSkip`][gradclip.skip.SpikeSkip] to also skip spikes, or None.
        rate_window: the clip rate is the fraction of clipped steps among the last ``rate_window``.

    [`clip_`][gradclip.numpy.ClipStep.clip_] returns a [`ClipResult`][gradclip.result.ClipResult] of floats;
    on a skipped step nothing is changed (arrays, policy state) and ``result.skipped`` tells the caller not to
    update.

    Examples:
        >>> import numpy as np
        >>> import gradclip
        >>> import gradclip.numpy as gnp
        >>> step = gnp.ClipStep(gradclip.ZScore(warmup=5), skip_spikes=gradclip.SpikeSkip(warmup=5))
        >>> for norm in (1.0, 1.1, 0.9, 1.0, 1.05):
        ...     result = step([np.array([norm])])
        >>> grads = [np.array([50.0])]
        >>> result = step(grads)  # a spike: skipped, the arrays left as they were
        >>> result.skipped, result.spike, float(grads[0][0])
        (True, True, 50.0)
        >>> result = step([np.array([float("nan")])])  # a non-finite step is skipped too
        >>> result.skipped, result.finite, step.skipped_steps
        (True, False, 1)
    """

    def __init__(
        self,
        clipper: Any = 1.0,
        *,
        mode: str = "norm",
        eps: float = 1e-6,
        skip_nonfinite: bool = True,
        skip_spikes: SpikeSkip | None = None,
        rate_window: int = 100,
    ) -> None:
        if not isinstance(mode, str) or mode not in ("norm", "value"):
            raise ValueError(f"unknown mode {mode!r:.60}; choose from ['norm', 'value']")
        self.policy, self.max_norm = None, None
        if callable(getattr(clipper, "propose", None)):
            self.policy = clipper
        elif clipper is not None:
            if isinstance(clipper, bool) or not isinstance(clipper, (int, float, np.integer, np.floating)):
                raise TypeError(
                    "clipper must be a float threshold, a policy (Fixed, Percentile, ZScore) or None, "
                    f"got {clipper!r}"
                )
            self.max_norm = check_off_or_threshold(clipper, "clipper", "a real number (<= 0 or None: off)")
        if self.policy is not None and mode == "value":
            raise ValueError("mode='value' takes a fixed clip value, not a threshold policy")
        check_step_options(skip_nonfinite, skip_spikes, rate_window)
        self.mode, self.eps = mode, check_eps(eps)
        self.skip_nonfinite, self.spikes = skip_nonfinite, skip_spikes
        self.steps = self.skipped_steps = self.spike_skips = 0
        self.last: ClipResult[float, bool] | None = None
        self._recent: deque[float] = deque(maxlen=rate_window)

    @property
    def enabled(self) -> bool:
        return self.policy is not None or self.max_norm is not None

    def clip_(self, grads: Arrays) -> ClipResult[float, bool]:
        """Clip ``grads`` in place (unless the step is skipped) and report the step."""
        arrays = _arrays(grads)
        p = math.inf if self.mode == "value" else 2.0
        norms = [_norm(g, p) for g in arrays]
        total = _combine(norms, p)
        threshold, pending = math.inf, None
        if self.policy is not None:
            threshold, pending = self.policy.propose(total)
            threshold = float(threshold)
        elif self.max_norm is not None:
            threshold = self.max_norm
        finite = math.isfinite(total)
        skipped, spike = decide(finite, total, skip_nonfinite=self.skip_nonfinite, spikes=self.spikes)
        scale: float | None = 1.0 if self.mode == "norm" else None
        post, clipped = total, False
        if skipped:
            self.skipped_steps += not spike
            self.spike_skips += spike
        else:
            if self.policy is not None:
                self.policy.commit(pending)
            clipped = finite and total > threshold
            if self.mode == "value" and self.enabled:
                for g in arrays:
                    np.clip(g, -threshold, threshold, out=g)
                post = min(total, threshold)
            elif self.enabled:
                scale = _factor(threshold, total, self.eps, "keep")
                _scale_(arrays, scale)
                post = total * scale
        self._recent.append(float(clipped))
        self.steps += 1
        self.last = ClipResult(total, threshold, scale, post, clipped, finite, skipped, spike, norms)
        return self.last

    __call__ = clip_

    @property
    def clip_rate(self) -> float:
        """Fraction of the last ``rate_window`` steps that were clipped (0 before the first step)."""
        return sum(self._recent) / len(self._recent) if self._recent else 0.0

    def state_dict(self) -> dict[str, Any]:
        """The policy's and the spike rule's state, the counters and the clip-rate window."""
        return {
            "kind": "numpy_clip_step",
            "policy": None if self.policy is None else self.policy.state_dict(),
            "spikes": None if self.spikes is None else self.spikes.state_dict(),
            "counts": [self.steps, self.skipped_steps, self.spike_skips],
            "recent": list(self._recent),
        }

    def load_state_dict(self, state_dict: Any) -> None:
        """Restore a [`state_dict`][gradclip.numpy.ClipStep.state_dict]; validated in full first, so a bad one
        changes nothing."""
        if not isinstance(state_dict, Mapping) or state_dict.get("kind") != "numpy_clip_step":
            raise ValueError("state_dict is not a gradclip.numpy.ClipStep state (kind 'numpy_clip_step')")
        counts, recent = state_dict.get("counts"), state_dict.get("recent")
        if not (
            isinstance(counts, list)
            and len(counts) == 3
            and all(isinstance(c, int) and c >= 0 for c in counts)
        ):
            raise ValueError(f"state_dict 'counts' must be 3 integers >= 0, got {counts!r}")
        flags = check_recent(recent, self._recent.maxlen or 0)
        for name, own in (("policy", self.policy), ("spikes", self.spikes)):
            if (own is None) != (state_dict.get(name) is None):
                raise ValueError(f"state_dict {name} does not match this step's ({own!r})")

        def load_policy() -> None:
            if self.policy is not None:
                self.policy.load_state_dict(state_dict["policy"])

        load_all_or_nothing(self.spikes, state_dict["spikes"], load_policy)
        self.steps, self.skipped_steps, self.spike_skips = counts
        self._recent = deque(flags, maxlen=self._recent.maxlen)
