"""Command line of the recurrent experiments: ``pascanu`` (tasks x seeds x clipping) and ``cliff``.

``python -m gradclip.sandbox.recurrent pascanu --quick`` (or ``gradclip experiment pascanu ...``)
trains every cell of the grid (tasks x lengths, each seeds x lrs x {SGD, SGD-C} as one batch),
prints the success-rate table and writes ``OUT/summary.json``, ``OUT/summary.md``,
``OUT/pascanu.png`` (and, with ``--log-runs``, one ``OUT/runs/<run>/grads.jsonl`` per run).
``... cliff`` writes ``OUT/cliff.png``. ``add_subcommands`` lets ``gradclip experiment`` reuse the
same options; options left unset take the ``--quick`` preset when it is given, else the standard one.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradclip._argparse import (
    FLOAT32_MAX,
    Parser,
    float_in,
    int_in,
    out_path,
    positive_float,
    run_main,
)
from gradclip._io import check_out_dir

__all__ = ["add_subcommands", "main", "run_cliff_command", "run_pascanu_command"]

PRESET_KEYS = ("tasks", "lengths", "lrs", "seeds", "steps", "warmup", "factor", "hidden", "batch_size",
               "init", "eval_every", "eval_size")  # fmt: skip


def _add_pascanu(parser: argparse.ArgumentParser) -> None:
    from gradclip.sandbox.recurrent.grid import STANDARD as d
    from gradclip.sandbox.recurrent.tasks import TASKS

    grid = parser.add_argument_group("grid (unset: the standard preset, or --quick's)")
    grid.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=None,
                      help=f"default {' '.join(d.tasks)}")  # fmt: skip
    grid.add_argument("--lengths", nargs="+", type=int_in(1, 10**7), default=None,
                      help=f"sequence lengths T (default {' '.join(map(str, d.lengths))})")  # fmt: skip
    grid.add_argument("--lrs", nargs="+", type=float_in(1e-300, FLOAT32_MAX), default=None,
                      help=f"SGD learning rates (default {' '.join(f'{x:g}' for x in d.lrs)})")  # fmt: skip
    grid.add_argument(
        "--seeds", type=int_in(1, 10_000), default=None, help=f"seeds 0..N-1 per cell (default {d.seeds})"
    )
    grid.add_argument(
        "--steps", type=int_in(1, 10**7), default=None, help=f"most updates per run (default {d.steps})"
    )
    model = parser.add_argument_group("model, SGD and clipping")
    model.add_argument(
        "--hidden", type=int_in(1, 10**7), default=None, help=f"tanh units (default {d.hidden})"
    )
    model.add_argument("--init", choices=("smart", "gaussian"), default=None,
                       help="smart: sparse W_hh at spectral radius 0.95; gaussian: N(0, 0.1²)")  # fmt: skip
    model.add_argument("--batch-size", type=int_in(1, 10**7), default=None, help=f"default {d.batch_size}")
    model.add_argument("--warmup", type=int_in(1, 10**7), default=None,
                       help=f"unclipped updates whose mean norm sets c (default {d.warmup})")  # fmt: skip
    model.add_argument("--factor", type=float_in(1e-300, FLOAT32_MAX), default=None,
                       help=f"c = factor x the warm-up's mean norm (default {d.factor:g})")  # fmt: skip
    run = parser.add_argument_group("run")
    run.add_argument("--eval-every", type=int_in(1, 10**7), default=None, help=f"default {d.eval_every}")
    run.add_argument("--eval-size", type=int_in(1, 1_000_000), default=None,
                     help=f"fresh sequences per evaluation (default {d.eval_size})")  # fmt: skip
    run.add_argument(
        "--workers", type=int_in(1, 1024), default=2, help="processes, one cell each (default 2)"
    )
    run.add_argument("--quick", action="store_true", help="one small cell: under a minute on 2 cores")
    run.add_argument("--log-runs", action="store_true", help="also write OUT/runs/<run>/grads.jsonl per run")
    run.add_argument("--out", type=out_path, default=Path("runs/pascanu"), help="output directory")
    run.add_argument("--overwrite", action="store_true", help="replace a finished experiment in --out")
    run.add_argument("--quiet", action="store_true", help="no line per finished cell")


def _grid(args: argparse.Namespace):
    """Explicit options first, then the --quick preset or the standard one."""
    from gradclip.sandbox.recurrent.grid import QUICK, STANDARD, Grid

    preset = QUICK if args.quick else STANDARD
    values: dict[str, Any] = {}
    for key in PRESET_KEYS:
        value = getattr(args, key)
        values[key] = (
            getattr(preset, key) if value is None else (tuple(value) if isinstance(value, list) else value)
        )
    return Grid(**values)


def _command(args: argparse.Namespace, settings: dict) -> str:
    """The command that reproduces this run, every grid value spelled out."""
    import shlex

    words = ["gradclip", "experiment", "pascanu"]
    for key, value in settings.items():
        words.append("--" + key.replace("_", "-"))
        values = value if isinstance(value, tuple) else (value,)
        words += [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
    return shlex.join([*words, "--workers", str(args.workers), "--out", str(args.out)])


def run_pascanu_command(args: argparse.Namespace) -> int:
    """Run the grid as ``args`` says, print the table, write the outputs. Returns an exit code."""
    from gradclip.sandbox.recurrent.experiment import compare, run_grid
    from gradclip.sandbox.recurrent.results import NOTE, format_table, log_runs, write_outputs

    check_out_dir(args.out, finished=("summary.json",), overwrite=args.overwrite)
    grid = _grid(args)
    arms = len(grid.lrs) * 2 * grid.seeds
    print(
        f"pascanu: {len(grid.cells)} cells ({', '.join(grid.tasks)} x T in {list(grid.lengths)}), "
        f"each {grid.seeds} seeds x lr in {list(grid.lrs)} x (SGD, SGD-C) = {arms} runs as one batch; "
        f"at most {grid.steps} steps, {grid.hidden} tanh units, batch {grid.batch_size}, "
        f"c = {grid.factor:g} x mean norm of {grid.warmup} warm-up steps, {args.workers} workers"
    )
    started = time.perf_counter()
    settings = {k: getattr(grid, k) for k in PRESET_KEYS}
    command = _command(args, settings)

    def write(runs: list) -> list[Path]:
        return write_outputs(compare(runs), args.out, command=command, settings=settings,
                             seconds=time.perf_counter() - started)  # fmt: skip

    def after_cell(runs: list) -> None:  # the summaries are rewritten after every cell
        write(runs)

    results = run_grid(grid, workers=args.workers, progress=None if args.quiet else print, on_cell=after_cell)
    comparisons = compare(results)
    paths = write(results)
    print(format_table(comparisons))
    print(NOTE)
    if args.log_runs:
        paths.append(log_runs(results, args.out))
    print(f"wrote {', '.join(map(str, paths))} ({time.perf_counter() - started:.0f} s)")
    return 0


def _add_cliff(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--start", type=float_in(-1e4, 1e4), nargs=2, metavar=("W", "B"), default=None, help="default 5 -3.5"
    )
    parser.add_argument("--lr", type=float_in(1e-300, FLOAT32_MAX), default=None, help="default 0.1")
    parser.add_argument("--threshold", type=positive_float, default=None, help="norm-clipping c (default 1)")
    parser.add_argument("--steps", type=int_in(1, 100_000), default=None, help="default 200")
    parser.add_argument("--out", type=out_path, default=Path("runs/cliff"), help="output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace cliff.png in --out")


def run_cliff_command(args: argparse.Namespace) -> int:
    """Descend the cliff with and without clipping, print what happened, write the PNG."""
    from gradclip.sandbox.recurrent.cliff import run_cliff

    check_out_dir(args.out, finished=("cliff.png",), overwrite=args.overwrite)
    start = None if args.start is None else tuple(args.start)
    result = run_cliff(start=start, lr=args.lr, threshold=args.threshold, steps=args.steps, out=args.out)
    print("\n".join(result.lines()))
    print(f"wrote {result.path}")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add ``pascanu`` and ``cliff`` to a subparsers object (``gradclip experiment`` uses this)."""
    pascanu = sub.add_parser(
        "pascanu", help="Pascanu et al. 2013 tasks: success rate with and without clipping"
    )
    _add_pascanu(pascanu)
    pascanu.set_defaults(func=run_pascanu_command)
    cliff = sub.add_parser("cliff", help="the single-unit RNN's loss cliff (Pascanu et al. 2013, Fig. 6)")
    _add_cliff(cliff)
    cliff.set_defaults(func=run_cliff_command)


def build_parser(prog: str = "python -m gradclip.sandbox.recurrent") -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description="Recurrent experiments of Pascanu, Mikolov & Bengio (2013).")
    add_subcommands(parser.add_subparsers(dest="experiment", required=True, parser_class=Parser))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv)
