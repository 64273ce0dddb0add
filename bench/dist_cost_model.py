"""Cost model of global-norm clipping at scale, fed by all-reduce latencies measured here with gloo.

Run: ``.venv/bin/python bench/dist_cost_model.py`` (about 20 s on 2 cores).

Per step, gradclip communicates (see ``src/gradclip/distributed.py``):

* DDP: nothing (gradients are already averaged; the local norm is the global one);
* FSDP2 / DTensor: one all-reduce of ``4 * k`` bytes per sharded mesh dimension, ``k`` = number of
  gradient tensors (their p-th-power norms, so that every rank also gets per-tensor norms);
* each extra process group (pipeline / hand-made tensor parallelism): one 4-byte all-reduce.

Messages this small are latency-bound. Recursive doubling (what NCCL's tree and gloo use for
small messages) takes ``log2(n)`` rounds, each costing about one 2-rank all-reduce, so the model is
``t(n) = t_2 * log2(n) + bytes / B`` with ``t_2`` measured here at 2 ranks and B = 10 GB/s (the
bandwidth term stays negligible below a megabyte). The 4-rank measurement is printed beside the
model's prediction as a check; on a 2-core machine 4 ranks oversubscribe the cores, so the
measurement there is an upper bound, not a point of the fit. It prints the model for 8 to 4096 GPUs.
"""

from __future__ import annotations

import math
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SIZES = (1, 148, 10_000)  # floats: one total norm; GPT-2's 148 tensors; 10k tensors
REPS = 200


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    out = {}
    for size in SIZES:
        t = torch.ones(size)
        for _ in range(20):
            dist.all_reduce(t)
        times = []
        for _ in range(REPS):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - t0)
        out[size] = statistics.median(times)
    if rank == 0:
        queue.put(out)
    dist.barrier()
    dist.destroy_process_group()


def measure(world: int, port: int) -> dict[int, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_worker, args=(world, port, queue), nprocs=world, start_method="spawn")
    return queue.get()


def main() -> None:
    measured = {w: measure(w, 29600 + w) for w in (2, 4)}
    print("measured gloo all-reduce, median of", REPS, "(loopback, this machine, 1 thread per rank)")
    for w, by_size in measured.items():
        print(f"  {w} ranks: " + ", ".join(f"{4 * s} B: {1e6 * t:.1f} us" for s, t in by_size.items()))
    t2 = measured[2]
    print(
        "  4 ranks predicted by t_2 * log2(4): "
        + ", ".join(f"{4 * s} B: {2e6 * t:.1f} us" for s, t in t2.items())
    )
    bandwidth = 10e9
    print("\nmodel per step (us): FSDP2 = one all-reduce of 4k bytes; +1 4-byte all-reduce per extra group")
    header = f"{'GPUs':>6} | {'k=148 (GPT-2)':>14} | {'k=10000':>10} | {'extra group':>11} | {'DDP':>4}"
    print(header)
    print("-" * len(header))
    for n in (8, 32, 128, 512, 1024, 4096):

        def t(size: int, n: int = n) -> float:
            return 1e6 * (t2[size] * math.log2(n) + 4 * size / bandwidth)

        print(f"{n:>6} | {t(148):>14.1f} | {t(10_000):>10.1f} | {t(1):>11.1f} | {0:>4}")


if __name__ == "__main__":
    main()
