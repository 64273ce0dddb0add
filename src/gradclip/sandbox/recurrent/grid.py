"""The grid of the ``pascanu`` experiment and its presets (no torch import: the CLI reads them).

A `Grid` names the tasks, sequence lengths T, SGD learning rates and seeds; every task x T
is one cell of seeds x lrs x {SGD, SGD-C}. SGD-C's threshold is ``factor`` x the mean gradient norm
of the first ``warmup`` unclipped updates of the same seed and lr (Pascanu et al. 2013,
arXiv:1211.5063, §3.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gradclip.sandbox.recurrent.tasks import get_task

if TYPE_CHECKING:
    from gradclip.sandbox.recurrent.train import RunConfig

__all__ = ["FACTOR", "QUICK", "STANDARD", "Grid"]

# c = FACTOR x the warm-up's mean norm. Pascanu et al. (§3.2) find 0.5x to 10x the average norm safe;
# the warm-up (the first updates, before learning starts) has the smallest norms of the run, so at
# 1x most later steps are clipped and clipping acts as a smaller learning rate.
FACTOR = 2.0


@dataclass(frozen=True)
class Grid:
    """What ``pascanu`` trains: every task x length is a cell of seeds x lrs x {SGD, SGD-C}."""

    tasks: tuple[str, ...] = ("temporal-order", "addition", "multiplication")
    lengths: tuple[int, ...] = (50, 100)
    lrs: tuple[float, ...] = (0.01, 0.1)
    seeds: int = 20
    steps: int = 1500  # most SGD updates per run
    warmup: int = 200  # unclipped updates whose mean norm sets c
    factor: float = FACTOR
    hidden: int = 50  # the paper's 50 tanh units
    batch_size: int = 20
    init: str = "smart"
    eval_every: int = 250
    eval_size: int = 500

    def __post_init__(self) -> None:
        for name in ("tasks", "lengths", "lrs"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        for name, minimum in (("seeds", 1), ("warmup", 1), ("steps", 1), ("hidden", 1), ("batch_size", 1),
                              ("eval_every", 0), ("eval_size", 1)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        for task in self.tasks:
            for length in self.lengths:
                get_task(task).generate(1, length, seed=0)  # the generator names a length it cannot use
        for name, value in [("factor", self.factor), *(("lrs", lr) for lr in self.lrs)]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must hold finite numbers > 0, got {value!r}")
        if self.init not in ("smart", "gaussian"):
            raise ValueError(f"unknown init {self.init!r}; choose from ['smart', 'gaussian']")

    def config(self, task: str, length: int) -> RunConfig:
        from gradclip.sandbox.recurrent.train import RunConfig  # torch: only when a cell is built

        return RunConfig(task=task, length=length, steps=self.steps, hidden=self.hidden, lr=self.lrs[0],
                         batch_size=self.batch_size, init=self.init, eval_every=self.eval_every,
                         eval_size=self.eval_size)  # fmt: skip

    @property
    def cells(self) -> list[tuple[str, int]]:
        return [(task, length) for task in self.tasks for length in self.lengths]


# --quick: one cell, 20 seeds x {SGD, SGD-C}, under a minute on 2 cores. T = 20 is within reach of
# about a thousand plain-SGD steps; lr 0.05 is where unclipped SGD gets thrown off by its spikes.
QUICK = Grid(tasks=("temporal-order",), lengths=(20,), lrs=(0.05,), seeds=20, steps=1200, warmup=100,
             eval_every=200, eval_size=500)  # fmt: skip
STANDARD = Grid()  # 3 tasks x T in {50, 100} x lr in {0.01, 0.1} x 20 seeds x 2 arms: <= 15 min on 2 cores
