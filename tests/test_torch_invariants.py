"""The invariants of torch's own clipping tests, run on gradclip (and on its NumPy twin).

Ported from what torch's ``test_clip_grad_norm``, ``test_clip_grad_value`` and
``test_clip_grad_norm_error_if_nonfinite`` check (the FSDP2 clip tests run under torchrun in
tests/test_distributed.py), plus the places where gradclip is deliberately stricter than torch:
the safe input rule, duplicates, AGC dtypes, and the ZScore / Percentile references (the ZClip
paper, the ``zclip`` package, the AutoClip paper's Algorithm 1).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import gradclip
import gradclip.numpy as gnp
from gradclip.clippers import AGC
from gradclip.policies import Percentile, ZScore
from gradclip.step import ClipStep

NORM_TYPES = [0.5, 1.5, 2.0, 4.0, "inf"]


def linear_with_grads(scale: float = 1.0) -> nn.Linear:
    """torch's test layout: a 10 x 10 layer with very different gradient sizes per tensor."""
    torch.manual_seed(0)
    layer = nn.Linear(10, 10)
    layer.weight.grad = torch.arange(1.0, 101).view(10, 10) * scale
    layer.bias.grad = torch.ones(10) / 1000 * scale
    return layer


def norm_of(params, norm_type) -> float:
    p = math.inf if norm_type == "inf" else float(norm_type)
    return float(torch.linalg.vector_norm(torch.cat([q.grad.reshape(-1).double() for q in params]), p))


# --- test_clip_grad_norm ------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_clip_grad_norm_invariants(norm_type, foreach):
    ours, ref = linear_with_grads(), linear_with_grads()
    before = [p.grad.clone() for p in ours.parameters()]
    norm_before = norm_of(ours.parameters(), norm_type)
    total = gradclip.clip_grad_norm_(ours.parameters(), 2.0, norm_type, foreach=foreach)
    ref_total = torch.nn.utils.clip_grad_norm_(ref.parameters(), 2.0, norm_type, foreach=foreach)
    assert float(total) == pytest.approx(norm_before, rel=1e-5) == pytest.approx(float(ref_total), rel=1e-5)
    assert norm_of(ours.parameters(), norm_type) == pytest.approx(2.0, rel=1e-4)
    ratios = [(p.grad / b).reshape(-1) for p, b in zip(ours.parameters(), before, strict=True)]
    ratio = torch.cat(ratios)
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5)  # one factor: direction kept
    for p, r in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p.grad, r.grad, rtol=1e-5)


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_small_gradients_are_left_bitwise_unchanged(norm_type):
    layer = linear_with_grads(scale=1e-6)
    before = [p.grad.clone() for p in layer.parameters()]
    gradclip.clip_grad_norm_(layer.parameters(), 2.0, norm_type)
    assert all(torch.equal(p.grad, b) for p, b in zip(layer.parameters(), before, strict=True))


def test_a_single_tensor_is_the_same_as_a_list_of_it():
    g = torch.arange(1.0, 101).view(10, 10)
    p1, p2 = nn.Parameter(torch.randn(10, 10)), nn.Parameter(torch.randn(10, 10))
    p1.grad, p2.grad = g.clone(), g.clone()
    gradclip.clip_grad_norm_(p1, 2.0)
    gradclip.clip_grad_norm_([p2], 2.0)
    assert torch.equal(p1.grad, p2.grad)


# --- the exhausted generator --------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda ps: gradclip.clip_grad_norm_(ps, 1.0),
        lambda ps: gradclip.get_total_norm(ps),
        lambda ps: gradclip.clip_grad_value_(ps, 1.0),
    ],
)
def test_an_exhausted_generator_warns_like_torch(call):
    layer = linear_with_grads()
    params = layer.parameters()
    list(params)  # the mistake: the generator is consumed before clipping
    with pytest.warns(UserWarning, match="empty generator"):
        call(params)
    with pytest.warns(UserWarning, match="empty generator"):  # torch's own, for the same input
        torch.nn.utils.clip_grad_norm_((p for p in []), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call([])  # an empty list is deliberate: no warning, as in torch


def test_numpy_exhausted_generator_warns():
    grads = (g for g in [np.ones(3)])
    list(grads)
    with pytest.warns(UserWarning, match="empty generator"):
        gnp.clip_grad_norm_(grads, 1.0)
    with pytest.warns(UserWarning, match="empty generator"):
        gnp.clip_grad_value_((g for g in []), 1.0)


# --- test_clip_grad_value -----------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_clip_grad_value_invariants(foreach):
    layer = nn.Linear(10, 10)
    layer.weight.grad = torch.arange(-50.0, 50).view(10, 10) / 5
    layer.bias.grad = torch.ones(10) * 100
    frozen = nn.Parameter(torch.ones(3))  # no .grad: skipped, as in torch
    ref = [p.grad.clone() for p in layer.parameters()]
    gradclip.clip_grad_value_([*layer.parameters(), frozen], 2.5, foreach=foreach)
    for p, r in zip(layer.parameters(), ref, strict=True):
        assert float(p.grad.max()) <= 2.5 and float(p.grad.min()) >= -2.5
        assert torch.equal(p.grad, r.clamp(-2.5, 2.5))
    assert frozen.grad is None
    p1, p2 = nn.Parameter(torch.randn(10, 10)), nn.Parameter(torch.randn(10, 10))
    p1.grad, p2.grad = torch.arange(-50.0, 50).view(10, 10) / 5, torch.arange(-50.0, 50).view(10, 10) / 5
    gradclip.clip_grad_value_(p1, 2.5)
    gradclip.clip_grad_value_([p2], 2.5)
    assert torch.equal(p1.grad, p2.grad)


# --- test_clip_grad_norm_error_if_nonfinite -----------------------------------------------------


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_nonfinite_norm_raises_before_touching_the_gradients(bad, norm_type):
    layer = linear_with_grads()
    layer.weight.grad[3, 4] = bad
    before = [p.grad.clone() for p in layer.parameters()]
    with pytest.raises(RuntimeError, match="non-finite"):
        gradclip.clip_grad_norm_(layer.parameters(), 2.0, norm_type, error_if_nonfinite=True)
    unchanged = (
        torch.allclose(p.grad, b, rtol=0, atol=0, equal_nan=True)
        for p, b in zip(layer.parameters(), before, strict=True)
    )
    assert all(unchanged)
    total = gradclip.clip_grad_norm_(layer.parameters(), 2.0, norm_type, error_if_nonfinite=False)
    ref = torch.nn.utils.get_total_norm(before, math.inf if norm_type == "inf" else norm_type)
    assert not math.isfinite(float(total))
    assert math.isnan(float(total)) == math.isnan(float(ref))


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_huge_gradients_raise_exactly_where_torch_overflows(norm_type):
    layer = linear_with_grads(scale=1e18)  # |g|^p overflows float32 for some p only
    grads = [p.grad.clone() for p in layer.parameters()]
    torch_finite = math.isfinite(float(torch.nn.utils.get_total_norm(grads, norm_type)))
    try:
        gradclip.clip_grad_norm_(layer.parameters(), 2.0, norm_type, error_if_nonfinite=True)
        raised = False
    except RuntimeError:
        raised = True
    assert raised == (not torch_finite)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_numpy_nonfinite_norm_raises_before_touching_the_arrays(bad):
    grads = [np.arange(1.0, 101).reshape(10, 10), np.ones(10)]
    grads[0][3, 4] = bad
    before = [g.copy() for g in grads]
    with pytest.raises(RuntimeError, match="non-finite"):
        gnp.clip_grad_norm_(grads, 2.0, error_if_nonfinite=True)
    assert all(np.array_equal(g, b, equal_nan=True) for g, b in zip(grads, before, strict=True))


# --- the safe input rule ------------------------------------------------------------------------


def test_buffers_mixed_with_parameters_raise_and_are_not_rescaled():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    model(torch.randn(8, 4) * 3).sum().backward()
    model[1].running_var.fill_(9.0)
    with pytest.raises(TypeError, match=r"position 4 .*running_var|position 4"):
        gradclip.clip_grad_norm_(list(model.parameters()) + list(model.buffers()), 1.0)
    assert torch.equal(model[1].running_var, torch.full((4,), 9.0))


def test_a_detached_weight_beside_parameters_raises():
    layer = linear_with_grads()
    weight = layer.weight.detach().clone()
    with pytest.raises(TypeError, match="position 2"):
        gradclip.clip_grad_norm_([*layer.parameters(), weight], 1.0)
    with pytest.raises(TypeError, match="position 0"):  # plain first, then parameters: still a mix
        gradclip.clip_grad_norm_([weight, *layer.parameters()], 1.0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_and_boolean_tensors_raise(dtype):
    with pytest.raises(TypeError, match=str(dtype)):
        gradclip.clip_grad_norm_([torch.ones(3, dtype=dtype)], 1.0)
    with pytest.raises(TypeError, match=r"int|bool"):
        gnp.clip_grad_norm_([np.ones(3, dtype=np.int64 if dtype != torch.bool else bool)], 1.0)


def test_plain_gradient_tensors_alone_are_clipped():
    layer = linear_with_grads()
    grads = [p.grad for p in layer.parameters()]
    gradclip.clip_grad_norm_(grads, 2.0)
    assert norm_of(layer.parameters(), 2.0) == pytest.approx(2.0, rel=1e-5)


def test_the_same_parameter_twice_is_counted_and_scaled_once():
    layer = linear_with_grads()
    once = float(gradclip.get_total_norm(layer.parameters()))
    params = [layer.weight, layer.bias, layer.weight]  # a tied weight listed twice
    total = gradclip.clip_grad_norm_(params, 1.0)
    assert float(total) == pytest.approx(once, rel=1e-6)
    assert norm_of(layer.parameters(), 2.0) == pytest.approx(1.0, rel=1e-5)
    g = layer.weight.grad
    alone = float(torch.linalg.vector_norm(g))
    total = gradclip.clip_grad_norm_([g, g], 0.5)  # and the same gradient tensor twice
    assert float(total) == pytest.approx(alone, rel=1e-6)
    assert float(torch.linalg.vector_norm(g)) == pytest.approx(0.5, rel=1e-5)


def test_numpy_the_same_array_twice_is_counted_and_scaled_once():
    g = np.arange(1.0, 101)
    total = gnp.clip_grad_norm_([g, g], 1.0)
    assert total == pytest.approx(float(np.linalg.norm(np.arange(1.0, 101))))
    assert float(np.linalg.norm(g)) == pytest.approx(1.0, rel=1e-6)


# --- AGC on every float dtype -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_agc_on_every_float_dtype_against_a_float64_reference(dtype):
    torch.manual_seed(0)
    layer = nn.Linear(6, 4).to(dtype)
    layer.weight.grad = (torch.randn(4, 6) * 5).to(dtype)
    layer.bias.grad = (torch.randn(4) * 5).to(dtype)
    w, g = layer.weight.detach().double(), layer.weight.grad.double()
    limit = 0.05 * w.norm(dim=1, keepdim=True).clamp(min=1e-3)
    expected = g * (limit / g.norm(dim=1, keepdim=True)).clamp(max=1.0)
    result = ClipStep(AGC(0.05)).clip_(layer.parameters())
    assert layer.weight.grad.dtype == dtype and bool(result.clipped)
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2}.get(dtype, 1e-6)
    assert torch.allclose(layer.weight.grad.double(), expected, rtol=tol, atol=tol)


def test_agc_given_gradient_tensors_raises_clearly():
    layer = linear_with_grads()
    with pytest.raises(TypeError, match="AGC needs the parameters"):
        ClipStep(AGC(0.01)).clip_([p.grad for p in layer.parameters()])


# --- ZScore: scale invariant and consistent with its own z --------------------------------------


def lognormal_norms(n: int = 10_000) -> list[float]:
    return [float(x) for x in np.random.default_rng(0).lognormal(0.0, 0.5, n)]


def zscore_clips(norms: list[float]) -> tuple[int, int]:
    """(steps clipped, clipped steps whose own z was <= z_thresh)."""
    policy, clipped, inconsistent = ZScore(), 0, 0
    for g in norms:
        count, mean, var = policy.state
        threshold = policy(g)
        if g > threshold:
            clipped += 1
            z = (g - mean) / (math.sqrt(var) + 1e-6 * mean + 1e-30)
            inconsistent += count >= 25 and z <= 2.5
    return clipped, inconsistent


def paper_clips(norms: list[float], alpha=0.97, z_thresh=2.5, warmup=25) -> int:
    """The ZClip paper's rule in float64, without any eps: clip when z > z_thresh."""
    mean = var = 0.0
    clipped = 0
    for i, g in enumerate(norms):
        if i < warmup:
            mean, var = float(np.mean(norms[: i + 1])), float(np.var(norms[: i + 1]))
            continue
        sigma = math.sqrt(var)
        z = (g - mean) / sigma
        x = g
        if z > z_thresh:
            clipped += 1
            x = mean + z_thresh**2 * sigma / z
        mean = alpha * mean + (1 - alpha) * x
        var = alpha * var + (1 - alpha) * (x - mean) ** 2
    return clipped


def zclip_package_clips(norms: list[float]) -> int:
    """The ``zclip`` reference package driving a one-parameter model whose gradient norm is given."""
    from zclip import ZClip

    clip = ZClip(max_grad_norm=None)
    model = nn.Module()
    model.p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    clipped = 0
    for g in norms:
        model.p.grad = torch.tensor([g], dtype=torch.float64)
        clip.step(model)
        clipped += float(model.p.grad[0]) < g
    return clipped


@pytest.mark.slow
def test_zscore_clip_counts_agree_across_scales_and_with_the_references():
    norms = lognormal_norms()
    big, inconsistent_big = zscore_clips(norms)
    small, inconsistent_small = zscore_clips([g * 1e-6 for g in norms])
    assert big > 100  # the sequence has spikes to clip
    assert abs(big - small) <= 0.02 * big  # scale invariant
    assert inconsistent_big == inconsistent_small == 0  # no step with z <= z_thresh clipped
    assert abs(big - paper_clips(norms)) <= 0.02 * big
    assert abs(small - paper_clips([g * 1e-6 for g in norms])) <= 0.02 * big
    assert zclip_package_clips(norms) == big  # at scale 1 the package agrees step count for step count


def test_zscore_tensor_norms_follow_the_same_rule():
    norms = lognormal_norms(400)
    floats, tensors = ZScore(), ZScore()
    for g in norms:
        a = floats(g * 1e-6)
        b = tensors(torch.tensor(g * 1e-6, dtype=torch.float64))
        assert float(b) == pytest.approx(a, rel=1e-9)


# --- Percentile: the AutoClip paper's full history ----------------------------------------------


def test_percentile_window_none_is_the_papers_algorithm_1():
    rng = np.random.default_rng(1)
    norms = [float(x) for x in np.linspace(1, 20, 3000) * rng.lognormal(0, 0.3, 3000)]  # drifting up
    full, windowed = Percentile(10, window=None), Percentile(10)
    gaps = []
    for i, g in enumerate(norms):
        expected = float(np.percentile(norms[: i + 1], 10))  # Algorithm 1: the whole history
        assert full(g) == pytest.approx(expected, rel=1e-12)
        gaps.append(abs(windowed(g) - expected) / expected)
    assert max(gaps[:1000]) < 1e-12 < 0.3 < max(gaps[1000:])  # the bounded default forgets
    restored = Percentile(10, window=None)
    restored.load_state_dict(full.state_dict())
    assert restored(5.0) == full(5.0)
    assert len(full.state_dict()["state"]["history"]) == 3001
