"""The gradient monitor: what it records, when it warns, what it advises (crafted runs, real models)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import gradclip.numpy as gnp
from gradclip.clippers import NormClipper
from gradclip.monitor import (
    ClipMisuseWarning,
    ClipRateWarning,
    GradMonitor,
    MonitorConfig,
    SpikeWarning,
    VanishingGradientWarning,
    threshold_advice,
)
from gradclip.optim import ClipOptimizer
from gradclip.policies import Percentile
from gradclip.sinks import read_run

SMALL = MonitorConfig(window=20, min_history=10, idle_steps=60, vanish_steps=15, warmup=10)


def feed(monitor: GradMonitor, norms, *, threshold=None, layer_norms=None) -> None:
    for i, n in enumerate(norms):
        monitor.record(n, threshold=threshold, layer_norms=None if layer_norms is None else layer_norms[i])


def steady(n: int, seed: int = 0) -> list[float]:
    """Healthy norms: log-normal around 1 with a 20% spread."""
    return np.exp(np.random.default_rng(seed).normal(0.0, 0.2, n)).tolist()


# -- crafted sequences, framework-free ------------------------------------------------------------


def test_a_healthy_run_with_rare_clips_raises_no_warning_and_counts_exactly():
    monitor = GradMonitor(config=replace(SMALL, idle_steps=1000))
    norms = steady(200)
    feed(monitor, norms, threshold=1.4)
    s = monitor.summary()
    expected = sum(n > 1.4 for n in norms)
    assert 0 < expected < 0.25 * 200  # the premise: clipping is rare here
    assert (s.steps, s.clipped, s.spikes) == (200, expected, 0)
    assert s.clip_rate == expected / 200
    assert s.norm_max == max(norms) and s.norm_min == min(norms)


def test_a_clip_rate_above_the_level_warns_once_per_episode_and_blames_lr_or_threshold():
    monitor = GradMonitor(config=SMALL)
    pattern = [2.0, 0.5, 0.5]  # a third of the steps clipped at c = 1
    match = r"step 19: 35% of the last 20 steps were clipped.*learning rate"
    with pytest.warns(ClipRateWarning, match=match) as rec:
        feed(monitor, pattern * 30, threshold=1.0)
    assert len(rec) == 1  # latched: no repeat while the rate stays high
    feed(monitor, [0.5] * 40, threshold=1.0)  # the episode ends (no warning: filterwarnings=error)
    with pytest.warns(ClipRateWarning, match="clipped"):
        feed(monitor, pattern * 10, threshold=1.0)


def test_clipping_on_nearly_every_step_says_the_threshold_is_too_small():
    monitor = GradMonitor(config=SMALL)
    with pytest.warns(ClipRateWarning, match=r"100% .* c=0\.1 is too small.*smaller learning rate"):
        feed(monitor, steady(40), threshold=0.1)


def test_a_threshold_never_reached_is_reported_idle_with_advice():
    monitor = GradMonitor(config=SMALL)
    with pytest.warns(ClipRateWarning, match=r"no step clipped in 60 steps.*idle.*suggested max_norm") as rec:
        feed(monitor, steady(100), threshold=50.0)
    assert len(rec) == 1


def test_a_spike_warns_with_its_size_and_the_layers_that_caused_it():
    monitor = GradMonitor(names=["embed", "attn", "head"], config=SMALL)
    layers = [[0.1, 0.5, 0.8]] * 30
    feed(monitor, [1.0] * 30, layer_norms=layers)
    with pytest.warns(
        SpikeWarning, match=r"step 30: gradient norm 500 is 500x the median.*attn \(400\), head"
    ) as rec:
        monitor.record(500.0, layer_norms=[0.1, 400.0, 300.0])
    monitor.record(1.0, layer_norms=[0.1, 0.5, 0.8])
    assert len(rec) == 1 and monitor.summary().spikes == 1


def test_a_non_finite_norm_is_a_spike_and_is_counted():
    monitor = GradMonitor(config=SMALL)
    feed(monitor, [1.0] * 5)
    with pytest.warns(SpikeWarning, match=r"non-finite gradient norm \(inf\)"):
        monitor.record(math.inf)
    with pytest.warns(SpikeWarning, match="nan"):
        monitor.record(1.0)  # clears the latch
        monitor.record(math.nan)
    s = monitor.summary()
    assert (s.nonfinite, s.spikes, s.norm_max) == (2, 2, 1.0)


def test_near_zero_norms_for_many_steps_warn_that_clipping_cannot_help():
    monitor = GradMonitor(names=["early", "late"], config=SMALL)
    tiny = [[1e-12, 1e-8]] * 15
    with pytest.warns(
        VanishingGradientWarning, match=r"below 1e-06 for 15 steps.*early.*residual connections"
    ):
        feed(monitor, [1e-8] * 15, layer_norms=tiny)
    feed(monitor, [1e-8] * 14, layer_norms=tiny[:14])  # same episode: no second warning


def test_clipping_an_all_zero_gradient_is_misuse():
    monitor = GradMonitor(config=SMALL)
    with pytest.warns(ClipMisuseWarning, match=r"step 0: clipping saw no gradient.*zero_grad"):
        monitor.record(0.0, threshold=1.0)
    monitor.record(0.0)  # without clipping a zero norm is not misuse


def test_advice_is_the_90th_to_95th_percentile_after_warm_up_and_pascanus_mean():
    monitor = GradMonitor(config=MonitorConfig(warmup=100))
    warm = [1000.0] * 100  # early transients, left out
    later = np.linspace(1.0, 100.0, 400).tolist()
    feed(monitor, warm + later)
    a = monitor.advice()
    assert a.samples == 400
    assert a.low == pytest.approx(np.percentile(later, 90)) and a.high == pytest.approx(
        np.percentile(later, 95)
    )
    assert a.mean == pytest.approx(np.mean(later))
    assert "half to ten times it (25.2 to 505)" in a.text()
    assert threshold_advice([1.0] * 19) is None  # too few norms to say anything


def test_memory_stays_bounded_and_the_sampled_percentile_stays_close():
    cfg = MonitorConfig(window=50, reservoir=500, warmup=0)
    monitor = GradMonitor(config=cfg)
    norms = np.random.default_rng(1).lognormal(0.0, 0.3, 20_000)
    feed(monitor, norms.tolist())
    assert len(monitor._reservoir) == 500 and len(monitor._recent) == 50
    a = monitor.advice()
    assert a.mean == pytest.approx(norms.mean())  # exact running mean
    assert a.low == pytest.approx(np.percentile(norms, 90), rel=0.15)


def test_numpy_clip_stats_are_observed_with_the_layer_names():
    monitor = GradMonitor(names=["w", "b"], config=SMALL)
    grads = [np.array([3.0, 4.0]), np.array([12.0])]
    stats = gnp.clip_grad_norm_(grads, 6.5, return_stats=True)
    monitor.observe(stats, loss=np.float64(0.25))
    s = monitor.summary()
    assert (s.clipped, s.norm_max, s.threshold) == (1, 13.0, 6.5)
    assert np.linalg.norm(np.concatenate(grads)) == pytest.approx(6.5)  # it clipped for real


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0}, r"MonitorConfig.window must be a whole number >= 1, got 0"),
        ({"clip_rate": 1.5}, r"MonitorConfig.clip_rate must be a number in \(0, 1\], got 1.5"),
        ({"spike_factor": 0.5}, r"spike_factor .* got 0.5"),
        ({"warmup": -1}, r"warmup must be a whole number >= 0, got -1"),
    ],
)
def test_bad_settings_name_the_setting_and_the_allowed_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MonitorConfig(**kwargs)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="max_norm must be a number >= 0 or None, got -1"):
        GradMonitor(max_norm=-1)
    with pytest.raises(ValueError, match=r"sinks \['csv'\] write files: pass log_dir="):
        GradMonitor(sinks=["csv"])
    with pytest.raises(ValueError, match="layer_norms has 1 values for 2 names"):
        GradMonitor(names=["a", "b"]).record(1.0, layer_norms=[1.0])
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module or an iterable of torch tensors"):
        GradMonitor([np.zeros(3)])
    with pytest.raises(RuntimeError, match=r"clip_\(\) needs a torch model"):
        GradMonitor().clip_(1.0)


def test_the_monitor_and_its_jsonl_work_without_torch(tmp_path):
    code = textwrap.dedent(
        f"""
        import importlib.abc, sys
        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError("No module named 'torch'", name="torch")
        sys.meta_path.insert(0, NoTorch())
        from gradclip.monitor import GradMonitor
        from gradclip.sinks import read_run
        with GradMonitor(names=["w"], log_dir={str(tmp_path)!r}) as m:
            for i in range(5):
                m.record(1.0 + i, threshold=3.5, layer_norms=[1.0 + i], loss=0.1)
        run = read_run({str(tmp_path)!r})
        assert "torch" not in sys.modules
        print(run.steps, int(run.columns["gradclip/clipped"].sum()))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["5", "2"], out.stderr


# -- real tiny torch models -----------------------------------------------------------------------


def tiny(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    return model, torch.randn(64, 4), torch.randn(64, 1)


def train(model, x, y, monitor, opt, steps, *, max_norm=1.0, scale=lambda step: 1.0):
    for step in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y) * scale(step)
        loss.backward()
        monitor.clip_(max_norm, loss=loss)
        opt.step()


def test_a_real_model_records_exact_norms_layer_names_loss_and_lr(tmp_path):
    model, x, y = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = GradMonitor(model, optimizer=opt, log_dir=tmp_path, config=SMALL)
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    expected = [float(p.grad.norm()) for p in model.parameters()]
    total = monitor.clip_(0.05, loss=loss)
    opt.step()
    monitor.close()
    run = read_run(tmp_path)
    assert run.layers == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert run.layer_norms[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert (
        run.columns["gradclip/pre_clip_norm"][0]
        == pytest.approx(float(total))
        == pytest.approx(np.linalg.norm(expected))
    )
    assert run.columns["gradclip/post_clip_norm"][0] == pytest.approx(0.05, rel=1e-4)
    assert (
        run.columns["gradclip/loss"][0] == pytest.approx(float(loss.detach()))
        and run.columns["gradclip/lr"][0] == 0.05
    )


def test_a_real_bad_batch_is_a_spike_naming_a_layer():
    model, x, y = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = GradMonitor(model, optimizer=opt, config=SMALL)
    with pytest.warns(
        SpikeWarning, match=r"step 30: gradient norm .* median.*largest layers: \d\.(weight|bias)"
    ):
        train(model, x, y, monitor, opt, 31, max_norm=100.0, scale=lambda s: 1e4 if s == 30 else 1.0)


def test_a_real_model_with_a_tiny_threshold_clips_every_step():
    model, x, y = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = GradMonitor(model, optimizer=opt, config=SMALL)
    with pytest.warns(ClipRateWarning, match="too small"):
        train(model, x, y, monitor, opt, 20, max_norm=1e-4)


def test_a_real_model_with_vanishing_gradients_is_told_clipping_cannot_help():
    model, x, y = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = GradMonitor(model, optimizer=opt, config=SMALL)
    with pytest.warns(VanishingGradientWarning, match="Clipping cannot help"):
        train(model, x, y, monitor, opt, 15, scale=lambda s: 1e-9)


def test_misuse_stepping_without_clipping_since_the_last_backward():
    model, x, y = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = GradMonitor(model, optimizer=opt, config=SMALL)
    train(model, x, y, monitor, opt, 2)  # the loop clips: the monitor now expects it
    nn.functional.mse_loss(model(x), y).backward()
    opt.step()  # forgot to clip; reported at the next step (the result may still be observed)
    opt.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.warns(ClipMisuseWarning, match=r"step 2: optimizer.step\(\) ran on gradients not clipped"):
        opt.step()


def test_misuse_clipping_after_zero_grad_sees_no_gradient():
    model, x, y = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = GradMonitor(model, optimizer=opt, config=SMALL)
    nn.functional.mse_loss(model(x), y).backward()
    opt.zero_grad()  # set_to_none: every .grad is None now
    with pytest.warns(ClipMisuseWarning, match="clipping saw no gradient"):
        monitor.clip_(1.0)


def test_misuse_clipping_after_the_optimizer_step():
    model, x, y = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = GradMonitor(model, optimizer=opt, max_norm=1.0, config=SMALL)
    nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    with pytest.warns(ClipMisuseWarning, match=r"clipping after optimizer.step\(\)") as rec:
        monitor.clip_(1.0)
    monitor.close()
    assert len(rec) == 1  # not reported a second time as an unclipped step


def test_observing_a_result_just_after_the_step_that_used_it_is_not_misuse():
    model, x, y = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = GradMonitor(model, optimizer=opt, max_norm=1.0, config=SMALL)
    from gradclip.clip import clip_grad_norm_

    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        stats = clip_grad_norm_(model.parameters(), 1.0, return_stats=True)
        opt.step()
        monitor.observe(stats)
    assert monitor.close().steps == 3  # and no warning (they are errors here)


def test_clip_optimizer_results_are_observed_with_layers_in_model_order(tmp_path):
    model, x, y = tiny()
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    # Param groups in another order than the model's: the monitor must still name norms right.
    inner = torch.optim.SGD([{"params": biases}, {"params": weights, "weight_decay": 1e-4}], lr=0.05)
    opt = ClipOptimizer(inner, NormClipper(Percentile(90, window=10)))
    with GradMonitor(model, optimizer=opt, log_dir=tmp_path, config=SMALL) as monitor:
        for _ in range(3):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            expected = [float(p.grad.norm()) for p in model.parameters()]
            opt.step()
            monitor.observe(opt.last_result, loss=loss)
    run = read_run(tmp_path)
    assert run.layer_norms[-1].tolist() == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(run.columns["gradclip/threshold"]).all() and run.columns["gradclip/lr"][0] == 0.05


def test_clip_with_a_clipper_object_returns_its_result_and_records_its_threshold():
    model, x, y = tiny()
    monitor = GradMonitor(model, config=SMALL)
    nn.functional.mse_loss(model(x), y).backward()
    result = monitor.clip_(NormClipper(0.01))
    assert bool(result.clipped) and monitor.summary().threshold == 0.01


def test_an_existing_run_log_is_never_replaced_silently(tmp_path):
    first = GradMonitor(log_dir=tmp_path)
    first.record(1.0)
    first.close()
    before = (tmp_path / "grads.jsonl").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        GradMonitor(log_dir=tmp_path)
    assert (tmp_path / "grads.jsonl").read_bytes() == before
    again = GradMonitor(log_dir=tmp_path, overwrite=True)
    again.record(2.0)
    again.close()
    assert (tmp_path / "grads.jsonl").read_bytes() != before


def test_the_step_metrics_and_the_log_fields_are_one_tag_scheme():
    from gradclip.sinks import TAGS
    from gradclip.step import METRICS

    assert all(name.startswith("gradclip/") for name in (*METRICS, *TAGS))
    # The same quantity has the same name in a framework's logs (METRICS) and in the run log (TAGS).
    shared = {"gradclip/pre_clip_norm", "gradclip/post_clip_norm", "gradclip/threshold"}
    assert set(METRICS) & set(TAGS) == shared
