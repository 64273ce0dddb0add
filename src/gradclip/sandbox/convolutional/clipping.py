"""``--clip-mode`` to clipper for torch: where a mode name and its number become a step object.

The flags are validated once in `gradclip.sandbox.clipflags` (the table of what each mode's
number means is there); `make_clipper` builds the torch clipper for a mode, and
`make_step` the [`ClipStep`][gradclip.step.ClipStep] a trainer takes, with the spike rule.
"""

from __future__ import annotations

from gradclip._extras import missing_extra

try:
    from torch import nn
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from gradclip.clippers import AGC, Clipper, NormClipper, ValueClipper
from gradclip.policies import Fixed
from gradclip.sandbox.clipflags import MODES, ClipSpec, policy_for, spikes_for
from gradclip.sandbox.convolutional.models import head_parameters
from gradclip.step import ClipStep

__all__ = ["CLIP_MODES", "make_clipper", "make_step"]

CLIP_MODES = MODES


def make_clipper(mode: str, value: float, model: nn.Module) -> Clipper:
    """The clipper for ``mode`` (one of `CLIP_MODES`) with its knob set to ``value`` > 0."""
    if mode not in CLIP_MODES:
        raise ValueError(f"unknown clip_mode {mode!r}; choose from {sorted(CLIP_MODES)}")
    if mode == "percentile" and not 0 < value <= 100:
        raise ValueError(f"for clip_mode 'percentile' grad_clip_norm is p in (0, 100], got {value!r}")
    if mode == "value":
        return ValueClipper(value)
    if mode == "agc":
        return AGC(value, exclude=head_parameters(model))
    policy = policy_for(ClipSpec(mode, value, None))
    return NormClipper(Fixed(policy) if isinstance(policy, float) else policy)


def make_step(spec: ClipSpec, model: nn.Module) -> ClipStep:
    """The step object for validated flags: the clipper (None when off) and the spike rule."""
    clipper = None if spec.value is None else make_clipper(spec.mode, spec.value, model)
    return ClipStep(clipper, skip_spikes=spikes_for(spec))
