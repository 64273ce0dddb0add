"""The ``gradclip`` command: ``demo``, ``report``, ``train``, ``experiment`` and ``explore``.

Errors in the command line or in the values it carries print one line, ``gradclip: error: ...``,
and exit with code 2; nothing is written before the arguments are known to be good. Building the
parser needs NumPy only: ``--help``, ``report``, ``explore`` and ``train vectorized`` work without
torch, and a command whose extra is not installed says which ``pip install 'gradclip[...]'`` it needs
(one line, exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gradclip import __version__
from gradclip._argparse import (
    Parser,
    float_in,
    int_in,
    out_path,
    positive_float,
    run_main,
    seed,
)
from gradclip._extras import missing_extra_message
from gradclip._io import check_out_dir

DEMO_OUTPUTS = ("no-clipping/grads.jsonl", "clipped/grads.jsonl", "report/report.html")


def _cmd_demo(args: argparse.Namespace) -> int:
    check_out_dir(args.out, finished=DEMO_OUTPUTS, overwrite=args.overwrite)
    from gradclip.sandbox.demo import format_table, run_demo

    print(
        f"Training a small CNN on scikit-learn digits twice ({args.epochs} epochs, SGD lr 0.05, Nesterov "
        f"momentum 0.9); at step 60 one bad batch has its loss multiplied by {args.spike:g}."
    )
    runs = run_demo(
        max_norm=args.max_norm, epochs=args.epochs, spike=args.spike, seed=args.seed, out_dir=args.out
    )
    print(format_table(runs))
    print(f"runs: {args.out / 'no-clipping'}, {args.out / 'clipped'}")
    print(f"report: {args.out / 'report' / 'report.html'}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from gradclip.report import print_summary, render_report
    from gradclip.sinks import read_run

    dirs = args.run_dirs
    out = args.out or (dirs[0] / "report" if len(dirs) == 1 else dirs[0].parent / "report")
    if args.title is not None:
        try:
            args.title.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"--title must be UTF-8 text, got {args.title!r:.60}") from None
    check_out_dir(out, finished=("report.html",), overwrite=args.overwrite)
    try:
        runs = [read_run(d) for d in dirs]  # read once: the page and the terminal summary share them
        page = render_report(runs, out, title=args.title)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
    print_summary(runs)
    print(f"report: {page}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    from gradclip.sandbox.vectorized import cli as vcli

    train = sub.add_parser("train", help="train in a sandbox (vectorized: NumPy MLP; conv: torch CNNs)")
    kinds = train.add_subparsers(dest="sandbox", required=True, parser_class=Parser)
    vec = kinds.add_parser("vectorized", help="NumPy MLP on digits, two-moons or circles")
    vcli.add_arguments(vec)
    vec.set_defaults(func=vcli.run)

    conv_help = "torch CNNs (resnet18, small_cnn, deep_cnn) on digits, CIFAR-10 or a folder"
    try:
        from gradclip.sandbox.convolutional import cli as ccli
    except ModuleNotFoundError as err:  # the parser of a torch command needs torch: say how to get it
        _add_missing(kinds, "conv", conv_help, err, command="gradclip train conv")
        return
    conv = kinds.add_parser("conv", help=conv_help)
    ccli.add_arguments(conv)
    conv.set_defaults(func=lambda a: ccli.run(a, parser=conv))


def _add_missing(
    sub: argparse._SubParsersAction, name: str, help_text: str, err: ModuleNotFoundError, *, command: str
) -> None:
    """A stand-in subcommand for one whose extra is missing: any arguments, one line, exit 2."""
    message = missing_extra_message(err, command)
    if message is None:
        raise err
    # No option prefix: every argument, --help included, is taken as given; the command cannot run.
    stub = sub.add_parser(name, help=f"{help_text} [not installed]", add_help=False, prefix_chars="\0")
    stub.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    stub.set_defaults(func=lambda _args: _fail(message))


def _fail(message: str) -> int:
    print(f"gradclip: error: {message}", file=sys.stderr)
    return 2


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    from gradclip.sandbox.recurrent import cli as rcli
    from gradclip.sandbox.transformer import cli as tcli

    exp = sub.add_parser(
        "experiment", help="pascanu (RNN tasks), cliff (Fig. 6), transformer (loss spikes in a small GPT)"
    )
    kinds = exp.add_subparsers(dest="experiment", required=True, parser_class=Parser)
    rcli.add_subcommands(kinds)
    tcli.add_subcommand(kinds)


def _add_explore(sub: argparse._SubParsersAction) -> None:
    from gradclip.explorer import cli as ecli  # imports no starlette/uvicorn until run()

    explore = sub.add_parser("explore", help="local web page: the cliff, value vs norm, curves, your runs")
    ecli.add_arguments(explore)  # --host 127.0.0.1, --port 8765 (0: any free), --runs-dir runs, --no-browser
    explore.set_defaults(func=ecli.run)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gradclip", description="Gradient clipping you can trust, see and understand.")
    parser.add_argument("--version", action="version", version=f"gradclip {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    demo = sub.add_parser("demo", help="train on embedded digits with and without clipping, side by side")
    demo.add_argument("--max-norm", type=positive_float, default=5.0, help="clipping threshold (default 5)")
    demo.add_argument("--epochs", type=int_in(1, 1000), default=5, help="epochs per run (default 5)")
    demo.add_argument(
        "--spike", type=float_in(0, 1e30, low_open=True), default=1e4, help="loss factor of the bad batch"
    )
    demo.add_argument("--seed", type=seed, default=0, help="seed for data split, init and order")
    demo.add_argument(
        "--out", type=out_path, default=Path("runs/demo"), help="runs and report (default runs/demo)"
    )
    demo.add_argument("--overwrite", action="store_true", help="replace the runs and report in --out")
    demo.set_defaults(func=_cmd_demo)
    report = sub.add_parser("report", help="plots, an HTML page and a summary table from monitored runs")
    report.add_argument(
        "run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="directories holding grads.jsonl"
    )
    report.add_argument(
        "--out", type=out_path, default=None, help="output directory (default: RUN_DIR/report)"
    )
    report.add_argument("--title", default=None, help="title of the HTML page")
    report.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    report.set_defaults(func=_cmd_report)
    _add_train(sub)
    _add_experiment(sub)
    _add_explore(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run_main(build_parser(), argv)
    except ModuleNotFoundError as err:  # a command imports its extra when it runs (demo, report, ...)
        message = missing_extra_message(err, "this command")
        if message is None:
            raise
        return _fail(message)


if __name__ == "__main__":
    sys.exit(main())
