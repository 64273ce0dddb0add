"""Checkpoints for the convolutional sandbox: sealed ``torch.save`` of state dicts, safe loading, RNG states.

A checkpoint is a ``torch.save`` payload holding only tensors, numbers, strings, lists, tuples and
dicts, so it loads with ``torch.load(weights_only=True)`` (no arbitrary code runs when a file from
elsewhere is opened), behind a header with the format version and the payload's SHA-256
(`gradclip._io.write_sealed`): torch does not check its zip CRCs, so without the digest a
flipped byte inside a weight would load silently. Loading also refuses non-finite weights. The
file is written to a temporary file in the destination's directory, flushed to disk, then moved
over the destination with ``os.replace``: a process killed at any moment (SIGKILL included) leaves
the previous checkpoint or the new one, never half of one.

`rng_state` / `set_rng_state` capture every random generator a run may draw from (torch
CPU and CUDA, NumPy's global one, Python's ``random``), which is what lets a resumed run continue
bit-for-bit.
"""

from __future__ import annotations

import io
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

from gradclip._io import check_path, read_sealed, write_sealed
from gradclip._state import check_int, check_keys, check_mapping, check_optimizer_state

__all__ = ["KIND", "check_trainer_state", "load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]

KIND = "gradclip.sandbox.convolutional"
REQUIRED = ("model", "optimizer", "clipper", "scaler", "epoch", "step", "history", "data_order", "rng")


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically, sealed with its digest; return the path."""
    buffer = io.BytesIO()
    torch.save(state, buffer)  # serialised before the file is touched: a failure leaves it as it was
    return write_sealed(path, buffer.getvalue(), kind=KIND)


def _nonfinite(value: Any, where: str) -> str | None:
    """The path of the first floating tensor holding NaN or inf inside ``value``, or None."""
    if isinstance(value, torch.Tensor):
        return where if value.is_floating_point() and not bool(value.isfinite().all()) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _nonfinite(item, f"{where}/{key}")
        if found is not None:
            return found
    return None


def load_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint written by `save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a foreign, corrupted (digest mismatch), truncated or newer-format file, a state
            without the entries a trainer saves, or non-finite weights or optimizer state.
    """
    name = os.fspath(check_path(path))
    payload = read_sealed(path, kind=KIND)
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError... for a bad payload
        raise ValueError(f"checkpoint {name!r} is not a readable gradclip checkpoint: {err}") from err
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {name!r} holds a {type(state).__name__}, not a trainer state")
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise ValueError(f"checkpoint {name!r} lacks the entries {missing}")
    for key in ("model", "optimizer"):
        bad = _nonfinite(state[key], key)
        if bad is not None:
            raise ValueError(f"checkpoint {name!r} holds non-finite values in {bad}; it cannot be resumed")
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


def check_trainer_state(
    state: object, *, model: torch.nn.Module, optimizer: Any, history_keys: tuple[str, ...]
) -> dict[str, Any]:
    """Check a trainer state against the trainer it is loaded into, before anything changes.

    Catches the mismatches ``load_state_dict`` calls would hit halfway (another model's weights,
    another optimizer's state, missing entries, counters of the wrong type) with one message.
    """
    state = dict(check_mapping(state, "checkpoint"))
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise ValueError(f"checkpoint lacks the entries {missing}")
    saved, own = check_mapping(state["model"], "checkpoint['model']"), model.state_dict()
    if set(saved) != set(own):
        lost, extra = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
        raise ValueError(
            f"checkpoint weights are for another model (missing {lost[:5]}, unexpected {extra[:5]})"
        )
    for name, tensor in own.items():
        other = saved[name]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            shape = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
            raise ValueError(
                f"checkpoint weight {name!r} has shape {shape}, this model's {tuple(tensor.shape)} "
                "(weights of another model?)"
            )
    check_optimizer_state(optimizer, state["optimizer"], "checkpoint['optimizer']")
    check_int(state["epoch"], "checkpoint['epoch']")
    check_int(state["step"], "checkpoint['step']")
    history = check_mapping(state["history"], "checkpoint['history']")
    for key in history_keys:
        values = history.get(key)
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            raise ValueError(f"checkpoint['history'][{key!r}] must be a list of numbers, got {values!r:.60}")
    if not isinstance(state["data_order"], torch.Tensor) or state["data_order"].dtype != torch.uint8:
        raise ValueError("checkpoint['data_order'] must be a torch.Generator state (a uint8 tensor)")
    rng = check_mapping(state["rng"], "checkpoint['rng']")
    check_keys(rng, ("torch", "cuda", "numpy", "python"), "checkpoint['rng']")
    return state
