"""Clipping for a plain training loop in one line: a context manager around the existing optimizer.

``with clipping(optimizer, 1.0) as clip:`` attaches a [`ClipStep`][gradclip.step.ClipStep] to
``optimizer`` through a step pre-hook, so the loop's own ``optimizer.step()`` (or
``scaler.step(optimizer)``) clips first and skips non-finite steps; the loop, its LR scheduler and its
checkpoints stay as they are (the optimizer is not wrapped). The hook is removed on exit. Under
``torch.amp.GradScaler`` an unfused optimizer is unscaled by the scaler before ``step()``, and a step
the scaler skips never reaches the hook; a fused one reaches it with the gradients still scaled, and
the step measures true norms and folds the clip into the kernel's ``grad_scale``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gradclip.clippers import Clipper
from gradclip.skip import SpikeSkip
from gradclip.step import ClipStep

__all__ = ["clipping"]


@contextmanager
def clipping(
    optimizer: Any,
    clipper: Clipper | float | None = 1.0,
    *,
    skip_nonfinite: bool = True,
    skip_spikes: SpikeSkip | None = None,
    rate_window: int = 100,
) -> Iterator[ClipStep]:
    """Clip before every ``optimizer.step()`` inside the ``with`` block; yields the
    [`ClipStep`][gradclip.step.ClipStep].

    Args:
        optimizer: a ``torch.optim.Optimizer`` (anything with ``register_step_pre_hook``).
        clipper: a clipper (``NormClipper(ZScore())``, ``ValueClipper(c)``, ``AGC(f)``, ...), a
            policy or a float ``max_norm``.
        skip_nonfinite: skip the step (every ``.grad`` set to None) when the norm is NaN/Inf.
        skip_spikes: a [`SpikeSkip`][gradclip.skip.SpikeSkip] to skip spikes too.
        rate_window: steps over which ``clip.clip_rate`` is measured.

    Examples:
        >>> import torch, gradclip
        >>> from gradclip.integrations.loop import clipping
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with clipping(optimizer, gradclip.NormClipper(gradclip.ZScore())) as clip:
        ...     for _ in range(3):
        ...         optimizer.zero_grad()
        ...         model(torch.randn(8, 4)).pow(2).mean().backward()
        ...         optimizer.step()  # clips first; a NaN/Inf step is skipped
        >>> clip.steps, clip.skipped_steps
        (3, 0)
    """
    step = ClipStep(clipper, skip_nonfinite=skip_nonfinite, skip_spikes=skip_spikes, rate_window=rate_window)
    handle = step.attach(optimizer)
    try:
        yield step
    finally:
        handle.remove()
