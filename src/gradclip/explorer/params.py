"""Validation of the explorer API's query strings: every value typed, bounded and named in its error.

A request is checked against a spec, ``{name: field}``; anything unknown, repeated, missing, unparsable,
non-finite or out of range raises `BadRequest`, whose message the server returns with HTTP 400.
Bounds are part of the spec so that no request can ask for unbounded work (steps, grid size).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BadRequest", "Choice", "Number", "Text", "parse_query"]

MAX_TEXT = 300  # longest value accepted for any parameter; numbers need far less


class BadRequest(ValueError):
    """An API input that failed validation; the message says which, what was sent and what is allowed."""


_REQUIRED = object()


@dataclass(frozen=True)
class Number:
    """A finite number in ``[lo, hi]`` (``lo`` excluded when ``open_lo``); whole when ``integer``."""

    lo: float
    hi: float
    default: Any = _REQUIRED
    integer: bool = False
    open_lo: bool = False

    def allowed(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        return f"{kind} in {'(' if self.open_lo else '['}{self.lo:g}, {self.hi:g}]"

    def parse(self, name: str, text: str) -> float | int:
        try:
            value: float | int = int(text) if self.integer else float(text)
        except ValueError:
            raise BadRequest(f"{name} must be {self.allowed()}, got {text!r}") from None
        below = value <= self.lo if self.open_lo else value < self.lo
        if not math.isfinite(value) or below or value > self.hi:
            raise BadRequest(f"{name} must be {self.allowed()}, got {text!r}")
        return value


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of words."""

    options: tuple[str, ...]
    default: Any = _REQUIRED

    def parse(self, name: str, text: str) -> str:
        if text not in self.options:
            raise BadRequest(f"unknown {name} {text!r}; choose from {list(self.options)}")
        return text


@dataclass(frozen=True)
class Text:
    """Free text of at most ``max_len`` printable characters."""

    max_len: int = MAX_TEXT
    default: Any = _REQUIRED

    def parse(self, name: str, text: str) -> str:
        if not text or not text.isprintable() or len(text) > self.max_len:
            raise BadRequest(f"{name} must be 1 to {self.max_len} printable characters, got {text!r}")
        return text


Field = Number | Choice | Text


def parse_query(items: Iterable[tuple[str, str]], spec: Mapping[str, Field]) -> dict[str, Any]:
    """Parse ``(name, text)`` pairs (a query string's, in order) against ``spec``; fill in defaults."""
    seen: dict[str, str] = {}
    for name, text in items:
        if name not in spec:
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise BadRequest(f"unknown parameter {shown!r}; allowed: {sorted(spec)}")
        if name in seen:
            raise BadRequest(f"parameter {name!r} given more than once")
        if len(text) > MAX_TEXT:
            raise BadRequest(f"{name} is {len(text)} characters long; at most {MAX_TEXT} are allowed")
        seen[name] = text
    out: dict[str, Any] = {}
    for name, field in spec.items():
        if name in seen:
            out[name] = field.parse(name, seen[name])
        elif field.default is _REQUIRED:
            raise BadRequest(f"missing parameter {name!r}")
        else:
            out[name] = field.default
    return out
