"""The step object's own contract: arguments, the spike rule, state round trips, and bad input."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import gradclip
from gradclip import numpy as gnp
from gradclip.clippers import AGC, NormClipper
from gradclip.policies import Fixed, ZScore
from gradclip.skip import SpikeSkip, decide
from gradclip.step import ClipStep, as_clipper


def test_spike_rule_against_a_float64_reference():
    rng = np.random.default_rng(0)
    norms = list(rng.lognormal(0.0, 0.2, 300))
    norms[150] *= 50  # one spike
    rule = SpikeSkip(4.0, window=50, warmup=10)
    accepted: list[float] = []
    for i, x in enumerate(norms):
        window = np.array(accepted[-50:], dtype=np.float64)
        expected = len(window) >= 10 and x > window.mean() + 4.0 * window.std()
        assert rule.check(x) == expected, i
        if not expected:
            accepted.append(x)
    assert not rule.check(math.nan)  # non-finite norms are the other rule's


def test_a_lasting_new_level_is_learnt_after_max_consecutive_spikes():
    rule = SpikeSkip(3.0, window=10, warmup=3, max_consecutive=2)
    for _ in range(10):
        rule.check(1.0 + 0.01 * _)
    assert [rule.check(100.0) for _ in range(4)] == [True, True, False, False]


def test_decide_is_the_one_rule():
    assert decide(False, math.nan, skip_nonfinite=True, spikes=None) == (True, False)
    assert decide(False, math.inf, skip_nonfinite=False, spikes=None) == (False, False)
    assert decide(True, 1.0, skip_nonfinite=True, spikes=None) == (False, False)


def _params(norm: float) -> list[torch.nn.Parameter]:
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), norm / 2)
    return [p]


def test_state_round_trip_continues_identically():
    a = ClipStep(NormClipper(ZScore(warmup=3)), skip_spikes=SpikeSkip(3.0, window=10, warmup=3))
    for x in (1.0, 1.1, 0.9, 1.2, 50.0, 1.0):
        a(_params(x))
    b = ClipStep(NormClipper(ZScore(warmup=3)), skip_spikes=SpikeSkip(3.0, window=10, warmup=3))
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert b.state_dict() == a.state_dict()
    for x in (1.3, 80.0, 1.0):
        ra, rb = a(_params(x)), b(_params(x))
        assert float(ra.threshold) == float(rb.threshold) and bool(ra.skipped) == bool(rb.skipped)
    assert (a.steps, a.skipped_steps, a.spike_skips) == (b.steps, b.skipped_steps, b.spike_skips)


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        None,
        {"kind": "numpy_clip_step"},
        {"kind": "clip_step", "steps": -1},
        {"kind": "clip_step", "steps": 1, "skipped_steps": 0, "spike_skips": 0, "recent": [2.0]},
    ],
)
def test_bad_state_is_refused_and_changes_nothing(bad):
    step = ClipStep(NormClipper(ZScore(warmup=2)))
    for x in (1.0, 2.0, 3.0):
        step(_params(x))
    before = copy.deepcopy(step.state_dict())
    with pytest.raises(ValueError, match="state_dict"):
        step.load_state_dict(bad)
    assert step.state_dict() == before


def test_another_clippers_state_is_refused_and_changes_nothing():
    step = ClipStep(NormClipper(ZScore(warmup=2)), skip_spikes=SpikeSkip())
    step(_params(1.0))
    other = ClipStep(NormClipper(Fixed(1.0)), skip_spikes=SpikeSkip())
    before = copy.deepcopy(step.state_dict())
    with pytest.raises(ValueError):
        step.load_state_dict(other.state_dict())
    assert step.state_dict() == before


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: ClipStep("norm"), TypeError, "clipper must be"),
        (lambda: ClipStep(True), TypeError, "clipper must be"),
        (lambda: ClipStep(math.nan), ValueError, "nan"),
        (lambda: ClipStep(1e39), ValueError, "float32"),
        (lambda: ClipStep(1.0, skip_spikes=3.0), TypeError, "skip_spikes"),
        (lambda: ClipStep(1.0, skip_nonfinite="yes"), TypeError, "skip_nonfinite"),
        (lambda: ClipStep(1.0, rate_window=0), ValueError, "rate_window"),
        (lambda: SpikeSkip(0.0), ValueError, "k must be"),
        (lambda: SpikeSkip(3.0, window=1), ValueError, "window"),
        (lambda: ClipStep(AGC())(["a"]), TypeError, "parameters must be tensors"),
        (lambda: gradclip.ClipOptimizer(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))]), lambda p: 0),
         TypeError, "clipper must be"),
        (lambda: gnp.ClipStep(1.0, mode="agc"), ValueError, "unknown mode"),
        (lambda: gnp.ClipStep(ZScore(), mode="value"), ValueError, "fixed clip value"),
        (lambda: ClipStep(1.0).step(object()), TypeError, "optimizer must be a torch optimizer"),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("off", [None, 0, 0.0, -1.0])
def test_none_or_not_positive_turns_clipping_off_once_for_every_entry_point(off):
    assert as_clipper(off) is None
    p = _params(1e6)
    result = ClipStep(off)(p)
    assert not bool(result.clipped) and float(result.threshold) == math.inf
    assert torch.equal(p[0].grad, torch.full((4,), 5e5))
    assert not gnp.ClipStep(off).enabled


def test_numpy_step_matches_the_torch_step():
    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=(5, 3)), rng.normal(size=7)]
    arrays[0] *= 30
    params = [torch.nn.Parameter(torch.zeros(a.shape, dtype=torch.float64)) for a in arrays]
    for torch_step, numpy_step in (
        (ClipStep(NormClipper(Fixed(1.0))), gnp.ClipStep(1.0)),
        (ClipStep(NormClipper(ZScore(warmup=1))), gnp.ClipStep(ZScore(warmup=1))),
    ):
        for p, a in zip(params, arrays, strict=True):
            p.grad = torch.from_numpy(a.copy())
        t, n = torch_step(params), numpy_step([a.copy() for a in arrays])
        assert float(t.total_norm) == pytest.approx(n.total_norm, rel=1e-12)
        assert float(t.post_clip_norm) == pytest.approx(n.post_clip_norm, rel=1e-6)
        assert bool(t.clipped) == n.clipped and bool(t.skipped) == n.skipped
