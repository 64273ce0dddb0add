"""Nested state dicts to and from one ``.npz`` file, written atomically, loaded without pickle.

Arrays become entries of the archive under their path (``model/params``); everything else (ints,
floats, strings, ``None``, the generators' states) goes into one JSON document stored as a 0-d
string array, so floats round-trip exactly (JSON writes ``repr``) and ``allow_pickle`` stays off.
The file is written next to its destination, flushed to disk, then moved over it with
``os.replace``: a crash leaves the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gradclip._io import atomic_write

__all__ = ["load_state", "save_state"]

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
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta = json.dumps(_pack(state, "", arrays))
    members: dict[str, Any] = {_META: np.array(meta), **arrays}
    return atomic_write(path, lambda f: np.savez(f, **members))


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a state written by `save_state`."""
    with np.load(path, allow_pickle=False) as archive:
        if _META not in archive.files:
            raise ValueError(
                f"{os.fspath(path)!r} is not a gradclip vectorized checkpoint (no {_META} entry)"
            )
        return _unpack(json.loads(str(archive[_META])), archive)
