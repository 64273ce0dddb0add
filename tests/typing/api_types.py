"""Checked by mypy (``make typecheck``), never run: the public names carry real types for editors.

Each ``assert_type`` fails the type check if ``gradclip``'s lazy names fell back to ``Any`` or the
``return_stats`` overloads stopped telling a norm from a stats tuple, or a result's fields lost their
type (a torch result holds tensors, a NumPy one floats and bools).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch
    from typing_extensions import assert_type

    import gradclip
    import gradclip.numpy as gnp

    def torch_api(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        norm = gradclip.clip_grad_norm_(model.parameters(), 1.0)
        assert_type(norm, torch.Tensor)
        assert_type(norm.item(), float | int | bool)  # the common call: .item() type-checks
        stats = gradclip.clip_grad_norm_(model.parameters(), 1.0, return_stats=True)
        assert_type(stats, gradclip.ClipStats)
        assert_type(
            stats, gradclip.ClipResult[torch.Tensor, torch.Tensor]
        )  # one result type, generic over the values
        assert_type(stats.total_norm, torch.Tensor)
        assert_type(stats.total_norm.item(), float | int | bool)
        assert_type(stats.tensor_norms, Sequence[torch.Tensor])
        assert_type(stats.scale, torch.Tensor | None)  # None for value clipping and AGC
        assert_type(stats.finite, torch.Tensor)
        wrapped = gradclip.ClipOptimizer(opt, gradclip.NormClipper(gradclip.ZScore()))
        assert_type(wrapped, gradclip.ClipOptimizer)
        assert_type(wrapped.last_result, gradclip.ClipResult[torch.Tensor, torch.Tensor] | None)
        step = gradclip.ClipStep(gradclip.ZScore())
        assert_type(step.step(opt), gradclip.ClipResult[torch.Tensor, torch.Tensor])
        assert_type(step.clip_(model.parameters()).post_clip_norm, torch.Tensor)
        assert_type(step.clip_(model.parameters()).skipped.float(), torch.Tensor)
        assert_type(gradclip.get_total_norm(model.parameters()), torch.Tensor)

    def numpy_api(grads: list[np.ndarray]) -> None:
        assert_type(gnp.clip_grad_norm_(grads, 1.0), float)
        stats = gnp.clip_grad_norm_(grads, 1.0, return_stats=True)
        assert_type(stats, gnp.ClipStats)
        assert_type(stats, gradclip.ClipResult[float, bool])
        assert_type(stats.total_norm, float)
        assert_type(stats.tensor_norms, Sequence[float])
        assert_type(stats.clipped, bool)
        assert_type(gnp.ClipStep(1.0).clip_(grads).post_clip_norm, float)
        assert_type(gradclip.GradMonitor(log_dir=None), gradclip.GradMonitor)
