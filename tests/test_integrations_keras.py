"""GradClipOptimizer and GradClipCallback in real Keras 3 on the torch backend (CPU, offline)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported; the integration needs torch tensors
keras = pytest.importorskip("keras")

from gradclip import AGC, NormClipper, Percentile, SpikeSkip, ValueClipper, ZScore  # noqa: E402 (after the importorskip)
from gradclip.integrations.keras import GradClipCallback, GradClipOptimizer  # noqa: E402
from gradclip.monitor import GradMonitorWarning  # noqa: E402
from gradclip.sinks import read_run  # noqa: E402

pytestmark = [
    pytest.mark.slow,  # importing keras and building models takes seconds
    # Keras 3.15's Variable.numpy() calls np.array(self) without the copy keyword NumPy 2 expects
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]


def model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )


def data(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype("float32")
    return x, (x @ np.arange(1, 5, dtype="float32")[:, None]).astype("float32")


def trained(optimizer: keras.optimizers.Optimizer, x, y) -> list[np.ndarray]:
    m = model()
    m.compile(optimizer=optimizer, loss="mse")
    m.train_on_batch(x, y)
    return m.get_weights()


@pytest.mark.parametrize(
    ("ours", "keras_own"),
    [
        (lambda: NormClipper(0.1), {"global_clipnorm": 0.1}),  # Keras's global-norm clipping
        (lambda: ValueClipper(0.01), {"clipvalue": 0.01}),
    ],
    ids=["global-norm", "value"],
)
def test_one_step_matches_keras_own_clipping(ours, keras_own):
    x, y = data(16)
    reference = trained(keras.optimizers.SGD(0.5, **keras_own), x, y)
    got = trained(GradClipOptimizer(keras.optimizers.SGD(0.5), ours()), x, y)
    for a, b in zip(got, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    unclipped = trained(keras.optimizers.SGD(0.5), x, y)
    assert any(not np.allclose(a, b) for a, b in zip(got, unclipped, strict=True))  # it did clip


def test_agc_clips_each_output_unit_of_a_keras_kernel():
    x, y = data(16)
    start = model().get_weights()
    before = trained(keras.optimizers.SGD(1.0), x, y)  # SGD lr=1: the update is -grad
    grads = [w0 - w1 for w0, w1 in zip(start, before, strict=True)]
    got = trained(GradClipOptimizer(keras.optimizers.SGD(1.0), AGC(0.05)), x, y)
    for w, g, new in zip(start, grads, got, strict=True):
        w64, g64 = w.astype(np.float64), g.astype(np.float64)
        # float64 reference: units are output units, Keras's last axis
        axes = tuple(range(w.ndim - 1)) if w.ndim >= 2 else None
        w_norm = np.maximum(np.sqrt(np.sum(w64**2, axis=axes, keepdims=w.ndim >= 2)), 1e-3)
        g_norm = np.sqrt(np.sum(g64**2, axis=axes, keepdims=w.ndim >= 2))
        scale = np.minimum(1.0, 0.05 * w_norm / np.maximum(g_norm, 1e-30))
        np.testing.assert_allclose(w - new, g64 * scale, rtol=1e-4, atol=1e-7)


def test_a_nonfinite_step_leaves_weights_and_optimizer_variables_bitwise_unchanged():
    x, y = data(16)
    m = model()
    opt = GradClipOptimizer(keras.optimizers.Adam(1e-2), NormClipper(ZScore()))
    m.compile(optimizer=opt, loss="mse")
    m.train_on_batch(x, y)
    weights = [w.copy() for w in m.get_weights()]
    variables = [np.array(v.numpy(), copy=True) for v in opt.variables]
    bad = x.copy()
    bad[3, 1] = np.nan
    m.train_on_batch(bad, y)
    assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), weights, strict=True))
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(opt.variables, variables, strict=True))
    assert int(opt.iterations.numpy()) == 1 and opt.step.skipped_steps == 1
    m.train_on_batch(x, y)  # and training goes on
    assert int(opt.iterations.numpy()) == 2
    assert not any(np.array_equal(a, b) for a, b in zip(m.get_weights(), weights, strict=True))


def test_fit_with_a_nan_batch_and_a_spike_leaves_a_run_that_reports_both(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = data(320)  # 40 steps of 8
    y[30 * 8 : 31 * 8] *= 1e4  # step 30: a spike (after the monitor's 20-step baseline)
    x[35 * 8 + 2, 0] = np.nan  # step 35: a NaN batch
    m = model()
    opt = GradClipOptimizer(keras.optimizers.Adam(1e-2), NormClipper(ZScore()))
    m.compile(optimizer=opt, loss="mse")
    run = tmp_path / "keras-run"
    means = []  # Keras's running mean of the loss after each batch
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: means.append(logs["loss"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GradMonitorWarning)
        history = m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
                        callbacks=[GradClipCallback(log_dir=run), record])  # fmt: skip
    assert any("step 30" in str(w.message) for w in caught)  # the spike warning names the step
    assert all(np.isfinite(w).all() for w in m.get_weights())
    assert history.history["gradclip/skipped_steps"] == [1.0]
    assert {"gradclip/pre_clip_norm", "gradclip/threshold", "gradclip/clip_rate"} <= set(history.history)

    log = read_run(run)
    assert log.steps == 40 and log.layers == [v.path for v in m.trainable_weights]
    assert log.columns["gradclip/skipped"][35] == 1 and not math.isfinite(
        log.columns["gradclip/pre_clip_norm"][35]
    )
    assert log.columns["gradclip/pre_clip_norm"][30] > 1e3 * np.nanmedian(
        log.columns["gradclip/pre_clip_norm"][:30]
    )
    assert log.columns["gradclip/clipped"][30] == 1  # ZScore's threshold held the spike
    assert [w["step"] for w in log.warnings if w["kind"] == "spike"] == [30, 35]
    # Every step's loss: what Keras's float32 running mean adds per batch (equal batches), up to the
    # spike (after it the mean is 1e6 times larger, and the differences are rounding), and the NaN.
    k = np.arange(1, 32)
    per_batch = k * np.asarray(means[:31]) - (k - 1) * np.concatenate([[0.0], means[:30]])
    np.testing.assert_allclose(log.columns["gradclip/loss"][:31], per_batch, rtol=1e-3)
    assert math.isnan(log.columns["gradclip/loss"][35]) and log.columns["gradclip/loss"][30] > 1e6

    out = subprocess.run([sys.executable, "-m", "gradclip", "report", str(run)], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "skipped steps" in out.stdout and (run / "report" / "report.html").is_file()
    assert re.search(r"skipped steps\s*│\s*1 ", out.stdout) and re.search(r"warnings\s*│\s*2 ", out.stdout)

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    assert {"gradclip/pre_clip_norm", "gradclip/threshold", "gradclip/skipped"} <= set(acc.Tags()["scalars"])
    assert all(t.startswith("gradclip/") for t in acc.Tags()["scalars"])
    assert len(acc.Scalars("gradclip/pre_clip_norm")) == 40


def test_the_clip_state_round_trips():
    x, y = data(16)
    m = model()
    opt = GradClipOptimizer(keras.optimizers.SGD(0.1), NormClipper(ZScore(warmup=2)))
    m.compile(optimizer=opt, loss="mse")
    for _ in range(3):
        m.train_on_batch(x, y)
    again = GradClipOptimizer(keras.optimizers.SGD(0.1), NormClipper(ZScore(warmup=2)))
    again.load_state_dict(json.loads(json.dumps(opt.state_dict())))
    assert again.state_dict() == opt.state_dict() and again.step.steps == 3


CONFIGURABLE = {
    "zscore": lambda: NormClipper(ZScore(alpha=0.9, warmup=3, max_norm=50.0)),
    "percentile": lambda: NormClipper(Percentile(20.0, window=50, warmup=2), norm_type="inf"),
    "fixed": lambda: NormClipper(0.5, eps=1e-5),
    "agc": lambda: AGC(0.05, eps=1e-2),
    "value": lambda: ValueClipper(0.25),
    "off": lambda: None,
}


@pytest.mark.parametrize("clipper", list(CONFIGURABLE))
def test_get_config_rebuilds_the_optimizer_with_any_clipper(clipper):
    x, y = data(32)
    spikes = SpikeSkip(4.0, window=10, warmup=3, max_consecutive=2)
    opt = GradClipOptimizer(
        keras.optimizers.Adam(1e-2), CONFIGURABLE[clipper](), skip_spikes=spikes, rate_window=7
    )
    config = json.loads(json.dumps(opt.get_config()))  # plain data, as Keras writes it
    again = GradClipOptimizer.from_config(config)
    assert again.get_config() == config and repr(again.step.clipper) == repr(opt.step.clipper)
    assert again.step.spikes.state_dict() == spikes.state_dict() and again.rate_window == 7
    # The rebuilt optimizer trains exactly as the original: same thresholds, same weights.
    a, b = model(), model()
    a.compile(optimizer=opt, loss="mse")
    b.compile(optimizer=again, loss="mse")
    for i in range(4):
        a.train_on_batch(x[8 * i : 8 * i + 8], y[8 * i : 8 * i + 8])
        b.train_on_batch(x[8 * i : 8 * i + 8], y[8 * i : 8 * i + 8])
    assert again.step.state_dict() == opt.step.state_dict()
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_a_saved_model_loads_with_its_adaptive_clipper(tmp_path):
    m = model()
    m.compile(
        optimizer=GradClipOptimizer(keras.optimizers.SGD(0.1), NormClipper(ZScore(warmup=4))), loss="mse"
    )
    m.train_on_batch(*data(8))
    m.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(
        tmp_path / "m.keras", custom_objects={"GradClipOptimizer": GradClipOptimizer}
    )
    assert isinstance(loaded.optimizer, GradClipOptimizer)
    assert repr(loaded.optimizer.step.clipper) == repr(m.optimizer.step.clipper)


def test_a_clipper_a_config_cannot_hold_is_refused_by_name():
    x = keras.Variable(np.ones(2, dtype="float32"))
    opt = GradClipOptimizer(keras.optimizers.SGD(0.1), AGC(0.01, exclude=[x.value]))
    with pytest.raises(NotImplementedError, match=r"AGC\(exclude=...\) holds tensors"):
        opt.get_config()

    class Half:  # a threshold policy of one's own: half the norm, no state
        def propose(self, norm):
            return 0.5 * norm, None

        def commit(self, state):
            pass

    own = GradClipOptimizer(keras.optimizers.SGD(0.1), NormClipper(Half()))
    with pytest.raises(
        NotImplementedError, match=r"is not one of gradclip's \['fixed', 'percentile', 'zscore'\]"
    ):
        own.get_config()


def test_bad_setups_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="clips or scales by itself"):
        GradClipOptimizer(keras.optimizers.SGD(0.1, global_clipnorm=1.0))
    with pytest.raises(ValueError, match="LossScaleOptimizer"):
        GradClipOptimizer(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)))
    with pytest.raises(TypeError, match=r"inner_optimizer must be a keras\.optimizers\.Optimizer"):
        GradClipOptimizer("sgd")
    m = model()
    m.compile(optimizer="sgd", loss="mse")
    x, y = data(8)
    with pytest.raises(TypeError, match="GradClipOptimizer"):
        m.fit(x, y, verbose=0, callbacks=[GradClipCallback()])


def test_missing_keras_names_the_extra():
    code = textwrap.dedent(
        """
        import importlib.abc, sys
        class NoKeras(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "keras" or name.startswith("keras."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, NoKeras())
        try:
            import gradclip.integrations.keras
        except ImportError as err:
            assert "gradclip[keras]" in str(err), err
            print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok", out.stderr
