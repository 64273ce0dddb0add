"""Command line of the convolutional sandbox: train a CNN on digits, CIFAR-10 or an image folder.

``python -m gradclip.sandbox.convolutional resnet18 --epochs 5 --batch-size 128 --gpu --grad-clip 5.0``
(the seed system's command; ``--grad-clip`` unset disables clipping). With ``--out DIR`` the run
writes ``DIR/checkpoint.pt`` after every epoch, ``DIR/history.json``, the monitor's ``grads.jsonl``
and TensorBoard events; ``--resume`` continues the run saved in ``DIR``. Bad arguments print one
line, ``...: error: ...``, and exit with code 2 before anything is written. ``add_arguments`` and
``run`` let ``gradclip train conv`` reuse the same options.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from gradclip._argparse import Parser, float_in, int_in, out_path, seed
from gradclip._io import atomic_write_json, check_out_dir, remove_stale_temps, resource_message
from gradclip.sandbox import clipflags
from gradclip.sandbox.convolutional.checkpoint import load_checkpoint
from gradclip.sandbox.convolutional.clipping import CLIP_MODES, make_step
from gradclip.sandbox.convolutional.data import DATASETS, load_data
from gradclip.sandbox.convolutional.models import MODELS, build_model
from gradclip.sandbox.convolutional.trainer import ConvTrainer, unwrap

__all__ = ["add_arguments", "main", "run"]

OPTIMIZERS = ("sgd", "adam", "adamw")
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
# Options that must match between a run and its resumption (epochs may grow; paths, device and
# verbosity may change).
SAME_ON_RESUME = ("model", "data", "data_dir", "image_size", "batch_size", "optimizer", "lr", "lookahead",
                  "grad_clip", "clip_mode", "skip_spikes", "amp", "seed", "inject_spike")  # fmt: skip


class UsageError(ValueError):
    """A command-line value that cannot work: reported in one line, exit code 2."""


def _spike(text: str) -> tuple[int, float]:
    step, sep, factor = text.partition(":")
    try:
        value = (int(step), float(factor))
    except ValueError:
        value = None
    if not sep or value is None or value[0] < 0 or not math.isfinite(value[1]):
        raise argparse.ArgumentTypeError(f"expected STEP:FACTOR (step >= 0, finite factor), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the convolutional-sandbox options to ``parser`` (grouped as timm does)."""
    parser.add_argument("model", choices=sorted(MODELS), help="network to train")
    task = parser.add_argument_group("data")
    task.add_argument("--data", choices=DATASETS, default="digits", help="dataset (default: embedded digits)")
    task.add_argument("--data-dir", type=Path, default=None, help="cifar10 batches or class folders")
    task.add_argument("--image-size", type=int_in(1, 4096), default=None, help="side in pixels (digits: 16)")
    clip = clipflags.add_arguments(parser, CLIP_MODES)
    clip.add_argument("--inject-spike", type=_spike, default=None, metavar="STEP:FACTOR",
                      help="multiply the loss of global step STEP by FACTOR (a bad batch)")  # fmt: skip
    opt = parser.add_argument_group("optimizer")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="sgd has Nesterov momentum 0.9")
    opt.add_argument("--lr", type=float_in(1e-300, 1e3), default=None,
                     help="in [1e-300, 1000]; default: sgd 0.05, adam(w) 1e-3")  # fmt: skip
    opt.add_argument("--lookahead", action="store_true", help="wrap in Lookahead(k=5, alpha=0.5)")
    run_ = parser.add_argument_group("run")
    run_.add_argument("--epochs", type=int_in(1, 100_000), default=5)
    run_.add_argument("--batch-size", type=int_in(1, 1_000_000), default=128)
    run_.add_argument("--gpu", action="store_true", help="train on CUDA (error if none is available)")
    run_.add_argument("--amp", action="store_true", help="mixed precision (fp16 on CUDA, bfloat16 on CPU)")
    run_.add_argument("--seed", type=seed, default=0, help="seed of split, initialisation and data order")
    run_.add_argument("--out", type=out_path, default=None, help="run directory: checkpoint, history, logs")
    run_.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    run_.add_argument("--overwrite", action="store_true", help="start afresh over the run saved in --out")
    run_.add_argument("--no-monitor", action="store_true", help="do not attach the GradMonitor")
    run_.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _check(args: argparse.Namespace) -> Path | None:
    """Reject combinations that cannot work, before anything is read or written; return the checkpoint."""
    if args.gpu and not torch.cuda.is_available():
        built = "with" if torch.backends.cuda.is_built() else "without"
        raise UsageError(f"--gpu was given but CUDA is not available (torch {torch.__version__}, "
                         f"built {built} CUDA); drop --gpu to train on the CPU")  # fmt: skip
    try:
        args.clip_spec = clipflags.spec_from_args(args)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.data != "digits" and args.data_dir is None:
        raise UsageError(f"--data {args.data} is read from disk: give --data-dir")
    if args.out is None:
        if args.resume:
            raise UsageError("--resume needs --out, the run directory to continue")
        return None
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the saved run and --overwrite replaces it: give one")
    check_out_dir(args.out)
    ckpt = args.out / CHECKPOINT
    if args.resume and not ckpt.is_file():
        raise UsageError(f"--resume: no {CHECKPOINT} in {str(args.out)!r} to continue")
    if not (args.resume or args.overwrite) and ckpt.exists():
        raise UsageError(f"--out {str(args.out)!r} already holds a run ({CHECKPOINT}); pass --resume "
                         "to continue it, --overwrite to replace it, or choose another --out")  # fmt: skip
    return ckpt


def _config(args: argparse.Namespace) -> dict[str, Any]:
    return {k: None if getattr(args, k) is None else str(getattr(args, k)) for k in SAME_ON_RESUME}


def _optimizer(args: argparse.Namespace, model: torch.nn.Module) -> Any:
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    if args.optimizer == "sgd":
        opt: Any = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    elif args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    if args.lookahead:
        from gradclip.optim import Lookahead

        opt = Lookahead(opt, k=5, alpha=0.5)
    return opt


def _monitor(args: argparse.Namespace, model: torch.nn.Module, opt: Any, saved: dict[str, Any] | None) -> Any:
    """The run's monitor, logging to ``OUT/monitor``; on ``--resume`` it continues the saved run's log."""
    if args.no_monitor:
        return None
    from gradclip.monitor import GradMonitor

    log_dir = None if args.out is None else args.out / "monitor"
    resume = args.resume and saved is not None and saved.get("monitor") is not None
    if args.resume and not resume and log_dir is not None and log_dir.exists():
        raise UsageError(f"--resume: the checkpoint holds no monitor state to continue {str(log_dir)!r} with")
    # thresholds come with every step's result
    return GradMonitor(model, optimizer=opt, log_dir=log_dir, resume=resume)


def run(args: argparse.Namespace, *, parser: argparse.ArgumentParser | None = None) -> int:
    """Train as ``args`` says; print the test metrics. Returns an exit code (2: bad arguments)."""
    try:
        return _run(args)
    except (UsageError, FileNotFoundError, ImportError, ValueError, TypeError, OSError, MemoryError) as err:
        message = resource_message(err) if not isinstance(err, FileNotFoundError) else None
        message = message or (str(err).splitlines()[0] if str(err) else type(err).__name__)
        if parser is not None:
            parser.error(message)  # exits with code 2
        print(f"error: {message}", file=sys.stderr)
        return 2


def _distributed(args: argparse.Namespace) -> tuple[int, torch.device]:
    """Join the torchrun job when there is one (WORLD_SIZE > 1): gloo on CPU, nccl with --gpu."""
    device = torch.device("cuda" if args.gpu else "cpu")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, device
    import torch.distributed as dist

    if args.gpu:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if args.gpu else "gloo")
    return dist.get_rank(), device


def _run(args: argparse.Namespace) -> int:
    ckpt = _check(args)
    split = load_data(args.data, data_dir=args.data_dir, size=args.image_size, seed=args.seed)
    rank, device = _distributed(args)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 -- seeds the legacy global generator third-party code may use
    model = build_model(args.model, in_channels=split.in_channels, num_classes=split.num_classes)
    opt = _optimizer(args, model)
    clip_step = make_step(args.clip_spec, model)  # the flags become the step once, with or without DDP
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # DDP averages the gradients during backward(): every rank then clips the same global
        # gradient locally, no extra collective (gradclip.distributed). Only rank 0 writes.
        model = torch.nn.parallel.DistributedDataParallel(
            model.to(device), device_ids=[device.index] if device.type == "cuda" else None
        )
        if rank != 0:
            args.quiet, args.no_monitor = True, True
    writes = rank == 0 and args.out is not None
    trainer = ConvTrainer(
        model, opt, clipper=clip_step, device=device, amp=args.amp,
        spike=args.inject_spike, progress=not args.quiet, seed=args.seed,
        log_dir=args.out / "tensorboard" if writes else None,
    )  # fmt: skip
    config = _config(args)
    state = None
    if args.resume:
        assert ckpt is not None  # _check refuses --resume without --out
        state = load_checkpoint(ckpt, map_location=device)
    trainer.monitor = _monitor(args, unwrap(model), opt, state)
    if state is not None:
        saved = state.get("extra", {}).get("config", {})
        diff = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
        if diff:
            raise UsageError("--resume with options that differ from the saved run: "
                             + ", ".join(f"{k} was {a} now {b}" for k, (a, b) in diff.items()))  # fmt: skip
        try:
            trainer.load_state_dict(state)
        except (TypeError, ValueError) as err:
            raise UsageError(f"--resume: {str(ckpt)!r} cannot be resumed here: {err}") from None
        if trainer.epoch >= args.epochs:
            raise UsageError(f"--resume: the run already has {trainer.epoch} epochs; raise --epochs to go on")
    if writes:
        args.out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(args.out, (CHECKPOINT, HISTORY))  # left by a write that was killed
    try:
        trainer.fit(split, args.epochs, args.batch_size, checkpoint=ckpt if writes else None,
                    extra={"config": config})  # fmt: skip
    finally:
        if trainer.monitor is not None:
            trainer.monitor.close()
        if trainer.writer is not None:
            trainer.writer.close()
    h = trainer.history
    if rank == 0:
        print(f"{args.model} on {args.data}: test loss {h['val_loss'][-1]:.4f}, test accuracy "
              f"{h['val_accuracy'][-1]:.4f}, clipped {int(sum(h['clipped']))}/{trainer.step_count} steps, "
              f"{sum(h['seconds']):.1f}s")  # fmt: skip
    if writes:
        atomic_write_json(args.out / HISTORY, {"config": config, **h})
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gradclip.sandbox.convolutional ...``; returns the exit code."""
    parser = Parser(prog="python -m gradclip.sandbox.convolutional", description=__doc__.split("\n\n")[0])
    args = add_arguments(parser).parse_args(argv)
    return run(args, parser=parser)
