"""Benchmark: the gradient monitor's overhead on a small CNN training loop (CPU).

Run: ``.venv/bin/python bench/monitor_bench.py`` (options: ``--rounds``, ``--block``, ``--threads``).
Both loops clip with ``gradclip.clip_grad_norm_`` at the same threshold; the monitored loop calls
``monitor.clip_(c, loss=loss)`` instead, with per-layer norms, the optimizer hooks and the JSONL sink
on (one flushed line per step). Blocks of ``block`` steps alternate between the two loops for
``rounds`` rounds, so drift of a shared machine hits both alike; printed: the median step time of
each and their ratio. Target: under 3% overhead (ratio < 1.03).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch import nn

from gradclip.clip import clip_grad_norm_
from gradclip.monitor import GradMonitor


def small_cnn() -> nn.Module:
    """Two conv blocks and a linear head for 3x32x32 inputs (CIFAR-sized), 10 parameter tensors."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 32 x 16 x 16
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 64 x 8 x 8
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def step_times(model, opt, x, y, steps: int, clip) -> list[float]:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        clip(loss)
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block", type=int, default=20, help="steps per timed block")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # Two identical models: the monitor's hooks must not see the plain loop (it would call that
    # loop's unmonitored clipping a misuse).
    model, base_model = small_cnn(), small_cnn()
    base_model.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    base_opt = torch.optim.SGD(base_model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    max_norm = 2.0  # above most steps (as in healthy training): the clip rate stays low
    with tempfile.TemporaryDirectory() as log_dir:
        monitor = GradMonitor(model, optimizer=opt, log_dir=log_dir, max_norm=max_norm)

        def plain(loss):
            clip_grad_norm_(base_model.parameters(), max_norm)

        def monitored(loss):
            monitor.clip_(max_norm, loss=loss)

        step_times(base_model, base_opt, x, y, args.block, plain)  # warm-up: allocator, kernels
        step_times(model, opt, x, y, args.block, monitored)
        base, mon = [], []
        for _ in range(args.rounds):
            base += step_times(base_model, base_opt, x, y, args.block, plain)
            mon += step_times(model, opt, x, y, args.block, monitored)
        summary = monitor.close()
    b, m = statistics.median(base), statistics.median(mon)
    print(f"small CNN, batch {args.batch}, {args.threads} thread(s), {len(base)} steps each, CPU")
    print(f"  without monitor: {1e3 * b:8.3f} ms/step (median)")
    print(f"  with monitor:    {1e3 * m:8.3f} ms/step (median; per-layer norms, hooks, JSONL)")
    print(f"  ratio: {m / b:.4f}  (overhead {100 * (m / b - 1):+.2f}%; target < +3%)")
    print(f"  monitor recorded {summary.steps} steps, clipped {summary.clipped}")


if __name__ == "__main__":
    main()
