"""``--clip-mode`` to clipper: the one place where a mode name and its number become a clipper object.

Each factory takes the number given with ``--grad-clip`` (``grad_clip_norm``) and the model, and
returns a clipper from [`gradclip.clippers`][gradclip.clippers]. The number means what the mode's paper calls
its knob:

=========== ================================= =====================================================
mode        ``grad_clip_norm`` is              clipper
=========== ================================= =====================================================
norm        max norm c                        ``NormClipper(Fixed(c))`` (Pascanu et al. 2013)
value       max element c                     ``ValueClipper(c)``
agc         clip factor lambda (e.g. 0.01)    ``AGC(lambda)``, classifier head excluded (Brock 2021)
percentile  percentile p in (0, 100] (e.g 10) ``NormClipper(Percentile(p))`` (AutoClip, 2020)
zscore      z threshold (e.g. 2.5)            ``NormClipper(ZScore(z_thresh=z))`` (ZClip, 2025)
=========== ================================= =====================================================
"""

from __future__ import annotations

from collections.abc import Callable

from gradclip._extras import missing_extra

try:
    from torch import nn
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from gradclip.clippers import AGC, Clipper, NormClipper, ValueClipper
from gradclip.policies import Fixed, Percentile, ZScore
from gradclip.sandbox.convolutional.models import head_parameters

__all__ = ["CLIP_MODES", "make_clipper"]


def _percentile(p: float, model: nn.Module) -> Clipper:
    if not 0 < p <= 100:
        raise ValueError(f"for clip_mode 'percentile' grad_clip_norm is p in (0, 100], got {p!r}")
    return NormClipper(Percentile(p))


CLIP_MODES: dict[str, Callable[[float, nn.Module], Clipper]] = {
    "norm": lambda c, model: NormClipper(Fixed(c)),
    "value": lambda c, model: ValueClipper(c),
    "agc": lambda c, model: AGC(c, exclude=head_parameters(model)),
    "percentile": _percentile,
    "zscore": lambda z, model: NormClipper(ZScore(z_thresh=z)),
}


def make_clipper(mode: str, value: float, model: nn.Module) -> Clipper:
    """The clipper for ``mode`` (a key of `CLIP_MODES`) with its knob set to ``value`` > 0."""
    if mode not in CLIP_MODES:
        raise ValueError(f"unknown clip_mode {mode!r}; choose from {sorted(CLIP_MODES)}")
    return CLIP_MODES[mode](value, model)
