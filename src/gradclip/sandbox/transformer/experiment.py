"""The ``transformer`` experiment: clipping arms x seeds on a small GPT, with intervals over seeds.

Every arm of `ARMS` is trained with the same seeds; seed s gives every arm the same
initial weights and batches, so the arms differ only in what the step does to the gradient. Runs
go to worker processes (``spawn``, one torch thread each) and log through the monitor into
``OUT/runs/<arm>-s<seed>``. `summarise` gives one `ArmRow` per arm: final validation
loss, loss spikes and steps lost to them (means with 95% Student-t intervals over seeds), and the
paired difference of validation loss against no clipping (same seeds), with its interval.
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from gradclip.sandbox.stats import Interval, mean_interval
from gradclip.sandbox.tables import markdown_table, text_table
from gradclip.sandbox.transformer.config import ARMS, Preset, RunConfig
from gradclip.sandbox.transformer.train import RunResult, loss_spikes, train_run

__all__ = ["ArmRow", "format_markdown", "format_table", "plot", "run_arms", "summarise"]


def _job(config: RunConfig, log_dir: str | None) -> RunResult:
    import torch

    torch.set_num_threads(1)  # small matrices: one thread per run, runs in parallel
    return train_run(config, log_dir=log_dir)


def run_name(config: RunConfig) -> str:
    return f"lr{config.lr:g}-{config.arm}-s{config.seed}"


def run_arms(preset: Preset, *, out: Path | None, workers: int = 2,
             progress: Callable[[str], None] | None = None) -> list[RunResult]:  # fmt: skip
    """Every lr x arm x seed of ``preset``; results in that order."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    for arm in preset.arms:
        replace(preset.base, arm=arm)  # validates the arm names before anything runs
    configs = [replace(preset.base, lr=lr, arm=arm, seed=s) for lr in preset.lrs for arm in preset.arms
               for s in range(preset.seeds)]  # fmt: skip
    dirs = [None if out is None else str(out / "runs" / run_name(c)) for c in configs]
    results: dict[int, RunResult] = {}
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_job, c, d): i for i, (c, d) in enumerate(zip(configs, dirs, strict=True))}
        for future in as_completed(futures):
            i = futures[future]
            results[i] = r = future.result()
            if progress is not None:
                progress(f"{run_name(configs[i]):>20}: val loss {r.val_loss:.3f}, "
                         f"{loss_spikes(r.losses).spikes} loss spikes")  # fmt: skip
    return [results[i] for i in range(len(configs))]


class ArmRow(NamedTuple):
    lr: float
    arm: str
    runs: int
    val_loss: Interval  # mean over seeds, 95% t interval
    vs_none: Interval | None  # paired mean difference of val loss against "none" (same seeds)
    spikes: Interval  # loss spikes per run
    steps_lost: Interval  # steps lost to spikes per run
    clipped: float  # fraction of steps clipped
    skipped: int  # steps skipped, all runs
    max_grad_norm: float


def summarise(results: Sequence[RunResult]) -> list[ArmRow]:
    """One row per (lr, arm), in order of appearance."""
    by_arm: dict[tuple[float, str], dict[int, RunResult]] = {}
    for r in results:
        by_arm.setdefault((r.config["lr"], r.config["arm"]), {})[r.config["seed"]] = r
    rows = []
    for (lr, arm), runs in by_arm.items():
        counts = [loss_spikes(r.losses) for r in runs.values()]
        base = by_arm.get((lr, "none"))
        paired = None
        if base is not None and arm != "none" and set(base) >= set(runs):
            paired = mean_interval([runs[s].val_loss - base[s].val_loss for s in runs])
        steps = sum(len(r.losses) for r in runs.values())
        norms = [n for r in runs.values() for n in r.grad_norms if math.isfinite(n)]
        rows.append(ArmRow(
            lr=lr, arm=arm, runs=len(runs), val_loss=mean_interval([r.val_loss for r in runs.values()]),
            vs_none=paired, spikes=mean_interval([c.spikes for c in counts]),
            steps_lost=mean_interval([c.steps_lost for c in counts]),
            clipped=sum(r.clipped_steps for r in runs.values()) / steps,
            skipped=sum(r.skipped_steps for r in runs.values()), max_grad_norm=max(norms, default=math.nan),
        ))  # fmt: skip
    return rows


def _iv(i: Interval | None, spec: str = ".3f") -> str:
    if i is None:
        return "-"
    if not math.isfinite(i.low):
        return format(i.estimate, spec)
    return f"{i.estimate:{spec}} [{i.low:{spec}}, {i.high:{spec}}]"


HEAD = [
    "lr",
    "arm",
    "runs",
    "val loss",
    "vs none (paired)",
    "loss spikes/run",
    "steps lost/run",
    "clipped",
    "skipped",
]


def _cells(r: ArmRow) -> list[str]:
    return [f"{r.lr:g}", r.arm, str(r.runs), _iv(r.val_loss), _iv(r.vs_none, "+.3f"), _iv(r.spikes, ".1f"),
            _iv(r.steps_lost, ".1f"), f"{r.clipped:.0%}", str(r.skipped)]  # fmt: skip


def format_table(rows: Sequence[ArmRow]) -> str:
    return text_table(HEAD, [_cells(r) for r in rows])


def format_markdown(rows: Sequence[ArmRow]) -> str:
    return markdown_table(HEAD, [_cells(r) for r in rows])


NOTE = ("[a, b]: 95% Student-t interval over seeds; vs none: val loss minus the same seed's unclipped run; "
        "loss spike: loss > 1.1 x the median of the previous 20 steps; steps lost: until the loss is back "
        "at that median")  # fmt: skip


def _smooth(values: list[float], width: int = 10) -> list[float]:
    return [statistics.fmean(values[max(0, i - width + 1) : i + 1]) for i in range(len(values))]


def plot(results: Sequence[RunResult], rows: Sequence[ArmRow]) -> bytes:
    """PNG bytes: seed 0's training loss per arm at the highest lr; val loss and spikes per (lr, arm)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val, ax_spk) = plt.subplots(1, 3, figsize=(14, 4))
    colours = dict(
        zip(ARMS, ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown"), strict=True)
    )
    top = max(r.config["lr"] for r in results)
    for r in results:
        if r.config["seed"] == 0 and r.config["lr"] == top:
            ax_loss.plot(_smooth(r.losses), lw=0.9, color=colours.get(r.config["arm"]), label=r.config["arm"])
    ax_loss.set(
        xlabel="step", ylabel="training loss (10-step mean), seed 0", title=f"training loss, lr {top:g}"
    )
    ax_loss.legend(fontsize=8)
    for ax, key, label in ((ax_val, "val_loss", "final validation loss (nats/byte)"),
                           (ax_spk, "spikes", "loss spikes per run")):  # fmt: skip
        for k, row in enumerate(rows):
            iv = getattr(row, key)
            low, high = (iv.low, iv.high) if math.isfinite(iv.low) else (iv.estimate, iv.estimate)
            ax.errorbar([k], [iv.estimate], yerr=[[iv.estimate - low], [high - iv.estimate]], fmt="o",
                        capsize=4, color=colours.get(row.arm))  # fmt: skip
        ax.set_xticks(range(len(rows)), [f"{r.arm}\n{r.lr:g}" for r in rows], fontsize=7)
        ax.set(ylabel=label, title=label + " (95% t interval)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
