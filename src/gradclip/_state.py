"""Checks of saved state shared by every ``load_state_dict``: the shape of the mapping, its entries, numbers.

A ``load_state_dict`` here first checks the whole state it is given (this module's helpers raise a
TypeError or ValueError that names the owner, the entry and what was expected), and only then
changes anything, so a bad state leaves the object as it was. `check_optimizer_state` checks a
torch optimizer's state against the optimizer it is meant for: the same param groups and sizes,
tensors shaped like their parameters, and the state entries this optimizer type keeps (so SGD
momentum buffers are refused by an Adam). Objects that check their own state expose
``check_state_dict(state_dict)``; the wrappers in [`gradclip.optim`][gradclip.optim] do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any

__all__ = ["check_int", "check_keys", "check_mapping", "check_optimizer_state", "check_real"]


def check_mapping(value: object, owner: str) -> Mapping[str, Any]:
    """``value`` if it is a mapping (a state dict), else a TypeError naming ``owner``."""
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{owner} must be a state dict (a mapping), got {type(value).__name__}: {value!r:.80}"
        )
    return value


def check_keys(state: Mapping[str, Any], keys: Iterable[str], owner: str) -> None:
    """Require exactly ``keys`` in ``state`` (a state saved by another class has other keys)."""
    expected = set(keys)
    have = set(state)
    if have != expected:
        missing, extra = sorted(expected - have, key=str), sorted(have - expected, key=str)
        raise ValueError(
            f"{owner} has the wrong entries (missing {missing}, unexpected {extra}); "
            f"expected {sorted(expected)}: is it the state of another class?"
        )


def check_int(value: object, name: str, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum`` (floats that are whole numbers pass, bools do not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise TypeError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_real(value: object, name: str) -> float:
    """``value`` as a float (a real number, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


_PROBED: dict[tuple[type, str], frozenset[str] | None] = {}


def _kept_keys(optimizer: Any, group: Mapping[str, Any]) -> frozenset[str] | None:
    """The state entries ``type(optimizer)`` keeps per parameter with ``group``'s options (None: unknown).

    Found by stepping a one-element copy of the optimizer once (cached per type and options), so
    every torch optimizer is covered without a table that would go stale.
    """
    import torch

    options = {k: v for k, v in group.items() if k in getattr(optimizer, "defaults", {}) and k != "params"}
    key = (type(optimizer), repr(sorted(options.items(), key=lambda kv: kv[0])))
    if key not in _PROBED:
        try:
            p = torch.zeros(1, requires_grad=True)
            probe = type(optimizer)([p], **options)
            p.grad = torch.ones(1)
            probe.step()
            _PROBED[key] = frozenset(probe.state[p]) if p in probe.state else frozenset()
        except Exception:  # a fused/capturable optimizer needs a device: skip the check of its keys
            _PROBED[key] = None
    return _PROBED[key]


def check_optimizer_state(optimizer: Any, state: object, owner: str = "optimizer state") -> None:
    """Check ``state`` can be loaded into ``optimizer`` without error or silent mismatch; change nothing."""
    check = getattr(optimizer, "check_state_dict", None)
    if callable(check):  # a gradclip wrapper: it knows its own layout
        check(state)
        return
    import torch

    state = check_mapping(state, owner)
    check_keys(state, ("state", "param_groups"), owner)
    groups, entries = state["param_groups"], check_mapping(state["state"], f"{owner}['state']")
    if not isinstance(groups, (list, tuple)) or len(groups) != len(optimizer.param_groups):
        n = len(groups) if isinstance(groups, (list, tuple)) else type(groups).__name__
        raise ValueError(f"{owner} has {n} param groups; this optimizer has {len(optimizer.param_groups)}")
    owners: dict[Any, tuple[Any, Mapping[str, Any]]] = {}
    for i, (saved, group) in enumerate(zip(groups, optimizer.param_groups, strict=True)):
        saved = check_mapping(saved, f"{owner} param group {i}")
        ids = saved.get("params")
        if not isinstance(ids, (list, tuple)) or len(ids) != len(group["params"]):
            count: Any = len(ids) if isinstance(ids, (list, tuple)) else ids
            raise ValueError(
                f"{owner} param group {i} has {count} parameters; this optimizer has {len(group['params'])}"
            )
        owners.update({pid: (p, group) for pid, p in zip(ids, group["params"], strict=True)})
    for pid, entry in entries.items():
        if pid not in owners:
            raise ValueError(f"{owner} holds state for parameter {pid!r}, which no param group lists")
        param, group = owners[pid]
        entry = check_mapping(entry, f"{owner}['state'][{pid!r}]")
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                raise ValueError(
                    f"{owner}['state'][{pid!r}][{name!r}] has shape {tuple(value.shape)}; its parameter "
                    f"has shape {tuple(param.shape)} (a state of another model?)"
                )
        kept = _kept_keys(optimizer, group)
        if kept is not None and set(entry) != kept:
            raise ValueError(
                f"{owner}['state'][{pid!r}] holds {sorted(entry)}; {type(optimizer).__name__} with these "
                f"options keeps {sorted(kept)} (a state of another optimizer?)"
            )
