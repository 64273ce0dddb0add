"""Nested state dicts to and from one ``.npz`` file, written atomically, loaded without pickle.

Arrays become entries of the archive under their path (``model/params``); everything else (ints,
floats, strings, ``None``, the generators' states) goes into one JSON document stored as a 0-d
string array, so floats round-trip exactly (JSON writes ``repr``) and ``allow_pickle`` stays off.
The archive is sealed behind a header with the format version and its SHA-256
(`gradclip._io.write_sealed`), so a corrupted, truncated or foreign file is refused on load
with a message naming it. The file is written next to its destination, flushed to disk, then moved
over it with ``os.replace``: a crash leaves the old checkpoint or the new one, never half of one.
`check_trainer_state` checks a loaded state against the trainer it is meant for.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from gradclip._io import check_path, read_sealed, write_sealed
from gradclip._state import check_int, check_keys, check_mapping

__all__ = ["KIND", "check_trainer_state", "load_state", "save_state"]

KIND = "gradclip.sandbox.vectorized"

_ARRAY = "__array__"
_META = "__meta__"


def _pack(value: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        arrays[path] = value
        return {_ARRAY: path}
    if isinstance(value, dict):
        return {str(k): _pack(v, f"{path}/{k}" if path else str(k), arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pack(v, f"{path}/{i}" if path else str(i), arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {path!r} in a checkpoint")


def _unpack(value: Any, arrays: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            return np.array(arrays[value[_ARRAY]])
        return {k: _unpack(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, arrays) for v in value]
    return value


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically; return the path."""
    path = check_path(path)
    arrays: dict[str, np.ndarray] = {}
    meta = json.dumps(_pack(state, "", arrays))
    buffer = io.BytesIO()
    members: dict[str, Any] = {_META: np.array(meta), **arrays}
    np.savez(buffer, **members)  # built before the file is touched
    return write_sealed(path, buffer.getvalue(), kind=KIND)


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and verify a state written by `save_state`.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a foreign, corrupted, truncated or newer-format file (the message names it).
    """
    name = os.fspath(check_path(path))
    payload = read_sealed(path, kind=KIND)
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            if _META not in archive.files:
                raise ValueError(f"no {_META} entry")
            return _unpack(json.loads(str(archive[_META])), archive)
    except (ValueError, KeyError, OSError, EOFError, RecursionError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"checkpoint {name!r} is not a readable gradclip vectorized checkpoint: {err}"
        ) from None


def _check_buffers(value: Any, size: int, where: str) -> None:
    """Every array in an optimizer state is a buffer over all parameters: ``size`` finite floats."""
    if isinstance(value, np.ndarray):
        if value.shape != (size,) or not np.isfinite(value).all():
            raise ValueError(f"checkpoint {where} must be {size} finite numbers (one per parameter), "
                             f"got shape {value.shape}")  # fmt: skip
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_buffers(item, size, f"{where}[{key!r}]")
    elif value is not None and not isinstance(value, (int, float, str)):
        raise ValueError(f"checkpoint {where} holds a {type(value).__name__}")


def _same_layout(saved: Any, own: Any, where: str) -> None:
    """Nested dicts with the same keys as ``own`` (a state saved by another optimizer has others)."""
    if isinstance(own, dict):
        check_keys(check_mapping(saved, f"checkpoint {where}"), own, f"checkpoint {where}")
        for key in own:
            _same_layout(saved[key], own[key], f"{where}[{key!r}]")


def check_trainer_state(
    state: object, *, own: dict[str, Any], history_keys: tuple[str, ...]
) -> dict[str, Any]:
    """Check a loaded state against ``own`` (the trainer's current ``state_dict()``); change nothing."""
    state = dict(check_mapping(state, "checkpoint"))
    check_keys(state, own, "checkpoint")
    if state["optimizer_type"] != own["optimizer_type"]:
        raise ValueError(f"checkpoint was saved with a {state['optimizer_type']} optimizer, "
                         f"this trainer has {own['optimizer_type']}")  # fmt: skip
    model = check_mapping(state["model"], "checkpoint['model']")
    check_keys(model, own["model"], "checkpoint['model']")
    params, size = model["params"], own["model"]["params"].size
    if not isinstance(params, np.ndarray) or params.shape != own["model"]["params"].shape:
        shape = params.shape if isinstance(params, np.ndarray) else type(params).__name__
        raise ValueError(f"checkpoint has parameters of shape {shape}, this model "
                         f"{own['model']['params'].shape}: saved from another architecture?")  # fmt: skip
    if not np.isfinite(params).all():
        raise ValueError("checkpoint parameters hold NaN or inf; it cannot be resumed")
    _same_layout(state["optimizer"], own["optimizer"], "['optimizer']")
    _check_buffers(state["optimizer"], size, "['optimizer']")
    trainer = check_mapping(state["trainer"], "checkpoint['trainer']")
    check_keys(trainer, ("epoch", "step", "rng"), "checkpoint['trainer']")
    check_int(trainer["epoch"], "checkpoint['trainer']['epoch']")
    check_int(trainer["step"], "checkpoint['trainer']['step']")
    check_mapping(trainer["rng"], "checkpoint['trainer']['rng']")
    check_mapping(model["rng"], "checkpoint['model']['rng']")
    for key in ("t", "count"):
        for part in (state["optimizer"], state["optimizer"].get("inner", {})):
            if isinstance(part, dict) and key in part:
                check_int(part[key], f"checkpoint['optimizer'][{key!r}]")
    history = check_mapping(state["history"], "checkpoint['history']")
    for key in history_keys:
        values = history.get(key)
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            raise ValueError(f"checkpoint['history'][{key!r}] must be a list of numbers, got {values!r:.60}")
    return state
