"""ConvTrainer: clipping in the step, learning, the spike demo, the monitor, checkpoints and resume."""

from __future__ import annotations

import argparse
import copy
import functools
import io
import json
import math
import warnings

import pytest
import torch

from gradclip._io import write_sealed
from gradclip.clippers import NormClipper
from gradclip.monitor import GradMonitor, SpikeWarning
from gradclip.sandbox.convolutional import CLIP_MODES, ConvTrainer, load_digits, small_cnn
from gradclip.sandbox.convolutional.checkpoint import KIND, load_checkpoint, save_checkpoint


@functools.cache
def digits8():
    return load_digits(size=8)  # 8x8 keeps every test here fast


def _trainer(clip=None, *, seed=0, lr=0.05, **kwargs):
    torch.manual_seed(seed)
    model = small_cnn(in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    return ConvTrainer(model, opt, clip, seed=seed, **kwargs)


def _one_step(clip=None, *, factor=100.0, lr=1.0, **kwargs):
    """One ``fit`` step of plain SGD on 64 digits with the loss times ``factor``: (trainer, grads, delta).

    ``grads`` are the raw gradients of that batch (computed on a copy); ``delta`` is what the step
    did to the weights, ``-lr`` times the gradient that reached the optimizer.
    """
    data = digits8()
    x, y = data.x_train[:64], data.y_train[:64]
    torch.manual_seed(0)
    model = small_cnn(in_channels=1)
    ref = copy.deepcopy(model)
    (torch.nn.functional.cross_entropy(ref(x), y) * factor).backward()
    grads = [p.grad for p in ref.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    trainer = ConvTrainer(
        model, torch.optim.SGD(model.parameters(), lr=lr), clip, spike=(0, factor), **kwargs
    )
    trainer.fit(type(data)(x, y, x, y, *data[4:]), epochs=1, batch_size=64)
    delta = [(a.detach() - b) / -lr for a, b in zip(model.parameters(), before, strict=True)]
    return trainer, grads, delta


def test_clip_step_scales_to_c_and_keeps_the_direction_in_what_reached_the_optimizer():
    trainer, grads, applied = _one_step(0.5)
    expected = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert trainer.history["grad_norm"][0] == pytest.approx(float(expected), rel=1e-4)
    norm_after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in applied]))
    assert float(norm_after) == pytest.approx(0.5, rel=1e-3) and trainer.history["clipped"] == [1.0]
    ratios = torch.cat([(a / b)[b.abs() > 1e-3 * b.abs().max()] for a, b in zip(applied, grads, strict=True)])
    assert float(ratios.max() - ratios.min()) < 1e-2 * float(ratios.mean())  # one factor (to fp32 rounding)


@pytest.mark.parametrize("off", [None, 0, 0.0, -1.0])
def test_unset_zero_or_negative_threshold_disables_clipping(off):
    trainer, grads, applied = _one_step(off, factor=1e3)
    assert trainer.clipper is None and trainer.history["clipped"] == [0.0]
    for a, g in zip(applied, grads, strict=True):
        torch.testing.assert_close(a, g, rtol=1e-3, atol=1e-5)  # the whole gradient reached the update
    assert trainer.history["grad_norm"][0] > 1e2 and trainer.history["threshold"] == [math.inf]


def test_value_mode_clamps_each_element():
    _, grads, applied = _one_step(1e-3, clip_mode="value")
    for a, g in zip(applied, grads, strict=True):
        torch.testing.assert_close(a, g.clamp(-1e-3, 1e-3), rtol=1e-3, atol=1e-7)


def test_small_cnn_learns_digits():
    trainer = _trainer(5.0)
    history = trainer.fit(digits8(), 4, 32)
    assert history["val_accuracy"][-1] > 0.9
    assert len(history["grad_norm"]) == trainer.step_count == 4 * math.ceil(1438 / 32)
    assert history["loss"][0] > history["loss"][-1]


@pytest.mark.slow
def test_spike_wrecks_the_unclipped_run_and_clipping_absorbs_it():
    spike = (60, 1e4)  # in the second epoch of 45 steps
    clean = _trainer(None).fit(digits8(), 3, 32)
    wrecked = _trainer(None, spike=spike).fit(digits8(), 3, 32)
    clipped = _trainer(1.0, spike=spike).fit(digits8(), 3, 32)
    assert wrecked["grad_norm"][60] > 1e3 * max(clean["grad_norm"]) and clipped["grad_norm"][60] > 1e3
    assert wrecked["loss"][1] > 100 * clean["loss"][1]  # the loss jumps
    assert wrecked["val_accuracy"][-1] < 0.3 < 0.85 < clean["val_accuracy"][-1]  # and accuracy collapses
    assert clipped["val_accuracy"][-1] == pytest.approx(clean["val_accuracy"][-1], abs=0.05)
    assert clipped["clipped"][60] == 1.0


def test_a_non_finite_step_is_skipped_with_and_without_clipping():
    data = digits8()
    unclipped = _trainer(None, spike=(3, math.inf))
    assert unclipped.fit(data, 1, 256)["skipped"] == [1.0]  # one skip rule for every loop
    assert all(torch.isfinite(p).all() for p in unclipped.params)
    clipped = _trainer(1.0, spike=(3, math.inf))
    history = clipped.fit(data, 1, 256)
    assert all(torch.isfinite(p).all() for p in clipped.params)
    assert history["skipped"] == [1.0] and history["val_accuracy"][-1] > 0.1


def test_monitor_sees_every_step_and_warns_about_the_spike(tmp_path):
    trainer = _trainer(1.0, spike=(40, 1e4))
    monitor = GradMonitor(trainer.model, optimizer=trainer.optimizer, log_dir=tmp_path, max_norm=1.0)
    trainer.monitor = monitor
    with pytest.warns(SpikeWarning):
        trainer.fit(digits8(), 1, 32)
    summary = monitor.close()
    assert summary.steps == trainer.step_count == 45
    assert summary.norm_max == pytest.approx(max(trainer.history["grad_norm"]), rel=1e-6)
    assert summary.clipped == int(sum(trainer.history["clipped"]))
    lines = [json.loads(line) for line in (tmp_path / "grads.jsonl").read_text().splitlines()]
    assert [r["gradclip/pre_clip_norm"] for r in lines if r["type"] == "step"] == pytest.approx(
        trainer.history["grad_norm"]
    )


@pytest.mark.parametrize("mode", sorted(CLIP_MODES))
def test_every_clip_mode_trains(mode):
    knob = {"norm": 1.0, "value": 0.01, "agc": 0.05, "percentile": 50.0, "zscore": 2.5}[mode]
    trainer = _trainer(knob, clip_mode=mode)
    history = trainer.fit(digits8(), 1, 32)
    assert history["val_accuracy"][-1] > 0.2 and math.isfinite(history["loss"][-1])


def test_amp_on_cpu_uses_bfloat16_autocast_and_learns():
    trainer = _trainer(5.0, amp=True)
    seen = []
    trainer.model.head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    history = trainer.fit(digits8(), 2, 32)
    assert seen[0] == torch.bfloat16 and history["val_accuracy"][-1] > 0.5


def test_tensorboard_events_are_written(tmp_path):
    trainer = _trainer(1.0, log_dir=tmp_path)
    trainer.fit(digits8(), 1, 256)
    trainer.writer.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_resume_from_a_checkpoint_continues_bit_for_bit(tmp_path):
    data = digits8()
    straight = _trainer(1.0, clip_mode="percentile")
    straight.fit(data, 2, 64)
    first = _trainer(1.0, clip_mode="percentile")
    first.fit(data, 1, 64, checkpoint=tmp_path / "ckpt.pt", extra={"note": "x"})
    torch.manual_seed(123)  # the resumed process starts from other RNG states
    resumed = _trainer(1.0, clip_mode="percentile", seed=99)
    assert resumed.load(tmp_path / "ckpt.pt") == {"note": "x"} and resumed.epoch == 1
    resumed.fit(data, 2, 64)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    timed = {k: v for k, v in straight.history.items() if k != "seconds"}
    assert timed == {k: v for k, v in resumed.history.items() if k != "seconds"}
    assert straight.clipper.state_dict() == resumed.clipper.state_dict()


def test_loading_a_checkpoint_into_a_differently_built_trainer_is_refused(tmp_path):
    trainer = _trainer(1.0)
    trainer.save(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="checkpoint was saved with clipping; this trainer has no clipping"):
        _trainer(None).load(tmp_path / "c.pt")


def test_checkpoints_load_weights_only_and_a_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "c.pt"
    _trainer(1.0).save(path)
    good = path.read_bytes()
    with pytest.raises(Exception, match=r"lambda|pickle"):
        save_checkpoint(path, {"model": {}, "bad": lambda: 0})  # torch.save cannot pickle a lambda
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    buffer = io.BytesIO()
    torch.save({"model": {}, "obj": argparse.Namespace(a=1)}, buffer)
    write_sealed(tmp_path / "code.pt", buffer.getvalue(), kind=KIND)  # a valid seal around code
    with pytest.raises(ValueError, match="is not a readable gradclip checkpoint"):
        load_checkpoint(tmp_path / "code.pt")  # weights_only refuses arbitrary objects
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="is not a gradclip checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_bad_arguments_name_the_argument_and_what_is_allowed():
    model = small_cnn(in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"unknown clip_mode 'l1'; choose from \['agc', 'norm'"):
        ConvTrainer(model, opt, 1.0, clip_mode="l1")
    with pytest.raises(ValueError, match="grad_clip_norm must be a real number or None, got nan"):
        ConvTrainer(model, opt, math.nan)
    with pytest.raises(ValueError, match="not both"):
        ConvTrainer(model, opt, 1.0, clipper=NormClipper(1.0))
    with pytest.raises(TypeError, match="optimizer must be a torch optimizer, got str"):
        ConvTrainer(model, "sgd")
    with pytest.raises(ValueError, match=r"spike must be None or \(step >= 0, factor\)"):
        ConvTrainer(model, opt, spike=(-1, 2.0))
    with pytest.raises(ValueError, match="percentile' grad_clip_norm is p in"):
        ConvTrainer(model, opt, 150.0, clip_mode="percentile")
    trainer = ConvTrainer(model, opt)
    data = digits8()
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        trainer.fit(data, 1, 0)
    with pytest.raises(
        ValueError, match=r"x must be a float tensor of shape \(N >= 1, C, H, W\), got \(5, 64\)"
    ):
        trainer.evaluate(data.x_train[:5].flatten(1), data.y_train[:5])
    with pytest.raises(ValueError, match=r"y must be an int64 tensor of shape \(5,\)"):
        trainer.evaluate(data.x_train[:5], data.y_train[:4])
    bad = data.x_train[:5].clone()
    bad[0, 0, 0, 0] = math.nan
    with warnings.catch_warnings(), pytest.raises(ValueError, match="x contains NaN or inf"):
        trainer.evaluate(bad, data.y_train[:5])
