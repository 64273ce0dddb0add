"""The one result type of a clipped step, shared by the torch and NumPy APIs (no framework import).

Every entry point that clips (the functional API, [`gradclip.step.ClipStep`][gradclip.step.ClipStep],
``ClipOptimizer``, the loop helper, the framework callbacks, the trainers) reports a step as a
[`ClipResult`][gradclip.result.ClipResult], and the monitor reads nothing else. Under torch the fields are
0-dim tensors on the gradients' device, so building a result costs no host synchronisation; under NumPy they
are Python floats and bools.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["ClipResult"]


class ClipResult(NamedTuple):
    """What one clipped step saw and did.

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
    """

    total_norm: Any
    threshold: Any
    scale: Any
    post_clip_norm: Any
    clipped: Any
    finite: Any
    skipped: Any
    spike: Any
    tensor_norms: list[Any]
