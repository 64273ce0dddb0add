"""Benchmark: gradclip's per-call cost against ``torch.nn.utils.clip_grad_norm_``, small models first.

Run: ``.venv/bin/python bench/overhead_bench.py`` (``--layouts`` to choose, ``--reps`` per layout).
On a small model the norm and the multiply take a few microseconds, so what a call costs is Python:
argument handling, the policy, the skip rule, the result (the step object,
:class:`gradclip.step.ClipStep`). For each layout (a 26k-parameter MLP, a 930k-parameter GPT; the
large layouts of ``clip_bench.py``: GPT-2-small, ResNet-50, 10,000 x 256) and each case (``no clip``:
threshold above the norm; ``clip``: below it, gradients restored before every call outside the
timing), prints the median CPU thread time of one call and the ratio to torch's ``clip_grad_norm_``.

Torch runs on one intra-op thread (``torch.set_num_threads(1)``), so the calling thread's CPU time
is all the work done, and other processes on the machine do not enter the figure the way they enter
wall time. The implementations take turns call by call, so a slow phase of the machine hits all.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import gradclip
from clip_bench import LAYOUTS as LARGE_LAYOUTS
from gradclip.clippers import NormClipper
from gradclip.policies import Fixed, Percentile, ZScore
from gradclip.step import ClipStep


def mlp_shapes() -> list[tuple[int, ...]]:
    """A 26,122-parameter MLP, 64 -> 128 -> 128 -> 10 (six tensors)."""
    return [(128, 64), (128,), (128, 128), (128,), (10, 128), (10,)]


def small_gpt_shapes() -> list[tuple[int, ...]]:
    """A 4-layer GPT, width 128, vocabulary 1000, context 64 (929,536 parameters, 52 tensors): large
    tensors too few elements together for BLAS dots, and 35 small ones in 4 shapes."""
    d = 128
    attention = [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,)]
    block = [*attention, (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return [(1000, d), (64, d)] + block * 4 + [(d,), (d,)]


LAYOUTS = {"mlp-26k": mlp_shapes, "gpt-930k": small_gpt_shapes, **LARGE_LAYOUTS}


def _impls(c: float, norm: float) -> dict[str, Callable[[list[torch.Tensor]], object]]:
    """Name -> one clipping call on the parameters, for threshold ``c`` (``norm``: the gradients')."""
    # Policies are warmed up on a history of this norm so that they clip exactly when c < norm.
    zscore = ZScore(warmup=1, max_norm=c)
    percentile = Percentile(10, window=1000)
    for _ in range(200):
        zscore.update(norm if c > norm else 0.5 * norm)
        percentile.update(min(c, 2 * norm))
    steps = {
        "ClipStep(Fixed)": ClipStep(NormClipper(Fixed(c))),
        "ClipStep(ZScore)": ClipStep(NormClipper(zscore)),
        "ClipStep(Percentile)": ClipStep(NormClipper(percentile)),
    }
    impls: dict[str, Callable] = {
        "torch clip_grad_norm_": lambda ps: torch.nn.utils.clip_grad_norm_(ps, c),
        "gradclip clip_grad_norm_": lambda ps: gradclip.clip_grad_norm_(ps, c),
    }
    impls.update({name: (lambda ps, step=step: step.clip_(ps)) for name, step in steps.items()})
    return impls


def bench_layout(shapes: list[tuple[int, ...]], case: str, reps: int) -> dict[str, float]:
    """Median thread seconds per call of each implementation, taking turns call by call."""
    gen = torch.Generator().manual_seed(0)
    backup = [torch.randn(s, generator=gen) for s in shapes]
    norm = float(torch.nn.utils.get_total_norm(backup))
    c = 2.0 * norm if case == "no clip" else 0.5 * norm
    impls = _impls(c, norm)
    params = {name: [torch.nn.Parameter(torch.empty(s)) for s in shapes] for name in impls}
    for ps in params.values():
        for p, b in zip(ps, backup, strict=True):
            p.grad = b.clone()
    times: dict[str, list[float]] = {name: [] for name in impls}
    for i in range(reps + 3):  # the first three rounds warm up and are dropped
        for name, fn in impls.items():
            grads = [p.grad for p in params[name]]
            if case == "clip":
                torch._foreach_copy_(grads, backup)
            t0 = time.thread_time()
            fn(params[name])
            t = time.thread_time() - t0
            if i >= 3:
                times[name].append(t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="*", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--reps", type=int, default=0, help="calls per implementation (0: by layout)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, gradclip {gradclip.__version__}, CPU, 1 intra-op thread, fp32")
    print("median CPU thread time per call; x torch = against torch.nn.utils.clip_grad_norm_ (same run)")
    print(f"| {'layout':<10} | {'case':<7} | {'impl':<26} | {'us':>10} | {'x torch':>7} |")
    print(f"|{'-' * 12}|{'-' * 9}|{'-' * 28}|{'-' * 12}|{'-' * 9}|")
    for name in args.layouts:
        shapes = LAYOUTS[name]()
        numel = sum(torch.Size(s).numel() for s in shapes)
        reps = args.reps or max(15, min(2000, int(2e8 / (numel + 2e4 * len(shapes)))))
        for case in ("no clip", "clip"):
            medians = bench_layout(shapes, case, reps)
            ref = medians["torch clip_grad_norm_"]
            for impl, t in medians.items():
                print(f"| {name:<10} | {case:<7} | {impl:<26} | {1e6 * t:>10.1f} | {t / ref:>7.2f} |")


if __name__ == "__main__":
    main()
