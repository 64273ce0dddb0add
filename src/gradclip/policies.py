"""Clipping thresholds as small policies: fixed, percentile of past norms (AutoClip), z-score (ZClip).

Each policy is a pure pair ``init() -> state`` and ``update(norm, state) -> (threshold, state)``
([`PolicyFns`][gradclip.policies.PolicyFns], built by [`fixed`][gradclip.policies.fixed],
[`percentile`][gradclip.policies.percentile], [`zscore`][gradclip.policies.zscore]), plus a thin stateful
wrapper ([`Fixed`][gradclip.policies.Fixed], [`Percentile`][gradclip.policies.Percentile],
[`ZScore`][gradclip.policies.ZScore]) that holds the state, is called once per step with the pre-clip total
norm and round-trips through ``state_dict()``/``load_state_dict()``. The threshold for a step depends only on
norms seen so far (and, for ``Percentile``, optionally the current one). Memory: ``ZScore`` keeps three
numbers, ``Percentile`` a window of the last N norms (bounded) or, with ``window=None``, the paper's full
history (it grows with the run). No framework is imported here. ``ZScore`` and ``Percentile`` also accept a
0-dim tensor as the norm: they then keep their state as tensors on that device and compute with tensor methods
only (no ``if`` on a value, no read-back), so a compiled step keeps one graph and a CUDA step avoids host
syncs.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any, NamedTuple, Protocol

from gradclip._validate import check_flag

__all__ = [
    "Fixed",
    "FixedState",
    "Percentile",
    "PercentileState",
    "Policy",
    "PolicyFns",
    "ZScore",
    "ZScoreState",
    "fixed",
    "percentile",
    "zscore",
]

Norm = Any  # a Python float, or a 0-dim tensor-like object (torch.Tensor) for ZScore


class PolicyFns(NamedTuple):
    """A threshold policy as two pure functions (no hidden state).

    Examples:
        >>> from gradclip.policies import zscore
        >>> fns = zscore(warmup=2)
        >>> state = fns.init()
        >>> for norm in (1.0, 1.2, 0.9):
        ...     threshold, state = fns.update(norm, state)
        >>> int(state.count)
        3
    """

    init: Callable[[], Any]
    update: Callable[[Norm, Any], tuple[Norm, Any]]


class Policy(Protocol):
    """What a clipper needs from a threshold policy.

    Examples:
        >>> from gradclip.policies import Policy, ZScore
        >>> def first_threshold(policy: Policy, norm: float) -> float:
        ...     return policy(norm)
        >>> first_threshold(ZScore(), 1.0)  # no norm seen before: no limit yet
        inf
    """

    sync_free: bool  # True when ``update`` accepts a device tensor and never reads it back

    def update(self, norm: Norm) -> Norm: ...
    def propose(self, norm: Norm) -> tuple[Norm, Any]: ...
    def commit(self, state: Any) -> None: ...
    def __call__(self, norm: Norm) -> Norm: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None: ...


# --- argument checks (each names the argument, the value and what is allowed) ---------------------


def _real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def _int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _in_range(value: object, name: str, lo: float, hi: float, allowed: str) -> float:
    v = _real(value, name)
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return v


def _cap(value: object, name: str) -> float:
    if value is None:
        return math.inf
    v = _real(value, name)
    if math.isnan(v) or v < 0 or (math.isfinite(v) and v > 3.4028234663852886e38):
        raise ValueError(
            f"{name} must be None or a real number in [0, 3.4e38] (float32's range) or inf, got {value!r}"
        )
    return v


def _warmup_factor(value: object) -> float:
    if value is None:
        return math.inf
    v = _real(value, "warmup_factor")
    if math.isnan(v) or v <= 0:
        raise ValueError(f"warmup_factor must be None or a real number > 0, got {value!r}")
    return v


# Pascanu et al. 2013 (§3.2): half to ten times the average norm is a safe threshold. Until an
# adaptive policy has its statistics, its threshold is the upper end of that range, taken over the
# norms seen so far, so a spike in the first steps is clipped instead of passing at full size.
WARMUP_FACTOR = 10.0


# --- the few operations ZScore needs, for Python floats and for tensors ----------------------------


class _FloatOps:
    """Plain floats: branches are free (there is no device to wait for)."""

    @staticmethod
    def lift(value: Any, like: Any) -> float:
        return float(value)

    @staticmethod
    def where(cond: bool, a: Any, b: Any) -> Any:
        return a if cond else b

    isfinite = staticmethod(math.isfinite)
    sqrt = staticmethod(math.sqrt)

    @staticmethod
    def clamp_min(x: float, lo: float) -> float:
        return x if math.isnan(x) else max(x, lo)

    @staticmethod
    def minimum(x: float, y: float) -> float:
        return x if math.isnan(x) else min(x, y)


class _TensorOps:
    """Tensor-likes, through their methods only: no framework import and no value read back."""

    @staticmethod
    def lift(value: Any, like: Any) -> Any:
        if hasattr(value, "to"):  # a tensor (e.g. restored from a checkpoint): move it, keep its value
            return value.to(device=like.device, dtype=like.dtype)
        return like.new_full((), float(value))

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        if not hasattr(a, "where"):
            return b.where(cond.logical_not(), a)
        return a.where(cond, b)

    @staticmethod
    def isfinite(x: Any) -> Any:
        return x.isfinite()

    @staticmethod
    def sqrt(x: Any) -> Any:
        return x.sqrt()

    @staticmethod
    def clamp_min(x: Any, lo: float) -> Any:
        return x.clamp(min=lo)

    @staticmethod
    def minimum(x: Any, y: Any) -> Any:
        return x.minimum(y) if hasattr(y, "shape") else x.clamp(max=y)


def ring_of(values: Any, window: int, like: Any) -> Any:
    """The last ``window`` of ``values`` as a 1-D tensor of ``like``'s device and dtype, oldest first,
    NaN marking the empty slots (the tensor form of a window of host floats)."""
    kept = [float(v) for v in values][-window:]
    return like.new_tensor([math.nan] * (window - len(kept)) + kept)


def push_newest(ring: Any, x: Any) -> Any:
    """``ring`` without its oldest value and with the 0-dim tensor ``x`` in the newest (last) slot, by
    tensor methods only (no shape or branch depends on a value)."""
    n = ring.shape[0]
    return x.where(ring.new_ones(n).cumsum(0) == n, ring.roll(-1, 0))


def _ops_for(norm: Norm) -> tuple[Any, Any]:
    """Return (ops, norm): floats for real numbers, tensor methods for tensor-likes."""
    if isinstance(norm, Real):
        return _FloatOps, float(norm)
    if all(hasattr(norm, m) for m in ("where", "isfinite", "new_full")):
        return _TensorOps, norm
    raise TypeError(f"norm must be a real number or a 0-dim tensor, got {type(norm).__name__}")


_TINY = 1e-30  # representable in float32; added to the z-score's spread (see zscore)


# --- pure policies --------------------------------------------------------------------------------


class FixedState(NamedTuple):
    """A fixed threshold has nothing to remember.

    Examples:
        >>> from gradclip.policies import fixed
        >>> fixed(1.0).init()
        FixedState()
    """


def fixed(max_norm: float) -> PolicyFns:
    """Constant threshold ``c``: ``update(norm, state) = (c, state)``.

    Examples:
        >>> from gradclip.policies import fixed
        >>> fns = fixed(1.0)
        >>> fns.update(123.0, fns.init())
        (1.0, FixedState())
    """
    if max_norm is None:
        raise TypeError("max_norm must be a real number >= 0 (inf allowed), got None")
    c = _cap(max_norm, "max_norm")

    def update(norm: Norm, state: FixedState) -> tuple[float, FixedState]:
        return c, state

    return PolicyFns(FixedState, update)


class PercentileState(NamedTuple):
    """``count``: finite norms seen; ``history``: the last ``window`` of them, oldest first (with
    ``window=None``: all of them, sorted ascending, so that a step inserts instead of sorting).

    Examples:
        >>> from gradclip.policies import percentile
        >>> fns = percentile(50, window=3)
        >>> state = fns.init()
        >>> for norm in (4.0, 1.0, 2.0, 3.0):
        ...     _, state = fns.update(norm, state)
        >>> state
        PercentileState(count=4, history=(1.0, 2.0, 3.0))
    """

    # The name is the saved state's key; it shadows tuple.count, which nothing calls on a state.
    count: int  # type: ignore[assignment]
    history: Any  # floats on the host (a tuple, or a sorted array for the full history) or a tensor


def _percentile_sorted(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default): rank ``p/100 * (n-1)``."""
    rank = p / 100.0 * (len(values) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (rank - lo)


def percentile(
    p: float = 10.0,
    *,
    window: int | None = 1000,
    warmup: int = 0,
    include_current: bool = True,
    warmup_factor: float | None = WARMUP_FACTOR,
) -> PolicyFns:
    """AutoClip: threshold = p-th percentile of the recent total norms (Seetharaman et al. 2020).

    ``c_t = percentile_p({||g_s|| : s in the last `window` finite steps})``, the current norm included
    when ``include_current`` (as in the paper, where the norm is recorded before the threshold is
    taken), so with ``p=100`` nothing is ever clipped. Percentiles interpolate linearly between ranks.

    Choices, each documented: ``p=10`` is the value the paper recommends from its experiments (clip
    the 90 % of steps whose norm is above the 10th percentile). The paper's Algorithm 1 keeps the
    whole history: ask for it with ``window=None``. Its cost grows with the run: each step keeps one
    more float64 (8 bytes: 8 MB per million steps, in memory and in every ``state_dict``) and
    inserts it into a copy of the sorted history, O(n) per step (measured: ~1 ms at 100,000 steps
    on a shared 2-core CPU; a bounded window costs a sort of ``window`` norms). The
    default keeps the last ``window=1000`` norms instead (memory and the per-step sort stay bounded;
    a short window follows drifting norms, a long one approaches the full history). During
    ``warmup`` finite norms are recorded and the threshold is ``warmup_factor`` times the median of
    the norms recorded before this one (``inf`` on the very first step, or with
    ``warmup_factor=None``): the upper end of Pascanu et al.'s safe range, so no spike passes
    unclipped while the percentile has too few norms to mean anything (the paper has no warm-up: 0).
    A non-finite norm is not recorded (it would make every later percentile meaningless); its
    threshold comes from the history alone (``inf`` when it is empty).

    A Python float norm keeps the history as a tuple. A 0-dim tensor norm keeps it as a tensor ring
    of ``window`` slots and computes with tensor methods only (`_percentile_tensor`), so a
    compiled step neither breaks its graph nor recompiles as the norms change. The clippers still
    feed a float (``sync_free`` is False): on CUDA that is one host sync per step, the only one,
    until the tensor path has been checked for syncs on a GPU.

    References: P. Seetharaman, G. Wichern, B. Pardo, J. Le Roux, "AutoClip: Adaptive Gradient
    Clipping for Source Separation Networks", MLSP 2020, arXiv:2007.14469.

    Examples:
        >>> from gradclip.policies import percentile
        >>> fns = percentile(50)
        >>> state = fns.init()
        >>> thresholds = []
        >>> for norm in (1.0, 3.0, 2.0):
        ...     threshold, state = fns.update(norm, state)
        ...     thresholds.append(threshold)
        >>> thresholds  # the median of the norms so far, the current one included
        [1.0, 2.0, 2.0]
    """
    p = _in_range(p, "p", 0.0, 100.0, "in [0, 100]")
    window = None if window is None else _int(window, "window", 1)
    warmup = _int(warmup, "warmup", 0)
    factor = _warmup_factor(warmup_factor)

    def record(history: Sequence[float], x: float) -> Sequence[float]:
        if window is not None:
            return (*history, x)[-window:]
        # The full history stays sorted (insert, never sort), in a float64 array: copying it is one
        # memcpy, where a tuple of n floats costs n reference-count updates.
        grown = history[:] if isinstance(history, array) else array("d", history)
        grown.insert(bisect.bisect_right(grown, x), x)
        return grown

    def update(norm: Norm, state: PercentileState) -> tuple[Norm, PercentileState]:
        if window is not None and not isinstance(norm, Real) and hasattr(norm, "nanquantile"):
            return _percentile_tensor(norm, state, p, window, warmup, include_current, factor)
        x = float(norm)
        history = state.history
        if hasattr(history, "nanquantile"):  # a state built by the tensor path: back to host floats
            state = PercentileState(int(state.count), tuple(v for v in history.tolist() if v == v))
            history = state.history
        finite = math.isfinite(x)
        if finite:
            state = PercentileState(state.count + 1, record(history, x))
        pool = state.history if include_current and finite else history
        warm = state.count <= warmup if finite else state.count < warmup
        if warm:
            median = _percentile_sorted(sorted(history), 50.0) if history else 0.0
            return (factor * median if median > 0 else math.inf), state
        if not pool:
            return math.inf, state
        return _percentile_sorted(pool if window is None else sorted(pool), p), state

    return PolicyFns(lambda: PercentileState(0, ()), update)


def _percentile_tensor(
    g: Any, state: PercentileState, p: float, window: int, warmup: int, include_current: bool, factor: float
) -> tuple[Any, PercentileState]:
    """[`percentile`][gradclip.policies.percentile]'s update on a 0-dim tensor, through tensor methods only
    (no read-back).

    The history is a fixed-size ring of ``window`` values, oldest first, NaN marking empty slots
    (a non-finite norm is never recorded, so NaN cannot be a real entry); ``nanquantile`` then
    takes the percentile with the same linear interpolation as the float path. Shapes and branches
    never depend on the norms, so a compiled step keeps one graph whatever they do.
    """
    history, count = state.history, state.count
    if not hasattr(history, "nanquantile"):  # host state (a fresh policy, a checkpoint): lift once
        history = ring_of(history, window, g)
    history = history.to(device=g.device, dtype=g.dtype)
    count = count.to(g.device) if hasattr(count, "to") else g.new_full((), float(count))
    pick = _TensorOps.where  # pick(cond, a, b): a where cond, else b
    finite = g.isfinite()
    new_history = pick(finite, push_newest(history, g), history)
    new_count = pick(finite, count + 1, count)
    pool = pick(finite, new_history, history) if include_current else history
    q = pool.nanquantile(p / 100.0)  # NaN when the pool is empty
    warm = pick(finite, new_count <= warmup, count < warmup)
    # The warm-up threshold: factor x the median of the norms before this one (NaN, so inf, when none).
    prior = history.nanquantile(0.5)
    early = pick(prior > 0, prior * factor, math.inf) if math.isfinite(factor) else math.inf
    threshold = pick(warm, early, pick(q.isnan(), math.inf, q))
    return threshold, PercentileState(new_count, new_history)


class ZScoreState(NamedTuple):
    """``count``: finite norms fed so far; ``mean``/``var``: their running mean and variance.

    Python floats, or 0-dim tensors on the norm's device once a tensor norm has been seen.

    Examples:
        >>> from gradclip.policies import zscore
        >>> fns = zscore(warmup=5)
        >>> state = fns.init()
        >>> for norm in (1.0, 3.0):
        ...     _, state = fns.update(norm, state)
        >>> state  # the plain mean and variance during the warm-up
        ZScoreState(count=2.0, mean=2.0, var=1.0)
    """

    count: Any
    mean: Any
    var: Any


def zscore(
    *,
    alpha: float = 0.97,
    z_thresh: float = 2.5,
    warmup: int = 25,
    max_norm: float | None = None,
    eps: float = 1e-6,
    warmup_factor: float | None = WARMUP_FACTOR,
) -> PolicyFns:
    """ZClip: clip norms that are z-score outliers of an EMA of past norms (Kumar et al. 2025).

    With running mean ``mu`` and standard deviation ``sigma`` of the past (clipped) norms, the
    spread used is ``s = sigma + eps * mu`` (``eps`` is relative to the mean, so the rule is scale
    invariant: norms times any factor are clipped on the same steps) and ``z = (g - mu) / s``.
    The threshold is ``mu + z_thresh * s`` while ``z <= z_thresh``, at least ``g``: such a step is
    never clipped; for a spike it is ``mu + z_thresh**2 * s / z`` (the paper's adaptive scaling:
    the larger the spike, the lower the threshold). Both are
    ``c = mu + z_thresh**2 * s / max(z, z_thresh)``, capped at ``max_norm`` when given.

    The statistics are then fed the clipped norm ``min(g, c)``: during the first ``warmup`` finite
    norms they are the plain mean and (population) variance (Welford's update) and the threshold is
    ``warmup_factor`` times the mean so far (the upper end of Pascanu et al.'s safe range, so an early
    spike is clipped; ``inf`` on the first step or with ``warmup_factor=None``), capped at
    ``max_norm``; afterwards ``mu <- alpha mu + (1-alpha) x`` and
    ``var <- alpha var + (1-alpha) (x - mu_new)^2``. A non-finite norm leaves the statistics as they
    are (unlike the reference code, one NaN does not poison every later threshold); its threshold
    is the one of a non-spike, ``mu + z_thresh * s``.

    Where this departs from the ``zclip`` reference package, on purpose: there ``z`` divides by
    ``sigma + 1e-6`` in absolute units, so on small norms (1e-6 and below: tiny losses, fp32
    models late in training) ``z`` shrinks and spikes go undetected, while its non-spike bound has
    no ``eps`` at all, so a step at ``z <= z_thresh`` could still exceed it; here one spread ``s``
    serves both, relative to ``mu``. On norms of order 1 both clip the same steps.

    References: A. Kumar, L. Owen, N. R. Chowdhury, F. Güra, "ZClip: Adaptive Spike Mitigation for
    LLM Pre-Training", 2025, arXiv:2504.02507.

    Examples:
        >>> from gradclip.policies import zscore
        >>> fns = zscore(warmup=5)
        >>> state = fns.init()
        >>> for norm in (1.0, 1.1, 0.9, 1.0, 1.05, 0.95):
        ...     _, state = fns.update(norm, state)
        >>> calm, _ = fns.update(1.0, state)
        >>> spike, _ = fns.update(50.0, state)
        >>> calm >= 1.0, spike < calm  # a calm step passes; a spike gets a lower threshold
        (True, True)
    """
    alpha = _in_range(alpha, "alpha", 0.0, 1.0, "in [0, 1)")
    if alpha == 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha!r} (1 would freeze the statistics)")
    z_thresh = _real(z_thresh, "z_thresh")
    if not (math.isfinite(z_thresh) and 0 < z_thresh <= 1e150):  # z_thresh**2 must stay finite
        raise ValueError(f"z_thresh must be a real number in (0, 1e150], got {z_thresh!r}")
    warmup = _int(warmup, "warmup", 1)  # the statistics need at least one norm
    cap = _cap(max_norm, "max_norm")
    factor = _warmup_factor(warmup_factor)
    eps = _real(eps, "eps")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite real number > 0, got {eps!r}")

    def update(norm: Norm, state: ZScoreState) -> tuple[Norm, ZScoreState]:
        ops, g = _ops_for(norm)
        count, mean, var = (ops.lift(v, g) for v in state)
        finite, warm = ops.isfinite(g), count < warmup
        # One spread for z and for both bounds; relative eps (scale invariant), and a floor far
        # below any real norm so that all-zero statistics give z = 0 or inf, never 0/0.
        spread = ops.sqrt(ops.clamp_min(var, 0.0)) + eps * abs(mean) + _TINY
        z = (g - mean) / spread
        calm = mean + z_thresh * spread
        c = ops.where(finite, mean + z_thresh**2 * spread / ops.clamp_min(z, z_thresh), calm)
        early = cap if math.isinf(factor) else ops.where(mean > 0, factor * mean, cap)
        c = ops.minimum(ops.where(warm, early, c), cap)
        x = ops.minimum(g, c)  # the statistics see the clipped norm
        n = count + 1
        mean_w = mean + (x - mean) / n  # Welford: exact mean/variance of the warm-up norms
        var_w = var + ((x - mean) * (x - mean_w) - var) / n
        mean_e = alpha * mean + (1 - alpha) * x
        var_e = alpha * var + (1 - alpha) * (x - mean_e) * (x - mean_e)
        new = ZScoreState(
            ops.where(finite, n, count),
            ops.where(finite, ops.where(warm, mean_w, mean_e), mean),
            ops.where(finite, ops.where(warm, var_w, var_e), var),
        )
        return c, new

    return PolicyFns(lambda: ZScoreState(0.0, 0.0, 0.0), update)


# --- stateful wrappers ----------------------------------------------------------------------------


def _check_norm(norm: Any) -> Any:
    if (isinstance(norm, Real) and not isinstance(norm, bool)) or getattr(norm, "ndim", None) == 0:
        return norm
    raise TypeError(f"norm must be a real number or a 0-dim tensor, got {norm!r:.60} ({type(norm).__name__})")


class _Stateful:
    """Holds a policy's state; ``update(norm)`` returns this step's threshold."""

    kind: str
    sync_free: bool
    _state_type: Any  # the policy's state NamedTuple class (its _fields are the saved keys)

    def __init__(self, fns: PolicyFns, config: dict[str, Any]) -> None:
        self._fns, self.config = fns, config
        self.state = fns.init()

    def update(self, norm: Norm) -> Norm:
        threshold, self.state = self._fns.update(_check_norm(norm), self.state)
        return threshold

    def propose(self, norm: Norm) -> tuple[Norm, Any]:
        """This step's threshold and the state it would leave, without keeping that state."""
        return self._fns.update(_check_norm(norm), self.state)

    def commit(self, state: Any) -> None:
        """Keep a state returned by [`propose`][gradclip.clippers.NormClipper.propose] (a skipped step keeps
        the old one instead)."""
        self.state = state

    def commit_where(self, keep: Any, state: Any) -> None:
        """Keep ``state`` where the 0-dim tensor flag ``keep`` is true and the current state where it is
        false, with tensor methods only (a compiled step decides its skip without a branch).

        The current state is first brought to the form of ``state`` (floats and a history tuple become
        tensors like its fields), so the result is all tensors and the next compiled step reuses its graph.
        """
        merged = []
        for old, new in zip(self.state, state, strict=True):
            if not hasattr(new, "where"):  # a field the tensor path keeps as it is
                merged.append(new)
                continue
            if hasattr(old, "to"):
                old = old.to(device=new.device, dtype=new.dtype)
            elif isinstance(old, Real):
                old = new.new_full(tuple(new.shape), float(old))
            else:  # a history of host floats, as a ring of len(new) slots
                old = ring_of(old, len(new), new)
            merged.append(new.where(keep, old))
        self.state = type(state)(*merged)

    __call__ = update

    def reset(self) -> None:
        """Forget every norm seen."""
        self.state = self._fns.init()

    def state_dict(self) -> dict[str, Any]:
        """``{"policy": kind, "config": {...}, "state": {...}}``; values are kept as they are held."""
        return {"policy": self.kind, "config": dict(self.config), "state": dict(self.state._asdict())}

    def check_state_dict(self, state_dict: object) -> Any:
        """Check a saved state fully (layout, kind, config, fields); return it restored, change nothing."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping saved by {type(self).__name__}.state_dict(), "
                            f"got {type(state_dict).__name__}")  # fmt: skip
        if set(state_dict) != {"policy", "config", "state"}:
            raise ValueError(f"state_dict has entries {sorted(map(str, state_dict))}, expected "
                             "['config', 'policy', 'state']: is it the state of another class?")  # fmt: skip
        kind = state_dict["policy"]
        if kind != self.kind:
            raise ValueError(f"state_dict is for policy {kind!r}, not {self.kind!r}")
        config = state_dict["config"]
        if not isinstance(config, Mapping) or dict(config) != self.config:
            raise ValueError(
                f"state_dict config {config!r} differs from this "
                f"policy's {self.config!r}; build the policy with the saved config"
            )
        fields = state_dict["state"]
        if not isinstance(fields, Mapping) or set(fields) != set(self._state_type._fields):
            expected = list(self._state_type._fields)
            have = sorted(fields) if isinstance(fields, Mapping) else type(fields).__name__
            raise ValueError(f"state_dict state has fields {have}, expected {expected}")
        return self._restore(dict(fields))

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state saved by a policy of the same kind and configuration (all or nothing)."""
        self.state = self.check_state_dict(state_dict)

    def _restore(self, fields: dict[str, Any]) -> Any:
        return self._state_type(**fields)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"


class Fixed(_Stateful):
    """Constant threshold ``max_norm`` (plain clip-by-norm, Pascanu et al. 2013, arXiv:1211.5063).

    Examples:
        >>> from gradclip.policies import Fixed
        >>> policy = Fixed(1.0)
        >>> policy(5.0)
        1.0
        >>> policy.state_dict()
        {'policy': 'fixed', 'config': {'max_norm': 1.0}, 'state': {}}
    """

    kind, sync_free, _state_type = "fixed", True, FixedState

    def __init__(self, max_norm: float) -> None:
        fns = fixed(max_norm)
        super().__init__(fns, {"max_norm": fns.update(0.0, FixedState())[0]})

    @property
    def max_norm(self) -> float:
        return self.config["max_norm"]


class Percentile(_Stateful):
    """AutoClip thresholds, see [`percentile`][gradclip.policies.percentile] (formula, defaults, the one sync
    per step);
    ``window=None`` keeps the paper's full history (memory grows by 8 bytes per step).

    Examples:
        >>> from gradclip.policies import Percentile
        >>> policy = Percentile(50, window=3)
        >>> [policy(norm) for norm in (1.0, 3.0, 2.0, 10.0)]
        [1.0, 2.0, 2.0, 3.0]
        >>> restored = Percentile(50, window=3)
        >>> restored.load_state_dict(policy.state_dict())
        >>> restored(4.0) == policy(4.0)
        True
    """

    kind, sync_free, _state_type = "percentile", False, PercentileState

    def __init__(
        self,
        p: float = 10.0,
        *,
        window: int | None = 1000,
        warmup: int = 0,
        include_current: bool = True,
        warmup_factor: float | None = WARMUP_FACTOR,
    ) -> None:
        config: dict[str, Any] = {"p": p, "window": window, "warmup": warmup}
        include_current = bool(check_flag(include_current, "include_current"))
        config.update(include_current=include_current, warmup_factor=warmup_factor)
        fns = percentile(p, window=window, warmup=warmup, include_current=include_current,
                         warmup_factor=warmup_factor)  # fmt: skip
        super().__init__(fns, config)

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        if isinstance(out["state"]["history"], array):  # the full history's array, as a tuple
            out["state"]["history"] = tuple(out["state"]["history"])
        return out

    def _restore(self, fields: dict[str, Any]) -> PercentileState:
        count, history = fields["count"], fields["history"]
        if hasattr(history, "nanquantile"):  # saved from the tensor path: keep it on its device
            return PercentileState(count, history)
        window = self.config["window"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"state_dict state count must be an integer >= 0, got {count!r}")
        if not isinstance(history, (list, tuple)) or (window is not None and len(history) > window):
            raise ValueError(f"state_dict state history must be a list of at most window={window} "
                             f"norms, got {history!r:.60}")  # fmt: skip
        if not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in history):
            raise ValueError(f"state_dict state history must hold finite norms, got {history!r:.60}")
        values = tuple(float(v) for v in history)
        if window is None:  # the full history is kept sorted (see percentile)
            return PercentileState(count, array("d", sorted(values)))
        return PercentileState(count, values)


class ZScore(_Stateful):
    """ZClip thresholds, see [`zscore`][gradclip.policies.zscore] (formula, warm-up, non-finite norms).

    Examples:
        >>> import gradclip
        >>> policy = gradclip.ZScore(warmup=3)
        >>> policy(1.0)  # nothing seen yet: no limit
        inf
        >>> for norm in (1.2, 0.8, 1.1, 0.9):
        ...     _ = policy(norm)
        >>> policy(100.0) < 2.0  # a spike, far outside the running mean and spread, is clipped
        True
    """

    kind, sync_free, _state_type = "zscore", True, ZScoreState

    def __init__(
        self,
        *,
        alpha: float = 0.97,
        z_thresh: float = 2.5,
        warmup: int = 25,
        max_norm: float | None = None,
        eps: float = 1e-6,
        warmup_factor: float | None = WARMUP_FACTOR,
    ) -> None:
        config: dict[str, Any] = {
            "alpha": alpha,
            "z_thresh": z_thresh,
            "warmup": warmup,
            "max_norm": max_norm,
        }
        config.update(eps=eps, warmup_factor=warmup_factor)
        fns = zscore(alpha=alpha, z_thresh=z_thresh, warmup=warmup, max_norm=max_norm, eps=eps,
                     warmup_factor=warmup_factor)  # fmt: skip
        super().__init__(fns, config)

    def _restore(self, fields: dict[str, Any]) -> ZScoreState:
        for name in ZScoreState._fields:
            value = fields[name]
            if hasattr(value, "shape") and hasattr(value, "isfinite"):  # a tensor kept on its device
                if tuple(value.shape) != () or not bool(value.isfinite()):
                    raise ValueError(f"state_dict state {name} must be a finite 0-dim tensor or number")
            elif isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise ValueError(f"state_dict state {name} must be a finite number, got {value!r}")
            if float(value) < 0 and name != "mean":
                raise ValueError(f"state_dict state {name} must be >= 0, got {value!r}")
        return ZScoreState(fields["count"], fields["mean"], fields["var"])
