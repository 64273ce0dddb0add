"""ClipOptimizer (clip, skip, fused path) and Lookahead, against clip-then-step and hand-computed maths."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from gradclip.clippers import AGC, NormClipper, ValueClipper
from gradclip.optim import ClipOptimizer, Lookahead
from gradclip.policies import Percentile, ZScore
from gradclip.step import ClipStep

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

FUSED = {
    "adam": lambda ps, fused: torch.optim.Adam(ps, lr=0.05, fused=fused),
    "adamw": lambda ps, fused: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.1, fused=fused),
    "sgd": lambda ps, fused: torch.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1, fused=fused),
}


def model(seed: int = 0, device: str = "cpu") -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(device)


def set_grads(net: torch.nn.Module, step: int, bad: float | None = None) -> None:
    gen = torch.Generator().manual_seed(100 + step)
    for p in net.parameters():
        p.grad = (5.0 * torch.randn(p.shape, generator=gen)).to(p.device)
    if bad is not None:
        next(net.parameters()).grad.view(-1)[0] = bad


def snapshot(net, opt):
    params = [p.detach().clone() for p in net.parameters()]
    return params, copy.deepcopy(opt.state_dict())


def assert_same_state(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# --- skipping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FUSED))
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_step_leaves_params_and_state_bitwise_unchanged(name, fused, bad):
    net = model()
    opt = ClipOptimizer(FUSED[name](net.parameters(), fused), NormClipper(1.0))
    assert opt.fused is fused
    for step in range(3):
        set_grads(net, step)
        opt.step()
    params, state = snapshot(net, opt.optimizer)
    set_grads(net, 3, bad)
    opt.step()
    assert opt.skipped_steps == 1 and not bool(opt.last_result.finite)
    for a, p in zip(params, net.parameters(), strict=True):
        assert torch.equal(a, p)
    assert_same_state(opt.optimizer.state_dict(), state)


@pytest.mark.parametrize("name", sorted(FUSED))
def test_skipped_first_step_then_training_matches_a_fresh_start(name):
    # fused SGD with momentum would store uninitialised buffers here; the wrapper avoids the fused call
    net, ref = model(), model()
    opt = ClipOptimizer(FUSED[name](net.parameters(), True), NormClipper(1.0))
    ref_opt = ClipOptimizer(FUSED[name](ref.parameters(), True), NormClipper(1.0))
    set_grads(net, 0, math.nan)
    opt.step()
    assert opt.skipped_steps == 1
    for step in range(1, 4):
        set_grads(net, step)
        set_grads(ref, step)
        opt.step()
        ref_opt.step()
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_skip_nonfinite_false_steps_anyway():
    net = model()
    opt = ClipOptimizer(torch.optim.SGD(net.parameters(), lr=0.1), 1.0, skip_nonfinite=False)
    set_grads(net, 0, math.nan)
    opt.step()
    assert opt.skipped_steps == 0 and torch.isnan(next(net.parameters())).any()


# --- the fused path against clip-then-step ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FUSED))
@pytest.mark.parametrize("policy", ["fixed", "zscore"])
def test_fused_path_matches_clip_then_step(name, policy):
    make_policy = {"fixed": lambda: 2.0, "zscore": lambda: ZScore(warmup=2)}[policy]
    net, ref = model(), model()
    opt = ClipOptimizer(FUSED[name](net.parameters(), True), NormClipper(make_policy()))
    ref_clipper = NormClipper(make_policy())
    ref_opt = FUSED[name](ref.parameters(), False)
    assert opt.fused
    for step in range(8):
        bad = math.nan if step == 5 else None
        scale = 1e3 if step == 4 else 1.0
        set_grads(net, step, bad)
        set_grads(ref, step, bad)
        for p, q in zip(net.parameters(), ref.parameters(), strict=True):
            p.grad.mul_(scale)
            q.grad.mul_(scale)
        opt.step()
        result = ClipStep(ref_clipper, skip_nonfinite=False)(ref.parameters())  # clip, step unless non-finite
        if bool(result.finite):
            ref_opt.step()
        torch.testing.assert_close(opt.last_result.total_norm, result.total_norm, equal_nan=True)
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert opt.skipped_steps == 1


def test_fused_true_requires_a_fusable_setup():
    net = model()
    with pytest.raises(ValueError, match="fused=True"):
        ClipOptimizer(torch.optim.Adam(net.parameters(), fused=True), AGC(), fused=True)
    with pytest.raises(ValueError, match="fused=True"):
        ClipOptimizer(torch.optim.Adam(net.parameters()), 1.0, fused=True)
    assert not ClipOptimizer(torch.optim.RMSprop(net.parameters()), 1.0).fused


def test_rejects_a_non_optimizer():
    with pytest.raises(TypeError, match="optimizer"):
        ClipOptimizer(object(), 1.0)


# --- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fused", [False, True])
def test_state_dict_mid_training_resumes_identically(fused):
    def build(net):
        return ClipOptimizer(
            torch.optim.Adam(net.parameters(), lr=0.05, fused=fused), NormClipper(ZScore(warmup=2))
        )

    net = model()
    opt = build(net)
    for step in range(4):
        set_grads(net, step, math.nan if step == 2 else None)
        opt.step()
    saved_net, saved_opt = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    for step in range(4, 8):
        set_grads(net, step)
        opt.step()
    resumed = model(seed=1)
    resumed.load_state_dict(saved_net)
    resumed_opt = build(resumed)
    resumed_opt.load_state_dict(saved_opt)
    assert resumed_opt.skipped_steps == 1
    for step in range(4, 8):
        set_grads(resumed, step)
        resumed_opt.step()
    for a, b in zip(net.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


# --- Lookahead ------------------------------------------------------------------------------------


def test_lookahead_matches_hand_computed_reference():
    # loss = 0.5 * w^2, so SGD(lr) gives w <- (1 - lr) w; k = 3, alpha = 0.5
    w = torch.nn.Parameter(torch.tensor([2.0, -4.0], dtype=torch.float64))
    opt = Lookahead(torch.optim.SGD([w], lr=0.1), k=3, alpha=0.5)
    fast, slow = [2.0, -4.0], [2.0, -4.0]
    for step in range(1, 8):
        opt.zero_grad()
        (0.5 * (w * w).sum()).backward()
        opt.step()
        fast = [0.9 * x for x in fast]
        if step % 3 == 0:
            slow = [s + 0.5 * (f - s) for s, f in zip(slow, fast, strict=True)]
            fast = list(slow)
        torch.testing.assert_close(w.detach(), torch.tensor(fast, dtype=torch.float64), rtol=1e-14, atol=0)
    # after 7 steps: sync at 3 and 6 gives (1 + 0.729) / 2 squared, then one more 0.9
    assert fast[0] == pytest.approx(2.0 * ((1 + 0.9**3) / 2) ** 2 * 0.9)


def test_lookahead_state_dict_mid_cycle_resumes_identically():
    def build(net):
        return Lookahead(torch.optim.Adam(net.parameters(), lr=0.05), k=3, alpha=0.5)

    net = model()
    opt = build(net)
    for step in range(4):
        set_grads(net, step)
        opt.step()
    saved_net, saved_opt = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    for step in range(4, 9):
        set_grads(net, step)
        opt.step()
    resumed = model(seed=1)
    resumed.load_state_dict(saved_net)
    resumed_opt = build(resumed)
    resumed_opt.load_state_dict(saved_opt)
    for step in range(4, 9):
        set_grads(resumed, step)
        resumed_opt.step()
    for a, b in zip(net.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="k="):
        Lookahead(torch.optim.Adam(net.parameters()), k=4).load_state_dict(saved_opt)


@pytest.mark.parametrize("order", ["lookahead_outside", "clip_outside"])
def test_lookahead_composes_with_clip_optimizer(order):
    net = model()
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    if order == "lookahead_outside":
        opt = Lookahead(ClipOptimizer(sgd, 1.0), k=2)
        la = opt
    else:
        la = Lookahead(sgd, k=2)
        opt = ClipOptimizer(la, 1.0)
    for step in range(5):
        set_grads(net, step, math.nan if step == 1 else None)
        opt.step()
    assert all(torch.isfinite(p).all() for p in net.parameters())
    # a skipped step is counted only when Lookahead is outside the clipper
    assert la.steps == (5 if order == "lookahead_outside" else 4)


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"k": 0}, "k"), ({"alpha": 0.0}, "alpha"), ({"alpha": 2}, "alpha")]
)
def test_lookahead_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Lookahead(torch.optim.SGD(model().parameters(), lr=0.1), **kwargs)


# --- training with one poisoned batch --------------------------------------------------------------

CLIPPERS = {
    "norm": lambda: NormClipper(1.0),
    "value": lambda: ValueClipper(0.1),
    "agc": lambda: AGC(0.05),
    "percentile": lambda: NormClipper(Percentile(50, window=50)),
    "zscore": lambda: NormClipper(ZScore()),
}


def train(clipper=None, spike_step: int | None = None, steps: int = 150) -> float:
    """SGD with momentum on a teacher-student regression; the loss of batch ``spike_step`` is x1e6."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 6, generator=gen)
    y = torch.tanh(x @ torch.randn(6, 3, generator=gen))
    net = model()
    sgd = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    opt = sgd if clipper is None else ClipOptimizer(sgd, clipper)
    for step in range(steps):
        idx = torch.randint(0, 512, (32,), generator=gen)
        loss = torch.nn.functional.mse_loss(net(x[idx]), y[idx])
        opt.zero_grad()
        (loss * (1e6 if step == spike_step else 1.0)).backward()
        opt.step()
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            return math.inf  # blown up: stop early (NaN arithmetic is slow on the CPU)
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(net(x), y))


def test_unclipped_training_is_destroyed_by_one_spiked_batch():
    clean, spiked = train(), train(spike_step=60)
    assert clean < 0.05
    assert not math.isfinite(spiked) or spiked > 100 * clean


@pytest.mark.parametrize("name", sorted(CLIPPERS))
def test_each_clipper_survives_a_spiked_batch(name):
    # tolerance: the spiked run ends within 25 % (+0.01 absolute) of the same clipper's clean run
    clean = train(CLIPPERS[name]())
    spiked = train(CLIPPERS[name](), spike_step=60)
    assert clean < 0.1
    assert spiked == pytest.approx(clean, rel=0.25, abs=0.01)


# --- CUDA -----------------------------------------------------------------------------------------


@cuda
@pytest.mark.parametrize("policy", [lambda: 1.0, lambda: ZScore(warmup=2)])
def test_fused_step_is_sync_free_on_cuda(policy):
    net = model(device="cuda")
    opt = ClipOptimizer(torch.optim.AdamW(net.parameters(), lr=0.01, fused=True), NormClipper(policy()))
    set_grads(net, 0)
    opt.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            for p in net.parameters():  # new grads without a host->device copy
                p.grad.mul_(1.5)
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert opt.fused and opt.skipped_steps == 0


@cuda
def test_fused_path_matches_clip_then_step_on_cuda():
    net, ref = model(device="cuda"), model(device="cuda")
    opt = ClipOptimizer(torch.optim.Adam(net.parameters(), lr=0.05, fused=True), NormClipper(1.0))
    ref_opt = torch.optim.Adam(ref.parameters(), lr=0.05)
    for step in range(5):
        set_grads(net, step)
        set_grads(ref, step)
        opt.step()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        ref_opt.step()
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
