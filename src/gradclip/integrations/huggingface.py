"""A Hugging Face ``TrainerCallback`` that clips with a gradclip clipper instead of ``max_grad_norm``.

The clip runs in ``on_pre_optimizer_step``. In transformers 5.x the Trainer calls it once per
optimizer step, after the last accumulated ``backward()`` and after ``_get_grad_norm``, whose
``accelerator.clip_grad_norm_`` unscales fp16 AMP gradients (``unscale_gradients``), just before
``optimizer.step()``. Versions that skip that norm when ``max_grad_norm=0`` leave the gradients
scaled, so the callback unscales them itself when the optimizer's ``GradScaler`` has not yet: the
clipper always sees true gradients. The Trainer must not clip as well, so
``TrainingArguments.max_grad_norm`` must be 0 (its default is 1.0); any other value is refused when
the Trainer is built or training begins. A NaN/Inf step is skipped by setting the gradients to None
(see :mod:`gradclip.integrations._step`); the LR scheduler still advances. The fields
``gradclip/pre_clip_norm``, ``post_clip_norm``, ``threshold``, ``clip_rate`` and ``skipped_steps`` of
the latest step are added to the Trainer's training logs (those holding ``loss``) and to
``state.log_history``. Report integrations (``report_to``) run before user callbacks and do not see
them, unless the callback is put first: ``trainer.callback_handler.callbacks.insert(0, callback)``.

Not supported, with an error: ``max_grad_norm > 0``, DeepSpeed and FSDP (they clip inside their
engines, on sharded gradients). The clipper's state is not saved in Trainer checkpoints (left out:
the Trainer rebuilds stateful callbacks from JSON, which cannot hold a clipper).
"""

from __future__ import annotations

from typing import Any

from gradclip.clippers import Clipper
from gradclip.step import ClipStep

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
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

__all__ = ["GradClipCallback"]


class GradClipCallback(TrainerCallback):
    """Clip with ``clipper`` before every optimizer step of a ``transformers.Trainer`` and log it.

    Args:
        clipper: ``NormClipper(max_norm)``, ``NormClipper(Percentile())``, ``NormClipper(ZScore())``,
            ``ValueClipper(c)``, ``AGC(f)``, or a float ``max_norm``.
        skip_nonfinite: skip the optimizer step when the pre-clip norm is NaN/Inf.
        rate_window: steps over which ``gradclip/clip_rate`` is measured.

    Example::

        args = TrainingArguments(output_dir, max_grad_norm=0)  # let gradclip do the clipping
        trainer = Trainer(model, args, train_dataset=ds, callbacks=[GradClipCallback(1.0)])
    """

    def __init__(
        self, clipper: Clipper | float = 1.0, *, skip_nonfinite: bool = True, rate_window: int = 100
    ) -> None:
        self.step = ClipStep(clipper, skip_nonfinite=skip_nonfinite, rate_window=rate_window)

    def on_init_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        _check_args(args)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        _check_args(args)  # again: args may have changed, or the callback was added after __init__

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        optimizer = kwargs["optimizer"]
        _unscale(optimizer)
        self.step(p for group in optimizer.param_groups for p in group["params"])

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

    def __repr__(self) -> str:
        return f"GradClipCallback({self.step.clipper!r}, skip_nonfinite={self.step.skip_nonfinite})"


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
