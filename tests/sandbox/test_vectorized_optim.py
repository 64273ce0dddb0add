"""Optimizers against torch.optim step by step, Lookahead against a hand-written loop, schedules.

The gradient at every step depends on the current parameters (g = A θ + noise), so any difference
in an update feeds into the next gradients and the trajectories drift apart visibly.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from gradclip.sandbox.vectorized import SGD, Adam, CosineWarmup, Lookahead, StepLR

torch = pytest.importorskip("torch")

P, STEPS = 37, 8
A = np.random.default_rng(0).uniform(0.5, 2.0, size=P).astype(np.float32)
NOISE = np.random.default_rng(1).standard_normal((STEPS, P)).astype(np.float32)
THETA0 = np.random.default_rng(2).standard_normal(P).astype(np.float32)


def grad_at(theta: np.ndarray, t: int) -> np.ndarray:
    return (A * theta + NOISE[t]).astype(np.float32)


def run_ours(opt, steps: int = STEPS) -> np.ndarray:
    theta = THETA0.copy()
    for t in range(steps):
        opt.step(theta, grad_at(theta, t))
    return theta


def run_torch(make_opt, steps: int = STEPS, scheduler=None) -> np.ndarray:
    p = torch.nn.Parameter(torch.from_numpy(THETA0.copy()))
    opt = make_opt([p])
    sched = scheduler(opt) if scheduler else None
    for t in range(steps):
        p.grad = torch.from_numpy(grad_at(p.detach().numpy(), t))
        opt.step()
        if sched:
            sched.step()
    return p.detach().numpy()


SGD_CASES = {
    "plain": ({}, {}),
    "momentum": ({"momentum": 0.9}, {"momentum": 0.9}),
    "nesterov": ({"momentum": 0.8, "nesterov": True}, {"momentum": 0.8, "nesterov": True}),
    "weight-decay": ({"momentum": 0.5, "weight_decay": 0.1}, {"momentum": 0.5, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("case", sorted(SGD_CASES))
def test_sgd_matches_torch(case: str) -> None:
    ours_kw, torch_kw = SGD_CASES[case]
    ours = run_ours(SGD(0.05, **ours_kw))
    ref = run_torch(lambda ps: torch.optim.SGD(ps, lr=0.05, **torch_kw))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours, THETA0)  # it did move


ADAM_CASES = {
    "default": ({}, lambda ps: torch.optim.Adam(ps, lr=0.01)),
    "betas": (
        {"betas": (0.5, 0.9), "eps": 1e-6},
        lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.5, 0.9), eps=1e-6),
    ),
    "l2": ({"weight_decay": 0.1}, lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1)),
    "adamw": (
        {"weight_decay": 0.1, "decoupled": True},
        lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("case", sorted(ADAM_CASES))
def test_adam_matches_torch(case: str) -> None:
    kwargs, make = ADAM_CASES[case]
    np.testing.assert_allclose(run_ours(Adam(0.01, **kwargs)), run_torch(make), rtol=1e-5, atol=1e-6)


def test_adam_with_step_schedule_matches_torch_steplr() -> None:
    ours = run_ours(Adam(StepLR(0.05, step_size=3, gamma=0.5)))
    ref = run_torch(
        lambda ps: torch.optim.Adam(ps, lr=0.05),
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_step_schedule_matches_torch_learning_rates() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.1)
    expected = []
    for _ in range(12):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose([StepLR(0.3, 4, 0.1)(t) for t in range(12)], expected, rtol=1e-12)


def test_cosine_warmup_shape() -> None:
    s = CosineWarmup(1.0, total=20, warmup=4, min_lr=0.1)
    assert [s(t) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert s(4) == 1.0  # the peak, then decay
    assert s(12) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 8 / 16)))
    assert s(20) == pytest.approx(0.1) and s(100) == pytest.approx(0.1)
    lrs = [s(t) for t in range(4, 21)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    with pytest.raises(ValueError, match="warmup < total"):
        CosineWarmup(1.0, total=5, warmup=5)


def test_optimizer_uses_the_schedule_at_each_step() -> None:
    opt = SGD(CosineWarmup(0.1, total=10, warmup=2))
    theta, seen = np.zeros(1, np.float32), []
    for _ in range(4):
        before = theta.copy()
        opt.step(theta, np.ones(1, np.float32))
        seen.append(float(before[0] - theta[0]))
    np.testing.assert_allclose(seen, [0.05, 0.1, 0.1, 0.1 * 0.5 * (1 + math.cos(math.pi / 8))], rtol=1e-5)


def lookahead_reference(theta0: np.ndarray, k: int, alpha: float, lr: float, steps: int) -> np.ndarray:
    """Algorithm 1 of Zhang et al. 2019 with plain SGD inside, written as plainly as possible."""
    slow = [float(v) for v in theta0]
    fast = list(slow)
    for t in range(steps):
        g = grad_at(np.array(fast, np.float32), t)
        fast = [f - lr * float(gi) for f, gi in zip(fast, g, strict=True)]
        if (t + 1) % k == 0:
            slow = [s + alpha * (f - s) for s, f in zip(slow, fast, strict=True)]
            fast = list(slow)
    return np.array(fast)


@pytest.mark.parametrize(("k", "alpha"), [(1, 0.5), (3, 0.5), (2, 0.8), (5, 1.0)])
def test_lookahead_matches_hand_computed_reference(k: int, alpha: float) -> None:
    ours = run_ours(Lookahead(SGD(0.1), k=k, alpha=alpha))
    np.testing.assert_allclose(ours, lookahead_reference(THETA0, k, alpha, 0.1, STEPS), rtol=1e-5, atol=1e-6)


def test_lookahead_on_constant_gradient_by_hand() -> None:
    theta, opt = np.zeros(1, np.float32), Lookahead(SGD(0.1), k=2, alpha=0.5)
    path = []
    for _ in range(4):
        opt.step(theta, np.ones(1, np.float32))
        path.append(float(theta[0]))
    # fast: -0.1, -0.2 -> slow 0 + 0.5(-0.2) = -0.1; fast: -0.2, -0.3 -> slow -0.1 + 0.5(-0.2) = -0.2
    np.testing.assert_allclose(path, [-0.1, -0.1, -0.2, -0.2], rtol=1e-6)


@pytest.mark.parametrize(
    "make", [lambda: SGD(0.05, momentum=0.9), lambda: Adam(0.01), lambda: Lookahead(Adam(0.01), k=3)]
)
def test_state_dict_resume_is_exact(make) -> None:
    straight, theta = make(), THETA0.copy()
    for t in range(STEPS):
        straight.step(theta, grad_at(theta, t))
    first, resumed, theta2 = make(), make(), THETA0.copy()
    for t in range(4):
        first.step(theta2, grad_at(theta2, t))
    resumed.load_state_dict(first.state_dict())
    for t in range(4, STEPS):
        resumed.step(theta2, grad_at(theta2, t))
    np.testing.assert_array_equal(theta, theta2)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SGD(-1.0), "lr must be"),
        (lambda: SGD(0.1, momentum=1.5), "momentum must be"),
        (lambda: SGD(0.1, nesterov=True), "nesterov=True needs momentum"),
        (lambda: Adam(betas=(0.9, 1.0)), r"betas\[1\]"),
        (lambda: Lookahead(SGD(0.1), k=0), "k must be"),
        (lambda: Lookahead(SGD(0.1), alpha=0.0), "alpha must be"),
        (lambda: Lookahead("sgd"), "inner must be an Optimizer"),
    ],
)
def test_bad_optimizer_arguments_raise(build, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        build()
