"""What the gradient monitor can tell you: its warning categories, their levels, and its summary.

Each concern has its own [`GradMonitorWarning`][gradclip.diagnosis.GradMonitorWarning] subclass so that users
can filter exactly what they do not want to hear (``warnings.simplefilter("ignore", SpikeWarning)``). The
levels in
[`MonitorConfig`][gradclip.diagnosis.MonitorConfig] follow common practice: a clip rate above 20-30% means the
learning rate is probably too high or the threshold too low; a norm ten times the recent median is a spike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from gradclip.advice import Advice

__all__ = [
    "WARNING_KINDS",
    "ClipMisuseWarning",
    "ClipRateWarning",
    "GradMonitorWarning",
    "MonitorConfig",
    "SpikeWarning",
    "Summary",
    "VanishingGradientWarning",
]


class GradMonitorWarning(UserWarning):
    """Something the gradient monitor noticed (filter this to silence them all).

    Examples:
        >>> import warnings
        >>> from gradclip.monitor import GradMonitor, GradMonitorWarning
        >>> monitor = GradMonitor()
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", GradMonitorWarning)  # silences every monitor warning
        ...     monitor.record(0.0, threshold=1.0)  # no gradient at all: a ClipMisuseWarning, silenced
        >>> sum(monitor.summary().warnings.values())  # still counted
        1
    """


class ClipRateWarning(GradMonitorWarning):
    """Clipping too often (lr too high or c too low), on nearly every step, or never (idle).

    Examples:
        >>> import warnings
        >>> from gradclip.monitor import GradMonitor, MonitorConfig
        >>> monitor = GradMonitor(config=MonitorConfig(window=10))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     for _ in range(10):
        ...         monitor.record(5.0, threshold=1.0)  # every step clipped
        >>> [w.category.__name__ for w in caught]
        ['ClipRateWarning']
    """


class SpikeWarning(GradMonitorWarning):
    """A gradient norm far above recent history, or non-finite.

    Examples:
        >>> import warnings
        >>> from gradclip.monitor import GradMonitor, MonitorConfig
        >>> monitor = GradMonitor(config=MonitorConfig(min_history=5))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     for norm in [1.0] * 5 + [100.0]:
        ...         monitor.record(norm)
        >>> [w.category.__name__ for w in caught]
        ['SpikeWarning']
    """


class VanishingGradientWarning(GradMonitorWarning):
    """Gradient norms near zero for many steps: something clipping cannot fix.

    Examples:
        >>> import warnings
        >>> from gradclip.monitor import GradMonitor, MonitorConfig
        >>> monitor = GradMonitor(config=MonitorConfig(vanish_steps=3))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     for _ in range(3):
        ...         monitor.record(1e-9)
        >>> [w.category.__name__ for w in caught]
        ['VanishingGradientWarning']
    """


class ClipMisuseWarning(GradMonitorWarning):
    """Clipping in the wrong place: skipped, on empty gradients, or after ``optimizer.step()``.

    Examples:
        >>> import warnings
        >>> from gradclip.monitor import GradMonitor
        >>> monitor = GradMonitor()
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     monitor.record(0.0, threshold=1.0)  # no gradient: clipped after zero_grad()?
        >>> [w.category.__name__ for w in caught]
        ['ClipMisuseWarning']
    """


WARNING_KINDS = {
    ClipRateWarning: "clip_rate",
    SpikeWarning: "spike",
    VanishingGradientWarning: "vanishing",
    ClipMisuseWarning: "misuse",
}


@dataclass(frozen=True)
class MonitorConfig:
    """Warning levels and window sizes; the defaults suit a few hundred steps or more.

    Examples:
        >>> from gradclip.monitor import GradMonitor, MonitorConfig
        >>> config = MonitorConfig(window=50, clip_rate=0.3)
        >>> GradMonitor(config=config).config.window
        50
        >>> MonitorConfig(window=0)
        Traceback (most recent call last):
            ...
        ValueError: MonitorConfig.window ...
    """

    window: int = 100  # steps in the rolling clip rate and in the spike baseline
    clip_rate: float = 0.25  # warn above this rolling clip rate (the 20-30% band of common practice)
    always_clip_rate: float = 0.9  # above this, c is too small: clipping acts as a smaller lr
    idle_steps: int = 1000  # no clip in this many steps with a threshold set: clipping is idle
    spike_factor: float = 10.0  # a spike: norm > spike_factor * median of the window
    min_history: int = 20  # finite norms needed before spikes are judged
    vanish_below: float = 1e-6  # a total norm under this is "near zero"
    vanish_steps: int = 50  # consecutive near-zero steps before warning
    warmup: int = 100  # steps left out of the advice (early norms are transients)
    reservoir: int = 4096  # sampled post-warm-up norms kept for the percentiles
    top_k: int = 3  # layers named in a spike warning

    def __post_init__(self) -> None:
        for name in ("window", "idle_steps", "min_history", "vanish_steps", "reservoir", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MonitorConfig.{name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"MonitorConfig.warmup must be a whole number >= 0, got {self.warmup!r}")
        for name, lo, hi in (("clip_rate", 0, 1), ("always_clip_rate", 0, 1), ("spike_factor", 1, math.inf)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and lo < value <= hi):
                raise ValueError(f"MonitorConfig.{name} must be a number in ({lo}, {hi}], got {value!r}")
        if not (isinstance(self.vanish_below, (int, float)) and self.vanish_below >= 0):
            raise ValueError(f"MonitorConfig.vanish_below must be a number >= 0, got {self.vanish_below!r}")


class Summary(NamedTuple):
    """The run so far: counts, rates, norm range, warnings per kind, and the advice (or None).

    Examples:
        >>> from gradclip.monitor import GradMonitor
        >>> monitor = GradMonitor()
        >>> for norm in (0.5, 2.0, 3.0):
        ...     monitor.record(norm, threshold=1.0)
        >>> summary = monitor.summary()
        >>> summary.steps, summary.clipped, summary.norm_max, summary.threshold
        (3, 2, 3.0, 1.0)
    """

    steps: int
    clipped: int
    clip_rate: float  # overall
    rolling_clip_rate: float  # over the last ``window`` steps with a threshold
    nonfinite: int
    skipped: int
    spikes: int
    threshold: float | None  # the last one seen
    norm_min: float
    norm_mean: float
    norm_max: float  # over finite norms
    warnings: dict[str, int]
    advice: Advice | None

    def as_dict(self) -> dict[str, Any]:
        out = self._asdict()
        out["advice"] = self.advice._asdict() if self.advice else None
        return out
