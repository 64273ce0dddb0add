"""Threshold policies: hand-computed thresholds, spikes, NaN/Inf mid-sequence, save/load mid-sequence."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradclip.policies import Fixed, Percentile, ZScore, fixed, percentile, zscore
from strategies import norm_sequences

NAN, INF = math.nan, math.inf


def feed(policy, norms):
    return [policy(n) for n in norms]


# --- Fixed ----------------------------------------------------------------------------------------


def test_fixed_returns_its_threshold_for_any_norm():
    policy = Fixed(2.5)
    assert feed(policy, [0.1, 100.0, NAN, INF]) == [2.5] * 4
    init, update = fixed(2.5)
    assert update(7.0, init()) == (2.5, init())


@pytest.mark.parametrize("bad", [-1.0, NAN, None, True, "1"])
def test_fixed_rejects_bad_threshold(bad):
    with pytest.raises((TypeError, ValueError), match="max_norm"):
        Fixed(bad)


# --- Percentile (AutoClip) ------------------------------------------------------------------------


def test_percentile_hand_computed_window_and_nonfinite():
    # median of the last 3 finite norms, current one included; inf is not recorded
    policy = Percentile(50, window=3)
    got = feed(policy, [1.0, 2.0, 3.0, 4.0, INF, 5.0])
    # [1] -> 1; [1,2] -> 1.5; [1,2,3] -> 2; [2,3,4] -> 3; inf: [2,3,4] -> 3; [3,4,5] -> 4
    assert got == [1.0, 1.5, 2.0, 3.0, 3.0, 4.0]
    assert policy.state.history == (3.0, 4.0, 5.0) and policy.state.count == 5


def test_percentile_interpolates_between_ranks():
    # p=10 over [10, 20, 30, 40, 50]: rank 0.4 -> 10 + 0.4 * 10 = 14
    policy = Percentile(10, window=5)
    assert feed(policy, [50.0, 40.0, 30.0, 20.0, 10.0])[-1] == pytest.approx(14.0)


def test_percentile_excluding_current_uses_past_norms_only():
    policy = Percentile(100, window=10, include_current=False)
    # first step: no history -> inf; then the max of the previous norms
    assert feed(policy, [3.0, 1.0, 5.0, 2.0]) == [INF, 3.0, 3.0, 5.0]


def test_percentile_warmup_records_and_holds_a_conservative_threshold():
    policy = Percentile(0, window=10, warmup=2)
    # warm-up: 10x the median of the norms before (inf with none); NaN is neither recorded nor
    # counted; then the min of the history
    assert feed(policy, [4.0, NAN, 2.0, 3.0, 1.0]) == [INF, 40.0, 40.0, 2.0, 1.0]
    assert feed(Percentile(0, window=10, warmup=2, warmup_factor=None), [4.0, 2.0, 3.0]) == [INF, INF, 2.0]


def test_percentile_spike_is_clipped_to_the_usual_level():
    policy = Percentile(10, window=100)
    for n in np.linspace(1.0, 2.0, 50):
        policy(float(n))
    threshold = policy(1e6)
    assert 1.0 <= threshold < 1.2


@settings(max_examples=50, deadline=None)
@given(
    norms=norm_sequences,
    p=st.floats(0, 100),
    window=st.integers(1, 20),
)
def test_percentile_matches_numpy_on_the_window(norms, p, window):
    policy = Percentile(p, window=window)
    for i, n in enumerate(norms):
        expected = np.percentile(norms[max(0, i + 1 - window) : i + 1], p)
        assert policy(n) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert len(policy.state.history) == min(window, len(norms))  # memory stays bounded


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"p": 101}, "p"), ({"p": -1}, "p"), ({"window": 0}, "window"), ({"warmup": -1}, "warmup")],
)
def test_percentile_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Percentile(**kwargs)


@pytest.mark.parametrize(
    "make",
    [ZScore, Percentile, lambda: Percentile(10, warmup=20), lambda: ZScore(z_thresh=3.0, warmup=50)],
    ids=["zscore", "percentile", "percentile-warmup", "zscore-long-warmup"],
)
@pytest.mark.parametrize("dtype", ["float", "tensor"])
def test_a_spike_in_the_warmup_never_passes_unclipped(make, dtype):
    """The defaults are safe: a x1e4 spike at step 3 is clipped to a small multiple of the norms so far."""
    policy = make()
    rng = np.random.default_rng(3)
    norms = [float(x) for x in 1.0 + 0.1 * rng.standard_normal(80)]
    norms[3] *= 1e4
    torch = pytest.importorskip("torch") if dtype == "tensor" else None
    as_input = (lambda x: torch.tensor(x, dtype=torch.float64)) if torch else float
    thresholds = [float(policy(as_input(x))) for x in norms]
    usual = max(norms[:3])
    assert thresholds[3] <= 10 * usual < norms[3] / 100
    # the clipped spike does not poison what follows (without the warm-up rule ZScore's threshold
    # is still above 2000 at the end: the spike went into its statistics at full size)
    assert max(thresholds[4:]) < norms[3] / 100 and thresholds[-1] < 4 * usual


# --- ZScore (ZClip) -------------------------------------------------------------------------------


def test_zscore_hand_computed():
    policy = ZScore(warmup=3)
    # warm-up: 10x the mean so far (inf with none); then mean 2, var 2/3
    assert feed(policy, [1.0, 2.0, 3.0]) == [INF, 10.0, 15.0]
    spread = math.sqrt(2 / 3) + 1e-6 * 2  # sigma + eps * mu (eps relative to the mean)
    # z = 0.5 / spread < 2.5: the calm threshold mu + 2.5 spread
    assert policy(2.5) == pytest.approx(2 + 2.5 * spread, rel=1e-12)
    mean, var = 0.97 * 2 + 0.03 * 2.5, 0.97 * (2 / 3) + 0.03 * (2.5 - (0.97 * 2 + 0.03 * 2.5)) ** 2
    assert (policy.state.mean, policy.state.var) == pytest.approx((mean, var), rel=1e-12)
    # spike: z = (100 - mu) / sigma, threshold mu + 2.5^2 sigma / z, and the EMA gets the threshold
    spread = math.sqrt(var) + 1e-6 * mean
    z = (100 - mean) / spread
    c = mean + 6.25 * spread / z
    assert policy(100.0) == pytest.approx(c, rel=1e-12)
    new_mean = 0.97 * mean + 0.03 * c
    assert policy.state.mean == pytest.approx(new_mean, rel=1e-12)
    assert policy.state.var == pytest.approx(0.97 * var + 0.03 * (c - new_mean) ** 2, rel=1e-12)


def test_zscore_larger_spikes_get_lower_thresholds_and_barely_move_the_mean():
    rng = np.random.default_rng(0)
    base = [float(x) for x in 1.0 + 0.1 * rng.standard_normal(60)]
    thresholds = []
    for spike in (10.0, 1e3, 1e6):
        policy = ZScore()
        feed(policy, base)
        mean = policy.state.mean
        thresholds.append(policy(spike))
        assert policy.state.mean - mean <= 0.03 * thresholds[-1]
    assert thresholds[0] > thresholds[1] > thresholds[2] > 0.9


def test_zscore_max_norm_caps_during_and_after_warmup():
    policy = ZScore(warmup=2, max_norm=1.5)
    assert feed(policy, [1.0, 3.0]) == [1.5, 1.5]  # warm-up statistics see min(g, 1.5)
    assert policy.state.mean == pytest.approx(1.25)
    assert policy(1.0) <= 1.5


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_zscore_nonfinite_norm_is_not_fed_to_the_statistics(bad):
    norms = [1.0, 1.2, 0.9, 1.1, 1.0, 1.3, 0.8]
    clean, dirty = ZScore(warmup=3), ZScore(warmup=3)
    expected = feed(clean, norms)
    got = feed(dirty, norms[:2])
    assert dirty(bad) == pytest.approx(11.0)  # warming up (10x the mean): not counted either
    got += feed(dirty, norms[2:4])
    assert math.isfinite(dirty(bad))  # after warm-up: the calm threshold, never NaN
    got += feed(dirty, norms[4:])
    assert got == expected
    assert dirty.state == clean.state


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"z_thresh": 0}, "z_thresh"),
        ({"warmup": 0}, "warmup"),
        ({"max_norm": -1}, "max_norm"),
        ({"eps": 0}, "eps"),
    ],
)
def test_zscore_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ZScore(**kwargs)


def test_zscore_rejects_a_norm_that_is_not_a_number():
    with pytest.raises(TypeError, match="norm"):
        ZScore()("1.0")


# --- tensors (sync-free path) ---------------------------------------------------------------------


def test_zscore_tensor_path_matches_float_path():
    torch = pytest.importorskip("torch")
    norms = [1.0, 2.0, 1.5, 1.7, NAN, 1.6, 50.0, 1.4, INF, 1.8, 1.5]
    floats, tensors = ZScore(warmup=3), ZScore(warmup=3)
    for n in norms:
        expected = floats(n)
        got = tensors(torch.tensor(n))
        assert isinstance(got, torch.Tensor) and got.ndim == 0
        assert float(got) == pytest.approx(expected, rel=1e-5)
    # a checkpoint taken from the tensor path resumes on floats, and the other way round
    resumed = ZScore(warmup=3)
    resumed.load_state_dict(tensors.state_dict())
    assert resumed(2.0) == pytest.approx(floats(2.0), rel=1e-5)


def test_policies_do_not_import_torch():
    code = "import sys, gradclip.policies; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- save / load ----------------------------------------------------------------------------------

SEQUENCE = [1.0, 1.1, 0.9, NAN, 1.2, 5.0, 1.0, INF, 0.95, 1.05, 30.0, 1.1, 1.0, 0.9]


@pytest.mark.parametrize(
    "make",
    [lambda: Fixed(1.0), lambda: Percentile(25, window=4, warmup=2), lambda: ZScore(warmup=3, max_norm=20)],
    ids=["fixed", "percentile", "zscore"],
)
def test_save_load_mid_sequence_gives_identical_thresholds(make):
    policy = make()
    feed(policy, SEQUENCE[:6])
    saved = pickle.loads(pickle.dumps(policy.state_dict()))
    expected = feed(policy, SEQUENCE[6:])
    resumed = make()
    resumed.load_state_dict(saved)
    assert feed(resumed, SEQUENCE[6:]) == expected
    assert resumed.state_dict() == policy.state_dict()


def test_load_rejects_other_kind_or_config():
    with pytest.raises(ValueError, match="zscore"):
        Percentile().load_state_dict(ZScore().state_dict())
    with pytest.raises(ValueError, match="config"):
        ZScore(z_thresh=3.0).load_state_dict(ZScore().state_dict())


def test_pure_functions_match_the_stateful_wrappers():
    for fns, policy in [
        (percentile(30, window=5), Percentile(30, window=5)),
        (zscore(warmup=2), ZScore(warmup=2)),
    ]:
        state = fns.init()
        for n in SEQUENCE:
            threshold, state = fns.update(n, state)
            assert threshold == policy(n)
        assert state == policy.state


def test_reset_forgets_history():
    policy = ZScore(warmup=2)
    feed(policy, [1.0, 2.0, 3.0])
    policy.reset()
    assert policy(1.0) == INF


@pytest.mark.parametrize("factor", [10.0, None], ids=["safe-warmup", "no-warmup-cap"])
def test_percentile_tensor_state_keeps_the_safe_warmup_of_the_float_path(factor):
    torch = pytest.importorskip("torch")
    norms = [1.0, 2.0, 3.0, math.nan, 4e4, 2.0, 3.0, 1.5, 2.5, 1.0]
    host = Percentile(50, window=8, warmup=5, warmup_factor=factor)
    device = Percentile(50, window=8, warmup=5, warmup_factor=factor)
    on_host = [host(x) for x in norms]
    on_tensor = [float(device(torch.tensor(x))) for x in norms]
    assert on_tensor == pytest.approx(on_host, rel=1e-6)
    assert (on_host[4] == 20.0) if factor else math.isinf(on_host[4])  # the x1e4 spike in the warm-up
