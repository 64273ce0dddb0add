"""The NumPy API, specified against the torch API on the same data and against float64 formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings

import gradclip.clip as tclip
import gradclip.numpy as gnp
from strategies import NORM_TYPES, grad_lists, norm_types, thresholds


@settings(max_examples=60, deadline=None)
@given(arrays=grad_lists(), max_norm=thresholds, p=norm_types)
def test_numpy_api_equals_torch_api_on_the_same_data(arrays, max_norm, p):
    ours = [a.copy() for a in arrays]
    theirs = [torch.from_numpy(a.copy()) for a in arrays]
    total = gnp.clip_grad_norm_(ours, max_norm, p)
    t_total = tclip.clip_grad_norm_(theirs, max_norm, p)
    assert isinstance(total, float)
    assert total == pytest.approx(float(t_total), rel=1e-12)
    for a, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, t.numpy(), rtol=1e-12, atol=0)
    if total <= max_norm:
        assert all(np.array_equal(a, b) for a, b in zip(ours, arrays, strict=True))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("p", NORM_TYPES)
def test_float32_and_float16_arrays_match_torch(dtype, p):
    rng = np.random.default_rng(0)
    arrays = [(rng.standard_normal(s) * 30).astype(dtype) for s in [(3, 4), (17,), (2, 2, 2)]]
    ours = [a.copy() for a in arrays]
    theirs = [torch.from_numpy(a.copy()) for a in arrays]
    total = gnp.clip_grad_norm_(ours, 1.0, p)
    t_total = tclip.clip_grad_norm_(theirs, 1.0, p)
    assert total == pytest.approx(float(t_total), rel=1e-5)
    for a, t in zip(ours, theirs, strict=True):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, t.numpy(), rtol=1e-3 if dtype == np.float16 else 1e-6)


def test_dict_single_array_and_none_entries():
    grads = {"w": np.full((2, 2), 3.0), "b": None, "c": np.full(1, 4.0)}
    total = gnp.clip_grad_norm_(grads, 1.0)
    assert total == pytest.approx(math.sqrt(4 * 9 + 16))
    assert gnp.get_total_norm(grads) == pytest.approx(1.0, rel=1e-5)
    single = np.array([3.0, 4.0])
    assert gnp.clip_grad_norm_(single, 10.0) == 5.0 and np.array_equal(single, [3.0, 4.0])


def test_stats_and_per_array_norms():
    grads = [np.array([3.0, 4.0]), np.array([12.0])]
    stats = gnp.clip_grad_norm_(grads, 6.5, return_stats=True)
    assert stats.total_norm == 13.0 and stats.tensor_norms == [5.0, 12.0]
    assert stats.clipped and stats.finite and stats.scale == pytest.approx(6.5 / (13.0 + 1e-6))
    assert gnp.tensor_norms(grads, 1) == pytest.approx([3.5, 6.0], rel=1e-6)


def test_float64_accumulation_beats_float32_rounding():
    g = np.full(10**6, 1.0 + 2**-20, dtype=np.float32)
    exact = float(np.float64(g[0])) * 10**6
    assert gnp.get_total_norm([g], 1) == pytest.approx(exact, rel=1e-12)


def test_value_clipping():
    g = np.array([-5.0, 0.5, math.inf, math.nan])
    gnp.clip_grad_value_([g], 1.0)
    np.testing.assert_array_equal(g, [-1.0, 0.5, 1.0, math.nan])


def test_empty_input():
    assert gnp.clip_grad_norm_([], 1.0) == 0.0
    assert gnp.get_total_norm({}) == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_policies(bad):
    def make():
        return [np.array([1.0, 2.0]), np.array([bad, 3.0])]

    with pytest.raises(RuntimeError, match="non-finite"):
        gnp.clip_grad_norm_(make(), 1.0, error_if_nonfinite=True)
    kept = make()
    stats = gnp.clip_grad_norm_(kept, 1.0, nonfinite="keep", return_stats=True)
    assert not stats.finite
    np.testing.assert_array_equal(kept[0], [1.0, 2.0])
    propagated, reference = make(), [torch.from_numpy(a) for a in make()]
    gnp.clip_grad_norm_(propagated, 1.0)
    tclip.clip_grad_norm_(reference, 1.0)
    for a, t in zip(propagated, reference, strict=True):
        np.testing.assert_array_equal(a, t.numpy())


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((-1.0,), ValueError, "max_norm"),
        ((math.nan,), ValueError, "max_norm"),
        (("x",), TypeError, "max_norm"),
        ((1.0, 0), ValueError, "norm_type"),
        ((1.0, "l2"), TypeError, "norm_type"),
    ],
)
def test_bad_arguments(args, error, match):
    g = [np.ones(3)]
    with pytest.raises(error, match=match):
        gnp.clip_grad_norm_(g, *args)
    np.testing.assert_array_equal(g[0], np.ones(3))


def test_bad_gradients():
    with pytest.raises(TypeError, match="floating point"):
        gnp.clip_grad_norm_([np.ones(3, dtype=np.int64)], 1.0)
    with pytest.raises(TypeError, match="NumPy arrays"):
        gnp.clip_grad_norm_([[1.0, 2.0]], 1.0)
    with pytest.raises(ValueError, match="clip_value"):
        gnp.clip_grad_value_([np.ones(3)], -1)
