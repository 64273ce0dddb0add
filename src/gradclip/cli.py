"""The ``gradclip`` command: ``gradclip demo`` (more subcommands arrive with the sandboxes).

Errors in the command line print one line, ``gradclip: error: ...``, and exit with code 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _cmd_demo(args: argparse.Namespace) -> int:
    from gradclip.sandbox.demo import format_table, run_demo

    print(
        f"Training an MLP on scikit-learn digits twice ({args.epochs} epochs, SGD lr 0.1 momentum 0.9); "
        f"at step 100 one bad batch has its loss multiplied by {args.spike:g}."
    )
    runs = run_demo(max_norm=args.max_norm, epochs=args.epochs, spike=args.spike, seed=args.seed)
    print(format_table(runs))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradclip", description="Gradient clipping you can trust, see and understand.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="train on embedded digits with and without clipping, side by side")
    demo.add_argument("--max-norm", type=_positive_float, default=1.0, help="clipping threshold (default 1)")
    demo.add_argument("--epochs", type=_positive_int, default=8, help="epochs per run (default 8)")
    demo.add_argument("--spike", type=_positive_float, default=1e4, help="loss factor of the bad batch")
    demo.add_argument("--seed", type=int, default=0, help="seed for data split, init and order")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
