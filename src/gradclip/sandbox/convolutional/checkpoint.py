"""Checkpoints for the convolutional sandbox: atomic ``torch.save`` of state dicts, safe loading, RNG states.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, lists, tuples and
dicts, so it loads with ``torch.load(weights_only=True)`` (no arbitrary code runs when a file from
elsewhere is opened). It is written to a temporary file in the destination's directory, flushed to
disk, then moved over the destination with ``os.replace``: a process killed at any moment (SIGKILL
included) leaves the previous checkpoint or the new one, never half of one.

`rng_state` / `set_rng_state` capture every random generator a run may draw from (torch
CPU and CUDA, NumPy's global one, Python's ``random``), which is what lets a resumed run continue
bit-for-bit.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from gradclip._io import atomic_write

__all__ = ["load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + fsync + ``os.replace``); return the path."""
    path = Path(path)
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {os.fspath(path)!r}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError... for a bad file
        raise ValueError(f"{os.fspath(path)!r} is not a readable gradclip checkpoint: {err}") from err
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{os.fspath(path)!r} is not a gradclip checkpoint (no 'model' entry)")
    return state


def rng_state() -> dict[str, Any]:
    """The state of every global random generator, in weights_only-loadable types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    # NumPy's legacy global generator: not ours, but third-party code (and user hooks) may draw from it.
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
