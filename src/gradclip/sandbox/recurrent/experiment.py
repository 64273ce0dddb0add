"""The ``pascanu`` experiment: every seed trained with and without clipping, in parallel processes.

Pascanu, Mikolov & Bengio (2013, arXiv:1211.5063, §4.1, Fig. 7) count how often plain SGD and SGD
with norm clipping ("SGD-C") solve the temporal order problem: a run succeeds when its error on
fresh sequences falls under 1%. Here each seed gives one pair of runs that share initial weights
and data; the clipped run's threshold is given, or set per seed by the paper's rule (the mean
gradient norm over a warm-up of unclipped updates, §3.2). Runs go to worker processes started with
``spawn`` (each limited to one torch thread, so ``workers`` runs use ``workers`` cores) and each
writes its steps through [`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor] to
``OUT/runs/<name>/grads.jsonl``. `summarise` turns the results into one row per variant (success rate, median
steps to success, largest gradient norm, spikes and the loss jumps after them) and `plot` draws the
gradient norms and losses of every run to a PNG.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

from gradclip._io import atomic_write, atomic_write_text
from gradclip.sandbox.recurrent.train import (
    RunConfig,
    RunResult,
    average_norm_threshold,
    spike_outcomes,
    train_run,
)

__all__ = [
    "FACTOR",
    "QUICK",
    "Row",
    "format_table",
    "plot",
    "run_name",
    "run_pascanu",
    "summarise",
    "write_outputs",
]

# The --quick preset: 10 seeds x 2 variants in under 5 minutes on 2 cores. T = 20 keeps the task
# within reach of a few thousand plain-SGD steps; lr 0.05 is where unclipped SGD gets thrown off by
# its gradient spikes (at lr 0.01 the spikes rarely cost a run: see the issue 7 report).
QUICK = {"task": "temporal-order", "length": 20, "seeds": 10, "steps": 4000, "lr": 0.05,
         "eval_every": 200, "eval_size": 500}  # fmt: skip
# c = FACTOR x the warm-up's mean norm. Pascanu et al. (§3.2) find 0.5x to 10x the average norm safe;
# the warm-up (the first updates, before learning starts) has the smallest norms of the run, so at
# 1x most later steps are clipped and clipping acts as a smaller learning rate. At 2x (the quick
# preset) clipping still removed every loss jump after a spike; at 5x it no longer did.
FACTOR = 2.0


def run_name(config: RunConfig) -> str:
    kind = "noclip" if config.threshold is None else "clip"
    return f"{config.task}-L{config.length}-{kind}-s{config.seed}"


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per run: `workers` runs in parallel use `workers` cores


def _job(config: RunConfig, clip: bool, threshold: float | None, warmup: int, factor: float,
         out: str | None) -> tuple[float | None, RunResult]:  # fmt: skip
    """One run in a worker: measure the threshold first when clipping by the average-norm rule."""
    if clip and threshold is None:
        threshold = average_norm_threshold(config, warmup=warmup, factor=factor)
    config = replace(config, threshold=threshold if clip else None)
    log_dir = None if out is None else Path(out) / "runs" / run_name(config)
    return threshold if clip else None, train_run(config, log_dir=log_dir)


def run_pascanu(
    base: RunConfig,
    *,
    seeds: int,
    threshold: float | None = None,
    warmup: int = 500,
    factor: float = FACTOR,
    workers: int = 2,
    out: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[RunResult]:
    """Train seeds 0..seeds-1 of ``base`` unclipped and clipped; results in that order (unclipped first).

    ``threshold`` None sets c per seed to ``factor`` × the mean norm of its first ``warmup``
    unclipped updates (`average_norm_threshold`).
    ``workers`` 1 runs everything in this process (no ``spawn``).
    """
    for name, value in (("seeds", seeds), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 < threshold < math.inf):
        raise ValueError(
            f"threshold must be a finite number > 0 or None (average-norm rule), got {threshold!r}"
        )
    jobs = [(replace(base, seed=s, threshold=None), clip, threshold, warmup, factor,
             None if out is None else str(out)) for clip in (False, True) for s in range(seeds)]  # fmt: skip
    results: list[RunResult] = []
    if workers == 1:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: extra threads only add contention (10-40x slower)
        try:
            for job in jobs:
                results.append(_report(*_job(*job), progress))
        finally:
            torch.set_num_threads(threads)
        return results
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        for done in pool.map(_job, *zip(*jobs, strict=True)):
            results.append(_report(*done, progress))
    return results


def _report(threshold: float | None, result: RunResult, progress: Callable[[str], None] | None) -> RunResult:
    if progress is not None:
        cfg = result.config
        outcome = (f"solved at step {result.steps_to_success}" if result.solved
                   else "diverged" if result.diverged else f"error {result.final_error:.1%}")  # fmt: skip
        clip = "unclipped" if threshold is None else f"clipped at {threshold:.3g}"
        progress(f"seed {cfg['seed']:>3} {clip:>18}: {outcome}, max norm {result.max_grad_norm:.3g}")
    return result


class Row(NamedTuple):
    """One variant (unclipped or clipped) over all seeds."""

    variant: str
    runs: int
    solved: int
    median_steps: float  # over solved runs; NaN when none
    max_grad_norm: float  # over every run
    median_threshold: float  # NaN unclipped
    spikes: int
    jumps: int  # spikes followed by a loss jump (divergence after a spike)
    diverged: int  # runs ending in NaN/inf

    @property
    def success_rate(self) -> float:
        return self.solved / self.runs if self.runs else math.nan


def summarise(results: Sequence[RunResult]) -> list[Row]:
    """Group runs by clipped/unclipped and count successes, spikes and jumps (see `Row`)."""
    rows = []
    for variant, clipped in (("SGD", False), ("SGD-C (clipped)", True)):
        group = [r for r in results if (r.config["threshold"] is not None) == clipped]
        if not group:
            continue
        steps = [r.steps_to_success for r in group if r.steps_to_success is not None]  # set iff solved
        outcomes = [spike_outcomes(r.grad_norms, r.losses) for r in group]
        norms = [r.max_grad_norm for r in group if math.isfinite(r.max_grad_norm)]
        rows.append(Row(
            variant=variant, runs=len(group), solved=len(steps),
            median_steps=statistics.median(steps) if steps else math.nan,
            max_grad_norm=max(norms, default=math.nan),
            median_threshold=statistics.median(r.config["threshold"] for r in group) if clipped else math.nan,
            spikes=sum(o.spikes for o in outcomes), jumps=sum(o.jumps for o in outcomes),
            diverged=sum(r.diverged for r in group),
        ))  # fmt: skip
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table of `summarise`'s rows."""
    head = f"{'variant':<16} {'success':>13} {'median steps':>12} {'max |g|':>9} {'c':>7} " \
           f"{'spikes':>6} {'jumps':>5} {'NaN':>4}"  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        rate = f"{r.solved}/{r.runs} ({r.success_rate:.0%})"
        steps = "-" if math.isnan(r.median_steps) else f"{r.median_steps:.0f}"
        c = "-" if math.isnan(r.median_threshold) else f"{r.median_threshold:.3g}"
        lines.append(f"{r.variant:<16} {rate:>13} {steps:>12} {r.max_grad_norm:>9.3g} {c:>7} "
                     f"{r.spikes:>6} {r.jumps:>5} {r.diverged:>4}")  # fmt: skip
    return "\n".join(lines)


def plot(results: Sequence[RunResult], path: str | Path, *, title: str = "") -> Path:
    """Gradient norm (log scale) and training loss per step of every run, unclipped vs clipped."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, safe in worker-less CI
    import matplotlib.pyplot as plt

    fig, (ax_norm, ax_loss) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    colours = {False: "tab:red", True: "tab:blue"}
    for r in results:
        clipped = r.config["threshold"] is not None
        label = ("SGD-C (clipped)" if clipped else "SGD") if r.config["seed"] == 0 else None
        ax_norm.plot(r.grad_norms, color=colours[clipped], alpha=0.4, lw=0.6, label=label)
        ax_loss.plot(_smooth(r.losses), color=colours[clipped], alpha=0.5, lw=0.8)
        if clipped:
            ax_norm.axhline(r.config["threshold"], color=colours[True], ls=":", lw=0.6)
    ax_norm.set_yscale("log")
    ax_norm.set_ylabel("gradient norm (before clipping)")
    ax_norm.legend(loc="upper left")
    ax_loss.set_ylabel("training loss (50-step mean)")
    ax_loss.set_xlabel("SGD step")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path


def _smooth(values: list[float], width: int = 50) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= width:
            acc -= values[i - width]
        out.append(acc / min(i + 1, width))
    return out


@dataclass(frozen=True)
class Summary:
    """What ``summary.json`` holds: the settings, the table rows and the wall time."""

    settings: dict
    rows: list[dict]
    wall_seconds: float

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=1, default=_json_default))


def _json_default(value: object) -> object:
    return str(value)  # Paths and the like in the settings


def _finite_or_none(value: object) -> object:
    """NaN (no solved run, no threshold) as JSON null: strict JSON has no NaN."""
    return None if isinstance(value, float) and math.isnan(value) else value


def write_outputs(results: Sequence[RunResult], out: Path, *, settings: dict, started: float) -> list[Row]:
    """``summary.json`` and ``pascanu.png`` in ``out``; returns the table rows."""
    rows = summarise(results)
    out.mkdir(parents=True, exist_ok=True)
    rate = ", ".join(f"{r.variant}: {r.solved}/{r.runs}" for r in rows)
    plot(results, out / "pascanu.png", title=f"{settings['task']}, T={settings['length']} — solved {rate}")
    rows_json = [{k: _finite_or_none(v) for k, v in {**r._asdict(), "success_rate": r.success_rate}.items()}
                 for r in rows]  # fmt: skip
    Summary(settings, rows_json, time.perf_counter() - started).write(out / "summary.json")
    return rows
