"""Many independent tanh RNNs trained as one batched computation: a cell of 20+ seeds for about one run.

Every member of a population is one run of `gradclip.sandbox.recurrent.train.train_run`: its
own seed (initial weights and data stream), learning rate and clipping threshold (None: plain SGD).
The members' weights are stacked along a leading axis ``M``; a step draws one batch per distinct
seed (members of a seed share it, as the single runs do), runs the recurrence for all members with
batched matrix products (``baddbmm``), backpropagates the sum of the members' losses (the members
share no parameter, so each one receives exactly its own gradient), and applies
θ_m ← θ_m - lr_m · min(1, c_m / (||g_m|| + eps)) · g_m with ``||g_m||`` the global 2-norm of member
m's gradient alone (Pascanu et al. 2013, arXiv:1211.5063, §3.2, Algorithm 1). Batches whose length
differs between seeds (addition, multiplication: L' is drawn per batch) are left-padded, and the
state stays at h_0 = 0 until a sequence starts, so padding changes nothing. Members that solve the
task or diverge leave the batch. This is a separate vectorised computation from the step object
that the single runs use; the tests check that both give the same trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import numpy as np

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)
from torch import Tensor
from torch.nn import functional as F

from gradclip.sandbox.recurrent.model import PARAM_NAMES, init_weights
from gradclip.sandbox.recurrent.tasks import Batch, Task, get_task
from gradclip.sandbox.recurrent.train import RunConfig, RunResult

__all__ = ["Member", "train_population", "warmup_norms"]

EPS = 1e-6  # the eps of NormClipper and clip_grad_norm_: the same scale as the single runs


@dataclass(frozen=True)
class Member:
    """One run of the population: seed, SGD learning rate and clipping threshold (None: no clipping)."""

    seed: int
    lr: float
    threshold: float | None = None


class _Stack(NamedTuple):
    """The active members' weights, stacked: W_uh (M, D, H), W_hh (M, H, H), b_h (M, 1, H), ..."""

    weights: list[Tensor]  # in PARAM_NAMES order, leaf tensors with requires_grad
    index: list[int]  # type: ignore[assignment]  # the row of each member (shadows tuple.index)


def _stack(inits: list[dict[str, np.ndarray]], index: list[int], dtype: torch.dtype) -> _Stack:
    weights = []
    for name in PARAM_NAMES:
        rows = [inits[i][name] for i in index]
        t = torch.tensor(np.stack(rows), dtype=dtype)
        weights.append((t[:, None, :] if t.ndim == 2 else t).requires_grad_(True))  # biases (M, 1, n)
    return _Stack(weights, index)


def _pad(batches: list[Batch], dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor | None]:
    """Inputs (S, N, T, D) left-padded to the longest, targets (S, ...), start offsets (S,) or None."""
    lengths = [b.inputs.shape[1] for b in batches]
    longest = max(lengths)
    n, _, d = batches[0].inputs.shape
    u = np.zeros((len(batches), n, longest, d), dtype=np.float32)
    for s, b in enumerate(batches):
        u[s, :, longest - lengths[s] :] = b.inputs
    targets = torch.from_numpy(np.stack([b.targets for b in batches]))
    starts = None if min(lengths) == longest else torch.tensor([longest - k for k in lengths])
    return torch.from_numpy(u).to(dtype), targets, starts


def _forward(w: list[Tensor], u: Tensor, starts: Tensor | None, every_step: bool) -> Tensor:
    """Outputs (M, N, O), or (M, N, T, O), of every member on its own inputs u (M, N, T, D)."""
    w_uh, w_hh, b_h, w_hy, b_y = w
    m, n, steps, _ = u.shape
    h = u.new_zeros(m, n, w_hh.shape[1])  # h_0 = 0
    states = []
    # The input part a_t = u_t W_uh + b_h is formed step by step from slices of u (which needs no
    # gradient): slicing a precomputed a instead makes autograd concatenate T full-size gradients.
    for t, u_t in enumerate(u.unbind(dim=2)):
        new = torch.tanh(torch.baddbmm(torch.baddbmm(b_h, u_t, w_uh), h, w_hh))  # member by member
        h = new if starts is None else torch.where((t >= starts)[:, None, None], new, h)
        states.append(h)
    if every_step:
        hs = torch.stack(states, dim=2)  # (M, N, T, H)
        return (hs.reshape(m, n * steps, -1) @ w_hy + b_y).reshape(m, n, steps, -1)
    return torch.baddbmm(b_y, h, w_hy)


def _losses(task: Task, out: Tensor, targets: Tensor) -> Tensor:
    """Each member's mean loss (M,), the reduction of `task_loss` row by row."""
    if task.output == "last-value":
        return F.mse_loss(out, targets.to(out.dtype), reduction="none").flatten(1).mean(dim=1)
    per = F.cross_entropy(out.reshape(-1, out.shape[-1]), targets.reshape(-1), reduction="none")
    return per.reshape(out.shape[0], -1).mean(dim=1)


def _member_norms(grads: Sequence[Tensor]) -> Tensor:
    """Global 2-norm of each member's gradient (M,), accumulated in float32 or better."""
    acc = torch.float64 if grads[0].dtype == torch.float64 else torch.float32
    return torch.sqrt(torch.stack([g.to(acc).pow(2).flatten(1).sum(dim=1) for g in grads]).sum(dim=0))


class _Log:
    """Per-member histories, in the fields of `RunResult`."""

    def __init__(self, size: int) -> None:
        self.norms: list[list[float]] = [[] for _ in range(size)]
        self.losses: list[list[float]] = [[] for _ in range(size)]
        self.evals: list[list[tuple[int, float]]] = [[] for _ in range(size)]
        self.clipped = [0] * size
        self.solved = [False] * size
        self.diverged = [False] * size


def _draw(task: Task, seeds: list[int], rngs: dict[int, np.random.Generator], n: int, length: int,
          dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor | None]:  # fmt: skip
    return _pad([task.generate(n, length, seed=rngs[s]) for s in seeds], dtype)


@torch.no_grad()
def _evaluate(task: Task, stack: _Stack, members: Sequence[Member], rngs: dict[int, np.random.Generator],
              config: RunConfig) -> list[float]:  # fmt: skip
    """Error rate of each active member on fresh sequences from its seed's evaluation stream."""
    seeds = sorted({members[i].seed for i in stack.index})
    row = torch.tensor([seeds.index(members[i].seed) for i in stack.index])
    wrong = np.zeros(len(stack.index))
    for start in range(0, config.eval_size, 250):  # the chunks of train.evaluate, drawn the same way
        size = min(250, config.eval_size - start)
        u, targets, starts = _draw(task, seeds, rngs, size, config.length, stack.weights[0].dtype)
        out = _forward(stack.weights, u[row], None if starts is None else starts[row],
                       task.output == "every-class").numpy()  # fmt: skip
        for k, s in enumerate(row.tolist()):
            wrong[k] += task.errors(out[k], targets[s].numpy()).sum()
    return list(wrong / config.eval_size)


def train_population(
    config: RunConfig,
    members: Sequence[Member],
    *,
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
) -> list[RunResult]:
    """Train every member of ``members`` with ``config``'s task and budget, all at once.

    Member i gives the `RunResult` that
    ``train_run(replace(config, seed=m.seed, lr=m.lr, threshold=m.threshold))`` gives (up to float
    rounding): same initial weights, batches, evaluations, stopping rule and per-step records.

    Args:
        config: task, length, steps, hidden units, batch size, init, evaluation and target (its
            seed, lr and threshold are ignored: each member has its own).
        members: the runs; seeds may repeat (members of one seed share their batches).
        dtype: float32 (the single runs' default) or float64.
        progress: called as ``progress(step, active_members)`` after every evaluation.

    Returns:
        One RunResult per member, in order.
    """
    if not members:
        raise ValueError("members must hold at least one Member, got none")
    for m in members:
        replace(config, seed=m.seed, lr=m.lr, threshold=m.threshold)  # validates seed, lr, threshold
    task = get_task(config.task)
    every_step = task.output == "every-class"
    shapes = (task.n_in, config.hidden, task.n_out)
    inits = [init_weights(*shapes, init=config.init, seed=m.seed) for m in members]
    seeds_all = sorted({m.seed for m in members})
    train_rngs = {s: np.random.default_rng([s, 1]) for s in seeds_all}
    eval_rngs = {s: np.random.default_rng([s, 2]) for s in seeds_all}
    log = _Log(len(members))
    stack = _stack(inits, list(range(len(members))), dtype)
    for step in range(config.steps):
        stack = _train_step(task, stack, members, train_rngs, config, log, every_step)
        if not stack.index:
            break
        if config.eval_every and (step + 1) % config.eval_every == 0:
            for i, error in zip(stack.index, _evaluate(task, stack, members, eval_rngs, config), strict=True):
                log.evals[i].append((step + 1, error))
                log.solved[i] = error < config.target_error
            stack = _keep(stack, [not log.solved[i] for i in stack.index])
            if progress is not None:
                progress(step + 1, len(stack.index))
            if not stack.index:
                break
    return [_result(config, m, log, i) for i, m in enumerate(members)]


def _train_step(task: Task, stack: _Stack, members: Sequence[Member], rngs: dict[int, np.random.Generator],
                config: RunConfig, log: _Log, every_step: bool) -> _Stack:  # fmt: skip
    """One SGD step of every active member; returns the stack without members that diverged."""
    seeds = sorted({members[i].seed for i in stack.index})
    row = torch.tensor([seeds.index(members[i].seed) for i in stack.index])
    u, targets, starts = _draw(task, seeds, rngs, config.batch_size, config.length, stack.weights[0].dtype)
    out = _forward(stack.weights, u[row], None if starts is None else starts[row], every_step)
    losses = _losses(task, out, targets[row])
    grads = torch.autograd.grad(losses.sum(), stack.weights)  # members share nothing: g_m is m's own
    norms = _member_norms(grads)
    c = torch.tensor([math.inf if members[i].threshold is None else members[i].threshold
                      for i in stack.index], dtype=norms.dtype)  # fmt: skip
    lr = torch.tensor([members[i].lr for i in stack.index], dtype=stack.weights[0].dtype)
    scale = torch.clamp(c / (norms + EPS), max=1.0).to(lr.dtype)
    finite = torch.isfinite(norms) & torch.isfinite(losses.detach())
    norm_list, loss_list = norms.tolist(), losses.detach().tolist()
    for k, i in enumerate(stack.index):
        log.norms[i].append(norm_list[k])
        log.losses[i].append(loss_list[k])
        if not finite[k]:
            log.diverged[i] = True  # NaN weights never recover: the member stops here, unstepped
        elif norm_list[k] > c[k]:
            log.clipped[i] += 1
    factor = torch.where(finite, lr * scale, torch.zeros_like(lr))
    with torch.no_grad():
        for w, g in zip(stack.weights, grads, strict=True):
            w.sub_(torch.nan_to_num(g) * factor.view(-1, *([1] * (g.ndim - 1))))
    return _keep(stack, finite.tolist())


def _keep(stack: _Stack, keep: list[bool]) -> _Stack:
    """The stack without the rows whose ``keep`` is False (copies only when a row leaves)."""
    if all(keep):
        return stack
    rows = [k for k, flag in enumerate(keep) if flag]
    picked = torch.tensor(rows, dtype=torch.long)
    weights = [w.detach()[picked].requires_grad_(True) for w in stack.weights]
    return _Stack(weights, [stack.index[k] for k in rows])


def _result(config: RunConfig, member: Member, log: _Log, i: int) -> RunResult:
    run = replace(config, seed=member.seed, lr=member.lr, threshold=member.threshold)
    finite = [n for n in log.norms[i] if math.isfinite(n)]
    evals = log.evals[i]
    return RunResult(
        config=asdict(run), solved=log.solved[i], steps_to_success=evals[-1][0] if log.solved[i] else None,
        final_error=evals[-1][1] if evals else math.nan, diverged=log.diverged[i],
        max_grad_norm=max(finite, default=math.nan), clipped_steps=log.clipped[i],
        grad_norms=log.norms[i], losses=log.losses[i], evals=evals,
    )  # fmt: skip


def warmup_norms(config: RunConfig, members: Sequence[Member], *, warmup: int,
                 dtype: torch.dtype = torch.float32) -> list[list[float]]:  # fmt: skip
    """The first ``warmup`` unclipped gradient norms of each member (for the average-norm rule, §3.2).

    The population counterpart of `average_norm_threshold`'s probe: the members run
    without clipping and without evaluations.
    """
    probe = replace(config, steps=warmup, eval_every=0)
    free = [replace(m, threshold=None) for m in members]
    return [r.grad_norms for r in train_population(probe, free, dtype=dtype)]
