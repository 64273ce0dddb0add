"""GradClipCallback in a real Lightning Trainer (CPU): clipping, logs, skipping, checkpoints, AMP, errors."""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

from lightning.pytorch.loggers import CSVLogger  # noqa: E402 (after the importorskip)
from lightning.pytorch.plugins.precision import MixedPrecision  # noqa: E402

from gradclip.clippers import NormClipper  # noqa: E402
from gradclip.diagnosis import MonitorConfig, SpikeWarning  # noqa: E402
from gradclip.integrations.lightning import GradClipCallback  # noqa: E402
from gradclip.policies import ZScore  # noqa: E402
from gradclip.sinks import read_run  # noqa: E402

pytestmark = [
    pytest.mark.slow,  # every test starts a Trainer (or a Python that imports torch)
    # On machines with more than two CPUs Lightning warns that a DataLoader with num_workers=0 may be
    # a bottleneck; these loaders hold a few hundred in-memory numbers, workers would only slow them.
    pytest.mark.filterwarnings("ignore:The '.*dataloader' does not have many workers:UserWarning"),
    # FutureWarning: Lightning 2.6's utilities/_pytree.py calls isinstance(treespec, LeafSpec), which
    # torch 2.13 deprecates; it is inside Lightning, harmless here and not ours to fix.
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"),
    # The monitor warns about the spikes and NaN steps these tests inject on purpose; the tests read
    # those warnings back from the run log (and pytest.warns still sees them where a test asks).
    pytest.mark.filterwarnings("ignore::gradclip.diagnosis.GradMonitorWarning"),
]

STEPS_PER_EPOCH = 20


class Regressor(pl.LightningModule):
    """A small MLP on fixed random data; ``spikes`` multiplies the loss at chosen optimizer steps."""

    def __init__(self, spikes: dict[int, float] | None = None, *, fused: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        self.spikes = spikes or {}
        self.fused = fused
        self.losses: list[float] = []  # every training_step's loss, in order

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x).float(), y)
        loss = loss * self.spikes.get(self.global_step, 1.0)  # global_step counts optimizer steps
        self.losses.append(float(loss.detach()))
        return loss

    def train_dataloader(self):
        gen = torch.Generator().manual_seed(1)
        data = torch.utils.data.TensorDataset(
            torch.randn(8 * STEPS_PER_EPOCH, 8, generator=gen),
            torch.randn(8 * STEPS_PER_EPOCH, 1, generator=gen),
        )
        return torch.utils.data.DataLoader(data, batch_size=8)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2, fused=self.fused or None)


class GradProbe(pl.Callback):
    """Runs after GradClipCallback: records the gradient norm the optimizer is about to apply."""

    def __init__(self) -> None:
        self.norms: list[float | None] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.nn.utils.get_total_norm(grads)) if grads else None)


def trainer(tmp_path: Path, callbacks: list, **kwargs) -> pl.Trainer:
    options = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "logger": CSVLogger(tmp_path, name="run"),
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": tmp_path,
        **kwargs,
    }
    return pl.Trainer(callbacks=callbacks, **options)


def read_metrics(t: pl.Trainer) -> list[dict[str, float]]:
    with open(Path(t.logger.log_dir) / "metrics.csv") as f:
        rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    return [r for r in rows if "gradclip/pre_clip_norm" in r]


def test_fit_clips_the_spike_skips_the_nan_and_logs_every_step(tmp_path):
    spike, nan = 12, 15
    probe = GradProbe()
    cb = GradClipCallback(NormClipper(ZScore(warmup=5)))
    t = trainer(tmp_path, [cb, probe])
    module = Regressor({spike: 1e3, nan: math.nan})
    t.fit(module)

    rows = read_metrics(t)
    assert [int(r["step"]) for r in rows] == list(range(STEPS_PER_EPOCH))
    row = rows[spike]
    assert row["gradclip/pre_clip_norm"] > 100 * rows[spike - 1]["gradclip/pre_clip_norm"]
    assert row["gradclip/post_clip_norm"] == pytest.approx(row["gradclip/threshold"], rel=1e-4)
    assert row["gradclip/clip_rate"] > 0
    # What was logged as post-clip is what the optimizer received (measured by torch after us).
    for r, seen in zip(rows, probe.norms, strict=True):
        if seen is not None:
            assert r["gradclip/post_clip_norm"] == pytest.approx(seen, rel=1e-5)
    # The NaN step: gradients dropped, logged as skipped, parameters and Adam state untouched.
    assert probe.norms[nan] is None
    assert [r["gradclip/skipped_steps"] for r in rows] == [0.0] * nan + [1.0] * (STEPS_PER_EPOCH - nan)
    assert all(torch.isfinite(p).all() for p in module.parameters())
    opt = t.optimizers[0]
    assert all(float(s["step"]) == STEPS_PER_EPOCH - 1 for s in opt.state.values())


def test_checkpoint_resume_restores_the_clipper_state(tmp_path):
    def make_callback():
        return GradClipCallback(NormClipper(ZScore(warmup=5)))

    spikes = {25: 1e3}  # in the second epoch, so the resumed half clips with the restored statistics
    straight = make_callback()
    trainer(tmp_path / "a", [straight], max_epochs=2).fit(Regressor(spikes))

    first = make_callback()
    t1 = trainer(tmp_path / "b", [first], max_epochs=1)
    t1.fit(Regressor(spikes))
    ckpt = tmp_path / "b.ckpt"
    t1.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)["callbacks"]["GradClipCallback"]
    assert saved["step"]["clipper"] == first.step.state_dict()["clipper"]
    assert saved["step"]["steps"] == STEPS_PER_EPOCH and saved["monitor"]["state"]["counters"]["step"] == 20

    resumed = make_callback()
    t2 = trainer(tmp_path / "c", [resumed], max_epochs=2)
    t2.fit(Regressor(spikes), ckpt_path=ckpt)

    a, b = straight.step.state_dict(), resumed.step.state_dict()
    assert b["steps"] == a["steps"] == 2 * STEPS_PER_EPOCH
    assert b["clipper"]["policy"]["state"] == pytest.approx(a["clipper"]["policy"]["state"], rel=1e-6)
    rows = read_metrics(t2)
    assert rows[25 - STEPS_PER_EPOCH]["gradclip/clip_rate"] > 0  # the spike was clipped after resume
    # One run log: the resumed fit appended to the first fit's, and it matches the straight run's.
    log, ref = (
        read_run(Path(t1.log_dir) / "gradclip"),
        read_run(Path(tmp_path / "a" / "run" / "version_0" / "gradclip")),
    )
    assert (
        log.columns["step"].tolist() == list(range(2 * STEPS_PER_EPOCH))
        and not (tmp_path / "c" / "run" / "version_0" / "gradclip").exists()
    )
    np.testing.assert_allclose(
        log.columns["gradclip/pre_clip_norm"], ref.columns["gradclip/pre_clip_norm"], rtol=1e-5
    )
    assert [w["step"] for w in log.warnings] == [w["step"] for w in ref.warnings]


def test_fit_with_a_nan_batch_and_a_spike_leaves_a_run_dir_a_report_and_tensorboard_tags(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spike, nan = 25, 32  # after the monitor's 20-step baseline
    cb = GradClipCallback(NormClipper(ZScore()), monitor_config=MonitorConfig(warmup=10))
    t = trainer(tmp_path, [cb], max_epochs=2, logger=TensorBoardLogger(tmp_path, name="tb"))
    module = Regressor({spike: 1e4, nan: math.nan})
    with pytest.warns(SpikeWarning, match=f"step {spike}: gradient norm"):
        t.fit(module)
    run_dir = Path(t.log_dir) / "gradclip"
    log = read_run(run_dir)
    assert log.steps == 2 * STEPS_PER_EPOCH and log.layers == [n for n, _ in module.named_parameters()]
    assert log.columns["gradclip/skipped"][nan] == 1 and log.columns["gradclip/skipped"].sum() == 1
    assert log.columns["gradclip/clipped"][spike] == 1 and log.layer_norms.shape == (40, 4)
    assert [w["step"] for w in log.warnings if w["kind"] == "spike"] == [spike, nan]
    assert log.summary["skipped"] == 1 and log.summary["advice"] is not None
    # The training loss of every step, the NaN step's included, as training_step returned it.
    np.testing.assert_allclose(log.columns["gradclip/loss"], module.losses, rtol=1e-6)
    assert math.isnan(log.columns["gradclip/loss"][nan]) and log.columns["gradclip/loss"][spike] > 1e3

    out = subprocess.run([sys.executable, "-m", "gradclip", "report", str(run_dir)], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert re.search(r"skipped steps\s*│\s*1 ", out.stdout) and (run_dir / "report" / "report.html").is_file()
    assert re.search(rf"last loss\s*│\s*{module.losses[-1]:.4g} ", out.stdout), out.stdout
    from gradclip.explorer.runs import load_run  # the explorer's runs view reads the same log

    shown = load_run(tmp_path, Path(run_dir).relative_to(tmp_path).as_posix())["timeline"]["gradclip/loss"]
    assert shown[:nan] == pytest.approx(module.losses[:nan], rel=1e-6) and shown[nan] is None  # NaN: null

    acc = EventAccumulator(t.log_dir, size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"gradclip/pre_clip_norm", "gradclip/threshold", "gradclip/skipped_steps"} <= tags
    assert len(acc.Scalars("gradclip/pre_clip_norm")) == 2 * STEPS_PER_EPOCH


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_amp_clips_unscaled_gradients(tmp_path, precision):
    # 16-mixed: fp16 autocast with a real GradScaler on the CPU (Lightning's own "16-mixed" flag
    # falls back to bf16 there, so the plugin is built by hand). bf16-mixed has no scaler.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12) if precision == "16-mixed" else None
    plugin = MixedPrecision(precision, "cpu", scaler=scaler)
    amp_cb, ref_cb = GradClipCallback(1e-3), GradClipCallback(1e-3)
    amp = trainer(tmp_path / "amp", [amp_cb], max_steps=1, plugins=[plugin])
    amp.fit(Regressor())
    trainer(tmp_path / "ref", [ref_cb], max_steps=1).fit(Regressor())
    if precision == "16-mixed":
        assert amp.precision_plugin.scaler.get_scale() == 2.0**12  # the step ran at this scale
    else:
        assert amp.precision_plugin.scaler is None
    # Clipped with the true norm, not the one scaled 4096x: same as the fp32 run, to AMP rounding.
    norm, ref_norm = float(amp_cb.step.last.total_norm), float(ref_cb.step.last.total_norm)
    assert norm == pytest.approx(ref_norm, rel=5e-2)
    assert float(amp_cb.step.last.post_clip_norm) == pytest.approx(1e-3, rel=1e-3)
    # The logged loss is the true one too (the scaler's factor divided out), as in the fp32 run.
    amp_loss = read_run(Path(amp.log_dir) / "gradclip").columns["gradclip/loss"]
    ref_loss = read_run(tmp_path / "ref" / "run" / "version_0" / "gradclip").columns["gradclip/loss"]
    assert amp_loss[0] == pytest.approx(ref_loss[0], rel=5e-2) and ref_loss[0] > 0


def test_the_logged_loss_of_an_accumulated_step_is_the_mean_of_its_micro_batches(tmp_path):
    module = Regressor()
    trainer(tmp_path, [GradClipCallback(1.0)], max_steps=3, accumulate_grad_batches=2).fit(module)
    log = read_run(tmp_path / "run" / "version_0" / "gradclip")
    assert log.steps == 3 and len(module.losses) == 6
    np.testing.assert_allclose(
        log.columns["gradclip/loss"], np.reshape(module.losses, (3, 2)).mean(1), rtol=1e-6
    )


class Manual(Regressor):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(super().training_step(batch, batch_idx))
        opt.step()


class OwnClipping(Regressor):
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clip_gradients(optimizer, gradient_clip_val=0.5)


@pytest.mark.parametrize(
    ("module", "options", "error", "match"),
    [
        (Manual, {}, ValueError, "automatic_optimization=False"),
        (Regressor, {"gradient_clip_val": 0.5}, ValueError, r"Trainer\(gradient_clip_val=0.5\)"),
        (OwnClipping, {}, ValueError, "OwnClipping overrides configure_gradient_clipping"),
    ],
)
def test_unsupported_setups_fail_before_training(tmp_path, module, options, error, match):
    instance = module()
    start = [p.detach().clone() for p in instance.parameters()]
    with pytest.raises(error, match=match):
        trainer(tmp_path, [GradClipCallback(1.0)], max_steps=2, **options).fit(instance)
    for p, p0 in zip(instance.parameters(), start, strict=True):
        assert torch.equal(p, p0)


def test_fused_optimizer_under_a_grad_scaler_is_refused(tmp_path):
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    t = trainer(tmp_path, [GradClipCallback(1.0)], max_steps=1, plugins=[plugin])
    with pytest.raises(ValueError, match="Adam under a GradScaler: it unscales inside step"):
        t.fit(Regressor(fused=True))


def test_missing_lightning_names_the_extra():
    code = textwrap.dedent(
        """
        import importlib.abc, sys
        class NoLightning(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "lightning" or name.startswith("lightning."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, NoLightning())
        import gradclip.integrations
        try:
            import gradclip.integrations.lightning
        except ImportError as err:
            assert "gradclip[lightning]" in str(err), err
            print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok", out.stderr
