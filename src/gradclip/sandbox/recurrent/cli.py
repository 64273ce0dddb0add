"""Command line of the recurrent experiments: ``pascanu`` (tasks x seeds x clipping) and ``cliff``.

``python -m gradclip.sandbox.recurrent pascanu --quick`` (or ``gradclip experiment pascanu ...``)
trains every seed with and without clipping, prints the success-rate table and writes
``OUT/summary.json``, ``OUT/pascanu.png`` and one ``OUT/runs/<run>/grads.jsonl`` per run.
``... cliff`` writes ``OUT/cliff.png``. ``add_subcommands`` lets ``gradclip experiment`` reuse the
same options; options left unset take the ``--quick`` preset when it is given, else the defaults.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from gradclip._argparse import Parser, float_in, int_in, out_path, positive_float, positive_int, run_main
from gradclip._io import check_out_dir

__all__ = ["add_subcommands", "main", "run_cliff_command", "run_pascanu_command"]

DEFAULTS = {"task": "temporal-order", "length": 50, "seeds": 20, "steps": 20000, "lr": 0.01, "hidden": 50,
            "batch_size": 20, "eval_every": 500, "eval_size": 1000, "workers": 2}  # fmt: skip


def _add_pascanu(parser: argparse.ArgumentParser) -> None:
    from gradclip.sandbox.recurrent.tasks import TASKS

    d = DEFAULTS
    task = parser.add_argument_group("task")
    task.add_argument("--task", choices=sorted(TASKS), default=None, help=f"default {d['task']}")
    task.add_argument(
        "--length", type=positive_int, default=None, help=f"sequence length T (default {d['length']})"
    )
    model = parser.add_argument_group("model and SGD")
    model.add_argument(
        "--hidden", type=positive_int, default=None, help=f"tanh units (default {d['hidden']})"
    )
    model.add_argument("--init", choices=("smart", "gaussian"), default="smart",
                       help="smart: sparse W_hh at spectral radius 0.95; gaussian: N(0, 0.1²)")  # fmt: skip
    model.add_argument(
        "--lr", type=positive_float, default=None, help=f"SGD learning rate (default {d['lr']})"
    )
    model.add_argument("--batch-size", type=positive_int, default=None, help=f"default {d['batch_size']}")
    clip = parser.add_argument_group("clipping")
    clip.add_argument(
        "--threshold",
        type=positive_float,
        default=None,
        help="clip at this norm; unset: factor x warm-up mean",
    )
    clip.add_argument(
        "--warmup", type=positive_int, default=500, help="unclipped updates measured (default 500)"
    )
    clip.add_argument(
        "--factor", type=positive_float, default=None, help="c = factor x mean norm (default 2)"
    )
    run = parser.add_argument_group("run")
    run.add_argument("--seeds", type=int_in(1, 10_000), default=None, help=f"seeds 0..N-1 ({d['seeds']})")
    run.add_argument(
        "--steps", type=int_in(1, 10_000_000), default=None, help=f"most updates per run ({d['steps']})"
    )
    run.add_argument("--eval-every", type=positive_int, default=None, help=f"default {d['eval_every']}")
    run.add_argument(
        "--eval-size", type=int_in(1, 1_000_000), default=None, help=f"fresh sequences ({d['eval_size']})"
    )
    run.add_argument("--workers", type=int_in(1, 1024), default=None, help=f"processes ({d['workers']})")
    run.add_argument(
        "--quick", action="store_true", help="the preset that runs in under 5 minutes on 2 cores"
    )
    run.add_argument("--out", type=out_path, default=Path("runs/pascanu"), help="output directory")
    run.add_argument("--overwrite", action="store_true", help="replace a finished experiment in --out")
    run.add_argument("--quiet", action="store_true", help="no line per finished run")


def _settings(args: argparse.Namespace) -> dict:
    """Explicit options first, then the --quick preset, then `DEFAULTS`."""
    from gradclip.sandbox.recurrent.experiment import QUICK

    layers = [DEFAULTS, QUICK] if args.quick else [DEFAULTS]
    out = {}
    for key in DEFAULTS:
        value = getattr(args, key)
        if value is None:
            value = next(layer[key] for layer in reversed(layers) if key in layer)
        out[key] = value
    return out


def run_pascanu_command(args: argparse.Namespace) -> int:
    """Run the experiment as ``args`` says, print the table, write the outputs. Returns an exit code."""
    from gradclip.sandbox.recurrent.experiment import FACTOR, format_table, run_pascanu, write_outputs
    from gradclip.sandbox.recurrent.train import RunConfig

    check_out_dir(args.out, finished=("summary.json",), overwrite=args.overwrite)
    s = _settings(args)
    factor = FACTOR if args.factor is None else args.factor
    base = RunConfig(task=s["task"], length=s["length"], steps=s["steps"], hidden=s["hidden"], lr=s["lr"],
                     batch_size=s["batch_size"], init=args.init, eval_every=s["eval_every"],
                     eval_size=s["eval_size"])  # fmt: skip
    rule = (
        f"{args.threshold:g}" if args.threshold else f"{factor:g} x mean norm of {args.warmup} warm-up steps"
    )
    print(f"pascanu: {s['task']}, T={s['length']}, {s['seeds']} seeds x (SGD, SGD-C), at most {s['steps']} "
          f"steps, lr {s['lr']:g}, {s['hidden']} units, batch {s['batch_size']}, c = {rule}, "
          f"{s['workers']} workers")  # fmt: skip
    started = time.perf_counter()
    results = run_pascanu(base, seeds=s["seeds"], threshold=args.threshold, warmup=args.warmup,
                          factor=factor, workers=s["workers"], out=args.out,
                          progress=None if args.quiet else print)  # fmt: skip
    settings = {**s, "init": args.init, "threshold": args.threshold, "warmup": args.warmup, "factor": factor}
    rows = write_outputs(results, args.out, settings=settings, started=started)
    print(format_table(rows))
    print(
        f"success = error < 1% on {s['eval_size']} fresh sequences; spikes: |g| > 10x the median of the "
        "previous 20 steps; jumps: spikes after which the mean loss of the next 20 steps doubled"
    )
    print(
        f"wrote {args.out / 'summary.json'}, {args.out / 'pascanu.png'} and {len(results)} runs under "
        f"{args.out / 'runs'} ({time.perf_counter() - started:.0f} s)"
    )
    return 0


def _add_cliff(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--start", type=float_in(-1e4, 1e4), nargs=2, metavar=("W", "B"), default=None, help="default 5 -3.5"
    )
    parser.add_argument("--lr", type=positive_float, default=None, help="default 0.1")
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
