"""The skip rule every clipped step follows, written once for torch and NumPy (no framework import).

A step's optimizer update is skipped when its pre-clip norm is NaN/Inf (unless the caller opts out
with ``skip_nonfinite=False``) or, when a [`SpikeSkip`][gradclip.skip.SpikeSkip] is given, when the norm is a
spike: more than ``k`` standard deviations above the mean of the last ``window`` accepted norms, in the
manner of OLMo-core's ``SkipStepOptimizer`` and Levanter's skip-step. A skipped step changes
nothing: parameters, optimizer state, the threshold policy's state and the monitor's statistics stay
as they were. Spikes are kept out of the spike statistics (one spike must not hide the next); after
``max_consecutive`` spikes in a row the level is taken as the new normal: the statistics restart and
the step goes through.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from gradclip.policies import push_newest, ring_of

__all__ = ["SpikeSkip", "check_recent", "check_step_options", "decide", "load_all_or_nothing"]


MAX_WINDOW = 10**9  # windows are deques of floats: a bound that fits memory and a C size


def _count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value > MAX_WINDOW:
        raise ValueError(f"{name} must be an integer >= {minimum} and at most 10**9, got {value!r}")
    return value


class SpikeSkip:
    """Skip the update when ``norm > mean + k * std`` of the last ``window`` accepted finite norms.

    Args:
        k: how many (population) standard deviations above the rolling mean make a spike, > 0.
        window: how many past accepted norms the mean and deviation are taken over, >= 2.
        warmup: no step is a spike before this many norms have been accepted (>= 2).
        max_consecutive: after this many spikes in a row the statistics restart and the step is
            accepted (a lasting change of level, not a spike), >= 1.

    [`check`][gradclip.skip.SpikeSkip.check] reads the norm as a Python float (on CUDA, one host sync
    per step). [`check_tensor`][gradclip.skip.SpikeSkip.check_tensor] decides the same with tensor methods
    only, for a compiled step: the history is then a ring of ``window`` float64 slots on the norm's device.

    Examples:
        >>> from gradclip.skip import SpikeSkip
        >>> rule = SpikeSkip(k=3.0, warmup=5)
        >>> [rule.check(norm) for norm in (1.0, 1.1, 0.9, 1.0, 1.05)]  # the warm-up: never a spike
        [False, False, False, False, False]
        >>> rule.check(40.0), rule.check(1.0)
        (True, False)
    """

    kind = "spike_skip"

    def __init__(self, k: float = 6.0, *, window: int = 100, warmup: int = 20, max_consecutive: int = 10):
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not (math.isfinite(k) and k > 0):
            raise ValueError(f"k must be a finite real number > 0, got {k!r}")
        self.k = float(k)
        self.window = _count(window, "window", 2)
        self.warmup = _count(warmup, "warmup", 2)
        self.max_consecutive = _count(max_consecutive, "max_consecutive", 1)
        self._history: deque[float] = deque(maxlen=self.window)
        self.consecutive: Any = 0
        self._ring: Any = None  # the history as a tensor ring, once check_tensor has run

    def _to_host(self) -> None:
        """Back from the tensor ring to the host history (after a compiled step, for check or saving)."""
        if self._ring is not None:
            values = [v for v in self._ring.tolist() if v == v]  # NaN marks an empty slot
            self._history, self._ring = deque(values, maxlen=self.window), None
            self.consecutive = int(self.consecutive)

    def bound(self) -> float:
        """The spike bound ``mean + k * std`` for the next norm (``inf`` during warm-up)."""
        self._to_host()
        n = len(self._history)
        if n < min(self.warmup, self.window):
            return math.inf
        mean = math.fsum(self._history) / n
        var = math.fsum((x - mean) ** 2 for x in self._history) / n
        return mean + self.k * math.sqrt(var)

    def check(self, norm: float) -> bool:
        """Whether ``norm`` is a spike; records it (accepted norms only) and returns the verdict."""
        if isinstance(norm, bool) or not isinstance(norm, (int, float)):
            raise TypeError(f"norm must be a real number (the step's total norm), got {norm!r:.60}")
        self._to_host()
        if not math.isfinite(norm):
            return False  # non-finite steps are the other rule's
        if norm > self.bound():
            self.consecutive += 1
            if self.consecutive <= self.max_consecutive:
                return True
            self._history.clear()  # a new level: learn it again
        self.consecutive = 0
        self._history.append(norm)
        return False

    def check_tensor(self, norm: Any) -> Any:
        """[`check`][gradclip.skip.SpikeSkip.check] on a 0-dim tensor, with tensor methods only: returns a
        0-dim bool tensor, and the history and the run of spikes stay tensors (no read-back, no branch)."""
        if self._ring is None:  # the host history, lifted once (float64: the host floats' precision)
            ring = ring_of(self._history, self.window, norm.double())
            self._ring, self.consecutive = ring, ring.new_full((), float(self.consecutive))
        ring, run = self._ring, self.consecutive
        x = norm.to(ring.dtype)
        mean = ring.nanmean()
        spread = (ring - mean).square().nanmean().sqrt()
        enough = ring.isnan().logical_not().sum() >= min(self.warmup, self.window)
        bound = (mean + self.k * spread).where(enough, math.inf)
        finite = x.isfinite()
        over = finite & (x > bound)
        spike = over & (run + 1 <= self.max_consecutive)
        restart = over & spike.logical_not()  # a new level: the history starts again from this norm
        base = ring.where(restart.logical_not(), math.nan)
        self._ring = push_newest(base, x).where(finite & spike.logical_not(), ring)
        self.consecutive = (run + 1).where(spike, run.new_zeros(())).where(finite, run)
        return spike

    def state_dict(self) -> dict[str, Any]:
        self._to_host()
        config = {"k": self.k, "window": self.window, "warmup": self.warmup}
        config["max_consecutive"] = self.max_consecutive
        state = {"history": list(self._history), "consecutive": self.consecutive}
        return {"kind": self.kind, "config": config, "state": state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state saved by a ``SpikeSkip`` of the same configuration (all or nothing)."""
        if not isinstance(state_dict, Mapping) or state_dict.get("kind") != self.kind:
            got = state_dict.get("kind") if isinstance(state_dict, Mapping) else type(state_dict).__name__
            raise ValueError(f"state_dict is not a SpikeSkip state (kind {got!r})")
        config = self.state_dict()["config"]
        if dict(state_dict.get("config", {})) != config:
            raise ValueError(
                f"state_dict config {state_dict.get('config')!r} differs from this SpikeSkip's {config!r}"
            )
        state = state_dict.get("state")
        if not isinstance(state, Mapping) or set(state) != {"history", "consecutive"}:
            raise ValueError(f"state_dict state must hold 'history' and 'consecutive', got {state!r}")
        history, consecutive = state["history"], state["consecutive"]
        values = [float(v) for v in history] if isinstance(history, (list, tuple)) else None
        if values is None or len(values) > self.window or not all(math.isfinite(v) for v in values):
            raise ValueError(
                f"state_dict history must be at most {self.window} finite numbers, got {history!r}"
            )
        self.consecutive = _count(consecutive, "state_dict consecutive", 0)
        self._history, self._ring = deque(values, maxlen=self.window), None

    def __repr__(self) -> str:
        return f"SpikeSkip(k={self.k}, window={self.window}, warmup={self.warmup})"


def check_step_options(skip_nonfinite: object, skip_spikes: object, rate_window: object) -> None:
    """The options every step object takes (torch and NumPy), checked the same way.

    Examples:
        >>> from gradclip.skip import check_step_options
        >>> check_step_options(True, None, 100)  # valid: nothing happens
        >>> check_step_options(True, None, 0)
        Traceback (most recent call last):
            ...
        ValueError: rate_window ...
    """
    if not isinstance(skip_nonfinite, bool):
        raise TypeError(f"skip_nonfinite must be True or False, got {skip_nonfinite!r}")
    if skip_spikes is not None and not isinstance(skip_spikes, SpikeSkip):
        raise TypeError(f"skip_spikes must be a gradclip.SpikeSkip or None, got {skip_spikes!r}")
    _count(rate_window, "rate_window", 1)


def check_recent(recent: object, maxlen: int) -> list[float]:
    """A saved clip-rate window: a list of at most ``maxlen`` 0/1 flags (ValueError otherwise).

    Examples:
        >>> from gradclip.skip import check_recent
        >>> check_recent([1, 0, 1], 100)
        [1.0, 0.0, 1.0]
    """
    if not isinstance(recent, list) or len(recent) > maxlen or any(v not in (0.0, 1.0) for v in recent):
        raise ValueError(
            f"state_dict 'recent' must be a list of at most {maxlen} 0/1 flags, got {recent!r:.60}"
        )
    return [float(v) for v in recent]


def load_all_or_nothing(spikes: SpikeSkip | None, saved: Any, load_rest: Callable[[], None]) -> None:
    """Load the spike rule's ``saved`` state, then ``load_rest()``; if that fails, undo the first.

    Examples:
        >>> from gradclip.skip import SpikeSkip, load_all_or_nothing
        >>> saved = SpikeSkip(warmup=2)
        >>> saved.check(1.0)
        False
        >>> fresh = SpikeSkip(warmup=2)
        >>> def load_the_rest():
        ...     raise ValueError("the rest of the state is bad")
        >>> load_all_or_nothing(fresh, saved.state_dict(), load_the_rest)
        Traceback (most recent call last):
            ...
        ValueError: the rest of the state is bad
        >>> fresh.state_dict() == SpikeSkip(warmup=2).state_dict()  # the spike rule's load was undone
        True
    """
    before = None if spikes is None else spikes.state_dict()
    if spikes is not None:
        spikes.load_state_dict(saved)
    try:
        load_rest()
    except Exception:
        if spikes is not None and before is not None:
            spikes.load_state_dict(before)
        raise


def decide(finite: bool, norm: float, *, skip_nonfinite: bool, spikes: SpikeSkip | None) -> tuple[bool, bool]:
    """The skip rule: return ``(skipped, spike)`` for a step with pre-clip ``norm``.

    Non-finite: skipped when ``skip_nonfinite``. Finite: skipped when ``spikes`` calls it a spike.

    Examples:
        >>> from gradclip.skip import decide
        >>> decide(False, float("nan"), skip_nonfinite=True, spikes=None)
        (True, False)
        >>> decide(True, 3.0, skip_nonfinite=True, spikes=None)
        (False, False)
    """
    if not finite:
        return skip_nonfinite, False
    spike = spikes is not None and spikes.check(norm)
    return spike, spike
