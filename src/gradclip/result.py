"""The one result type of a clipped step, shared by the torch and NumPy APIs (no framework import).

Every entry point that clips (the functional API, [`gradclip.step.ClipStep`][gradclip.step.ClipStep],
``ClipOptimizer``, the loop helper, the framework callbacks, the trainers) reports a step as a
[`ClipResult`][gradclip.result.ClipResult], and the monitor reads nothing else. Under torch the fields are
0-dim tensors on the gradients' device, so building a result costs no host synchronisation; under NumPy they
are Python floats and bools.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import GenericAlias
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

__all__ = ["ClipResult"]

T = TypeVar("T")  # the type of the norms: torch.Tensor (torch API), float (NumPy API)
B = TypeVar("B")  # the type of the flags: torch.Tensor (0-dim bool) or bool

# The field names, in order; ``ClipResult._fields`` equals it (a test checks).
_FIELDS = (
    "total_norm", "threshold", "scale", "post_clip_norm", "clipped", "finite", "skipped", "spike",
    "tensor_norms",
)  # fmt: skip

if sys.version_info < (3, 11) and not TYPE_CHECKING:
    # Python 3.10 cannot make a NamedTuple generic: the same fields, and ``ClipResult[X]`` still works.
    ClipResult = NamedTuple("ClipResult", [(name, Any) for name in _FIELDS])
    ClipResult.__class_getitem__ = classmethod(GenericAlias)
else:

    class ClipResult(NamedTuple, Generic[T, B]):
        """What one clipped step saw and did.

        Generic over the type of its norms and of its flags, so a type checker knows them: the torch API
        returns a ``ClipResult[torch.Tensor, torch.Tensor]`` (0-dim tensors: ``result.total_norm.item()``
        type-checks), the NumPy API a ``ClipResult[float, bool]``.

        Attributes:
            total_norm: pre-clip total norm (the inf-norm for value clipping, the 2-norm otherwise).
            threshold: the threshold applied: ``c`` for norm and value clipping, the clip factor for
                AGC, ``inf`` when clipping is off.
            scale: the global factor multiplied into the gradients (1 when not clipped); None for value
                clipping and AGC, which have no single factor.
            post_clip_norm: the norm after clipping, derived from what was applied (``total * scale``;
                ``min(total, c)`` for value clipping; from the unit norms and their factors for AGC);
                equal to ``total_norm`` on a skipped step.
            clipped: the gradients were rescaled (never on a skipped step).
            finite: the pre-clip norm was finite.
            skipped: the optimizer update was skipped (non-finite norm, or a spike).
            spike: the update was skipped by the spike rule.
            tensor_norms: per-tensor pre-clip norms from the same pass, in input order.

        Examples:
            >>> import numpy as np
            >>> import gradclip.numpy as gnp
            >>> result = gnp.clip_grad_norm_([np.array([3.0, 4.0])], 1.0, return_stats=True)
            >>> result.total_norm, result.threshold, result.clipped, result.skipped
            (5.0, 1.0, True, False)
            >>> round(result.post_clip_norm, 6)
            1.0
        """

        total_norm: T
        threshold: T | float
        scale: T | None
        post_clip_norm: T
        clipped: B
        finite: B
        skipped: B
        spike: B
        tensor_norms: Sequence[T]
