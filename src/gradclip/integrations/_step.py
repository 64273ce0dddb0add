"""The clip step every integration shares: clip, drop a non-finite step, keep the numbers to log.

A framework calls `StepClipper` once per optimizer step, after ``backward()`` (and after AMP
unscaling) and before ``optimizer.step()``, from whatever hook it offers. A step whose pre-clip norm
is NaN/Inf is skipped by setting every ``.grad`` of the step's parameters to ``None``: torch
optimizers leave a parameter with no gradient untouched, value and state (see
``torch.optim.Optimizer.zero_grad``), so the step becomes a no-op without owning the optimizer's
``step()`` call, which Lightning and the Hugging Face Trainer keep for themselves.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from torch import Tensor

from gradclip.clippers import Clipper, ClipResult, NormClipper, ValueClipper
from gradclip.norms import collect_grads, get_total_norm

__all__ = ["METRICS", "StepClipper"]

# The logged fields, in the order integrations write them.
METRICS = (
    "gradclip/pre_clip_norm",
    "gradclip/post_clip_norm",
    "gradclip/threshold",
    "gradclip/clip_rate",
    "gradclip/skipped_steps",
)


def _post_clip_norm(clipper: Clipper, result: ClipResult, grads: list[Tensor]) -> Tensor:
    """The norm of the gradients after clipping, in the order ``result.total_norm`` was taken in."""
    if result.scale is not None:  # NormClipper tells the factor it applied: no second pass needed
        return result.total_norm * result.scale
    # ValueClipper reports the inf-norm (the quantity it bounds); AGC the global 2-norm.
    order = math.inf if isinstance(clipper, ValueClipper) else 2.0
    return get_total_norm(grads, order)


class StepClipper:
    """Clip the gradients of one optimizer step and remember what happened, for logging.

    Args:
        clipper: a clipper from [`gradclip.clippers`][gradclip.clippers] (``NormClipper(Percentile())``,
            ``NormClipper(ZScore())``, ``ValueClipper(c)``, ``AGC(f)``), or a float ``max_norm``
            for ``NormClipper(max_norm)``.
        skip_nonfinite: drop the step's gradients when the pre-clip norm is NaN/Inf.
        rate_window: the clip rate is the fraction of clipped steps among the last ``rate_window``.

    The per-step values stay tensors (no host read) except the ``finite`` flag, read once per step
    to decide the skip (free on the CPU, one sync on CUDA; ``skip_nonfinite=False`` removes it).
    """

    def __init__(
        self, clipper: Clipper | float = 1.0, *, skip_nonfinite: bool = True, rate_window: int = 100
    ):
        if isinstance(clipper, bool) or not (callable(clipper) or isinstance(clipper, (int, float))):
            raise TypeError(
                "clipper must be a gradclip clipper (NormClipper, ValueClipper, AGC) or a float max_norm, "
                f"got {clipper!r}"
            )
        if isinstance(rate_window, bool) or not isinstance(rate_window, int) or rate_window < 1:
            raise ValueError(f"rate_window must be an integer >= 1, got {rate_window!r}")
        self.clipper: Clipper = clipper if callable(clipper) else NormClipper(clipper)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.steps = 0
        self.skipped_steps = 0
        self.last: ClipResult | None = None
        self.last_post_norm: Tensor | None = None
        self._recent: deque[Tensor] = deque(maxlen=rate_window)
        self._recent_sum: Tensor | float = 0.0  # running sum over _recent: O(1) per step

    @torch.no_grad()
    def __call__(self, parameters: Iterable[Tensor]) -> ClipResult:
        """Clip the gradients of ``parameters`` in place; drop them if the norm is not finite."""
        params = list(parameters)
        grads = collect_grads(params)
        result = self.clipper(params)
        post = _post_clip_norm(self.clipper, result, grads)
        if self.skip_nonfinite and not bool(result.finite):
            for p in params:
                p.grad = None  # the optimizer now skips every parameter: nothing moves
            self.skipped_steps += 1
        clipped = (result.clipped & result.finite).float()  # a skipped step was not clipped
        if len(self._recent) == self._recent.maxlen:
            self._recent_sum = self._recent_sum - self._recent[0]
        self._recent.append(clipped)
        self._recent_sum = self._recent_sum + clipped
        self.steps += 1
        self.last, self.last_post_norm = result, post
        return result

    @property
    def clip_rate(self) -> Tensor | float:
        """Fraction of the last ``rate_window`` steps that were clipped (0 before the first step)."""
        return self._recent_sum / len(self._recent) if self._recent else 0.0

    def metrics(self) -> dict[str, Tensor | float]:
        """The last step's fields (see `METRICS`), as tensors where the clipper gave tensors."""
        if self.last is None or self.last_post_norm is None:
            return {}
        values = (
            self.last.total_norm,
            self.last_post_norm,
            self.last.threshold,
            self.clip_rate,
            float(self.skipped_steps),
        )
        return dict(zip(METRICS, values, strict=True))

    def float_metrics(self) -> dict[str, float]:
        """`metrics` read back as Python floats (one host transfer, for text loggers)."""
        return {k: float(v) for k, v in self.metrics().items()}

    def state_dict(self) -> dict[str, Any]:
        """The clipper's state (adaptive thresholds) and the step counters."""
        return {
            "clipper": self.clipper.state_dict(),
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.clipper.load_state_dict(state_dict["clipper"])
        self.steps = int(state_dict["steps"])
        self.skipped_steps = int(state_dict["skipped_steps"])

    def __repr__(self) -> str:
        return f"StepClipper({self.clipper!r}, skip_nonfinite={self.skip_nonfinite})"
