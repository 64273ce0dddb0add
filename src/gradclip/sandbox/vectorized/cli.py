"""Command line for the vectorized sandbox: train an MLP on digits, two-moons or circles, with clipping.

``python -m gradclip.sandbox.vectorized --grad-clip 1.0 --optimizer adam --epochs 20 --out runs/v1``
trains, prints the test metrics and, with ``--out``, writes ``checkpoint.npz`` and ``history.json``
(atomically; a directory holding a finished run is refused unless ``--overwrite``). Every value is
checked before anything is written; bad input prints one line and exits with code 2.
``add_arguments`` and ``run`` let the ``gradclip train vectorized`` subcommand reuse the same options.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gradclip._argparse import Parser, fail, float_in, int_in, out_path, seed
from gradclip._io import atomic_write_json, check_out_dir, remove_stale_temps
from gradclip.sandbox import clipflags, data
from gradclip.sandbox.vectorized.model import mlp
from gradclip.sandbox.vectorized.optim import SGD, Adam, Lookahead, Optimizer
from gradclip.sandbox.vectorized.trainer import VTrainer

__all__ = ["add_arguments", "main", "run"]

CLIP_MODES = ("norm", "value", "percentile", "zscore")  # AGC needs torch's unit layout
DATASETS = {"digits": data.load_digits, "moons": data.two_moons, "circles": data.circles}
OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "nesterov")
CHECKPOINT, HISTORY = "checkpoint.npz", "history.json"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the vectorized-sandbox options to ``parser`` (grouped as timm does)."""
    task = parser.add_argument_group("task")
    task.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    task.add_argument(
        "--hidden", type=int_in(1, 65536), nargs="+", default=[128, 64], help="hidden layer sizes"
    )
    task.add_argument("--dropout", type=float_in(0.0, 0.99), default=0.0, help="probability in [0, 0.99]")
    clipflags.add_arguments(parser, CLIP_MODES)
    opt = parser.add_argument_group("optimizer")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    opt.add_argument("--lr", type=float_in(1e-300, 1e3), default=1e-3, help="in [1e-300, 1000]")
    opt.add_argument("--weight-decay", type=float_in(0.0, 1e3), default=0.0)
    opt.add_argument(
        "--lookahead", type=int_in(0, 10_000), default=0, metavar="K", help="wrap in Lookahead(k=K); 0: off"
    )
    opt.add_argument(
        "--lookahead-alpha", type=float_in(0, 1, low_open=True), default=None, help="in (0, 1]; default 0.5"
    )
    run_ = parser.add_argument_group("run")
    run_.add_argument("--epochs", type=int_in(1, 100_000), default=20)
    run_.add_argument("--batch-size", type=int_in(1, 1_000_000), default=32)
    run_.add_argument("--seed", type=seed, default=0)
    run_.add_argument(
        "--out", type=out_path, default=None, help="directory for checkpoint.npz and history.json"
    )
    run_.add_argument("--overwrite", action="store_true", help="replace the finished run in --out")
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
    alpha = 0.5 if args.lookahead_alpha is None else args.lookahead_alpha
    return Lookahead(inner, k=args.lookahead, alpha=alpha) if args.lookahead > 0 else inner


def _check(args: argparse.Namespace) -> None:
    """Reject values that cannot work before anything is read or written."""
    if args.lookahead_alpha is not None and args.lookahead == 0:
        raise ValueError("--lookahead-alpha needs --lookahead K (K >= 1)")
    if args.out is not None:
        check_out_dir(args.out, finished=(CHECKPOINT, HISTORY), overwrite=args.overwrite)


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` says; print the test metrics; write ``--out`` files. Returns an exit code."""
    _check(args)
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
        remove_stale_temps(args.out, (CHECKPOINT, HISTORY))  # left by a write that was killed
        trainer.save(args.out / CHECKPOINT)
        summary = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "test": test._asdict(),
            **trainer.history,
        }
        atomic_write_json(args.out / HISTORY, summary)
        print(f"wrote {args.out / CHECKPOINT} and {args.out / HISTORY}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="python -m gradclip.sandbox.vectorized", description=__doc__)
    args = add_arguments(parser).parse_args(argv)
    try:
        return run(args)
    except (ValueError, TypeError, OSError, MemoryError) as err:
        return fail(parser.prog, err)
