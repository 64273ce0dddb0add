"""The checkpointable state of a [`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor], as plain
data.

Everything the monitor's future depends on: the step count, the counters behind the summary, the
rolling windows behind the warnings, the reservoir and the state of its random generator behind the
advice, the latches that make each warning fire once per episode, and the clock. Only ints, floats,
bools, strings, None, lists and dicts: the state survives ``json`` (the Hugging Face Trainer's
``trainer_state.json``) and ``torch.load(weights_only=True)`` alike, and a round trip is exact.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

__all__ = ["FORMAT", "load_state", "state_of"]

FORMAT = "gradclip.GradMonitor/1"
_COUNTERS = (
    "step", "_clipped", "_nonfinite", "_skipped", "_spikes", "_finite", "_post_warmup",
    "_since_clip", "_with_threshold", "_near_zero",
)  # fmt: skip
_FLOATS = ("_sum", "_min", "_max", "_post_sum")


def state_of(monitor: Any) -> dict[str, Any]:
    """The monitor's state as plain data (see the module docstring)."""
    version, internal, gauss = monitor._rng.getstate()
    return {
        "format": FORMAT,
        "name": monitor.name,
        "names": None if monitor.names is None else list(monitor.names),
        "config": asdict(monitor.config),
        "max_norm": monitor.max_norm,
        "counters": {k.lstrip("_"): int(getattr(monitor, k)) for k in _COUNTERS},
        "sums": {k.lstrip("_"): float(getattr(monitor, k)) for k in _FLOATS},
        "threshold": monitor._threshold,
        "clip_flags": [bool(f) for f in monitor._clip_flags],
        "recent": [float(x) for x in monitor._recent],
        "reservoir": [float(x) for x in monitor._reservoir],
        "rng": {"version": version, "internal": list(internal), "gauss": gauss},
        "latched": dict(monitor._latched),
        "warnings": dict(monitor._warn_counts),
        "elapsed": monitor.elapsed(),
        "torch": None if monitor._torch is None else {"clip_calls": monitor._torch._clip_calls},
    }


def _check(monitor: Any, state: Mapping[str, Any]) -> None:
    """Raise unless ``state`` was saved by a monitor configured like ``monitor``; change nothing."""
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"state_dict is not a GradMonitor state (format {got!r}, expected {FORMAT!r})")
    missing = set(state_of(monitor)) - set(state)
    if missing:
        raise ValueError(f"GradMonitor state_dict lacks {sorted(missing)}")
    if dict(state["config"]) != asdict(monitor.config):
        raise ValueError(
            f"state_dict config {dict(state['config'])!r} differs from this monitor's "
            f"{asdict(monitor.config)!r}; build the monitor with the saved MonitorConfig"
        )
    if monitor.names is not None and state["names"] is not None and list(state["names"]) != monitor.names:
        raise ValueError(
            f"state_dict was saved for layers {list(state['names'])} but this monitor watches {monitor.names}"
        )
    if set(state["counters"]) != {k.lstrip("_") for k in _COUNTERS}:
        raise ValueError(f"state_dict counters {sorted(state['counters'])} are not a GradMonitor's")
    if set(state["latched"]) != set(monitor._latched) or set(state["warnings"]) != set(monitor._warn_counts):
        raise ValueError("state_dict latches or warning counts are not a GradMonitor's")
    w = monitor.config.window
    if len(state["clip_flags"]) > w or len(state["recent"]) > w:
        raise ValueError(f"state_dict windows are longer than the configured window={w}")


def load_state(monitor: Any, state: Mapping[str, Any]) -> None:
    """Restore ``state`` (from `state_of`) into ``monitor``, after checking all of it."""
    _check(monitor, state)
    rng = random.Random()
    rng.setstate((int(state["rng"]["version"]), tuple(state["rng"]["internal"]), state["rng"]["gauss"]))
    w = monitor.config.window
    monitor.name = str(state["name"])
    monitor.names = None if state["names"] is None else list(state["names"])
    monitor.max_norm = None if state["max_norm"] is None else float(state["max_norm"])
    for key in _COUNTERS:
        setattr(monitor, key, int(state["counters"][key.lstrip("_")]))
    for key in _FLOATS:
        setattr(monitor, key, float(state["sums"][key.lstrip("_")]))
    monitor._threshold = None if state["threshold"] is None else float(state["threshold"])
    monitor._clip_flags = deque((bool(f) for f in state["clip_flags"]), maxlen=w)
    monitor._recent = deque((float(x) for x in state["recent"]), maxlen=w)
    monitor._reservoir = [float(x) for x in state["reservoir"]]
    monitor._rng = rng
    monitor._latched = dict(state["latched"])
    monitor._warn_counts = {k: int(v) for k, v in state["warnings"].items()}
    monitor._elapsed_before = float(state["elapsed"])
    if monitor._torch is not None and state["torch"] is not None:
        monitor._torch._clip_calls = int(state["torch"]["clip_calls"])
