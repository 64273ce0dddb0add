"""Clipping for a plain training loop in one line: a context manager around the existing optimizer.

``with clipping(optimizer, 1.0) as clip:`` registers a step pre-hook on ``optimizer``, so the loop's
own ``optimizer.step()`` (or ``scaler.step(optimizer)``) clips first and skips non-finite steps; the
loop, its LR scheduler and its checkpoints stay as they are (the optimizer is not wrapped). The hook
is removed on exit. Under ``torch.amp.GradScaler`` the scaler unscales before it calls
``optimizer.step()``, so the clipper sees true gradients, and a step the scaler skips for Inf/NaN
never reaches the hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gradclip.clippers import Clipper
from gradclip.integrations._step import StepClipper

__all__ = ["clipping"]


@contextmanager
def clipping(
    optimizer: Any,
    clipper: Clipper | float = 1.0,
    *,
    skip_nonfinite: bool = True,
    rate_window: int = 100,
) -> Iterator[StepClipper]:
    """Clip before every ``optimizer.step()`` inside the ``with`` block; yields the `StepClipper`.

    Args:
        optimizer: a ``torch.optim.Optimizer`` (anything with ``register_step_pre_hook``).
        clipper: a clipper (``NormClipper(ZScore())``, ``ValueClipper(c)``, ``AGC(f)``, ...) or a
            float ``max_norm``.
        skip_nonfinite: skip the step (every ``.grad`` set to None) when the norm is NaN/Inf.
        rate_window: steps over which ``clip.clip_rate`` is measured.

    Examples:
        ```python
        with clipping(optimizer, 1.0) as clip:
            for x, y in loader:
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()  # clips first; a NaN/Inf step is skipped
        print(clip.float_metrics())
        ```
    """
    if not hasattr(optimizer, "register_step_pre_hook"):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer (with register_step_pre_hook), got "
            f"{type(optimizer).__name__}; wrap other optimizers with gradclip.ClipOptimizer instead"
        )
    step = StepClipper(clipper, skip_nonfinite=skip_nonfinite, rate_window=rate_window)

    def pre_step(opt: Any, args: tuple, kwargs: dict) -> None:
        # torch passes step()'s own arguments, the optimizer first; a closure follows it.
        if any(a is not None for a in args[1:]) or kwargs.get("closure") is not None:
            # The hook runs before step() evaluates the closure, so it would clip stale gradients.
            raise ValueError(
                "clipping() does not support optimizer.step(closure): the closure computes the "
                "gradients inside step(), after the clip; use gradclip.ClipOptimizer instead"
            )
        step(p for group in opt.param_groups for p in group["params"])

    handle = optimizer.register_step_pre_hook(pre_step)
    try:
        yield step
    finally:
        handle.remove()
