"""One training run of the transformer experiment: a small GPT, AdamW, warm-up + cosine, one clipping arm.

An arm is how the step treats the gradient (`ARMS`): ``none`` (measured, never clipped),
``fixed`` (global norm at 1.0, the transformer default), ``zscore`` (ZClip, Kumar et al. 2025,
arXiv:2504.02507), ``percentile`` (AutoClip, Seetharaman et al. 2020, arXiv:2007.14469), ``agc``
(unit-wise, Brock et al. 2021, arXiv:2102.06171). The learning rate
rises linearly for ``warmup`` steps, then follows a half cosine to 10% of its peak (Loshchilov &
Hutter 2017). Every step goes to a [`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor], so
``gradclip report`` reads the run. `loss_spikes` counts loss spikes and the steps lost to them.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from gradclip.clippers import AGC, NormClipper
from gradclip.monitor import GradMonitor, GradMonitorWarning
from gradclip.policies import Percentile, ZScore
from gradclip.sandbox.transformer.config import RunConfig
from gradclip.sandbox.transformer.data import batches, corpus, split, validation_batches
from gradclip.sandbox.transformer.model import GPT, GPTConfig
from gradclip.skip import SpikeSkip
from gradclip.step import ClipStep

__all__ = ["RunResult", "SpikeCount", "loss_spikes", "lr_factor", "train_run"]


class RunResult(NamedTuple):
    config: dict
    losses: list[float]  # training loss per step
    grad_norms: list[float]  # pre-clip global norm per step
    clipped_steps: int
    skipped_steps: int
    val_loss: float  # mean loss on the fixed validation batches after the last step


def lr_factor(step: int, *, warmup: int, steps: int, floor: float = 0.1) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then a half cosine from 1 down to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _clipper(arm: str, model: GPT):
    """The clipping rule of ``arm`` (None: the step only measures)."""
    if arm == "fixed":
        return NormClipper(1.0)
    if arm == "zscore":
        return NormClipper(ZScore())
    if arm == "percentile":
        return NormClipper(Percentile(p=10.0, window=1000))
    if arm == "agc":
        return AGC(0.01, exclude=[model.tok.weight])  # the (tied) embedding/classifier left out, as the paper
    return None


@torch.no_grad()
def validation_loss(model: GPT, batches_: list) -> float:
    model.eval()
    try:
        return statistics.fmean(float(model.loss(x, y)) for x, y in batches_)
    finally:
        model.train()


def train_run(config: RunConfig, *, log_dir: str | Path | None = None) -> RunResult:
    """Train one GPT as ``config`` says; log every step through the monitor into ``log_dir``."""
    torch.manual_seed(config.seed)
    model = GPT(
        GPTConfig(block=config.block, n_layer=config.n_layer, n_head=config.n_head, d_model=config.d_model)
    )
    train, val = split(corpus())
    adamw = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95),
                              weight_decay=config.weight_decay)  # fmt: skip
    schedule = torch.optim.lr_scheduler.LambdaLR(
        adamw, lambda s: lr_factor(s, warmup=config.warmup, steps=config.steps)
    )
    # The arm's rule inside the one clipped step; "none" only measures, "skip" drops spiking updates.
    skip = SpikeSkip() if config.arm == "skip" else None
    clip_step = ClipStep(_clipper(config.arm, model), skip_spikes=skip)
    data = batches(train, batch_size=config.batch_size, block=config.block, seed=config.seed)
    names = [n for n, _ in model.named_parameters()]
    name = f"{config.arm}-s{config.seed}"
    monitor = GradMonitor(log_dir=log_dir, names=names, name=name, overwrite=True)
    losses: list[float] = []
    norms: list[float] = []
    clipped = 0
    with warnings.catch_warnings(), monitor:
        warnings.simplefilter("ignore", GradMonitorWarning)  # spikes are what this experiment provokes
        for _ in range(config.steps):
            x, y = next(data)
            adamw.zero_grad(set_to_none=True)
            loss = model.loss(x, y)
            loss.backward()
            result = clip_step.step(adamw)
            lr = adamw.param_groups[0]["lr"]
            schedule.step()
            losses.append(float(loss.detach()))
            norms.append(float(result.total_norm))
            clipped += bool(result.clipped)
            monitor.observe(result, loss=losses[-1], lr=lr)
    held_out = validation_batches(
        val, batch_size=config.batch_size, block=config.block, count=config.eval_batches
    )
    val_loss = validation_loss(model, held_out)
    skipped = clip_step.skipped_steps + clip_step.spike_skips
    return RunResult(asdict(config), losses, norms, clipped, int(skipped), val_loss)


class SpikeCount(NamedTuple):
    spikes: int  # loss spike episodes
    steps_lost: int  # steps from each spike until the loss is back at its pre-spike level


def loss_spikes(losses: list[float], *, window: int = 20, ratio: float = 1.1) -> SpikeCount:
    """Count loss spikes and the steps they cost.

    Step t starts a spike when loss_t > ``ratio`` · b_t with b_t the median of the ``window``
    losses before it (or loss_t is not finite). The episode lasts until the first later step
    whose loss is back at or under b_t; its length is the steps lost (to the end of the run when
    the loss never comes back). Spikes inside an episode belong to it.
    """
    spikes = lost = 0
    t = window
    while t < len(losses):
        base = statistics.median(losses[t - window : t])
        if not math.isfinite(losses[t]) or losses[t] > ratio * base:
            spikes += 1
            end = next((s for s in range(t + 1, len(losses)) if losses[s] <= base), len(losses))
            lost += end - t
            t = end + 1
        else:
            t += 1
    return SpikeCount(spikes, lost)
