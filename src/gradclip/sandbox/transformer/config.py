"""Settings of the transformer experiment (no torch import): the arms, one run's config, the presets.

An arm is how the step treats the gradient: ``none`` (measured, never clipped), ``fixed`` (global
norm at 1.0, the usual transformer setting), ``zscore`` (ZClip, Kumar et al. 2025,
arXiv:2504.02507), ``percentile`` (AutoClip, Seetharaman et al. 2020, arXiv:2007.14469) and
``agc`` (unit-wise, Brock et al. 2021, arXiv:2102.06171) and ``skip`` (no clipping; the update is
skipped when the gradient norm is more than 6 rolling standard deviations above its rolling mean,
[`gradclip.SpikeSkip`][gradclip.skip.SpikeSkip]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["ARMS", "QUICK", "STANDARD", "Preset", "RunConfig"]

ARMS = ("none", "fixed", "zscore", "percentile", "agc", "skip")


@dataclass(frozen=True)
class RunConfig:
    """One run; the defaults are the standard preset's model (2 pre-norm layers, 48 wide, 32 bytes)."""

    arm: str = "none"
    seed: int = 0
    lr: float = 1.0  # peak AdamW learning rate
    steps: int = 300
    warmup: int = 20  # linear warm-up steps
    batch_size: int = 16
    block: int = 32
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 48
    weight_decay: float = 0.1
    eval_batches: int = 8  # fixed validation batches scored at the end

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ValueError(f"unknown arm {self.arm!r}; choose from {list(ARMS)}")
        for name in ("steps", "batch_size", "eval_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if (
            isinstance(self.warmup, bool)
            or not isinstance(self.warmup, int)
            or not 0 <= self.warmup < self.steps
        ):
            raise ValueError(f"warmup must be an integer in [0, steps), got {self.warmup!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < math.inf):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        for name in ("block", "n_layer", "n_head", "d_model"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model must be a multiple of n_head, got {self.d_model} and {self.n_head}")


@dataclass(frozen=True)
class Preset:
    """Every lr x arm, each with seeds 0..seeds-1, on ``base`` (whose own lr is replaced)."""

    arms: tuple[str, ...] = ARMS
    lrs: tuple[float, ...] = (0.3, 1.0)  # peak lrs; at 1.0 this model's loss spikes, at 0.3 rarely
    seeds: int = 5
    base: RunConfig = field(default_factory=RunConfig)


QUICK = Preset(
    lrs=(1.0,), seeds=2, base=RunConfig(steps=60, warmup=10, eval_batches=4)
)  # about a minute on 2 cores
STANDARD = Preset()
