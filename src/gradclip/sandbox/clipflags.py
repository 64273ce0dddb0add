"""The clipping flags of the sandbox command lines, validated once, the same way for torch and NumPy.

``--grad-clip X --clip-mode MODE [--skip-spikes K]`` becomes a `ClipSpec` here, where the
value enters; each CLI then turns the spec into its framework's step object in one call
(`gradclip.sandbox.convolutional.clipping.make_step` for torch, `numpy_step` for NumPy),
by the same code with and without DDP. ``--grad-clip`` unset, ``0`` or negative disables clipping
(the seed sandboxes' rule; non-finite steps are still skipped). What the number means depends on the
mode, as each paper names its knob:

=========== ============================== ==============================================
mode        ``--grad-clip`` is              threshold
=========== ============================== ==============================================
norm        max norm c                     ``Fixed(c)`` (Pascanu et al. 2013)
value       max element c                  element-wise clamp to ``[-c, c]``
agc         clip factor lambda (e.g. 0.01) unit-wise, head excluded (Brock et al. 2021), torch only
percentile  percentile p in (0, 100]       ``Percentile(p)`` (AutoClip, 2020)
zscore      z threshold (e.g. 2.5)         ``ZScore(z_thresh=z)`` (ZClip, 2025)
=========== ============================== ==============================================
"""

from __future__ import annotations

import argparse
import math
from typing import Any, NamedTuple

from gradclip.policies import Percentile, ZScore
from gradclip.skip import SpikeSkip

__all__ = ["MODES", "ClipSpec", "add_arguments", "numpy_step", "spec_from_args"]

MODES = ("norm", "value", "agc", "percentile", "zscore")
_FLOAT32_MAX = 3.4028234663852886e38  # a threshold the float32 norms cannot reach is a typo


class ClipSpec(NamedTuple):
    """A validated clipping request: the mode, its knob (None: off) and the spike rule's k (None: off)."""

    mode: str
    value: float | None
    skip_spikes: float | None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        raise argparse.ArgumentTypeError(f"expected a finite number within float32 range, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser, modes: tuple[str, ...] = MODES) -> Any:
    """Add the ``clipping`` option group (``--grad-clip``, ``--clip-mode``, ``--skip-spikes``)."""
    clip = parser.add_argument_group("clipping")
    clip.add_argument("--grad-clip", type=_number, default=None,
                      help="the clip mode's knob (norm/value: c, agc: factor, percentile: p, zscore: z); "
                           "unset, 0 or < 0 disables clipping")  # fmt: skip
    clip.add_argument("--clip-mode", choices=modes, default="norm")
    clip.add_argument("--skip-spikes", type=_number, default=None, metavar="K",
                      help="skip the update when the norm is more than K rolling standard deviations "
                           "above its rolling mean")  # fmt: skip
    return clip


def spec_from_args(args: argparse.Namespace) -> ClipSpec:
    """The flags as a `ClipSpec`; a combination that cannot work raises ValueError naming the flag."""
    value = args.grad_clip if args.grad_clip is not None and args.grad_clip > 0 else None
    if args.clip_mode != "norm" and value is None:
        raise ValueError(f"--clip-mode {args.clip_mode} needs --grad-clip > 0 (its knob: see --help)")
    if args.clip_mode == "percentile" and value is not None and value > 100:
        raise ValueError(f"--grad-clip for --clip-mode percentile is p in (0, 100], got {value!r}")
    k = args.skip_spikes
    if k is not None and k <= 0:
        raise ValueError(f"--skip-spikes must be a number K > 0 (standard deviations), got {k!r}")
    return ClipSpec(args.clip_mode, value, k)


def policy_for(spec: ClipSpec) -> Any:
    """The threshold policy of a norm-clipping mode (``norm``: the bare number, a ``Fixed``)."""
    if spec.mode == "percentile" and spec.value is not None:
        return Percentile(spec.value)
    if spec.mode == "zscore" and spec.value is not None:
        return ZScore(z_thresh=spec.value)
    return spec.value


def spikes_for(spec: ClipSpec) -> SpikeSkip | None:
    return None if spec.skip_spikes is None else SpikeSkip(spec.skip_spikes)


def numpy_step(spec: ClipSpec) -> Any:
    """The NumPy step object for ``spec`` (``agc`` needs weights per unit: torch only)."""
    from gradclip.numpy import ClipStep

    if spec.mode == "agc":
        raise ValueError("--clip-mode agc is torch only (the NumPy sandbox clips by norm or value)")
    mode = "value" if spec.mode == "value" else "norm"
    return ClipStep(
        policy_for(spec) if mode == "norm" else spec.value, mode=mode, skip_spikes=spikes_for(spec)
    )
