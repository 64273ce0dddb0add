"""Conformance: every entry point that clips runs the same scenarios and must end in the same outcome.

Entry points (torch, one small MLP): the functional form with its documented skip idiom,
``ClipStep.step``, ``ClipOptimizer``, the loop helper ``clipping()`` and ``GradMonitor.clip_``;
the trainers (``ConvTrainer``, ``VTrainer``) run the scenarios on their own models below. Scenarios: a
NaN batch and an Inf batch (skipped: parameters and optimizer state bitwise unchanged, the policy's
state unchanged, the step reported and logged as skipped), a x1e4 loss spike (clipped: what reached
the optimizer has norm <= c, for every policy, AGC and value clipping), spike skipping, GradScaler
with bf16/fp16 autocast and fused/unfused SGD/Adam/AdamW (the same parameters as without a scaler),
save and resume mid-run (bit-identical to an uninterrupted run), and the monitor's JSONL fields.
At the end, the framework integrations (Lightning, Hugging Face, Keras) in their real frameworks run the
NaN, Inf, spike and spike-skipping scenarios.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from gradclip.clip import clip_grad_norm_
from gradclip.clippers import AGC, NormClipper, ValueClipper
from gradclip.integrations import clipping
from gradclip.monitor import GradMonitor
from gradclip.optim import ClipOptimizer
from gradclip.policies import Fixed, Percentile, ZScore
from gradclip.result import ClipResult
from gradclip.skip import SpikeSkip
from gradclip.step import ClipStep

pytestmark = pytest.mark.filterwarnings("ignore::gradclip.monitor.GradMonitorWarning")

STEPS = 6
BAD = 3  # the step that gets the bad batch


def make_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    return torch.randn(8, 6, generator=gen), torch.randn(8, 3, generator=gen)


def make_opt(net: torch.nn.Module, kind: str = "sgd", fused: bool = False) -> torch.optim.Optimizer:
    params = net.parameters()
    if kind == "plain":  # no momentum: each update is exactly -lr * the gradient that reached it
        return torch.optim.SGD(params, lr=0.05)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, fused=fused or None)
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    return cls(params, lr=0.01, fused=fused or None)


class Env:
    """One run's setting: the loss factor of each step, an optional scaler and autocast dtype."""

    def __init__(self, factors: list[float], scaler: torch.amp.GradScaler | None = None, dtype=None):
        self.factors, self.scaler, self.dtype = factors, scaler, dtype

    def backward(self, net: torch.nn.Module, step: int) -> None:
        x, y = batch(step)
        with torch.autocast("cpu", dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            loss = torch.nn.functional.mse_loss(net(x).float(), y) * self.factors[step]
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()


# -- the entry points: each runs the steps of `env` and returns one ClipResult per step -----------------
Driver = Callable[..., list]


def drive_functional(net, opt, clipper, env, snap, spikes=None, monitor=None):
    """``clip_grad_norm_(..., nonfinite='keep', return_stats=True)``, then step only when finite."""
    c = clipper.policy.max_norm if isinstance(clipper, NormClipper) else float(clipper)
    out = []
    for i in range(len(env.factors)):
        opt.zero_grad()
        env.backward(net, i)
        if env.scaler is not None:
            env.scaler.unscale_(opt)
        r = clip_grad_norm_(net.parameters(), c, nonfinite="keep", return_stats=True)
        if bool(r.finite):
            (opt.step() if env.scaler is None else env.scaler.step(opt))
        if env.scaler is not None:
            env.scaler.update()
        out.append(r._replace(skipped=~r.finite))
        snap()
    return out


def drive_step(net, opt, clipper, env, snap, spikes=None, monitor=None):
    step = ClipStep(clipper, skip_spikes=spikes)
    out = []
    for i in range(len(env.factors)):
        opt.zero_grad()
        env.backward(net, i)
        out.append(step.step(opt, scaler=env.scaler))
        snap()
    return out


def drive_clip_optimizer(net, opt, clipper, env, snap, spikes=None, monitor=None):
    wrapped = ClipOptimizer(opt, clipper, skip_spikes=spikes)
    out = []
    for i in range(len(env.factors)):
        wrapped.zero_grad()
        env.backward(net, i)
        if env.scaler is None:
            wrapped.step()
        else:
            env.scaler.step(wrapped)
            env.scaler.update()
        out.append(wrapped.last_result)
        snap()
    return out


def drive_loop(net, opt, clipper, env, snap, spikes=None, monitor=None):
    out = []
    with clipping(opt, clipper, skip_spikes=spikes) as clip:
        for i in range(len(env.factors)):
            opt.zero_grad()
            env.backward(net, i)
            if env.scaler is None:
                opt.step()
            else:
                env.scaler.step(opt)
                env.scaler.update()
            out.append(clip.last)
            snap()
    return out


def drive_monitor(net, opt, clipper, env, snap, spikes=None, monitor=None):
    """The monitor's documented usage: ``monitor.clip_(clipper); opt.step()``."""
    mon = monitor if monitor is not None else GradMonitor(net, optimizer=opt)
    step = ClipStep(clipper, skip_spikes=spikes)
    out = []
    for i in range(len(env.factors)):
        opt.zero_grad()
        env.backward(net, i)
        if env.scaler is not None:
            env.scaler.unscale_(opt)
        out.append(mon.clip_(step))
        if env.scaler is None:
            opt.step()
        else:
            env.scaler.step(opt)
            env.scaler.update()
        snap()
    return out


DRIVERS = {
    "functional": drive_functional,
    "ClipStep.step": drive_step,
    "ClipOptimizer": drive_clip_optimizer,
    "clipping()": drive_loop,
    "GradMonitor.clip_": drive_monitor,
}
STATEFUL = [k for k in DRIVERS if k != "functional"]  # the functional form has no policy or spike state


def run(driver: str, clipper, env: Env, *, opt_kind="sgd", fused=False, spikes=None, monitor=None):
    """Run ``driver``; return (results, parameter snapshots, optimizer-state snapshots)."""
    net = make_net()
    opt = make_opt(net, opt_kind, fused)
    params, states = [], []

    def snap() -> None:
        params.append([p.detach().clone() for p in net.parameters()])
        states.append(copy.deepcopy(opt.state_dict()["state"]))

    snap()  # before the first step
    results = DRIVERS[driver](net, opt, clipper, env, snap, spikes=spikes, monitor=monitor)
    return results, params, states, net


def assert_same(a, b) -> None:
    """Bitwise equality of nested tensors / dicts / lists."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b) or (
            (a.isnan() == b.isnan()).all() and torch.equal(a.nan_to_num(), b.nan_to_num())
        )
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


# -- scenarios ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", list(DRIVERS))
@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("opt_kind", ["sgd", "adam"])
def test_nonfinite_batch_is_skipped_and_changes_nothing(driver, bad, opt_kind):
    factors = [1.0] * STEPS
    factors[BAD] = bad
    results, params, states, net = run(driver, NormClipper(Fixed(1.0)), Env(factors), opt_kind=opt_kind)
    r = results[BAD]
    assert isinstance(r, ClipResult)
    assert not bool(r.finite) and bool(r.skipped) and not bool(r.clipped)
    # snapshots: index i+1 is after step i; the bad step left parameters and state bitwise as they were
    assert_same(params[BAD + 1], params[BAD])
    assert_same(states[BAD + 1], states[BAD])
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(params[-1], params[BAD + 1], strict=True))  # trains on


POLICIES = {
    "Fixed": lambda: Fixed(1.0),
    "ZScore": lambda: ZScore(warmup=2),
    "Percentile": lambda: Percentile(50, warmup=2),
}


@pytest.mark.parametrize("driver", STATEFUL)
@pytest.mark.parametrize("policy", list(POLICIES))
def test_nonfinite_batch_leaves_the_policy_state_unchanged(driver, policy):
    factors = [1.0] * STEPS
    factors[BAD] = math.nan
    clipper = NormClipper(POLICIES[policy]())
    states = []
    net, opt = make_net(), None
    opt = make_opt(net)
    env = Env(factors)
    DRIVERS[driver](net, opt, clipper, env, lambda: states.append(copy.deepcopy(clipper.state_dict())))
    assert_same(states[BAD], states[BAD - 1])  # the NaN step did not reach the policy
    assert states[BAD + 1] != states[BAD] or policy == "Fixed"


def _applied_norm(params_before, params_after, order: float, lr: float = 0.05) -> float:
    """The norm of the gradient a plain SGD step applied: ||delta|| / lr."""
    delta = torch.cat([(b - a).flatten() for a, b in zip(params_after, params_before, strict=True)])
    return float(torch.linalg.vector_norm(delta, order)) / lr


CLIPPERS = {
    "Fixed": lambda: NormClipper(Fixed(1.0)),
    "ZScore": lambda: NormClipper(ZScore(warmup=2)),
    "Percentile": lambda: NormClipper(Percentile(50)),
    "value": lambda: ValueClipper(0.01),
    "agc": lambda: AGC(0.01),
}


@pytest.mark.parametrize("driver", list(DRIVERS))
@pytest.mark.parametrize("clipper_kind", list(CLIPPERS))
def test_loss_spike_is_clipped_in_what_reached_the_optimizer(driver, clipper_kind):
    if driver == "functional" and clipper_kind != "Fixed":
        return  # the functional form is the fixed-threshold special case: no policy, no AGC
    factors = [1.0] * STEPS
    factors[BAD] = 1e4
    results, params, _, _ = run(driver, CLIPPERS[clipper_kind](), Env(factors), opt_kind="plain")
    r = results[BAD]
    assert bool(r.clipped) and not bool(r.skipped) and bool(r.finite)
    if clipper_kind == "value":
        assert _applied_norm(params[BAD], params[BAD + 1], math.inf) <= 0.01 * (1 + 1e-5)
        assert float(r.post_clip_norm) == pytest.approx(0.01)
        return
    applied = _applied_norm(params[BAD], params[BAD + 1], 2.0)
    assert applied == pytest.approx(float(r.post_clip_norm), rel=1e-4)  # the reported norm reached it
    if clipper_kind == "agc":
        assert applied < 0.01 * float(r.total_norm)
    else:
        assert applied <= float(r.threshold) * (1 + 1e-4)
        assert float(r.total_norm) > 100 * float(r.threshold)


@pytest.mark.parametrize("driver", STATEFUL)
def test_spike_skipping_skips_and_counts_apart(driver):
    factors = [1.0] * 8
    factors[6] = 1e4
    spikes = SpikeSkip(3.0, window=10, warmup=4)
    results, params, states, _ = run(driver, NormClipper(Fixed(1e9)), Env(factors), spikes=spikes)
    flags = [(bool(r.skipped), bool(r.spike)) for r in results]
    assert flags[6] == (True, True) and all(f == (False, False) for i, f in enumerate(flags) if i != 6)
    assert_same(params[7], params[6])
    assert_same(states[7], states[6])


AUTOCAST = [torch.bfloat16, torch.float16]


@pytest.mark.parametrize("driver", list(DRIVERS))
@pytest.mark.parametrize("opt_kind", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("dtype", AUTOCAST, ids=["bf16", "fp16"])
def test_grad_scaler_gives_the_parameters_of_the_unscaled_run(driver, opt_kind, fused, dtype):
    factors = [1.0, 1.0, 30.0, 1.0, 1.0]  # one step clipped
    clipper = NormClipper(Fixed(0.5))
    plain, p_plain, _, _ = run(driver, clipper, Env(factors, dtype=dtype), opt_kind=opt_kind, fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=10**6)
    scaled, p_scaled, _, _ = run(
        driver, NormClipper(Fixed(0.5)), Env(factors, scaler, dtype), opt_kind=opt_kind, fused=fused
    )
    assert scaler.get_scale() == 2.0**8  # nothing overflowed: every step went through
    for a, b in zip(plain, scaled, strict=True):
        assert float(a.total_norm) == pytest.approx(float(b.total_norm), rel=1e-6)  # true norms measured
        assert bool(a.clipped) == bool(b.clipped)
    assert any(bool(r.clipped) for r in plain)
    for a, b in zip(p_plain[-1], p_scaled[-1], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_grad_scaler_overflow_never_reaches_the_policy(driver):
    factors = [1.0] * STEPS
    factors[BAD] = math.inf
    clipper = NormClipper(ZScore(warmup=2)) if driver != "functional" else NormClipper(Fixed(1.0))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=10**6)
    seen = []
    net = make_net()
    opt = make_opt(net)
    DRIVERS[driver](
        net, opt, clipper, Env(factors, scaler), lambda: seen.append(copy.deepcopy(clipper.state_dict()))
    )
    assert scaler.get_scale() == 2.0**9  # the scaler saw the overflow and backed off once
    assert_same(seen[BAD], seen[BAD - 1])
    assert all(torch.isfinite(p).all() for p in net.parameters())


# -- resume ------------------------------------------------------------------------------------------


def _stateful(driver, net, opt, clipper):
    """The object whose state_dict a checkpoint keeps for this entry point."""
    if driver == "ClipOptimizer":
        return ClipOptimizer(opt, clipper)
    return ClipStep(clipper)


@pytest.mark.parametrize("opt_kind", ["sgd", "adam"])
def test_resume_mid_run_is_bit_identical(opt_kind):
    """Save after 3 steps (model, optimizer, ClipStep / ClipOptimizer), resume in fresh objects."""
    factors = [1.0, 2.0, 50.0, 1.0, 30.0, 1.0]
    for driver in ("ClipStep.step", "ClipOptimizer"):

        def go(net, opt, thing, steps):
            for i in steps:
                opt.zero_grad()
                Env(factors).backward(net, i)
                (thing.step() if isinstance(thing, ClipOptimizer) else thing.step(opt))

        net, opt = make_net(), None
        opt = make_opt(net, opt_kind)
        thing = _stateful(driver, net, opt, NormClipper(ZScore(warmup=2)))
        go(net, opt, thing, range(6))
        whole = [p.detach().clone() for p in net.parameters()]

        net2 = make_net()
        opt2 = make_opt(net2, opt_kind)
        first = _stateful(driver, net2, opt2, NormClipper(ZScore(warmup=2)))
        go(net2, opt2, first, range(3))
        saved = copy.deepcopy(
            {"model": net2.state_dict(), "opt": opt2.state_dict(), "clip": first.state_dict()}
        )
        net3 = make_net(seed=1)
        opt3 = make_opt(net3, opt_kind)
        second = _stateful(driver, net3, opt3, NormClipper(ZScore(warmup=2)))
        net3.load_state_dict(saved["model"])
        opt3.load_state_dict(saved["opt"])
        second.load_state_dict(saved["clip"])
        go(net3, opt3, second, range(3, 6))
        for a, b in zip(whole, net3.parameters(), strict=True):
            assert torch.equal(a, b), driver


# -- the monitor's JSONL -----------------------------------------------------------------------------

FIELDS = ("pre_clip_norm", "post_clip_norm", "threshold", "clipped", "finite", "skipped", "loss")


def _jsonl(path) -> list[dict]:
    """The step records, each field under its tag's last part (``gradclip/threshold``: ``threshold``)."""
    rows = [json.loads(line) for line in (path / "grads.jsonl").read_text().splitlines()]
    return [
        {"step": r["step"], **{k: r[f"gradclip/{k}"] for k in FIELDS}}
        for r in rows
        if r.get("type") == "step"
    ]


@pytest.mark.parametrize("driver", STATEFUL)
def test_monitor_jsonl_is_the_same_for_every_entry_point(driver, tmp_path):
    factors = [1.0, 1.0, 300.0, math.nan, 1.0]
    logs = {}
    for name in dict.fromkeys(("ClipStep.step", driver)):
        net = make_net()
        opt = make_opt(net)
        mon = GradMonitor(net, optimizer=opt, log_dir=tmp_path / name.replace(".", "_"))
        results = DRIVERS[name](net, opt, NormClipper(Fixed(2.0)), Env(factors), lambda: None, monitor=mon)
        if name != "GradMonitor.clip_":
            for r in results:
                mon.observe(r)
        mon.close()
        logs[name] = _jsonl(tmp_path / name.replace(".", "_"))
    ref = logs["ClipStep.step"]
    assert [r["skipped"] for r in ref] == [False, False, False, True, False]
    assert [r["clipped"] for r in ref] == [False, False, True, False, False]
    assert ref[2]["post_clip_norm"] == pytest.approx(2.0, rel=1e-5) and ref[2]["threshold"] == 2.0
    assert logs[driver] == ref


# -- the trainers -------------------------------------------------------------------------------------


def _conv_trainer(factor: float, spikes=None, clipper=1.0, tmp_path=None):
    from gradclip.sandbox.convolutional.data import load_digits
    from gradclip.sandbox.convolutional.models import build_model
    from gradclip.sandbox.convolutional.trainer import ConvTrainer

    torch.manual_seed(0)
    data = load_digits(size=8, seed=0)
    data = type(data)(data.x_train[:96], data.y_train[:96], data.x_test[:32], data.y_test[:32], *data[4:])
    net = build_model("small_cnn", in_channels=1, num_classes=10)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    monitor = GradMonitor(net, optimizer=opt, log_dir=tmp_path) if tmp_path is not None else None
    step = ClipStep(clipper, skip_spikes=spikes)
    trainer = ConvTrainer(net, opt, clipper=step, spike=(BAD, factor), monitor=monitor, seed=0)
    snaps = []
    net.register_forward_pre_hook(
        lambda m, a: snaps.append([p.detach().clone() for p in m.parameters()]) if m.training else None
    )
    trainer.fit(data, epochs=1, batch_size=16)
    if monitor is not None:
        monitor.close()
    return trainer, snaps, opt


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("clipper", [1.0, None], ids=["clip", "noclip"])
def test_conv_trainer_skips_nonfinite_batches_with_and_without_clipping(bad, clipper, tmp_path):
    trainer, snaps, _ = _conv_trainer(bad, clipper=clipper, tmp_path=tmp_path)
    h = trainer.history
    assert h["skipped"] == [1.0]
    assert [bool(s) for s in h["clipped"]][BAD] is False
    assert_same(snaps[BAD + 1], snaps[BAD])  # the bad step changed no weight
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    log = _jsonl(tmp_path)
    assert [r["skipped"] for r in log] == [i == BAD for i in range(len(log))]  # log and history agree


def test_conv_trainer_spike_skipping(tmp_path):
    trainer, snaps, _ = _conv_trainer(1e4, spikes=SpikeSkip(3.0, window=10, warmup=3), clipper=1e9)
    assert trainer.clip_step.spike_skips == 1 and trainer.clip_step.skipped_steps == 0
    assert_same(snaps[BAD + 1], snaps[BAD])


class _ScaledLoss:
    """A VTrainer loss whose ``step``-th training forward is multiplied by ``factor`` (a bad batch)."""

    def __init__(self, model, factor: float, step: int = BAD):
        from gradclip.sandbox.vectorized.losses import SoftmaxCrossEntropy

        self.inner, self.model, self.factor, self.step, self.calls = (
            SoftmaxCrossEntropy(),
            model,
            factor,
            step,
            0,
        )
        self.snaps: list[np.ndarray] = []

    def forward(self, out, y):
        return self.inner.forward(out, y)

    def backward(self):
        g = self.inner.backward()
        self.snaps.append(self.model.params.copy())
        self.calls += 1
        return g * self.factor if self.calls - 1 == self.step else g

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1e4], ids=["nan", "inf", "spike"])
def test_vtrainer_runs_the_same_scenarios(bad, tmp_path):
    from gradclip.sandbox import data as sdata
    from gradclip.sandbox.vectorized.model import mlp
    from gradclip.sandbox.vectorized.optim import Adam
    from gradclip.sandbox.vectorized.trainer import VTrainer

    split = sdata.two_moons(seed=0)
    model = mlp([2, 16, 2], seed=0)
    loss = _ScaledLoss(model, bad)
    trainer = VTrainer(model, Adam(lr=1e-2), grad_clip_norm=1.0, loss=loss)
    trainer.fit(split.x_train[:128], split.y_train[:128], epochs=1, batch_size=16, shuffle=False)
    h = trainer.history
    if math.isfinite(bad):
        assert h["grad_norm"][BAD] > 100 and h["clipped_norm"][BAD] == pytest.approx(1.0, rel=1e-5)
        assert h["skipped"] == [0.0]
    else:
        assert h["skipped"] == [1.0]
        assert np.array_equal(loss.snaps[BAD + 1], loss.snaps[BAD])  # nothing moved
    assert np.isfinite(model.params).all()


# -- the framework integrations ------------------------------------------------------------------------
# Lightning's and Hugging Face's GradClipCallback and Keras's GradClipOptimizer, each in its real framework
# on a tiny model, run the same three scenarios: a NaN batch and an Inf batch (skipped: parameters and
# optimizer state bitwise unchanged across that step, the run log says skipped) and a x1e4 spike (clipped:
# the gradient that reached the optimizer has norm <= the threshold the log reports), with a fixed and a
# z-score threshold. Each driver returns (parameter/state snapshots before every step and after the last,
# the norm of what reached the optimizer at each step it stepped, the run log's step rows).

FRAMEWORK_STEPS = 6
FRAMEWORK_CLIPPERS = {
    "Fixed": lambda: NormClipper(Fixed(1.0)),
    "ZScore": lambda: NormClipper(ZScore(warmup=2)),
}
SCENARIOS = {"nan": math.nan, "inf": math.inf, "spike": 1e4}


def _grad_norm(params) -> float | None:
    grads = [p.grad for p in params if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else None


class _Net(torch.nn.Module):
    """make_net's MLP; its ``BAD``-th training forward multiplies the loss by ``factor``."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.net, self.factor, self.calls = make_net(), factor, 0

    def forward(self, x, y):
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if self.training:
            loss = loss * (self.factor if self.calls == BAD else 1.0)
            self.calls += 1
        return {"loss": loss}


class _Pairs(torch.utils.data.Dataset):
    """The batches of `batch` (8 rows each), one row per item, in order."""

    def __init__(self) -> None:
        pairs = [batch(i) for i in range(FRAMEWORK_STEPS)]
        self.x, self.y = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


def drive_lightning(clipper, factor: float, tmp_path, spikes=None):
    pl = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.loggers import CSVLogger

    from gradclip.integrations.lightning import GradClipCallback

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = _Net(factor)

        def training_step(self, b, batch_idx):
            return self.model(b["x"], b["y"])["loss"]

        def train_dataloader(self):
            return torch.utils.data.DataLoader(_Pairs(), batch_size=8)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    snaps, reached = [], []

    class Probe(pl.Callback):  # after GradClipCallback in the list: sees what the optimizer gets
        def on_train_batch_start(self, trainer, module, b, batch_idx):
            opt = trainer.optimizers[0]
            snaps.append(([p.detach().clone() for p in module.parameters()], copy.deepcopy(opt.state_dict())))

        def on_before_optimizer_step(self, trainer, module, optimizer):
            reached.append(_grad_norm(module.parameters()))

        def on_train_end(self, trainer, module):
            self.on_train_batch_start(trainer, module, None, -1)

    module = Module()
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=FRAMEWORK_STEPS, logger=CSVLogger(tmp_path, name="run"),
        log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=tmp_path,
        callbacks=[GradClipCallback(clipper, skip_spikes=spikes, log_dir=tmp_path / "log"), Probe()],
    )  # fmt: skip
    trainer.fit(module)
    return snaps, reached, _jsonl(tmp_path / "log")


def drive_hf(clipper, factor: float, tmp_path, spikes=None):
    transformers = pytest.importorskip("transformers")
    from gradclip.integrations.huggingface import GradClipCallback

    snaps, reached = [], []

    class Probe(transformers.TrainerCallback):  # GradClipCallback puts itself first: this runs after it
        def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            snaps.append(
                ([p.detach().clone() for p in model.parameters()], copy.deepcopy(optimizer.state_dict()))
            )

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            reached.append(_grad_norm(model.parameters()))

        def on_train_end(self, args, state, control, **kwargs):
            self.on_step_begin(args, state, control, **kwargs)

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=FRAMEWORK_STEPS, per_device_train_batch_size=8,
        learning_rate=1e-2, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
        report_to="none", use_cpu=True, disable_tqdm=True, seed=0, max_grad_norm=0.0,
    )  # fmt: skip
    callbacks = [GradClipCallback(clipper, skip_spikes=spikes, log_dir=tmp_path / "log"), Probe()]
    transformers.Trainer(model=_Net(factor), args=args, train_dataset=_Pairs(), callbacks=callbacks).train()
    return snaps, reached, _jsonl(tmp_path / "log")


def drive_keras(clipper, factor: float, tmp_path, spikes=None):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")  # the integration needs the torch backend
    keras = pytest.importorskip("keras")
    from gradclip.integrations.keras import GradClipCallback, GradClipOptimizer

    reached = []

    class Adam(keras.optimizers.Adam):  # records the gradients GradClipOptimizer hands on
        def apply(self, grads, trainable_variables=None):
            reached.append(
                float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
            )
            return super().apply(grads, trainable_variables)

    keras.utils.set_random_seed(0)
    m = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(3)]
    )
    opt = GradClipOptimizer(Adam(1e-2), clipper, skip_spikes=spikes)
    m.compile(optimizer=opt, loss="mse")
    data = _Pairs()
    x, y = data.x.numpy().copy(), data.y.numpy().copy()
    y[8 * BAD : 8 * (BAD + 1)] *= factor  # mse of y * factor: a factor^2 loss, gradients ~factor larger
    snaps = []

    def snap(*_args, **_kwargs) -> None:
        weights = [torch.tensor(np.array(w)) for w in m.get_weights()]
        snaps.append((weights, [torch.tensor(np.array(v.numpy())) for v in opt.variables]))

    probe = keras.callbacks.LambdaCallback(on_train_batch_begin=snap, on_train_end=snap)
    m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
          callbacks=[GradClipCallback(log_dir=tmp_path / "log", sinks=("jsonl",)), probe])  # fmt: skip
    return snaps, reached, _jsonl(tmp_path / "log")


FRAMEWORKS = {"lightning": drive_lightning, "huggingface": drive_hf, "keras": drive_keras}


def _framework_marks(test):  # the marks every framework run needs
    for mark in _FRAMEWORK_MARKS:
        test = mark(test)
    return test


_FRAMEWORK_MARKS = [
    pytest.mark.slow,  # each run builds a real Trainer / Keras model
    pytest.mark.filterwarnings("ignore:The '.*dataloader' does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
@pytest.mark.parametrize("clipper", list(FRAMEWORK_CLIPPERS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@_framework_marks
def test_frameworks_run_the_same_scenarios(framework, clipper, scenario, tmp_path):
    snaps, reached, log = FRAMEWORKS[framework](FRAMEWORK_CLIPPERS[clipper](), SCENARIOS[scenario], tmp_path)
    assert len(snaps) == FRAMEWORK_STEPS + 1 and len(log) == FRAMEWORK_STEPS
    assert [r["step"] for r in log] == list(range(FRAMEWORK_STEPS))
    # Every framework logs the step's training loss (JSON writes a non-finite one as text: "nan", "inf").
    assert (
        all(isinstance(r["loss"], float) for i, r in enumerate(log) if i != BAD)
        and log[BAD]["loss"] is not None
    )
    if scenario != "spike":
        assert [r["skipped"] for r in log] == [i == BAD for i in range(FRAMEWORK_STEPS)]
        assert log[BAD]["finite"] is False and log[BAD]["clipped"] is False
        assert_same(snaps[BAD + 1], snaps[BAD])  # weights and optimizer state, bitwise
        assert not all(torch.equal(a, b) for a, b in zip(snaps[-1][0], snaps[BAD + 1][0], strict=True))
        assert all(torch.isfinite(p).all() for p in snaps[-1][0])
        if framework == "keras":
            assert len(reached) == FRAMEWORK_STEPS - 1  # the inner optimizer never saw the bad step
        else:
            assert reached[BAD] is None  # the gradients were dropped before optimizer.step()
        return
    row = log[BAD]
    assert not any(r["skipped"] for r in log) and row["clipped"] and row["finite"]
    assert row["pre_clip_norm"] > 100 * row["threshold"]
    assert reached[BAD] <= row["threshold"] * (1 + 1e-4)
    assert reached[BAD] == pytest.approx(row["post_clip_norm"], rel=1e-4)


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
@_framework_marks
def test_frameworks_skip_spikes_when_asked(framework, tmp_path):
    spikes = SpikeSkip(3.0, window=10, warmup=3)
    snaps, _, log = FRAMEWORKS[framework](NormClipper(Fixed(1e9)), 1e4, tmp_path, spikes=spikes)
    assert [r["skipped"] for r in log] == [i == BAD for i in range(FRAMEWORK_STEPS)]
    assert log[BAD]["finite"] is True and log[BAD]["pre_clip_norm"] > 100 * log[BAD - 1]["pre_clip_norm"]
    assert_same(snaps[BAD + 1], snaps[BAD])


# -- the recurrent experiment's training loop -----------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, 1e4], ids=["nan", "spike"])
def test_recurrent_train_run_follows_the_same_step(bad, tmp_path, monkeypatch):
    """``train_run`` (Pascanu's loop): the threshold applied is the config's, a NaN batch is skipped."""
    from gradclip.sandbox.recurrent import train as rtrain

    task = rtrain.get_task("addition")
    calls = {"n": 0}

    class BadTask:  # the real task, with the third batch's inputs multiplied by `bad`
        def __getattr__(self, name):
            return getattr(task, name)

        def generate(self, *args, **kwargs):
            batch = task.generate(*args, **kwargs)
            calls["n"] += 1
            return batch._replace(inputs=batch.inputs * np.float32(bad)) if calls["n"] == BAD else batch

    monkeypatch.setattr(rtrain, "get_task", lambda name: BadTask())
    config = rtrain.RunConfig(task="addition", length=10, steps=6, threshold=0.5, eval_every=0)
    result = rtrain.train_run(config, log_dir=tmp_path)
    log = _jsonl(tmp_path)
    assert {r["threshold"] for r in log} == {0.5}
    assert all(r["post_clip_norm"] <= 0.5 * (1 + 1e-5) for r in log if r["finite"])
    bad_step = log[BAD - 1]
    if math.isnan(bad):
        assert bad_step["skipped"] and not bad_step["finite"] and result.diverged  # stopped, weights intact
        assert len(log) == BAD
    else:
        assert bad_step["clipped"] and bad_step["pre_clip_norm"] > 0.5 and len(log) == 6
        assert bad_step["post_clip_norm"] == pytest.approx(0.5, rel=1e-5)
