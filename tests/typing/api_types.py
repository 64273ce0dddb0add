"""Checked by mypy (``make typecheck``), never run: the public names carry real types for editors.

Each ``assert_type`` fails the type check if ``gradclip``'s lazy names fell back to ``Any`` or the
``return_stats`` overloads stopped telling a norm from a stats tuple.
"""

from __future__ import annotations

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
        assert_type(stats, gradclip.ClipResult)  # one result type for torch and NumPy (fields: Any)
        wrapped = gradclip.ClipOptimizer(opt, gradclip.NormClipper(gradclip.ZScore()))
        assert_type(wrapped, gradclip.ClipOptimizer)
        assert_type(gradclip.get_total_norm(model.parameters()), torch.Tensor)

    def numpy_api(grads: list[np.ndarray]) -> None:
        assert_type(gnp.clip_grad_norm_(grads, 1.0), float)
        assert_type(gnp.clip_grad_norm_(grads, 1.0, return_stats=True), gnp.ClipStats)
        assert_type(gradclip.GradMonitor(log_dir=None), gradclip.GradMonitor)
