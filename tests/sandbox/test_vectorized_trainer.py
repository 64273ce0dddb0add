"""VTrainer: accuracy on digits, the seed's clipping rules, policies, input checks, exact resume, CLI."""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from gradclip.monitor import GradMonitor, SpikeWarning
from gradclip.sandbox.data import circles, load_digits, two_moons
from gradclip.sandbox.vectorized import MSE, SGD, Adam, Dense, Lookahead, Sequential, VTrainer, mlp
from gradclip.sandbox.vectorized.cli import main
from gradclip.sinks import read_run

MOONS = two_moons(400, seed=1)


def small_trainer(clip=None, **kwargs) -> VTrainer:
    return VTrainer(mlp([2, 16, 2], seed=0), SGD(0.5), clip, **kwargs)


@pytest.mark.slow
def test_mlp_reaches_97_percent_on_digits_within_20_seconds() -> None:
    split = load_digits()
    start = time.perf_counter()
    trainer = VTrainer(mlp([64, 128, 64, 10], seed=0), Adam(1e-3), grad_clip_norm=1.0)
    trainer.fit(split.x_train, split.y_train, epochs=20, batch_size=32)
    elapsed = time.perf_counter() - start
    assert trainer.evaluate(split.x_test, split.y_test).accuracy >= 0.97
    assert elapsed < 20.0


@pytest.mark.parametrize("disabled", [None, 0, 0.0, -1.0])
def test_none_zero_and_negative_thresholds_disable_clipping(disabled) -> None:
    off = small_trainer(disabled)
    off.fit(MOONS.x_train, MOONS.y_train, epochs=2, batch_size=16)
    reference = small_trainer(math.inf)  # an infinite threshold never clips
    reference.fit(MOONS.x_train, MOONS.y_train, epochs=2, batch_size=16)
    np.testing.assert_array_equal(off.model.params, reference.model.params)
    assert off.history["grad_norm"] == off.history["clipped_norm"]
    assert all(c == math.inf for c in off.history["threshold"])


def test_norm_clipping_bounds_every_step_and_changes_training() -> None:
    clipped = small_trainer(0.05)
    clipped.fit(MOONS.x_train, MOONS.y_train, epochs=2, batch_size=16)
    pre, post = np.array(clipped.history["grad_norm"]), np.array(clipped.history["clipped_norm"])
    assert np.all(post <= 0.05 * (1 + 1e-6)) and np.any(pre > 0.05)
    np.testing.assert_allclose(post[pre > 0.05], 0.05, rtol=1e-4)
    free = small_trainer(None)
    free.fit(MOONS.x_train, MOONS.y_train, epochs=2, batch_size=16)
    assert not np.allclose(free.model.params, clipped.model.params)


def _one_step(clip, **kwargs):
    """One ``fit`` step of plain SGD(lr=1) on 16 moons: (raw flat gradient, what reached the update)."""
    trainer = VTrainer(mlp([2, 16, 2], seed=0), SGD(1.0), clip, **kwargs)
    x, y = MOONS.x_train[:16], MOONS.y_train[:16]
    ref, loss = copy.deepcopy(trainer.model), copy.deepcopy(trainer.loss)
    loss.forward(ref.forward(x, training=True), y)
    ref.backward(loss.backward())
    before = trainer.model.params.copy()
    trainer.fit(x, y, epochs=1, batch_size=16, shuffle=False)
    # (a deep copy's layer views no longer share one buffer: gather them in buffer order)
    grads = np.concatenate([g.ravel() for layer in ref.layers for g in getattr(layer, "grads", {}).values()])
    return trainer, grads, before - trainer.model.params


def test_norm_clipping_scales_what_reached_the_update_by_c_over_norm() -> None:
    trainer, grads, applied = _one_step(0.1)
    norm = float(np.linalg.norm(grads))
    assert trainer.history["grad_norm"] == [pytest.approx(norm)] and norm > 0.1
    np.testing.assert_allclose(applied, grads * 0.1 / (norm + 1e-6), rtol=1e-5, atol=2e-7)  # float32 weights
    assert trainer.history["clipped_norm"] == [pytest.approx(0.1, rel=1e-6)]


def test_value_mode_clamps_each_element_that_reached_the_update() -> None:
    trainer, grads, applied = _one_step(0.01, clip_mode="value")
    np.testing.assert_allclose(applied, np.clip(grads, -0.01, 0.01), rtol=1e-5, atol=2e-7)
    assert trainer.history["clipped_norm"] == [pytest.approx(min(0.01, float(np.abs(grads).max())))]


class HalfOfLastNorm:
    """A tiny stateful threshold policy: c_t = ||g_{t-1}|| / 2 (inf at the first step)."""

    def __init__(self) -> None:
        self.last = math.inf

    def propose(self, norm: float) -> tuple[float, float]:
        return self.last / 2, norm  # the threshold, and the state the step keeps if it goes through

    def commit(self, state: float) -> None:
        self.last = state

    def state_dict(self) -> dict[str, float]:
        return {"last": self.last}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.last = state["last"]


def test_policy_sets_the_threshold_from_past_norms() -> None:
    trainer = small_trainer(clipper=HalfOfLastNorm())
    trainer.fit(MOONS.x_train, MOONS.y_train, epochs=1, batch_size=16)
    pre, thr = trainer.history["grad_norm"], trainer.history["threshold"]
    assert thr[0] == math.inf
    np.testing.assert_allclose(thr[1:], np.array(pre[:-1]) / 2)


def test_gradclip_policies_plug_in() -> None:
    policies = pytest.importorskip("gradclip.policies")
    trainer = small_trainer(clipper=policies.Percentile(50.0))
    trainer.fit(MOONS.x_train, MOONS.y_train, epochs=1, batch_size=16)
    pre, post = np.array(trainer.history["grad_norm"]), np.array(trainer.history["clipped_norm"])
    assert 0 < np.count_nonzero(post < pre) < len(pre)
    np.testing.assert_allclose(trainer.history["threshold"][2], np.median(pre[:3]))


def test_non_finite_gradients_skip_the_step(tmp_path) -> None:
    x = MOONS.x_train[:32].copy()
    trainer = VTrainer(mlp([2, 4, 2], seed=0), SGD(0.1), 1.0)
    trainer.monitor = GradMonitor(names=trainer.grad_names(), log_dir=tmp_path)
    trainer.model.params[0] = np.inf  # every forward gives NaN gradients from here on
    before = trainer.model.params.copy()
    with pytest.warns(SpikeWarning, match="non-finite"):
        trainer.fit(x, MOONS.y_train[:32], epochs=1, batch_size=16)
    trainer.monitor.close()
    np.testing.assert_array_equal(trainer.model.params, before)
    assert trainer.history["skipped"] == [2.0]
    run = read_run(tmp_path)
    assert run.columns["gradclip/skipped"].tolist() == [1.0, 1.0] and len(run.columns["step"]) == 2


def test_real_monitor_records_every_step_with_layer_norms(tmp_path) -> None:
    trainer = small_trainer()
    monitor = GradMonitor(names=trainer.grad_names(), log_dir=tmp_path)
    trainer.monitor = monitor
    trainer.fit(MOONS.x_train, MOONS.y_train, epochs=1, batch_size=16)
    monitor.close()
    run = read_run(tmp_path)
    assert len(run.columns["gradclip/pre_clip_norm"]) == trainer.step_count
    np.testing.assert_allclose(
        run.columns["gradclip/pre_clip_norm"], trainer.history["grad_norm"], rtol=1e-12
    )
    # per-layer norms combine into the total: sqrt(sum n_i^2) == ||g||
    layers = np.asarray(run.layer_norms, dtype=np.float64)
    np.testing.assert_allclose(np.sqrt((layers**2).sum(axis=1)), trainer.history["grad_norm"], rtol=1e-5)


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.ones((10, 2)), np.zeros(9, np.int64), "same number of samples"),
        (np.ones((10, 3)), np.zeros(10, np.int64), "does not fit the model"),
        (np.full((10, 2), np.nan), np.zeros(10, np.int64), "NaN or inf"),
        (np.ones((10, 2)), np.full(10, 2), r"labels must lie in \[0, 1\]"),
        (np.ones((10, 2)), np.full(10, -1), r"labels must lie in \[0, 1\]"),
        (np.ones((10, 2)), np.zeros(10), "integer class labels"),
        (np.ones(10), np.zeros(10, np.int64), "shape"),
    ],
)
def test_bad_data_raises_before_any_step(x, y, match: str) -> None:
    trainer = small_trainer(1.0)
    before = trainer.model.params.copy()
    with pytest.raises(ValueError, match=match):
        trainer.fit(x, y, epochs=1, batch_size=4)
    assert trainer.step_count == 0
    np.testing.assert_array_equal(trainer.model.params, before)


def test_bad_validation_data_is_named() -> None:
    with pytest.raises(ValueError, match=r"validation\[1\]"):
        small_trainer().fit(MOONS.x_train, MOONS.y_train, validation=(MOONS.x_test, MOONS.y_test + 5))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"grad_clip_norm": float("nan")}, ValueError, "grad_clip_norm"),
        ({"grad_clip_norm": "1"}, TypeError, "grad_clip_norm"),
        ({"clip_mode": "agc"}, ValueError, "unknown clip_mode 'agc'"),
        ({"clipper": 3}, TypeError, "clipper must be"),
        ({"clipper": HalfOfLastNorm(), "grad_clip_norm": 1.0}, ValueError, "or a ready clipper, not both"),
        ({"monitor": object()}, TypeError, "observe"),
    ],
)
def test_bad_trainer_arguments(kwargs, error, match: str) -> None:
    with pytest.raises(error, match=match):
        VTrainer(mlp([2, 2]), SGD(0.1), **kwargs)


def test_mse_regression_learns_a_line() -> None:
    x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
    trainer = VTrainer(Sequential([Dense(1, 1)]), Adam(0.05), loss=MSE())
    trainer.fit(x, 3 * x - 1, epochs=100, batch_size=16)
    np.testing.assert_allclose(trainer.model.params, [3.0, -1.0], atol=1e-2)
    assert math.isnan(trainer.history["accuracy"][-1])


def make_resumable() -> VTrainer:
    policies = pytest.importorskip("gradclip.policies")
    model = mlp([2, 16, 16, 2], dropout=0.2, seed=3)
    return VTrainer(model, Lookahead(Adam(0.01), k=3), clipper=policies.ZScore(warmup=5), seed=4)


def test_resume_is_bit_for_bit(tmp_path: Path) -> None:
    data = (MOONS.x_train, MOONS.y_train)
    straight = make_resumable()
    straight.fit(*data, epochs=4, batch_size=16)
    first = make_resumable()
    first.fit(*data, epochs=2, batch_size=16)
    first.save(tmp_path / "ckpt.npz")
    resumed = make_resumable()
    resumed.load(tmp_path / "ckpt.npz")
    resumed.fit(*data, epochs=2, batch_size=16)
    np.testing.assert_array_equal(resumed.model.params, straight.model.params)
    np.testing.assert_equal(resumed.history, straight.history)  # NaN == NaN here
    assert resumed.epoch == 4 and resumed.step_count == straight.step_count
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temporary file left behind


def test_load_refuses_a_different_setup(tmp_path: Path) -> None:
    trainer = small_trainer()
    trainer.save(tmp_path / "a.npz")
    with pytest.raises(ValueError, match="saved with a SGD optimizer"):
        VTrainer(mlp([2, 16, 2]), Adam()).load(tmp_path / "a.npz")
    with pytest.raises(ValueError, match="parameters"):
        VTrainer(mlp([2, 8, 2]), SGD(0.1)).load(tmp_path / "a.npz")


@pytest.mark.parametrize("generate", [two_moons, circles])
def test_generated_tasks_are_learnable_and_seeded(generate) -> None:
    a, b = generate(300, seed=5), generate(300, seed=5)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.dtype == np.float32 and set(np.unique(a.y_train)) == {0, 1}
    trainer = VTrainer(mlp([2, 32, 2], seed=0), Adam(0.02))
    trainer.fit(a.x_train, a.y_train, epochs=60, batch_size=32)
    assert trainer.evaluate(a.x_test, a.y_test).accuracy >= 0.95


def test_cli_trains_and_writes_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = "--dataset moons --hidden 16 --epochs 3 --grad-clip 0.5 --optimizer nesterov --lr 0.05"
    argv += " --lookahead 2 --seed 1 --quiet --out"
    argv = [*argv.split(), str(tmp_path)]
    assert main(argv) == 0
    assert "moons: test loss" in capsys.readouterr().out
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["loss"]) == 3 and max(history["clipped_norm"]) <= 0.5 * (1 + 1e-6)
    assert (tmp_path / "checkpoint.npz").is_file()


def test_cli_reports_bad_values() -> None:
    with pytest.raises(SystemExit):
        main(["--clip-mode", "agc"])
