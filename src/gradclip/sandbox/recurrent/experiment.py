"""The ``pascanu`` experiment: success rates of SGD and SGD with clipping over tasks, lengths and lrs.

Pascanu, Mikolov & Bengio (2013, arXiv:1211.5063, §4.1, Fig. 7) count how often plain SGD and SGD
with norm clipping ("SGD-C") solve the pathological tasks: a run succeeds when its error on fresh
sequences falls under 1%. A `Grid` names the tasks, lengths T, learning rates and seeds;
each (task, T) is one cell, trained as one batched population (`population`) holding every
seed x lr x {SGD, SGD-C}. SGD-C's threshold is set per seed and lr by the paper's rule (§3.2):
``factor`` x the mean gradient norm of the first ``warmup`` unclipped updates of the same seed.
Cells go to worker processes (``spawn``, one torch thread each). `compare` turns the runs
into one `Comparison` per (task, T, lr): both arms' success rates with 95% Wilson intervals
and the two-sided Fisher exact p-value of the difference, and, because a short step budget may
leave every run unsolved, both arms' median final errors with their 95% order-statistic
intervals and the two-sided Mann-Whitney U test of the errors (`gradclip.sandbox.stats`).
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from typing import NamedTuple

from gradclip.sandbox.recurrent.grid import Grid
from gradclip.sandbox.recurrent.population import Member, train_population, warmup_norms
from gradclip.sandbox.recurrent.train import RunConfig, RunResult, spike_outcomes
from gradclip.sandbox.stats import (
    Interval,
    RankTest,
    fisher_exact,
    mann_whitney_u,
    median_interval,
    wilson_interval,
)

__all__ = ["Arm", "Comparison", "compare", "final_error", "run_cell", "run_grid", "run_name"]


def run_name(config: RunConfig) -> str:
    kind = "noclip" if config.threshold is None else "clip"
    return f"{config.task}-L{config.length}-lr{config.lr:g}-{kind}-s{config.seed}"


def run_cell(grid: Grid, task: str, length: int) -> list[RunResult]:
    """Train one (task, T) cell: seeds x lrs unclipped, then the same with c from the warm-up rule.

    Returns the runs in the order (lr, clipped, seed), unclipped before clipped.
    """
    import torch

    torch.set_num_threads(1)  # small batched products: one thread per cell, cells in parallel
    base = grid.config(task, length)
    free = [Member(seed, lr) for lr in grid.lrs for seed in range(grid.seeds)]
    probes = warmup_norms(base, free, warmup=grid.warmup)
    thresholds = [grid.factor * _finite_mean(norms) for norms in probes]
    for i, c in enumerate(thresholds):
        if math.isnan(c):  # this seed's warm-up blew up at once: take the median c of its lr's other seeds
            same_lr = [t for j, t in enumerate(thresholds) if free[j].lr == free[i].lr and not math.isnan(t)]
            if not same_lr:
                raise ValueError(f"every warm-up at lr {free[i].lr:g} diverged at once; lower the lr")
            thresholds[i] = statistics.median(same_lr)
    clipped = [replace(m, threshold=c) for m, c in zip(free, thresholds, strict=True)]
    members = [m for i in range(len(grid.lrs)) for arm in (free, clipped)
               for m in arm[i * grid.seeds : (i + 1) * grid.seeds]]  # fmt: skip
    return train_population(base, members)


def _finite_mean(norms: list[float]) -> float:
    """Mean of the finite norms (NaN when there are none)."""
    finite = [n for n in norms if math.isfinite(n)]
    return statistics.fmean(finite) if finite else math.nan


def _cell_job(grid: Grid, task: str, length: int) -> list[RunResult]:
    return run_cell(grid, task, length)


def run_grid(grid: Grid, *, workers: int = 2, progress: Callable[[str], None] | None = None,
             on_cell: Callable[[list[RunResult]], None] | None = None) -> list[RunResult]:  # fmt: skip
    """Every cell of ``grid``, ``workers`` cells at a time (1: in this process); runs in cell order.

    ``on_cell(runs)`` is called after each cell with the runs of every cell finished so far (in
    cell order), so that a long grid leaves its partial results behind.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    cells = grid.cells
    done: dict[int, list[RunResult]] = {}

    def finish(i: int, runs: list[RunResult]) -> None:
        done[i] = runs
        if progress is not None:
            progress(
                f"{cells[i][0]}, T={cells[i][1]}: {len(runs)} runs, {sum(r.solved for r in runs)} solved"
            )
        if on_cell is not None:
            on_cell([r for j in sorted(done) for r in done[j]])

    if workers == 1 or len(cells) == 1:
        import torch

        threads = torch.get_num_threads()
        try:
            for i, cell in enumerate(cells):
                finish(i, run_cell(grid, *cell))
        finally:
            torch.set_num_threads(threads)
    else:
        order = sorted(range(len(cells)), key=lambda i: cells[i][1])  # short cells first: early results
        context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
        with ProcessPoolExecutor(max_workers=min(workers, len(cells)), mp_context=context) as pool:
            futures = {pool.submit(_cell_job, grid, *cells[i]): i for i in order}
            for future in as_completed(futures):
                finish(futures[future], future.result())
    return [r for i in sorted(done) for r in done[i]]


class Arm(NamedTuple):
    """One arm (SGD or SGD-C) of one (task, T, lr) over its seeds."""

    task: str
    length: int
    lr: float
    clipped: bool
    runs: int
    solved: int
    rate: Interval  # success rate and its 95% Wilson interval
    median_steps: float  # over solved runs; NaN when none
    error: Interval  # median final error over the evaluated runs, 95% order-statistic interval
    errors: tuple[float, ...]  # each run's `final_error`, in seed order (NaN: never evaluated)
    median_threshold: float  # NaN for SGD
    clip_rate: float  # clipped steps / steps over the arm's runs (0 for SGD)
    diverged: int  # runs ending in NaN/inf
    spikes: int  # |g| > 10 x the median of the previous 20 steps
    jumps: int  # spikes after which the mean loss of the next 20 steps doubled


class Comparison(NamedTuple):
    """SGD vs SGD-C at one (task, T, lr): the rates' Fisher p-value and the final errors' rank test."""

    sgd: Arm
    clipped: Arm
    p_value: float  # two-sided Fisher exact test of the success rates
    error_test: RankTest  # two-sided Mann-Whitney U of SGD's final errors against SGD-C's; NaN: too few


def final_error(run: RunResult) -> float:
    """The error a run ended with: its last evaluation's, 1 (every answer wrong) when it diverged.

    A diverged run stops at its last finite weights, so its last evaluation would flatter it;
    counting it as the worst possible error keeps it last in the rank test. NaN when the runs are
    not evaluated (``eval_every`` 0).
    """
    return 1.0 if run.diverged and run.config["eval_every"] else run.final_error


def _error_test(sgd: Arm, clipped: Arm) -> RankTest:
    x, y = ([e for e in arm.errors if not math.isnan(e)] for arm in (sgd, clipped))
    return mann_whitney_u(x, y) if x and y else RankTest(math.nan, math.nan)


def _arm(group: list[RunResult], clipped: bool) -> Arm:
    cfg = group[0].config
    steps = [r.steps_to_success for r in group if r.solved]
    group = sorted(group, key=lambda r: r.config["seed"])
    errors = tuple(final_error(r) for r in group)
    evaluated = [e for e in errors if not math.isnan(e)]
    outcomes = [spike_outcomes(r.grad_norms, r.losses) for r in group]
    return Arm(
        task=cfg["task"], length=cfg["length"], lr=cfg["lr"], clipped=clipped, runs=len(group),
        solved=len(steps), rate=wilson_interval(len(steps), len(group)),
        median_steps=float(statistics.median([s for s in steps if s is not None])) if steps else math.nan,
        error=median_interval(evaluated) if evaluated else Interval(math.nan, math.nan, math.nan),
        errors=errors,
        median_threshold=statistics.median(r.config["threshold"] for r in group) if clipped else math.nan,
        clip_rate=sum(r.clipped_steps for r in group) / max(1, sum(len(r.grad_norms) for r in group)),
        diverged=sum(r.diverged for r in group), spikes=sum(o.spikes for o in outcomes),
        jumps=sum(o.jumps for o in outcomes),
    )  # fmt: skip


def compare(results: Sequence[RunResult]) -> list[Comparison]:
    """One `Comparison` per (task, T, lr) present in ``results``, in order of appearance."""
    groups: dict[tuple, dict[bool, list[RunResult]]] = {}
    for r in results:
        key = (r.config["task"], r.config["length"], r.config["lr"])
        groups.setdefault(key, {False: [], True: []})[r.config["threshold"] is not None].append(r)
    out = []
    for arms in groups.values():
        if not arms[False] or not arms[True]:
            raise ValueError("every (task, length, lr) needs runs of both arms, SGD and SGD-C")
        sgd, clip = _arm(arms[False], False), _arm(arms[True], True)
        rates_p = fisher_exact(sgd.solved, sgd.runs, clip.solved, clip.runs)
        out.append(Comparison(sgd, clip, rates_p, _error_test(sgd, clip)))
    return out
