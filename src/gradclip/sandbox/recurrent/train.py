"""One training run of the Pascanu et al. (2013) experiment: a tanh RNN, plain SGD, clipping on or off.

A run draws its initial weights from ``seed`` and its training batches from a stream seeded by
``seed`` too, so the clipped and the unclipped run of one seed see the same network and the same
data; they differ only from the first clipped step on. Every ``eval_every`` steps the error is
measured on ``eval_size`` freshly drawn sequences; the run stops at the first evaluation under
``target_error`` (1%, the paper's success criterion, §4.1) or when the loss or gradient norm stops
being finite (divergence). Every step goes to a
[`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor], whose JSONL is the run's record on disk.
`average_norm_threshold` implements the paper's rule for the threshold (§3.2: look at the average gradient
norm over many updates).
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from torch.nn import functional as F

from gradclip.monitor import GradMonitor, GradMonitorWarning
from gradclip.sandbox.recurrent.model import INITS, PARAM_NAMES, TanhRNN
from gradclip.sandbox.recurrent.tasks import Task, get_task
from gradclip.step import ClipStep

DTYPES = {"float32": torch.float32, "float64": torch.float64}

__all__ = ["RunConfig", "RunResult", "average_norm_threshold", "spike_outcomes", "task_loss", "train_run"]


def _whole(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RunConfig:
    """Everything one run depends on; the defaults are the paper's (50 tanh units, smart init)."""

    task: str = "temporal-order"
    length: int = 50  # nominal sequence length T
    steps: int = 5000  # most SGD updates before giving up
    hidden: int = 50
    lr: float = 0.01
    batch_size: int = 20
    threshold: float | None = None  # clipping threshold c; None trains without clipping
    init: str = "smart"  # see model.init_weights
    seed: int = 0
    eval_every: int = 100  # steps between evaluations; 0 never evaluates
    eval_size: int = 1000  # fresh sequences per evaluation
    target_error: float = 0.01  # success: error below this on fresh sequences
    dtype: str = "float32"  # "float64" for reference runs (the population test compares in it)

    def __post_init__(self) -> None:
        get_task(self.task)
        for name, minimum in (("length", 1), ("steps", 1), ("hidden", 1), ("batch_size", 1),
                              ("seed", 0), ("eval_every", 0), ("eval_size", 1)):  # fmt: skip
            _whole(getattr(self, name), name, minimum)
        _positive(self.lr, "lr")
        _positive(self.target_error, "target_error")
        if self.threshold is not None:
            _positive(self.threshold, "threshold")
        if not isinstance(self.init, str) or self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose from {list(INITS)}")
        if not isinstance(self.dtype, str) or self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose from {sorted(DTYPES)}")


class RunResult(NamedTuple):
    """What a run measured: outcome, per-step arrays, and the evaluations ``(step, error)``."""

    config: dict
    solved: bool
    steps_to_success: int | None  # updates done when the error first fell under the target
    final_error: float  # the last evaluation's error (NaN when never evaluated)
    diverged: bool  # the loss or the gradient norm became NaN/inf
    max_grad_norm: float  # largest finite pre-clip norm
    clipped_steps: int
    grad_norms: list[float]
    losses: list[float]
    evals: list[tuple[int, float]]


def task_loss(task: Task, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (over sequences, and steps for per-step outputs), or mean squared error."""
    if task.output == "last-value":
        return F.mse_loss(out, targets)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def evaluate(model: TanhRNN, task: Task, *, length: int, size: int, rng: np.random.Generator) -> float:
    """Fraction of ``size`` fresh sequences the model gets wrong (the task's error rule)."""
    wrong = 0
    for start in range(0, size, 250):  # chunks bound the memory; each chunk draws its own length
        batch = task.generate(min(250, size - start), length, seed=rng)
        out = model(torch.from_numpy(batch.inputs).to(model.W_uh.dtype)).numpy()
        wrong += int(task.errors(out, batch.targets).sum())
    return wrong / size


def train_run(config: RunConfig, *, log_dir: str | Path | None = None) -> RunResult:
    """Train one network as ``config`` says; log every step to ``log_dir/grads.jsonl`` when given."""
    task = get_task(config.task)
    model = TanhRNN(task.n_in, config.hidden, task.n_out, every_step=task.output == "every-class",
                    init=config.init, seed=config.seed, dtype=DTYPES[config.dtype])  # fmt: skip
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=config.lr)
    # One clipped step for every loop: None measures without clipping; a NaN/Inf norm skips the update.
    clip_step = ClipStep(config.threshold)
    train_rng, eval_rng = (np.random.default_rng([config.seed, k]) for k in (1, 2))
    norms: list[float] = []
    losses: list[float] = []
    evals: list[tuple[int, float]] = []
    solved, diverged, clipped_steps = False, False, 0
    name = f"{config.task}-L{config.length}-{'clip' if config.threshold else 'noclip'}-s{config.seed}"
    # Like its summary and plot, an experiment's runs are replaced when it is run again into the same --out.
    monitor = GradMonitor(log_dir=log_dir, names=list(PARAM_NAMES), max_norm=config.threshold, name=name,
                          overwrite=True)  # fmt: skip
    with warnings.catch_warnings(), monitor:
        # Spikes and high clip rates are what this experiment provokes: they go to the JSONL as
        # warning records, not to the console of a parallel run.
        warnings.simplefilter("ignore", GradMonitorWarning)
        for step in range(config.steps):
            batch = task.generate(config.batch_size, config.length, seed=train_rng)
            optimizer.zero_grad(set_to_none=False)
            dtype = DTYPES[config.dtype]
            targets = torch.from_numpy(batch.targets)
            targets = targets.to(dtype) if targets.is_floating_point() else targets
            loss = task_loss(task, model(torch.from_numpy(batch.inputs).to(dtype)), targets)
            loss.backward()
            result = clip_step.step(optimizer)  # clip (or only measure), then SGD, or skip if non-finite
            norm, loss_f = float(result.total_norm), float(loss.detach())
            clipped_steps += bool(result.clipped)
            monitor.observe(result, loss=loss_f, lr=config.lr)
            norms.append(norm)
            losses.append(loss_f)
            if not (math.isfinite(norm) and math.isfinite(loss_f)):
                diverged = True  # the step skipped this update; a NaN loss never recovers: stop here
                break
            if config.eval_every and (step + 1) % config.eval_every == 0:
                error = evaluate(model, task, length=config.length, size=config.eval_size, rng=eval_rng)
                evals.append((step + 1, error))
                if error < config.target_error:
                    solved = True
                    break
    finite = [n for n in norms if math.isfinite(n)]
    return RunResult(
        config=asdict(config), solved=solved, steps_to_success=evals[-1][0] if solved else None,
        final_error=evals[-1][1] if evals else math.nan, diverged=diverged,
        max_grad_norm=max(finite, default=math.nan), clipped_steps=clipped_steps,
        grad_norms=norms, losses=losses, evals=evals,
    )  # fmt: skip


def average_norm_threshold(config: RunConfig, *, warmup: int = 200, factor: float = 1.0) -> float:
    """Pascanu et al.'s rule (§3.2): c = factor × the mean gradient norm of ``warmup`` SGD updates.

    The updates are those of an unclipped run with ``config``'s seed and data (its first ``warmup``
    steps), so the threshold is measured on the very trajectory it will later guard. Non-finite
    norms are left out of the mean.
    """
    _whole(warmup, "warmup", 1)
    _positive(factor, "factor")
    probe = RunConfig(**{**asdict(config), "steps": warmup, "threshold": None, "eval_every": 0})
    finite = [n for n in train_run(probe).grad_norms if math.isfinite(n)]
    if not finite:
        raise ValueError(f"every gradient norm of the {warmup}-step warm-up was non-finite; lower lr")
    return factor * statistics.fmean(finite)


class SpikeOutcomes(NamedTuple):
    spikes: int  # steps whose norm exceeded factor × the median of the previous window
    jumps: int  # spikes after which the loss rose by more than ``rise`` times (or went non-finite)


def spike_outcomes(
    norms: list[float], losses: list[float], *, factor: float = 10.0, window: int = 20, rise: float = 2.0
) -> SpikeOutcomes:
    """Count gradient spikes and how many of them threw the loss up: divergence after a spike.

    Step t is a spike when ||g_t|| > factor · median(||g_{t-window}||, ..., ||g_{t-1}||) (a run of
    consecutive spike steps counts once). It is followed by a jump when the mean loss of the
    ``window`` steps after t exceeds ``rise`` times the mean of the ``window`` steps before, or a
    loss after t is not finite. Clipping cannot remove spikes of the norm (it acts after the norm
    is measured); it should remove the jumps.
    """
    spikes = jumps = 0
    previous = False
    for t in range(window, len(norms)):
        base = statistics.median(norms[t - window : t])
        spike = not math.isfinite(norms[t]) or norms[t] > factor * base
        if spike and not previous:
            spikes += 1
            before = statistics.fmean(losses[t - window : t])
            after = losses[t + 1 : t + 1 + window]
            blew_up = not math.isfinite(norms[t]) or not all(map(math.isfinite, after))
            if blew_up or (after and statistics.fmean(after) > rise * before):
                jumps += 1
        previous = spike
    return SpikeOutcomes(spikes, jumps)
