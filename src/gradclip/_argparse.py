"""argparse pieces shared by every gradclip command line: one-line errors, exit code 2, bounded values.

Every number a command line takes has bounds (counts and sizes a ceiling, so nothing runs without
end or asks for terabytes; floats a finite range inside float32, where training happens), and
`run_main` turns a ValueError/TypeError or a resource error (a full disk, a permission, memory)
found after parsing into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from gradclip._io import resource_message

__all__ = [
    "Parser",
    "fail",
    "float_in",
    "int_in",
    "out_path",
    "positive_float",
    "positive_int",
    "run_main",
    "seed",
]

FLOAT32_MAX = 3.4028234663852886e38
MAX_COUNT = 10**7  # the default ceiling of a count (epochs, steps, sizes): bounded, never "forever"
SEED_MAX = 2**32 - 1  # NumPy's and torch's seeds both accept [0, 2**32)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage dump), exit code 2, and ``-1e3`` as a number."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # argparse takes "-1e3" for an option (its pattern knows only -1 and -1.5); no option of
        # ours starts with a digit, so every "-<digit or .digit>..." is a negative number.
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> object:
        # ``--flag=--`` gives the one argument "--", which argparse before Python 3.12 deletes as the
        # end-of-options marker, handing the flag an empty list (``--hidden=--``: no hidden layer at
        # all): check "--" as the value it is.
        if arg_strings == ["--"] and action.nargs in (None, "?", "+", "*"):
            value = self._get_value(action, "--")
            self._check_value(action, value)  # a choice list refuses it
            return value if action.nargs in (None, "?") else [value]
        return super()._get_values(action, arg_strings)


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a whole number in ``[lo, hi]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number in [{lo}, {hi}], got {text!r}"
            ) from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected a whole number in [{lo}, {hi}], got {text!r}")
        return value

    parse.__name__ = f"int_in_{lo}_{hi}"
    return parse


def float_in(lo: float, hi: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in ``[lo, hi]`` (``(lo, hi]`` with ``low_open``)."""
    left = "(" if low_open else "["

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value > lo if low_open else value >= lo) and value <= hi):
            raise argparse.ArgumentTypeError(
                f"expected a finite number in {left}{lo:g}, {hi:g}], got {text!r}"
            )
        return value

    parse.__name__ = f"float_in_{lo}_{hi}"
    return parse


def positive_float(text: str) -> float:
    """A finite number > 0 and within float32 range."""
    return float_in(0.0, FLOAT32_MAX, low_open=True)(text)


def positive_int(text: str) -> int:
    """A whole number in ``[1, MAX_COUNT]``."""
    return int_in(1, MAX_COUNT)(text)


seed = int_in(0, SEED_MAX)
seed.__name__ = "seed"


def out_path(text: str) -> Path:
    """An output directory: a non-empty path (``--out ''`` is not "the current directory")."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a directory path, got {text!r}")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"a path cannot hold a NUL character, got {text!r}")
    return Path(text)


def fail(prog: str, err: BaseException) -> int:
    """Print ``prog: error: <one line>`` for ``err`` and return exit code 2."""
    message = resource_message(err) or str(err) or type(err).__name__
    print(f"{prog}: error: {message.splitlines()[0]}", file=sys.stderr)
    return 2


def run_main(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run ``args.func(args)``; later ValueError/TypeError/resource errors: exit 2."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, OSError, MemoryError) as err:
        return fail(parser.prog, err)
