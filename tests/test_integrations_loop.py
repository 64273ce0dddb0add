"""The plain-loop integration and the ClipStep it attaches, against torch's own clip-then-step."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from gradclip.clippers import AGC, NormClipper, ValueClipper
from gradclip.integrations import clipping
from gradclip.policies import ZScore
from gradclip.step import METRICS, ClipStep


def model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    return torch.randn(8, 6, generator=gen), torch.randn(8, 3, generator=gen)


def loss_of(net: torch.nn.Module, step: int, factor: float = 1.0) -> torch.Tensor:
    x, y = batch(step)
    return factor * torch.nn.functional.mse_loss(net(x), y)


def test_clipping_matches_torch_clip_then_step():
    ours, ref = model(), model()
    opt, ref_opt = torch.optim.SGD(ours.parameters(), lr=0.1), torch.optim.SGD(ref.parameters(), lr=0.1)
    with clipping(opt, 0.5) as clip:
        for step in range(6):
            factor = 50.0 if step == 3 else 1.0  # one spike, far above max_norm
            opt.zero_grad()
            loss_of(ours, step, factor).backward()
            opt.step()
            ref_opt.zero_grad()
            loss_of(ref, step, factor).backward()
            ref_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
            ref_opt.step()
            assert float(clip.last.total_norm) == pytest.approx(float(ref_norm), rel=1e-6)
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert clip.steps == 6 and clip.skipped_steps == 0
    assert float(clip.metrics()["gradclip/post_clip_norm"]) <= 0.5 + 1e-6


def test_nonfinite_step_is_skipped_params_and_adam_state_untouched():
    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    with clipping(opt, 1.0) as clip:
        for step in range(4):
            opt.zero_grad()
            loss_of(net, step, math.nan if step == 2 else 1.0).backward()
            before = (copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict()))
            opt.step()
            if step == 2:
                for k, v in before[0].items():
                    torch.testing.assert_close(net.state_dict()[k], v, rtol=0, atol=0)
                assert opt.state_dict()["state"][0]["step"] == before[1]["state"][0]["step"]
    assert clip.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert all(float(s["step"]) == 3 for s in opt.state.values())  # 4 steps, one skipped


def test_hook_is_removed_on_exit():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    with clipping(opt, 1e-3):
        pass
    start = [p.detach().clone() for p in net.parameters()]
    loss_of(net, 0, 100.0).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    opt.step()
    for p, p0, g in zip(net.parameters(), start, grads, strict=True):
        torch.testing.assert_close(p, p0 - g)  # the full, unclipped gradient was applied


def test_grad_scaler_unscales_before_the_clip():
    # fp16 autocast with a real GradScaler on the CPU: the loss is scaled by 2**12 for backward.
    net, ref = model(), model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    with clipping(opt, 1e-2) as clip:
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = loss_of(net, 0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    loss_of(ref, 0).backward()
    true_norm = torch.nn.utils.get_total_norm([p.grad for p in ref.parameters()])
    assert scaler.get_scale() == 2.0**12  # the step was not skipped: the hook saw this scale's grads
    assert float(clip.last.total_norm) == pytest.approx(float(true_norm), rel=2e-2)


def test_closure_and_non_optimizer_are_refused():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with clipping(opt, 1.0), pytest.raises(ValueError, match=r"step\(closure\)"):
        opt.step(lambda: loss_of(net, 0))
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"), clipping(object(), 1.0):
        pass


def set_grads(params: list[torch.Tensor], norm: float) -> None:
    """Give ``params`` gradients of total 2-norm ``norm`` (all elements equal)."""
    n = sum(p.numel() for p in params)
    for p in params:
        p.grad = torch.full_like(p, norm / math.sqrt(n))


def test_clip_rate_counts_clipped_steps_over_a_window():
    params = [torch.nn.Parameter(torch.zeros(4))]
    step = ClipStep(1.0, rate_window=4)
    pattern = [True, False, False, True, True, True]  # clipped (norm 3) or not (norm 0.5)
    rates = []
    for clipped in pattern:
        set_grads(params, 3.0 if clipped else 0.5)
        step(params)
        rates.append(float(step.clip_rate))
    assert rates == pytest.approx([1.0, 0.5, 1 / 3, 0.5, 0.5, 0.75])  # the last 4: window eviction
    assert list(step.metrics()) == list(METRICS)


def test_post_clip_norm_is_the_norm_after_clipping_for_every_clipper():
    torch.manual_seed(1)
    for clipper, order in ((NormClipper(1.0), 2.0), (ValueClipper(0.1), math.inf), (AGC(0.01), 2.0)):
        params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(5))]
        for p in params:
            p.grad = torch.randn_like(p)
        step = ClipStep(clipper)
        step(params)
        after = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params]), order)
        m = step.float_metrics()
        assert m["gradclip/post_clip_norm"] == pytest.approx(float(after), rel=1e-5), clipper
        assert m["gradclip/post_clip_norm"] < m["gradclip/pre_clip_norm"], clipper


def test_skipped_step_is_not_counted_as_clipped():
    params = [torch.nn.Parameter(torch.zeros(3))]
    step = ClipStep(1.0)
    params[0].grad = torch.tensor([math.inf, 0.0, 0.0])
    step(params)
    assert params[0].grad is None and step.skipped_steps == 1 and float(step.clip_rate) == 0.0


def test_state_dict_round_trip_continues_the_same_thresholds():
    params = [torch.nn.Parameter(torch.zeros(4))]
    a = ClipStep(NormClipper(ZScore(warmup=3)))
    for norm in (1.0, 1.2, 0.9, 1.1):
        set_grads(params, norm)
        a(params)
    b = ClipStep(NormClipper(ZScore(warmup=3)))
    b.load_state_dict(a.state_dict())
    assert b.steps == 4
    for norm in (1.3, 9.0):
        set_grads(params, norm)
        ta = a(params).threshold
        set_grads(params, norm)
        assert b(params).threshold == ta


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"clipper": "norm"}, TypeError, "clipper must be"),
        ({"clipper": True}, TypeError, "clipper must be"),
        ({"rate_window": 0}, ValueError, "rate_window must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        ClipStep(**kwargs)
