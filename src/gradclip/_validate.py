"""Argument checks shared by the torch and NumPy APIs (framework-free).

Every check names the argument, shows the bad value and says what is allowed, so that a wrong call
fails at once with a message the user can act on instead of silently training on garbage.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

NONFINITE_POLICIES = ("propagate", "keep")
FLOAT32_MAX = 3.4028234663852886e38


def check_norm_type(norm_type: object) -> float:
    """Return ``norm_type`` as a float p > 0 (``inf`` and the string ``'inf'`` allowed)."""
    if isinstance(norm_type, str) and norm_type.strip().lower() == "inf":
        return math.inf
    if isinstance(norm_type, bool) or not isinstance(norm_type, Real):
        raise TypeError(f"norm_type must be a number > 0 or 'inf', got {norm_type!r}")
    p = float(norm_type)
    if math.isnan(p) or p <= 0:
        raise ValueError(f"norm_type must be > 0 (or inf), got {norm_type!r}")
    return p


def check_threshold(value: object, name: str) -> float:
    """Return a clipping threshold (``max_norm``, ``clip_value``) as a float >= 0."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number >= 0, got {value!r} ({type(value).__name__})")
    v = float(value)
    if math.isnan(v) or v < 0:
        raise ValueError(f"{name} must be a real number >= 0 (inf allowed), got {value!r}")
    if math.isfinite(v) and v > FLOAT32_MAX:
        # float32 norms cannot reach it, and c / norm would overflow: a typo, not a threshold
        raise ValueError(
            f"{name} must be at most {FLOAT32_MAX:.4g} (float32's largest) or inf, got {value!r}"
        )
    return v


def check_off_or_threshold(value: object, name: str, allowed: str = "a real number or None") -> float | None:
    """The seed sandboxes' rule, written once: None or a number ``<= 0`` turns clipping off (None).

    NaN raises ``ValueError`` and a non-number ``TypeError``, both naming ``name`` and ``allowed``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {allowed}, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must be {allowed}, got nan")
    if math.isfinite(v) and v > FLOAT32_MAX:  # float32 norms cannot reach it: a typo, not a threshold
        raise ValueError(f"{name} must be at most {FLOAT32_MAX:.4g} (float32's largest), got {value!r}")
    return v if v > 0 else None


def check_eps(eps: object) -> float:
    """Return ``eps`` as a finite float >= 0."""
    if isinstance(eps, bool) or not isinstance(eps, Real) or not math.isfinite(float(eps)) or eps < 0:
        raise ValueError(f"eps must be a finite real number >= 0, got {eps!r}")
    return float(eps)


def check_nonfinite(policy: object) -> str:
    """Return the non-finite policy: 'propagate' (torch's behaviour) or 'keep'."""
    if not isinstance(policy, str) or policy not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {list(NONFINITE_POLICIES)}, got {policy!r:.60}")
    return str(policy)


def check_flag(value: object, name: str, *, optional: bool = False) -> bool | None:
    """Return a True/False option (NumPy's bool too; None as well when ``optional``) as a bool or None.

    A truthy stand-in (a string, a tensor, a number) is refused: ``foreach="no"`` would mean True.
    """
    if value is None and optional:
        return None
    kind = type(value)
    if kind is bool or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_")):
        return bool(value)
    allowed = "True, False or None" if optional else "True or False"
    raise TypeError(f"{name} must be {allowed}, got {value!r:.60} ({type(value).__name__})")


def check_count(value: object, name: str, minimum: int, maximum: int) -> int:
    """Return a whole number in ``[minimum, maximum]`` (windows and sizes: bounded, never 2**70)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be a whole number in [{minimum}, {maximum}], got {value!r:.60}")
    if not minimum <= int(value) <= maximum:
        raise ValueError(f"{name} must be a whole number in [{minimum}, {maximum}], got {value!r}")
    return int(value)


def nonfinite_message(norm_type: float) -> str:
    return (
        f"The total norm of order {norm_type} for gradients is non-finite, so it cannot be clipped. "
        "To disable this error and scale the gradients by the non-finite norm anyway, "
        "set `error_if_nonfinite=False`"
    )
