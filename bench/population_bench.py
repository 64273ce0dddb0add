"""Benchmark: M tanh RNNs as one batched population against M single runs (CPU, one thread).

Run: ``.venv/bin/python bench/population_bench.py`` (options: ``--members``, ``--length``,
``--steps``, ``--rounds``). Both sides train the paper's network (50 tanh units, batch 20, temporal
order) for ``steps`` SGD steps with no evaluation; half the members clip. The single runs are timed
on ``--sample`` members and scaled to M (every single run costs the same). Rounds alternate the two
sides so drift of a shared machine hits both alike; printed: the median time of each per round and
their ratio (the population's speed-up). Target: a cell of 20+ seeds for about the price of a few
single runs (ratio well above 5 at M = 40).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from gradclip.sandbox.recurrent.population import Member, train_population
from gradclip.sandbox.recurrent.train import RunConfig, train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=40)
    parser.add_argument("--sample", type=int, default=2, help="single runs timed per round")
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = RunConfig(task="temporal-order", length=args.length, steps=args.steps, eval_every=0)
    members = [
        Member(seed=i // 2, lr=0.01, threshold=None if i % 2 == 0 else 0.5) for i in range(args.members)
    ]
    batched, single = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        train_population(config, members)
        batched.append(time.perf_counter() - start)
        start = time.perf_counter()
        for m in members[: args.sample]:
            train_run(replace(config, seed=m.seed, lr=m.lr, threshold=m.threshold))
        single.append((time.perf_counter() - start) * args.members / args.sample)
    b, s = statistics.median(batched), statistics.median(single)
    print(
        f"{args.members} members, T={args.length}, {args.steps} steps: population {b:.2f} s, "
        f"{args.members} single runs {s:.2f} s (from {args.sample} timed), speed-up {s / b:.1f}x"
    )


if __name__ == "__main__":
    main()
