"""Command line for the vectorized sandbox: train an MLP on digits, two-moons or circles, with clipping.

``python -m gradclip.sandbox.vectorized --grad-clip 1.0 --optimizer adam --epochs 20 --out runs/v1``
trains, prints the test metrics and, with ``--out``, writes ``checkpoint.npz`` and ``history.json``.
``add_arguments`` and ``run`` let the ``gradclip train vectorized`` subcommand reuse the same options.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gradclip._argparse import Parser
from gradclip.sandbox import clipflags, data
from gradclip.sandbox.vectorized.model import mlp
from gradclip.sandbox.vectorized.optim import SGD, Adam, Lookahead, Optimizer
from gradclip.sandbox.vectorized.trainer import VTrainer

__all__ = ["add_arguments", "main", "run"]

CLIP_MODES = ("norm", "value", "percentile", "zscore")  # AGC needs torch's unit layout
DATASETS = {"digits": data.load_digits, "moons": data.two_moons, "circles": data.circles}
OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "nesterov")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the vectorized-sandbox options to ``parser`` (grouped as timm does)."""
    task = parser.add_argument_group("task")
    task.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    task.add_argument("--hidden", type=int, nargs="+", default=[128, 64], help="hidden layer sizes")
    task.add_argument("--dropout", type=float, default=0.0)
    clipflags.add_arguments(parser, CLIP_MODES)
    opt = parser.add_argument_group("optimizer")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    opt.add_argument("--lr", type=float, default=1e-3)
    opt.add_argument("--weight-decay", type=float, default=0.0)
    opt.add_argument("--lookahead", type=int, default=0, metavar="K", help="wrap in Lookahead(k=K); 0: off")
    opt.add_argument("--lookahead-alpha", type=float, default=0.5)
    run_ = parser.add_argument_group("run")
    run_.add_argument("--epochs", type=int, default=20)
    run_.add_argument("--batch-size", type=int, default=32)
    run_.add_argument("--seed", type=int, default=0)
    run_.add_argument("--out", type=Path, default=None, help="directory for checkpoint.npz and history.json")
    run_.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _optimizer(args: argparse.Namespace) -> Optimizer | Lookahead:
    wd = args.weight_decay
    inner: Optimizer
    if args.optimizer in ("adam", "adamw"):
        inner = Adam(args.lr, weight_decay=wd, decoupled=args.optimizer == "adamw")
    else:
        momentum = 0.0 if args.optimizer == "sgd" else 0.9
        inner = SGD(args.lr, momentum=momentum, nesterov=args.optimizer == "nesterov", weight_decay=wd)
    return Lookahead(inner, k=args.lookahead, alpha=args.lookahead_alpha) if args.lookahead > 0 else inner


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` says; print the test metrics; write ``--out`` files. Returns an exit code."""
    clip_step = clipflags.numpy_step(clipflags.spec_from_args(args))  # the flags become the step once
    split = DATASETS[args.dataset](seed=args.seed)
    n_classes = int(max(split.y_train.max(), split.y_test.max())) + 1
    model = mlp([split.x_train.shape[1], *args.hidden, n_classes], dropout=args.dropout, seed=args.seed)
    trainer = VTrainer(model, _optimizer(args), clipper=clip_step, seed=args.seed)
    trainer.fit(
        split.x_train, split.y_train, args.epochs, args.batch_size,
        validation=(split.x_test, split.y_test), progress=not args.quiet,
    )  # fmt: skip
    test = trainer.evaluate(split.x_test, split.y_test)
    clipped = sum(
        p > c for p, c in zip(trainer.history["grad_norm"], trainer.history["clipped_norm"], strict=True)
    )
    print(
        f"{args.dataset}: test loss {test.loss:.4f}, test accuracy {test.accuracy:.4f}, "
        f"clipped {clipped}/{trainer.step_count} steps"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        trainer.save(args.out / "checkpoint.npz")
        summary = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "test": test._asdict(),
            **trainer.history,
        }
        (args.out / "history.json").write_text(json.dumps(summary, indent=1))
        print(f"wrote {args.out / 'checkpoint.npz'} and {args.out / 'history.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="python -m gradclip.sandbox.vectorized", description=__doc__)
    args = add_arguments(parser).parse_args(argv)
    try:
        return run(args)
    except (ValueError, TypeError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
