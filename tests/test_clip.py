"""The torch functional API, specified against torch itself and a float64 NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings

import gradclip
from gradclip.clip import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm
from strategies import NORM_TYPES, grad_lists, norm_types, thresholds

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Relative tolerance of a norm of values stored in this dtype (rounding of the inputs only).
RTOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def ref_norm(arrays: list[np.ndarray], p: float) -> float:
    flat = np.concatenate([np.abs(np.asarray(a, dtype=np.float64)).ravel() for a in arrays] + [np.zeros(0)])
    if flat.size == 0:
        return 0.0
    if math.isinf(p):
        return float(flat.max())
    return float(np.sum(flat**p) ** (1 / p))


def make_params(shapes, dtype, *, seed=0, scale=1.0, none_every=0):
    gen = torch.Generator().manual_seed(seed)
    params = []
    for i, shape in enumerate(shapes):
        p = torch.nn.Parameter(torch.zeros(shape, dtype=dtype))
        if not (none_every and i % none_every == 0):
            p.grad = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
        params.append(p)
    return params


def clone_params(params):
    out = []
    for p in params:
        q = torch.nn.Parameter(p.detach().clone())
        q.grad = None if p.grad is None else p.grad.clone()
        out.append(q)
    return out


SHAPES = [(3, 4), (7,), (2, 3, 5), (1,), (64, 33)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("none_every", [0, 2])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_matches_torch_and_float64_reference(dtype, norm_type, none_every, max_norm):
    ours = make_params(SHAPES, dtype, seed=1, scale=3.0, none_every=none_every)
    theirs = clone_params(ours)
    grads64 = [p.grad.double().numpy() for p in ours if p.grad is not None]
    expected = ref_norm(grads64, norm_type)

    total = clip_grad_norm_(ours, max_norm, norm_type)
    torch_total = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)

    assert total.dtype == (torch.float64 if dtype == torch.float64 else torch.float32) and total.ndim == 0
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert float(total) == pytest.approx(float(torch_total), rel=max(RTOL[dtype], 1e-5))
    for a, b in zip(ours, theirs, strict=True):
        if a.grad is None:
            assert b.grad is None
            continue
        torch.testing.assert_close(a.grad, b.grad, rtol=RTOL[dtype] * 4, atol=1e-6)
    assert float(get_total_norm([p.grad for p in theirs if p.grad is not None], norm_type)) == pytest.approx(
        min(expected, max_norm) if max_norm < expected else expected, rel=max(RTOL[dtype] * 4, 1e-5)
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_norm_above_fp16_range_stays_finite(dtype):
    # 4 elements of 60000: the total 120000 overflows fp16 (max 65504) if reduced in fp16.
    grads = [torch.full((4,), 60000.0, dtype=dtype), torch.full((3,), -1000.0, dtype=dtype)]
    expected = ref_norm([g.double().numpy() for g in grads], 2.0)
    total = clip_grad_norm_(grads, 1.0)
    assert math.isfinite(float(total))
    assert float(total) == pytest.approx(expected, rel=1e-6)
    assert float(get_total_norm(grads)) == pytest.approx(1.0, rel=1e-2)


def test_fp32_accumulation_of_many_small_fp16_values():
    # 2^16 * 1e-3 = 65.5: an fp16 result is rounded to 65.5 and anything bigger overflows; fp32
    # accumulation (torch's CPU kernel sums sequentially per thread) stays within 1e-3.
    g = torch.full((1 << 16,), 1e-3, dtype=torch.float16)
    total = get_total_norm([g, g.clone()], 1.0)  # two tensors: the same one twice counts once
    assert float(total) == pytest.approx(float(g[0].double()) * (1 << 17), rel=1e-3)


@settings(max_examples=60, deadline=None)
@given(arrays=grad_lists(), max_norm=thresholds, p=norm_types)
def test_properties_norm_after_direction_kept_and_no_op_below(arrays, max_norm, p):
    grads = [torch.from_numpy(a.copy()) for a in arrays]
    before = [g.clone() for g in grads]
    total = float(clip_grad_norm_(grads, max_norm, p))
    assert total == pytest.approx(ref_norm(arrays, p), rel=1e-10)
    after = float(get_total_norm(grads, p))
    expected_after = total if total <= max_norm else max_norm * total / (total + 1e-6)  # eps in the scale
    assert after == pytest.approx(expected_after, rel=1e-9, abs=1e-12)
    assert after <= max_norm or total <= max_norm
    if total <= max_norm:  # below the threshold: bitwise unchanged
        assert all(torch.equal(a, b) for a, b in zip(grads, before, strict=True))
    else:  # one scale for every element: the direction is kept exactly
        num = torch.cat([g.ravel() for g in grads])
        den = torch.cat([b.ravel() for b in before])
        ratios = (num / den)[den != 0]
        assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-12, atol=0)
        assert float(ratios[0]) == pytest.approx(max_norm / (total + 1e-6), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(arrays=grad_lists(), c=thresholds)
def test_value_clipping_bounds_every_element(arrays, c):
    grads = [torch.from_numpy(a.copy()) for a in arrays]
    clip_grad_value_(grads, c)
    for g, a in zip(grads, arrays, strict=True):
        np.testing.assert_array_equal(g.numpy(), np.clip(a, -c, c))


def test_value_clipping_matches_torch():
    ours = make_params(SHAPES, torch.float32, seed=3, none_every=3)
    theirs = clone_params(ours)
    assert clip_grad_value_(ours, 0.3) is None
    torch.nn.utils.clip_grad_value_(theirs, 0.3)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad)


def test_single_tensor_equals_list_of_one():
    (a,) = make_params([(5, 5)], torch.float32, scale=10)
    (b,) = clone_params([a])
    assert torch.equal(clip_grad_norm_(a, 1.0), clip_grad_norm_([b], 1.0))
    assert torch.equal(a.grad, b.grad)


def test_gradient_tensors_are_clipped_not_ignored():
    params = make_params(SHAPES, torch.float32, scale=10)
    grads = [p.grad for p in params]
    clip_grad_norm_(grads, 1.0)
    assert float(get_total_norm(params)) == pytest.approx(1.0, rel=1e-5)


def test_parameters_without_grad_and_frozen_parameters_are_left_alone():
    trained = make_params([(4,), (3,)], torch.float32, scale=10)
    frozen = torch.nn.Parameter(torch.ones(6), requires_grad=False)  # no .grad, must not be "a gradient"
    no_grad = torch.nn.Parameter(torch.ones(2))
    expected = ref_norm([p.grad.numpy() for p in trained], 2.0)
    total = clip_grad_norm_([*trained, frozen, no_grad], 1.0)
    assert torch.equal(frozen, torch.ones(6)) and frozen.grad is None and no_grad.grad is None
    assert float(total) == pytest.approx(expected, rel=1e-6)
    assert float(get_total_norm(trained)) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("empty", [[], [torch.nn.Parameter(torch.ones(3))]])
def test_empty_input_returns_zero_and_changes_nothing(empty):
    total = clip_grad_norm_(empty, 1.0)
    assert float(total) == 0.0 and total.dtype == torch.float32
    assert float(get_total_norm(empty)) == 0.0
    clip_grad_value_(empty, 1.0)


def test_foreach_on_and_off_agree():
    a = make_params(SHAPES, torch.float32, seed=5, scale=4)
    b = clone_params(a)
    assert torch.equal(clip_grad_norm_(a, 1.0, foreach=True), clip_grad_norm_(b, 1.0, foreach=False))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-6, atol=0)


def test_clip_grads_with_norm_matches_torch():
    a = make_params(SHAPES, torch.float32, seed=6, scale=4)
    b = clone_params(a)
    total = get_total_norm(a)
    clip_grads_with_norm_(a, 2.0, total)
    torch.nn.utils.clip_grads_with_norm_(b, 2.0, torch.nn.utils.get_total_norm([p.grad for p in b]))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-6, atol=1e-7)


def test_threshold_as_tensor_matches_float():
    a = make_params(SHAPES, torch.float32, seed=7, scale=4)
    b = clone_params(a)
    clip_grad_norm_(a, torch.tensor(1.5))
    clip_grad_norm_(b, 1.5)
    assert all(torch.equal(x.grad, y.grad) for x, y in zip(a, b, strict=True))


def test_stats_report_scale_flags_and_per_tensor_norms():
    params = make_params(SHAPES, torch.float32, seed=8, scale=4, none_every=2)
    expected = [ref_norm([p.grad.numpy()], 2.0) for p in params if p.grad is not None]
    stats = clip_grad_norm_(params, 1.0, return_stats=True)
    assert isinstance(stats, gradclip.ClipStats)
    assert [float(n) for n in stats.tensor_norms] == pytest.approx(expected, rel=1e-6)
    assert bool(stats.clipped) and bool(stats.finite)
    assert float(stats.scale) == pytest.approx(1.0 / (float(stats.total_norm) + 1e-6), rel=1e-6)
    calm = clip_grad_norm_(params, 10.0, return_stats=True)
    assert not bool(calm.clipped) and float(calm.scale) == 1.0


# --- non-finite gradients -------------------------------------------------------------------------


def nonfinite_params(bad: float):
    params = make_params([(3,), (4,)], torch.float32, seed=9, scale=2)
    params[1].grad[2] = bad
    return params


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_error_if_nonfinite_raises(bad):
    params = nonfinite_params(bad)
    before = [p.grad.clone() for p in params]
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    for p, b in zip(params, before, strict=True):
        torch.testing.assert_close(p.grad, b, equal_nan=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        get_total_norm(params, error_if_nonfinite=True)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_propagate_policy_matches_torch(bad):
    ours, theirs = nonfinite_params(bad), nonfinite_params(bad)
    t1 = clip_grad_norm_(ours, 1.0)
    t2 = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    torch.testing.assert_close(t1, t2, equal_nan=True)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, equal_nan=True)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_keep_policy_leaves_gradients_and_flags_nonfinite(bad):
    params = nonfinite_params(bad)
    before = [p.grad.clone() for p in params]
    stats = clip_grad_norm_(params, 1.0, nonfinite="keep", return_stats=True)
    assert stats.finite.dtype == torch.bool and not bool(stats.finite)
    for p, b in zip(params, before, strict=True):
        torch.testing.assert_close(p.grad, b, equal_nan=True)


def test_value_clipping_of_nonfinite_elements():
    g = torch.tensor([math.nan, math.inf, -math.inf, 0.5])
    clip_grad_value_([g], 1.0)
    torch.testing.assert_close(g, torch.tensor([math.nan, 1.0, -1.0, 0.5]), equal_nan=True)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_norm": -1.0}, ValueError, "max_norm"),
        ({"max_norm": math.nan}, ValueError, "max_norm"),
        ({"max_norm": "1.0"}, TypeError, "max_norm"),
        ({"max_norm": True}, TypeError, "max_norm"),
        ({"max_norm": torch.tensor([1.0, 2.0])}, TypeError, "max_norm"),
        ({"max_norm": torch.tensor(-1.0)}, ValueError, "max_norm"),
        ({"norm_type": 0}, ValueError, "norm_type"),
        ({"norm_type": -2.0}, ValueError, "norm_type"),
        ({"norm_type": math.nan}, ValueError, "norm_type"),
        ({"norm_type": "two"}, TypeError, "norm_type"),
        ({"eps": -1e-6}, ValueError, "eps"),
        ({"nonfinite": "skip"}, ValueError, "nonfinite"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, error, match):
    params = make_params(SHAPES, torch.float32, scale=5)
    before = [p.grad.clone() for p in params]
    args = {"max_norm": 1.0, **kwargs}
    with pytest.raises(error, match=match):
        clip_grad_norm_(params, **args)
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before, strict=True))


@pytest.mark.parametrize(("value", "error"), [(-0.1, ValueError), (math.nan, ValueError), (None, TypeError)])
def test_bad_clip_value_raises(value, error):
    with pytest.raises(error, match="clip_value"):
        clip_grad_value_(make_params(SHAPES, torch.float32), value)


def test_integer_gradients_and_non_tensors_are_rejected():
    with pytest.raises(TypeError, match="floating point"):
        clip_grad_norm_([torch.ones(3, dtype=torch.int64)], 1.0)
    with pytest.raises(TypeError, match="tensors"):
        clip_grad_norm_([np.ones(3)], 1.0)


def test_norm_type_inf_string_accepted():
    a = make_params(SHAPES, torch.float32, scale=5)
    assert float(clip_grad_norm_(a, 1e9, "inf")) == pytest.approx(
        ref_norm([p.grad.numpy() for p in a], math.inf)
    )


# --- the flat-buffer path -------------------------------------------------------------------------


def tiny_model_and_flat():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    return model, gradclip.FlatGrads(model.parameters())


def test_flat_buffer_path_equals_per_tensor_path():
    model, flat = tiny_model_and_flat()
    x = torch.randn(16, 5)
    (model(x).pow(2).sum() * 100).backward()
    assert flat.attached
    reference = [p.grad.clone() for p in model.parameters()]
    expected = clip_grad_norm_(reference, 1.0, return_stats=True)
    stats = clip_grad_norm_(flat, 1.0, return_stats=True)
    torch.testing.assert_close(stats.total_norm, expected.total_norm)
    torch.testing.assert_close(torch.stack(stats.tensor_norms), torch.stack(expected.tensor_norms))
    for p, r in zip(model.parameters(), reference, strict=True):
        torch.testing.assert_close(p.grad, r, rtol=1e-6, atol=1e-8)
        assert p.grad.data_ptr() >= flat.buffer.data_ptr()


def test_flat_buffer_detached_by_set_to_none_raises_then_zero_reattaches():
    model, flat = tiny_model_and_flat()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad(set_to_none=True)
    model(torch.randn(4, 5)).sum().backward()
    assert not flat.attached
    with pytest.raises(RuntimeError, match="set_to_none"):
        clip_grad_norm_(flat, 1.0)
    flat.zero_()
    model(torch.randn(4, 5)).sum().backward()
    assert flat.attached and float(flat.buffer.abs().sum()) > 0


def test_flat_buffer_rejects_mixed_dtypes():
    with pytest.raises(ValueError, match="one dtype"):
        gradclip.FlatGrads([torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2).double())])


# --- CUDA: no host syncs ---------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
@pytest.mark.parametrize("nonfinite", ["propagate", "keep"])
def test_cuda_clip_has_no_host_sync(nonfinite):
    params = [torch.nn.Parameter(torch.randn(100, 100, device="cuda")) for _ in range(5)]
    for p in params:
        p.grad = torch.randn_like(p) * 10
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        clip_grad_norm_(params, 1.0, nonfinite=nonfinite, return_stats=True)
        clip_grad_norm_(params, torch.tensor(0.5, device="cuda"))
        clip_grad_value_(params, 0.1)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert float(get_total_norm(params)) <= 0.5 * 1.0001


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=str)
def test_inf_norm_fast_path_matches_torch_and_propagates_nan(dtype):
    grads = [torch.tensor([1.0, -7.5, 2.0], dtype=dtype), torch.tensor([[3.0, -0.5]], dtype=dtype)]
    assert float(get_total_norm(grads, math.inf)) == 7.5
    assert [float(n) for n in gradclip.tensor_norms(grads, math.inf)] == [7.5, 3.0]
    with_empty = [*grads, torch.zeros(0, dtype=dtype)]  # aminmax refuses empty tensors: other path
    assert float(get_total_norm(with_empty, math.inf)) == 7.5
    assert math.isnan(float(get_total_norm([torch.tensor([1.0, math.nan], dtype=dtype)], math.inf)))
    assert float(get_total_norm([torch.tensor([1.0, -math.inf], dtype=dtype)], math.inf)) == math.inf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_large_cpu_tensors_blas_path_matches_float64_reference(dtype):
    # >= 2^14 elements take the BLAS dot path; a transposed (non-contiguous) one and small ones do not.
    gen = torch.Generator().manual_seed(11)
    big = torch.randn(300, 200, generator=gen, dtype=dtype) * 7
    grads = [
        big,
        torch.randn(200, 300, generator=gen, dtype=dtype).t(),
        torch.randn(5, generator=gen, dtype=dtype),
    ]
    expected = [ref_norm([g.numpy()], 2.0) for g in grads]
    norms = [float(n) for n in gradclip.tensor_norms(grads)]
    assert norms == pytest.approx(expected, rel=1e-6 if dtype == torch.float32 else 1e-12)
    total = clip_grad_norm_(grads, 1.0)
    assert float(total) == pytest.approx(math.hypot(*expected), rel=1e-6)
    assert float(get_total_norm(grads)) == pytest.approx(1.0, rel=1e-5)
