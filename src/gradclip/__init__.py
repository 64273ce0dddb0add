"""gradclip: gradient clipping you can trust, see and understand.

The NumPy API ([`gradclip.numpy`][gradclip.numpy]) needs only NumPy. The torch functions below are imported
on first use, so ``import gradclip`` works without torch and a torch feature raises a clear
``ImportError`` naming the extra to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradclip.policies import Fixed, Percentile, Policy, ZScore
from gradclip.result import ClipResult
from gradclip.skip import SpikeSkip

if TYPE_CHECKING:  # the real types for editors and type checkers; at run time __getattr__ imports them
    from gradclip.advice import threshold_advice
    from gradclip.clip import (
        ClipStats,
        clip_grad_norm_,
        clip_grad_value_,
        clip_grads_with_norm_,
        get_total_norm,
    )
    from gradclip.clippers import AGC, NormClipper, ValueClipper
    from gradclip.monitor import (
        ClipMisuseWarning,
        ClipRateWarning,
        GradMonitor,
        GradMonitorWarning,
        MonitorConfig,
        SpikeWarning,
        VanishingGradientWarning,
    )
    from gradclip.norms import FlatGrads, tensor_norms
    from gradclip.optim import ClipOptimizer, Lookahead
    from gradclip.report import write_report
    from gradclip.sinks import read_run
    from gradclip.step import ClipStep

__version__ = "0.1.0"

_TORCH_API = {
    "ClipStats": "gradclip.clip",
    "clip_grad_norm_": "gradclip.clip",
    "clip_grad_value_": "gradclip.clip",
    "clip_grads_with_norm_": "gradclip.clip",
    "get_total_norm": "gradclip.clip",
    "tensor_norms": "gradclip.norms",
    "FlatGrads": "gradclip.norms",
    "NormClipper": "gradclip.clippers",
    "ValueClipper": "gradclip.clippers",
    "AGC": "gradclip.clippers",
    "ClipStep": "gradclip.step",
    "ClipOptimizer": "gradclip.optim",
    "Lookahead": "gradclip.optim",
}

# Torch-free but heavier modules (matplotlib for reports): imported on first use too.
_LAZY_API = {
    "GradMonitor": "gradclip.monitor",
    "MonitorConfig": "gradclip.monitor",
    "GradMonitorWarning": "gradclip.monitor",
    "ClipRateWarning": "gradclip.monitor",
    "SpikeWarning": "gradclip.monitor",
    "VanishingGradientWarning": "gradclip.monitor",
    "ClipMisuseWarning": "gradclip.monitor",
    "threshold_advice": "gradclip.advice",
    "read_run": "gradclip.sinks",
    "write_report": "gradclip.report",
}

__all__ = [
    "AGC",
    "ClipMisuseWarning",
    "ClipOptimizer",
    "ClipRateWarning",
    "ClipResult",
    "ClipStats",
    "ClipStep",
    "Fixed",
    "FlatGrads",
    "GradMonitor",
    "GradMonitorWarning",
    "Lookahead",
    "MonitorConfig",
    "NormClipper",
    "Percentile",
    "Policy",
    "SpikeSkip",
    "SpikeWarning",
    "ValueClipper",
    "VanishingGradientWarning",
    "ZScore",
    "__version__",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "read_run",
    "tensor_norms",
    "threshold_advice",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module = _TORCH_API.get(name) or _LAZY_API.get(name)
    if module is None:
        raise AttributeError(f"module 'gradclip' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as err:
        if err.name != "torch":
            raise
        raise ImportError(
            f"gradclip.{name} needs PyTorch; install it with `pip install 'gradclip[torch]'` "
            "(the NumPy API, gradclip.numpy, works without it)"
        ) from err
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TORCH_API) | set(_LAZY_API))
