"""A Lightning ``Callback`` that replaces ``Trainer(gradient_clip_val=...)`` with a gradclip clipper.

The clip runs in ``on_before_optimizer_step``: Lightning calls it after the closure (``backward()``,
every accumulated micro-batch included) and, under ``precision="16-mixed"``, after
``MixedPrecision.optimizer_step`` has called ``scaler.unscale_(optimizer)``, so the clipper sees true
gradients; its own ``gradient_clip_val`` clipping comes later in the same place (``_after_closure``).
The clip is one [`ClipStep`][gradclip.step.ClipStep]: a NaN/Inf step (or, with ``skip_spikes``, a spike)
is skipped by setting the gradients to None;
the LR scheduler and ``global_step`` still advance, as for a step ``GradScaler`` skips. Per step it
logs ``gradclip/pre_clip_norm``, ``post_clip_norm``, ``threshold``, ``clip_rate`` and
``skipped_steps`` through ``pl_module.log`` (so every Lightning logger, TensorBoard included, gets
them), and a [`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor] writes the run log
(``grads.jsonl``, per-layer norms, warnings, advice) into ``<trainer.log_dir>/gradclip`` for
``gradclip report``. The log's ``gradclip/loss`` is the step's training loss: the losses Lightning
hands to ``on_before_backward`` (already divided by ``accumulate_grad_batches``, so their sum over
the step's micro-batches is their mean; the ``GradScaler``'s factor is divided out under AMP).
The clipper, its policy and the monitor go into Lightning checkpoints: ``fit(ckpt_path=...)``
continues the adaptive threshold and appends to the same run log.

Not supported, each with an error at ``fit``: manual optimisation (call a clipper in
``training_step`` instead), ``gradient_clip_val`` or an overridden ``configure_gradient_clipping``
(two clippers), sharded strategies (FSDP, DeepSpeed: the gradients each rank holds are shards, so
the norm would be local), and fused optimizers that unscale inside ``step()`` under a ``GradScaler``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradclip.clippers import Clipper
from gradclip.diagnosis import MonitorConfig
from gradclip.integrations._monitored import MonitoredStep
from gradclip.skip import SpikeSkip

try:
    from lightning.pytorch import LightningModule, Trainer
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
except ModuleNotFoundError as err:
    if not (err.name or "").startswith("lightning"):
        raise
    raise ImportError(
        "gradclip.integrations.lightning needs Lightning 2.x; install it with "
        "`pip install 'gradclip[lightning]'`"
    ) from err

__all__ = ["GradClipCallback"]

_SHARDED = (FSDPStrategy, DeepSpeedStrategy)


class GradClipCallback(Callback):
    """Clip with ``clipper`` before every optimizer step, log what happened, checkpoint its state.

    Args:
        clipper: ``NormClipper(max_norm)``, ``NormClipper(Percentile())``, ``NormClipper(ZScore())``,
            ``ValueClipper(c)``, ``AGC(f)``, or a float ``max_norm``.
        skip_nonfinite: skip the optimizer step when the pre-clip norm is NaN/Inf.
        skip_spikes: a [`SpikeSkip`][gradclip.skip.SpikeSkip] to also skip spike steps, or None.
        rate_window: steps over which ``gradclip/clip_rate`` is measured.
        prog_bar: also show the pre-clip norm and the clip rate in the progress bar.
        log_dir: the monitor's run directory (default ``<trainer.log_dir>/gradclip``, or
            ``<default_root_dir>/gradclip`` without a logger); False: no monitor.
        sinks: the monitor's sinks besides JSONL (``'tensorboard'``, ``'csv'``).
        monitor_config: the monitor's warning levels
            ([`gradclip.monitor.MonitorConfig`][gradclip.monitor.MonitorConfig]).

    Examples:
        >>> import lightning.pytorch as pl
        >>> import torch, gradclip
        >>> from gradclip.integrations.lightning import GradClipCallback
        >>> from gradclip.sinks import read_run
        >>> class Regressor(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Linear(4, 1)
        ...     def training_step(self, batch, batch_idx):
        ...         x, y = batch
        ...         return torch.nn.functional.mse_loss(self.net(x), y)
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> data = torch.utils.data.TensorDataset(torch.randn(12, 4), torch.randn(12, 1))
        >>> clip = GradClipCallback(gradclip.NormClipper(gradclip.ZScore()))
        >>> trainer = pl.Trainer(
        ...     max_epochs=1, callbacks=[clip],  # and no gradient_clip_val
        ...     default_root_dir="runs/lightning-example", logger=False, accelerator="cpu",
        ...     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Regressor(), torch.utils.data.DataLoader(data, batch_size=4))
        >>> clip.step.steps, read_run("runs/lightning-example/gradclip").steps  # 3 steps clipped and logged
        (3, 3)
    """

    def __init__(
        self,
        clipper: Clipper | float = 1.0,
        *,
        skip_nonfinite: bool = True,
        skip_spikes: SpikeSkip | None = None,
        rate_window: int = 100,
        prog_bar: bool = False,
        log_dir: str | Path | bool | None = None,
        sinks: tuple[str, ...] = ("jsonl",),
        monitor_config: MonitorConfig | None = None,
    ) -> None:
        self.clip = MonitoredStep(
            clipper, skip_nonfinite=skip_nonfinite, skip_spikes=skip_spikes, rate_window=rate_window,
            log_dir=log_dir, sinks=sinks, config=monitor_config,
        )  # fmt: skip
        self.step = self.clip.step
        self.prog_bar = bool(prog_bar)
        self._loss: Any = None  # the step's loss so far: the sum of its micro-batches' (normalized) losses

    @property
    def monitor(self) -> Any:
        """The run's ``GradMonitor`` while training (None before, after, or with ``log_dir=False``)."""
        return self.clip.monitor

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            _check_setup(trainer, pl_module)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After Lightning restored the checkpoint (load_state_dict), so a resume continues the log.
        if trainer.is_global_zero:
            root = trainer.log_dir if trainer.log_dir is not None else trainer.default_root_dir
            names = {id(p): n for n, p in pl_module.named_parameters()}
            params = [p for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]]
            self.clip.start(Path(root) / "gradclip", [names.get(id(p), "?") for p in params])

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.clip.close()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.clip.close()  # the log so far stays readable; a resume continues it

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: Any) -> None:
        loss = loss.detach()
        self._loss = loss if self._loss is None else self._loss + loss

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and getattr(optimizer, "_step_supports_amp_scaling", False):
            # Lightning leaves unscaling to such optimizers' step(): here the gradients are still scaled.
            raise ValueError(
                f"GradClipCallback cannot clip for {type(optimizer).__name__} under a GradScaler: it "
                "unscales inside step() (a fused optimizer?), after the clip; build it with fused=False"
            )
        loss, self._loss = self._loss, None
        if loss is not None and scaler is not None:
            loss = loss / scaler.get_scale()  # on_before_backward saw the scaled loss; update() comes later
        params = trainer.precision_plugin.main_params(optimizer)
        self.clip.clip(params, lr=optimizer.param_groups[0]["lr"], loss=loss)
        for name, value in self.step.metrics().items():
            show = self.prog_bar and name in ("gradclip/pre_clip_norm", "gradclip/clip_rate")
            pl_module.log(name, value, on_step=True, on_epoch=False, prog_bar=show)

    def state_dict(self) -> dict[str, Any]:
        """Clipper, policy and monitor state (with the run log's directory), saved in checkpoints."""
        return self.clip.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.clip.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"GradClipCallback({self.step.clipper!r}, skip_nonfinite={self.step.skip_nonfinite})"


def _check_setup(trainer: Trainer, pl_module: LightningModule) -> None:
    """Refuse the setups where the callback would not clip, or clip twice, with the reason."""
    if not pl_module.automatic_optimization:
        raise ValueError(
            "GradClipCallback needs automatic optimisation, got a LightningModule with "
            "automatic_optimization=False; with manual optimisation call a clipper yourself between "
            "self.manual_backward(loss) and opt.step() (e.g. gradclip.ClipStep(1.0).clip_(self.parameters()))"
        )
    if trainer.gradient_clip_val not in (None, 0):
        raise ValueError(
            f"Trainer(gradient_clip_val={trainer.gradient_clip_val!r}) clips as well as GradClipCallback; "
            "leave gradient_clip_val unset (None) and let the callback clip"
        )
    if type(pl_module).configure_gradient_clipping is not LightningModule.configure_gradient_clipping:
        raise ValueError(
            f"{type(pl_module).__name__} overrides configure_gradient_clipping, which Lightning calls "
            "after GradClipCallback has clipped; remove the override or the callback"
        )
    if isinstance(trainer.strategy, _SHARDED):
        raise ValueError(
            f"GradClipCallback does not support {type(trainer.strategy).__name__}: each rank holds a "
            "shard of the gradients, so its norm would not be the global one; supported strategies "
            "keep full gradients on every rank (single device, DDP)"
        )
