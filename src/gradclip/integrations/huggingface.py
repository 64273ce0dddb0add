"""A Hugging Face ``TrainerCallback`` that clips with a gradclip clipper instead of ``max_grad_norm``.

The clip runs in ``on_pre_optimizer_step``. In transformers 5.x the Trainer calls it once per
optimizer step, after the last accumulated ``backward()`` and after ``_get_grad_norm``, whose
``accelerator.clip_grad_norm_`` unscales fp16 AMP gradients (``unscale_gradients``), just before
``optimizer.step()``. Versions that skip that norm when ``max_grad_norm=0`` leave the gradients
scaled, so the callback unscales them itself when the optimizer's ``GradScaler`` has not yet: the
clipper always sees true gradients. The Trainer must not clip as well, so
``TrainingArguments.max_grad_norm`` must be 0 (its default is 1.0); any other value is refused when
the Trainer is built or training begins. A NaN/Inf step is skipped by setting the gradients to None
(the one [`ClipStep`][gradclip.step.ClipStep] rule); the LR scheduler still advances.

What it logs: the fields ``gradclip/pre_clip_norm``, ``post_clip_norm``, ``threshold``,
``clip_rate`` and ``skipped_steps`` of the latest step join the Trainer's training logs (those
holding ``loss``), so ``state.log_history`` and every ``report_to`` reporter (TensorBoard, W&B,
...) get them. Reporters are registered before user callbacks and the Trainer hands all of them
the same ``logs`` dict in turn, so the callback moves itself to the front of the Trainer's callback
list the first time the Trainer calls it (``on_init_end``, or ``on_train_begin`` for a callback
added later): added the ordinary way, ``Trainer(callbacks=[cb])``, it is still the first to see
``logs``. A [`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor] writes the run log
(``grads.jsonl``: every step, per-layer norms, warnings, advice; ``gradclip report`` reads it) into
``<output_dir>/gradclip``. Its ``gradclip/loss`` is the step's training loss: the ``loss`` the model
returns from its training forward passes (a forward hook reads it), combined over the step's
micro-batches as the Trainer combines them (summed when the model normalizes by
``num_items_in_batch``, averaged otherwise). A loss the Trainer computes outside the model (label
smoothing, ``compute_loss_func``, an overridden ``compute_loss``) is not seen: the field is then null.

Checkpoints: at every save the clipper, its policy and the monitor go into ``gradclip.pt`` in the
checkpoint folder (``torch.save`` of plain data, loadable with ``weights_only=True``). On
``train(resume_from_checkpoint=...)`` the callback reads it back at ``on_train_begin`` from the
checkpoint the Trainer resumed from (any path, or the last one in ``output_dir`` for ``True``):
``ZScore``'s statistics continue, and the run log continues at the checkpoint's step in the same
directory (the steps a killed run logged after it are dropped). The Trainer hands callbacks no
checkpoint path, so the callback reads the ``resume_from_checkpoint`` that the Trainer's training
loop was called with from that call's frame; should a Trainer version name it otherwise, it falls
back to ``<output_dir>/checkpoint-<global_step>``. The Trainer's own mechanism for stateful
callbacks (``ExportableState``) is not used: it rebuilds a callback from JSON arguments, which
cannot hold a clipper.

Not supported, with an error: ``max_grad_norm > 0``, DeepSpeed and FSDP (they clip inside their
engines, on sharded gradients).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from gradclip._io import atomic_write
from gradclip.clippers import Clipper
from gradclip.diagnosis import MonitorConfig
from gradclip.integrations._monitored import MonitoredStep
from gradclip.skip import SpikeSkip

try:
    from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import CallbackHandler
except ModuleNotFoundError as err:
    if not (err.name or "").startswith(("transformers", "accelerate")):
        raise
    raise ImportError(
        "gradclip.integrations.huggingface needs transformers and accelerate; install them with "
        "`pip install 'gradclip[hf]'`"
    ) from err

if not hasattr(TrainerCallback, "on_pre_optimizer_step"):  # older Trainers would never call the clip
    raise ImportError(
        "gradclip.integrations.huggingface needs a transformers Trainer with the on_pre_optimizer_step "
        "event (transformers 5.x); upgrade with `pip install -U 'gradclip[hf]'`"
    )

__all__ = ["STATE_NAME", "GradClipCallback"]

STATE_NAME = "gradclip.pt"  # in each checkpoint folder


class GradClipCallback(TrainerCallback):
    """Clip with ``clipper`` before every optimizer step of a ``transformers.Trainer``, log and checkpoint it.

    Args:
        clipper: ``NormClipper(max_norm)``, ``NormClipper(Percentile())``, ``NormClipper(ZScore())``,
            ``ValueClipper(c)``, ``AGC(f)``, or a float ``max_norm``.
        skip_nonfinite: skip the optimizer step when the pre-clip norm is NaN/Inf.
        skip_spikes: a [`SpikeSkip`][gradclip.skip.SpikeSkip] to also skip spike steps, or None.
        rate_window: steps over which ``gradclip/clip_rate`` is measured.
        log_dir: the monitor's run directory (default ``<output_dir>/gradclip``); False: no monitor.
        sinks: the monitor's sinks besides JSONL (``'tensorboard'``, ``'csv'``).
        monitor_config: the monitor's warning levels
            ([`gradclip.monitor.MonitorConfig`][gradclip.monitor.MonitorConfig]).

    Examples:
        >>> import torch, transformers, gradclip
        >>> from gradclip.integrations.huggingface import GradClipCallback
        >>> from gradclip.sinks import read_run
        >>> config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_positions=8,
        ...                                  bos_token_id=0, eos_token_id=0)
        >>> tokens = torch.randint(0, 16, (4, 8))
        >>> args = transformers.TrainingArguments(
        ...     output_dir="runs/hf-example", max_steps=2, per_device_train_batch_size=2, use_cpu=True,
        ...     max_grad_norm=0.0,  # gradclip clips instead
        ...     save_strategy="no", report_to="none", disable_tqdm=True)
        >>> clip = GradClipCallback(gradclip.NormClipper(gradclip.Percentile()))
        >>> trainer = transformers.Trainer(
        ...     model=transformers.GPT2LMHeadModel(config), args=args, callbacks=[clip],
        ...     train_dataset=[{"input_ids": t, "labels": t} for t in tokens])
        >>> trainer.remove_callback(transformers.PrinterCallback)  # keeps the example's output quiet
        >>> _ = trainer.train()
        >>> clip.step.steps, read_run("runs/hf-example/gradclip").steps  # 2 steps clipped and logged
        (2, 2)
    """

    def __init__(
        self,
        clipper: Clipper | float = 1.0,
        *,
        skip_nonfinite: bool = True,
        skip_spikes: SpikeSkip | None = None,
        rate_window: int = 100,
        log_dir: str | Path | bool | None = None,
        sinks: tuple[str, ...] = ("jsonl",),
        monitor_config: MonitorConfig | None = None,
    ) -> None:
        self.clip = MonitoredStep(
            clipper, skip_nonfinite=skip_nonfinite, skip_spikes=skip_spikes, rate_window=rate_window,
            log_dir=log_dir, sinks=sinks, config=monitor_config,
        )  # fmt: skip
        self.step = self.clip.step
        self._losses: list[tuple[Any, bool]] = []  # this step's micro-batch losses (and "a share of the sum")
        self._hook: Any = None

    @property
    def monitor(self) -> Any:
        """The run's ``GradMonitor`` while training (None before, after, or with ``log_dir=False``)."""
        return self.clip.monitor

    def _put_first(self) -> None:
        """Go first in the calling Trainer's callbacks, so that reporters get ``logs`` with our fields."""
        frame: FrameType | None = sys._getframe(1)
        for _ in range(4):  # our event method <- CallbackHandler.call_event
            frame = frame.f_back if frame is not None else None
            handler = frame.f_locals.get("self") if frame is not None else None
            if isinstance(handler, CallbackHandler) and self in handler.callbacks:
                if handler.callbacks[0] is not self:
                    # call_event is iterating this list: removing us and inserting at 0 keeps every
                    # later callback at its index, so none is skipped or called twice.
                    handler.callbacks.remove(self)
                    handler.callbacks.insert(0, self)
                return

    def on_init_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        _check_args(args)
        self._put_first()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        _check_args(args)  # again: args may have changed, or the callback was added after __init__
        self._put_first()
        if state.global_step > 0:
            self._restore(_resumed_from(args, state) / STATE_NAME)
        if state.is_world_process_zero:
            model, optimizer = kwargs["model"], kwargs["optimizer"]
            names = {id(p): n for n, p in model.named_parameters()}
            params = [p for group in optimizer.param_groups for p in group["params"]]
            self.clip.start(_output_dir(args) / "gradclip", [names.get(id(p), "?") for p in params])
            self._losses.clear()
            if self._hook is None:
                self._hook = model.register_forward_hook(self._keep_loss, with_kwargs=True)

    def _keep_loss(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        """Forward hook: keep the loss of a training forward pass (evaluation runs without grad)."""
        loss = output.get("loss") if isinstance(output, Mapping) else None
        if module.training and torch.is_grad_enabled() and isinstance(loss, torch.Tensor):
            # With num_items_in_batch the model divides by the step's token count: the shares add up.
            self._losses.append((loss.detach().mean(), kwargs.get("num_items_in_batch") is not None))

    def _step_loss(self) -> Any:
        """The step's loss from its micro-batches' (None when the model returned none), and forget them."""
        if not self._losses:
            return None
        losses = torch.stack([loss for loss, _ in self._losses])
        shares = all(share for _, share in self._losses)
        self._losses.clear()
        return losses.sum() if shares else losses.mean()

    def _restore(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(
                f"resuming at this step, but {path} does not exist: the checkpoint was saved without "
                "GradClipCallback, so the clip state and the run log cannot continue"
            )
        self.clip.load_state_dict(torch.load(path, weights_only=True))

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        optimizer = kwargs["optimizer"]
        _unscale(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.clip.clip(params, lr=float(optimizer.param_groups[0]["lr"]), loss=self._step_loss())

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs is None or "loss" not in logs:
            return  # evaluation and end-of-training summaries carry no step of their own
        fields = self.step.float_metrics()
        logs.update(fields)
        # Trainer.log stored a copy of these logs in log_history just before calling on_log.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(fields)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        folder = _output_dir(args) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            atomic_write(folder / STATE_NAME, lambda f: torch.save(self.clip.state_dict(), f))

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.clip.close()

    def __repr__(self) -> str:
        return f"GradClipCallback({self.step.clipper!r}, skip_nonfinite={self.step.skip_nonfinite})"


def _output_dir(args: TrainingArguments) -> Path:
    if args.output_dir is None:  # transformers fills in a default; someone set it back to None
        raise ValueError(
            "TrainingArguments.output_dir is None: GradClipCallback keeps its run log and clip state there"
        )
    return Path(args.output_dir)


def _resumed_from(args: TrainingArguments, state: TrainerState) -> Path:
    """The checkpoint folder the Trainer is resuming from.

    ``Trainer.train`` resolves ``resume_from_checkpoint`` (``True``: the last checkpoint in
    ``output_dir``) and passes the path to ``_inner_training_loop``, which calls ``on_train_begin``;
    callbacks get no path, so it is read from that frame. Without one (another Trainer version), the
    folder the Trainer saves step ``global_step`` in.
    """
    frame: FrameType | None = sys._getframe(1)
    for _ in range(8):  # _resumed_from <- on_train_begin <- call_event <- on_train_begin <- the loop
        if frame is None:
            break
        if frame.f_code.co_name == "_inner_training_loop" and isinstance(frame.f_locals.get("self"), Trainer):
            path = frame.f_locals.get("resume_from_checkpoint")
            if isinstance(path, (str, os.PathLike)):
                return Path(path)
            break
        frame = frame.f_back
    return _output_dir(args) / f"checkpoint-{state.global_step}"


def _unscale(optimizer: Any) -> None:
    """Unscale fp16 AMP gradients unless the Trainer already did (once per step, as GradScaler allows)."""
    scaler = getattr(optimizer, "scaler", None)  # accelerate's AcceleratedOptimizer under fp16 AMP
    if scaler is None:
        return
    try:
        scaler.unscale_(optimizer.optimizer)
    except RuntimeError as err:
        # GradScaler refuses a second unscale_ before update(); that refusal means "already done".
        if "unscale_() has already been called" not in str(err):
            raise


def _check_args(args: TrainingArguments) -> None:
    if args.max_grad_norm not in (0, None):
        raise ValueError(
            f"TrainingArguments(max_grad_norm={args.max_grad_norm!r}) makes the Trainer clip too, "
            "before GradClipCallback; pass max_grad_norm=0 (the default is 1.0) and let the callback clip"
        )
    if args.deepspeed or args.fsdp:
        which = "deepspeed" if args.deepspeed else "fsdp"
        raise ValueError(
            f"GradClipCallback does not support TrainingArguments({which}={getattr(args, which)!r}): the "
            "engine holds sharded gradients and clips them itself; use its own clipping (max_grad_norm)"
        )
