"""Clippers: norm clipping with policies against torch, value clipping, AGC against float64 NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradclip.clippers import AGC, NormClipper, ValueClipper, unitwise_norm
from gradclip.policies import Percentile, ZScore
from gradclip.step import ClipStep

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def clip(clipper, params):
    """One step of ``clipper`` through the step object, with the skip rule off: the rule itself is tested."""
    return ClipStep(clipper, skip_nonfinite=False)(params)


def make_params(scale: float = 1.0, seed: int = 0, device: str = "cpu") -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(8, 5), (8,), (4, 3, 3, 3), (1,), ()]
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(device)) for s in shapes]
    for p in params:
        p.grad = (scale * torch.randn(p.shape, generator=gen)).to(device)
    return params


def grads_of(params):
    return [p.grad.clone() for p in params]


# --- NormClipper ----------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_norm_clipper_fixed_matches_torch(norm_type):
    ours, ref = make_params(10.0), make_params(10.0)
    result = clip(NormClipper(1.0, norm_type=norm_type), ours)
    expected = torch.nn.utils.clip_grad_norm_(ref, 1.0, norm_type)
    torch.testing.assert_close(result.total_norm, expected)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    assert bool(result.clipped) and bool(result.finite)
    assert float(result.scale) == pytest.approx(1.0 / (float(expected) + 1e-6))
    assert len(result.tensor_norms) == len(ours)


def test_norm_clipper_below_threshold_leaves_grads_bitwise_unchanged():
    params = make_params(0.01)
    before = grads_of(params)
    result = clip(NormClipper(100.0), params)
    assert not bool(result.clipped) and float(result.scale) == 1.0
    assert all(torch.equal(a, p.grad) for a, p in zip(before, params, strict=True))


def test_norm_clipper_with_zscore_uses_the_policys_thresholds():
    clipper, shadow = NormClipper(ZScore(warmup=3)), ZScore(warmup=3)
    for step, scale in enumerate([1.0, 1.1, 0.9, 1.0, 1e4, 1.05]):
        params = make_params(scale, seed=step)
        pre = float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params])))
        result = clip(clipper, params)
        expected = shadow(pre)
        assert float(result.threshold) == pytest.approx(expected, rel=1e-5)
        post = float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params])))
        assert post <= expected * (1 + 1e-5)
        assert bool(result.clipped) == (pre > expected)
    assert bool(result.clipped) is False and float(clipper.policy.state.mean) < 20


def test_norm_clipper_percentile_state_round_trips():
    clipper = NormClipper(Percentile(50, window=3))
    for seed in range(4):
        clip(clipper, make_params(seed + 1.0, seed=seed))
    resumed = NormClipper(Percentile(50, window=3))
    resumed.load_state_dict(clipper.state_dict())
    a, b = make_params(3.0, seed=9), make_params(3.0, seed=9)
    assert float(clip(clipper, a).threshold) == float(clip(resumed, b).threshold)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_norm_clipper_keeps_nonfinite_grads_and_flags_them(bad):
    params = make_params(10.0)
    params[0].grad[0, 0] = bad
    before = grads_of(params)
    result = clip(NormClipper(1.0), params)
    assert not bool(result.finite) and float(result.scale) == 1.0
    for a, p in zip(before, params, strict=True):
        torch.testing.assert_close(a, p.grad, equal_nan=True)


def test_norm_clipper_rejects_bad_policy():
    with pytest.raises(TypeError, match="policy"):
        NormClipper("1.0")
    with pytest.raises(ValueError, match="policy"):
        NormClipper(-1.0)


# --- ValueClipper ---------------------------------------------------------------------------------


def test_value_clipper_clamps_and_reports_the_inf_norm():
    params = make_params(3.0)
    before = grads_of(params)
    result = clip(ValueClipper(0.5), params)
    for a, p in zip(before, params, strict=True):
        torch.testing.assert_close(p.grad, a.clamp(-0.5, 0.5))
    assert float(result.total_norm) == pytest.approx(max(float(a.abs().max()) for a in before))
    assert bool(result.clipped) and result.threshold == 0.5 and result.scale is None
    assert not bool(clip(ValueClipper(100.0), make_params(0.1)).clipped)


# --- AGC ------------------------------------------------------------------------------------------


def agc_reference(weights: list[np.ndarray], grads: list[np.ndarray], factor: float, eps: float):
    """The paper's rule in float64: G_i *= min(1, factor * max(|W_i|, eps) / |G_i|), unit = output row."""
    out = []
    for w, g in zip(weights, grads, strict=True):
        w, g = w.astype(np.float64), g.astype(np.float64)
        if w.ndim <= 1:
            w_norm, g_norm = np.sqrt(np.sum(w * w)), np.sqrt(np.sum(g * g))
        else:
            axes = tuple(range(1, w.ndim))
            w_norm = np.sqrt(np.sum(w * w, axis=axes, keepdims=True))
            g_norm = np.sqrt(np.sum(g * g, axis=axes, keepdims=True))
        limit = factor * np.maximum(w_norm, eps)
        with np.errstate(divide="ignore"):
            ratio = np.where(g_norm > limit, limit / g_norm, 1.0)
        out.append(g * ratio)
    return out


@pytest.mark.parametrize("factor", [0.01, 0.1, 1.0])
def test_agc_matches_float64_reference(factor):
    params = make_params(1.0)
    with torch.no_grad():
        params[1].zero_()  # zero bias: eps keeps it trainable
        params[0][2].zero_()  # one zero row
    params[2].grad[1].mul_(1e-4)  # a filter below the limit
    ref = agc_reference([p.detach().numpy() for p in params], [p.grad.numpy() for p in params], factor, 1e-3)
    result = clip(AGC(factor), params)
    for p, r in zip(params, ref, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), r, rtol=1e-5, atol=1e-12)
    assert bool(result.clipped) and result.threshold == factor


def test_agc_excluded_parameters_are_untouched_but_counted():
    params = make_params(5.0)
    before = grads_of(params)
    total = float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in before])))
    result = clip(AGC(0.01, exclude=[params[0], params[1]]), params)
    assert torch.equal(params[0].grad, before[0]) and torch.equal(params[1].grad, before[1])
    assert not torch.equal(params[2].grad, before[2])
    assert float(result.total_norm) == pytest.approx(total, rel=1e-6)


def test_agc_accepts_a_module_to_exclude():
    head = torch.nn.Linear(3, 2)
    head.weight.grad = torch.ones_like(head.weight)
    clip(AGC(0.01, exclude=head), head.parameters())
    assert torch.equal(head.weight.grad, torch.ones_like(head.weight))


def test_agc_nonfinite_leaves_grads_and_flags():
    params = make_params(5.0)
    params[0].grad[0, 0] = math.inf
    before = grads_of(params)
    result = clip(AGC(0.01), params)
    assert not bool(result.finite)
    for a, p in zip(before, params, strict=True):
        torch.testing.assert_close(a, p.grad, equal_nan=True)


def test_unitwise_norm_reduces_over_input_dims():
    w = torch.randn(4, 3, 2, 2)
    assert unitwise_norm(w).shape == (4, 1, 1, 1)
    torch.testing.assert_close(unitwise_norm(w).flatten(), w.flatten(1).norm(dim=1))
    assert unitwise_norm(torch.randn(5)).ndim == 0


def test_agc_rejects_bad_arguments():
    with pytest.raises(ValueError, match="clip_factor"):
        AGC(-0.1)
    with pytest.raises(TypeError, match="exclude"):
        AGC(exclude=[1.0])


# --- CUDA: no host sync with Fixed and ZScore -----------------------------------------------------


@cuda
@pytest.mark.parametrize(
    "make", [lambda: NormClipper(1.0), lambda: NormClipper(ZScore(warmup=2)), lambda: AGC(0.01)]
)
def test_clippers_are_sync_free_on_cuda(make):
    clipper = make()
    params = make_params(10.0, device="cuda")
    clip(clipper, params)  # first call: allocations, lazy init
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            result = clip(clipper, params)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert bool(result.finite)


@cuda
def test_zscore_state_lives_on_the_device():
    clipper = NormClipper(ZScore(warmup=1))
    clip(clipper, make_params(device="cuda"))
    assert all(t.device.type == "cuda" for t in clipper.policy.state)
