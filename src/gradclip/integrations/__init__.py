"""gradclip inside other people's training loops: a plain loop, Lightning, the Hugging Face Trainer, Keras.

* [`clipping`][gradclip.integrations.loop.clipping] (``gradclip.integrations.loop``):
  ``with clipping(optimizer, 1.0) as clip:`` around an existing loop; needs torch only.
* ``gradclip.integrations.lightning.GradClipCallback``: a Lightning ``Callback`` (extra
  ``gradclip[lightning]``).
* ``gradclip.integrations.huggingface.GradClipCallback``: a ``transformers`` ``TrainerCallback`` (extra
  ``gradclip[hf]``).
* ``gradclip.integrations.keras.GradClipOptimizer`` and ``GradClipCallback``: Keras 3 on the torch
  backend (extra ``gradclip[keras]``).

All of them compose [`gradclip.step.ClipStep`][gradclip.step.ClipStep]: clip once per optimizer step, skip
NaN/Inf steps (and spikes, when asked), keep the fields they log (`gradclip.step.METRICS`). Nothing
is imported here until used: importing this package loads neither torch nor any framework.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "clipping": "gradclip.integrations.loop",
    "METRICS": "gradclip.step",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gradclip.integrations' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
