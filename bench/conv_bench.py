"""ConvTrainer against a minimal hand-written torch loop: steps per second and the overhead ratio.

Both train the same model (same initial weights) on the same data, in the same order, with the same
work per step: forward, cross-entropy, backward, global-norm clipping (``clip_grad_norm_``), SGD
step, and one evaluation pass over the test set per epoch. The trainer adds its bookkeeping (per-step
history, checks) and, by default, a :class:`~gradclip.monitor.GradMonitor` observing every step.
Runs alternate (loop, trainer, loop, ...) and the median over ``--repeats`` is reported; time is
the process's CPU time with one torch thread (``--threads``), which other jobs on a shared machine
disturb far less than wall-clock time.

    python bench/conv_bench.py [--model small_cnn] [--epochs 1] [--repeats 9] [--no-monitor]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

from gradclip.clip import clip_grad_norm_
from gradclip.monitor import GradMonitor, GradMonitorWarning
from gradclip.sandbox.convolutional import ConvTrainer, build_model, load_digits

MAX_NORM = 1.0


def _setup(name: str, data, seed: int):
    torch.manual_seed(seed)
    model = build_model(name, in_channels=data.in_channels, num_classes=data.num_classes)
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)


def hand_loop(name: str, data, epochs: int, batch_size: int, seed: int) -> tuple[float, int]:
    """The reference: the shortest correct loop doing the same work. Returns (seconds, steps)."""
    model, opt = _setup(name, data, seed)
    gen = torch.Generator().manual_seed(seed)
    steps, start = 0, time.process_time()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(data.x_train), generator=gen).split(batch_size):
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_grad_norm_(model.parameters(), MAX_NORM)
            opt.step()
            steps += 1
        model.eval()
        with torch.no_grad():
            for i in range(0, len(data.x_test), 512):
                model(data.x_test[i : i + 512])
    return time.process_time() - start, steps


def trainer_run(name: str, data, epochs: int, batch_size: int, seed: int, monitor: bool) -> tuple[float, int]:
    model, opt = _setup(name, data, seed)
    mon = GradMonitor(model, optimizer=opt, max_norm=MAX_NORM) if monitor else None
    trainer = ConvTrainer(model, opt, MAX_NORM, monitor=mon, seed=seed)
    start = time.process_time()
    trainer.fit(data, epochs, batch_size)
    seconds = time.process_time() - start
    if mon is not None:
        mon.close()
    return seconds, trainer.step_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-monitor", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # c=1 clips most steps here, which the monitor rightly warns about; the timing is what matters.
    warnings.simplefilter("ignore", GradMonitorWarning)
    data = load_digits(size=args.image_size)
    monitor = not args.no_monitor
    run = (args.model, data, args.epochs, args.batch_size, 0)
    hand_loop(*run)  # warm-up: allocator, kernels, lazy imports
    trainer_run(*run, monitor)
    loop_rates, trainer_rates, ratios = [], [], []
    for _ in range(args.repeats):
        seconds, steps = hand_loop(*run)
        loop_rates.append(steps / seconds)
        seconds, steps = trainer_run(*run, monitor)
        trainer_rates.append(steps / seconds)
        ratios.append(loop_rates[-1] / trainer_rates[-1])  # a pair run back to back sees the same load
    loop, trainer = statistics.median(loop_rates), statistics.median(trainer_rates)
    paired = statistics.median(ratios) - 1  # extra time per step, relative to the hand loop
    best = max(loop_rates) / max(trainer_rates) - 1  # the least disturbed run of each
    print(f"{args.model} on digits {args.image_size}x{args.image_size}, batch {args.batch_size}, "
          f"{args.epochs} epochs x {args.repeats} repeats, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, monitor {'on' if monitor else 'off'}")  # fmt: skip
    print(f"hand-written loop: {loop:8.2f} steps/CPU-s (median), {max(loop_rates):8.2f} best")
    print(f"ConvTrainer:       {trainer:8.2f} steps/CPU-s (median), {max(trainer_rates):8.2f} best")
    print(
        f"trainer overhead:  {100 * paired:+.1f}% (median of paired runs), {100 * best:+.1f}% (best) "
        "(target < 5%)"
    )


if __name__ == "__main__":
    main()
