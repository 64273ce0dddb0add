"""Benchmark: a compiled training step with gradclip's clip against the same step with torch's clip.

Run: ``.venv/bin/python bench/compile_bench.py`` (``--backend aot_eager`` for a quick run without
code generation; ``--steps``/``--warmup`` to change the counts; ``--device cuda`` on a GPU machine).
One step is forward, backward, clip (``max_norm`` set near the median norm, so about half of the
steps clip) and an AdamW step, for two models: an MLP and a small transformer encoder block. The
model is compiled with ``torch.compile``; the clip and the optimizer step are compiled together in
one function (torch's ``Optimizer.step`` breaks the graph on purpose, so that part cannot be
``fullgraph=True`` for torch's clip either). Prints, per model, the median CPU thread time of a step
after warm-up for each variant, the ratio to torch's, and the graphs each variant compiled (during
warm-up, and any recompile after it, which should be 0). The variants take turns step by step.

Torch runs on one intra-op thread so that the calling thread's CPU time is all the work (CPU
backward runs on the calling thread); on CUDA the wall time of a synchronised step is taken.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import gradclip
from gradclip.clippers import NormClipper
from gradclip.policies import Fixed, Percentile, ZScore


class CountingBackend:
    """A dynamo backend that counts the graphs handed to it, then compiles them with ``backend``."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        from torch._dynamo.backends.registry import lookup_backend

        self.graphs += 1
        return lookup_backend(self.backend)(gm, example_inputs)


def mlp(device: str) -> tuple[nn.Module, Callable[[torch.Generator], tuple]]:
    model = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 10))

    def batch(gen: torch.Generator) -> tuple:
        x = torch.randn(64, 256, generator=gen).to(device)
        return x, torch.randn(64, 10, generator=gen).to(device)

    return model.to(device), batch


def transformer_block(device: str) -> tuple[nn.Module, Callable[[torch.Generator], tuple]]:
    model = nn.TransformerEncoderLayer(128, 4, dim_feedforward=512, dropout=0.0, batch_first=True)

    def batch(gen: torch.Generator) -> tuple:
        x = torch.randn(8, 32, 128, generator=gen).to(device)
        return x, torch.randn(8, 32, 128, generator=gen).to(device)

    return model.to(device), batch


MODELS = {"mlp": mlp, "transformer block": transformer_block}


def _functional(clip: Callable) -> Callable:
    """A clip-then-step body from a functional clip ``clip(params, max_norm)``."""

    def make(opt: torch.optim.Optimizer, params: list, max_norm: float) -> Callable[[], torch.Tensor]:
        def body() -> torch.Tensor:
            total = clip(params, max_norm)
            opt.step()
            return total

        return body

    return make


def _clip_step(policy: Callable[[float], object]) -> Callable:
    """A body that is one ``ClipStep.step(opt)`` (clip, skip decision, step) with ``policy(max_norm)``."""

    def make(opt: torch.optim.Optimizer, params: list, max_norm: float) -> Callable[[], torch.Tensor]:
        step = gradclip.ClipStep(NormClipper(policy(max_norm)))

        def body() -> torch.Tensor:
            return step.step(opt).total_norm

        return body

    return make


CLIPS = {
    "torch": _functional(torch.nn.utils.clip_grad_norm_),
    "gradclip": _functional(gradclip.clip_grad_norm_),
    "ClipStep(Fixed)": _clip_step(Fixed),
    "ClipStep(ZScore)": _clip_step(lambda c: ZScore(warmup=5)),
    "ClipStep(Percentile)": _clip_step(lambda c: Percentile(50, window=100)),
}


class Variant:
    """One model copy, its AdamW, the compiled forward and the compiled clip-and-step."""

    def __init__(self, model: nn.Module, make_body: Callable, max_norm: float, backend: str) -> None:
        self.model = copy.deepcopy(model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.forward_backend, self.step_backend = CountingBackend(backend), CountingBackend(backend)
        self.forward = torch.compile(self.model, backend=self.forward_backend)
        body = make_body(self.opt, list(self.model.parameters()), max_norm)
        self.clip_and_step = torch.compile(body, backend=self.step_backend)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(self.forward(x), y).backward()
        return self.clip_and_step()

    @property
    def graphs(self) -> tuple[int, int]:
        """Graphs compiled so far: (forward and backward, clip and optimizer step)."""
        return self.forward_backend.graphs, self.step_backend.graphs


def _timer(device: str) -> Callable[[], float]:
    if device == "cuda":
        return lambda: (torch.cuda.synchronize(), time.perf_counter())[1]
    return time.thread_time


def bench_model(name: str, device: str, backend: str, steps: int, warmup: int) -> list[dict]:
    torch._dynamo.reset()  # no cache entries shared with the previous model
    torch.manual_seed(0)
    model, batch = MODELS[name](device)
    # max_norm near the median norm of the first steps: about half of the steps clip.
    probe = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(1)
    norms = []
    for _ in range(8):
        x, y = batch(gen)
        probe.zero_grad()
        nn.functional.mse_loss(probe(x), y).backward()
        norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in probe.parameters()])))
    max_norm = statistics.median(norms)
    variants = {impl: Variant(model, clip, max_norm, backend) for impl, clip in CLIPS.items()}
    times: dict[str, list[float]] = {impl: [] for impl in variants}
    warm_graphs: dict[str, int] = {}
    clipped = 0
    gen = torch.Generator().manual_seed(2)
    now = _timer(device)
    for i in range(warmup + steps):
        if i == warmup:
            warm_graphs = {impl: v.graphs for impl, v in variants.items()}
        x, y = batch(gen)
        for impl, v in variants.items():
            t0 = now()
            total = v.step(x, y)
            t = now() - t0
            if i >= warmup:
                times[impl].append(t)
        clipped += bool(total > max_norm)
    ref = statistics.median(times["torch"])
    rows = []
    for impl, v in variants.items():
        t = statistics.median(times[impl])
        rows.append(
            {
                "model": name,
                "impl": impl,
                "ms": 1e3 * t,
                "x_torch": t / ref,
                "graphs": "{}+{}".format(*warm_graphs[impl]),
                "recompiles": sum(v.graphs) - sum(warm_graphs[impl]),
                "clipped": f"{clipped}/{warmup + steps}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--backend", default="inductor", choices=["inductor", "aot_eager", "eager"])
    parser.add_argument("--steps", type=int, default=200, help="timed steps after warm-up")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "compile_bench: error: --device cuda but CUDA is not available\n")
    torch.set_num_threads(1)
    dev = torch.cuda.get_device_name() if args.device == "cuda" else "CPU, 1 intra-op thread (thread time)"
    print(f"torch {torch.__version__}, gradclip {gradclip.__version__}, {dev}, backend {args.backend}")
    print(f"median of {args.steps} steps after {args.warmup} warm-up steps; variants take turns")
    print("graphs: compiled during warm-up, model + (clip and optimizer step); recompiles: after warm-up")
    head = ("model", 17), ("clip", 20), ("ms/step", 8), ("x torch", 7), ("graphs", 6), ("recompiles", 10)
    print("| " + " | ".join(f"{h:<{w}}" if i < 2 else f"{h:>{w}}" for i, (h, w) in enumerate(head)) + " |")
    print(f"|{'-' * 19}|{'-' * 22}|{'-' * 10}|{'-' * 9}|{'-' * 8}|{'-' * 12}|")
    for name in args.models:
        rows = bench_model(name, args.device, args.backend, args.steps, args.warmup)
        for r in rows:
            print(
                f"| {r['model']:<17} | {r['impl']:<20} | {r['ms']:>8.3f} | {r['x_torch']:>7.3f} | "
                f"{r['graphs']:>6} | {r['recompiles']:>10} |"
            )
        print(f"  ({name}: {rows[0]['clipped']} steps clipped)")


if __name__ == "__main__":
    main()
