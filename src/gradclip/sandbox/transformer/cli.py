"""Command line of the transformer experiment (``gradclip experiment transformer``).

Trains every clipping arm x seed, prints the table, and writes ``OUT/summary.json``,
``OUT/summary.md``, ``OUT/transformer.png`` and one monitor log per run under ``OUT/runs``
(``gradclip report OUT/runs/*`` draws them). Options left unset take the ``--quick`` preset when
it is given, else the standard one.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from gradclip._argparse import Parser, out_path, positive_float, positive_int, run_main
from gradclip._io import atomic_write, check_out_dir

__all__ = ["add_arguments", "add_subcommand", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gradclip.sandbox.transformer.config import ARMS
    from gradclip.sandbox.transformer.config import STANDARD as d

    b = d.base
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=None, help=f"default {' '.join(d.arms)}")
    parser.add_argument("--seeds", type=positive_int, default=None, help=f"seeds 0..N-1 (default {d.seeds})")
    parser.add_argument("--lrs", nargs="+", type=positive_float, default=None,
                        help=f"peak AdamW lrs (default {' '.join(f'{x:g}' for x in d.lrs)})")  # fmt: skip
    parser.add_argument("--steps", type=positive_int, default=None, help=f"default {b.steps}")
    parser.add_argument(
        "--warmup", type=positive_int, default=None, help=f"lr warm-up steps (default {b.warmup})"
    )
    parser.add_argument("--batch-size", type=positive_int, default=None, help=f"default {b.batch_size}")
    parser.add_argument("--workers", type=positive_int, default=2, help="processes (default 2)")
    parser.add_argument(
        "--quick", action="store_true", help="2 seeds x 60 steps at lr 1: about a minute on 2 cores"
    )
    parser.add_argument("--out", type=out_path, default=Path("runs/transformer"), help="output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished experiment in --out")
    parser.add_argument("--quiet", action="store_true", help="no line per finished run")


def _preset(args: argparse.Namespace):
    from gradclip.sandbox.transformer.config import QUICK, STANDARD

    preset = QUICK if args.quick else STANDARD
    changes = {k: getattr(args, k) for k in ("steps", "warmup", "batch_size") if getattr(args, k) is not None}
    return replace(preset, arms=tuple(args.arms) if args.arms else preset.arms,
                   lrs=tuple(args.lrs) if args.lrs else preset.lrs,
                   seeds=args.seeds or preset.seeds, base=replace(preset.base, **changes))  # fmt: skip


def _command(args: argparse.Namespace, preset) -> str:
    b = preset.base
    words = ["gradclip", "experiment", "transformer", "--arms", *preset.arms, "--seeds", str(preset.seeds),
             "--lrs", *(f"{x:g}" for x in preset.lrs), "--steps", str(b.steps), "--warmup", str(b.warmup),
             "--batch-size", str(b.batch_size), "--workers", str(args.workers),
             "--out", str(args.out)]  # fmt: skip
    return shlex.join(words)


def _json(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: _json(v) for k, v in value._asdict().items()}
    return value


def run(args: argparse.Namespace) -> int:
    from gradclip.sandbox.transformer.experiment import (
        NOTE,
        format_markdown,
        format_table,
        plot,
        run_arms,
        summarise,
    )

    check_out_dir(args.out, finished=("summary.json",), overwrite=args.overwrite)
    preset = _preset(args)
    b = preset.base
    print(
        f"transformer: {len(preset.arms)} arms x {preset.seeds} seeds; GPT {b.n_layer} layers x "
        f"{b.d_model} wide, {b.block}-byte context, batch {b.batch_size}; AdamW lr {list(preset.lrs)}, "
        f"{b.warmup} warm-up steps, cosine to 10% over {b.steps} steps; {args.workers} workers"
    )
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_arms(preset, out=args.out, workers=args.workers, progress=None if args.quiet else print)
    rows = summarise(results)
    seconds = time.perf_counter() - started
    command = _command(args, preset)
    table = format_table(rows)
    print(table)
    print(NOTE)
    settings = ", ".join(f"{k}={v}" for k, v in asdict(b).items() if k not in ("arm", "seed", "lr"))
    title = f"# transformer: clipping arms on a small GPT ({seconds:.0f} s)"
    md = "\n".join(
        [title, "", f"Command: `{command}`", "", f"Settings: {settings}", "", format_markdown(rows), ""]
    )
    md += "\n" + NOTE + ".\n"
    data = {"command": command, "settings": asdict(b), "seeds": preset.seeds, "wall_seconds": seconds,
            "rows": [{k: _json(v) for k, v in r._asdict().items()} for r in rows]}  # fmt: skip
    files = {"summary.json": json.dumps(data, indent=1).encode(), "summary.md": md.encode(),
             "transformer.png": plot(results, rows)}  # fmt: skip
    for name, blob in files.items():
        atomic_write(args.out / name, lambda f, blob=blob: f.write(blob))  # type: ignore[misc]  # mypy cannot type a default-bound lambda
    print(
        f"wrote {', '.join(str(args.out / n) for n in files)} and {len(results)} runs under "
        f"{args.out / 'runs'} ({time.perf_counter() - started:.0f} s)"
    )
    return 0


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    """Add ``transformer`` to a subparsers object (``gradclip experiment`` uses this)."""
    parser = sub.add_parser("transformer", help="loss spikes in a small GPT: clipping arms over seeds")
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog="python -m gradclip.sandbox.transformer", description="Clipping arms on a small GPT."
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return run_main(parser, argv)
