"""Benchmark: gradclip.clip_grad_norm_ against torch and against the one-pass memory-bandwidth limit.

Run: ``.venv/bin/python bench/clip_bench.py`` (add ``--device cuda`` on a GPU machine).
For each gradient layout (GPT-2-small, ResNet-50, 10,000 x 256) and each case (not clipping:
threshold above the norm; clipping: threshold below it), prints the median time of

* ``limit``: one ``torch.linalg.vector_norm`` over a flat buffer holding the same bytes (the least
  any norm-then-maybe-scale must cost: one read of every gradient);
* ``read floor``: one ``sum`` over that buffer, a pure streaming read: where ``vector_norm`` is
  compute-bound (the CPU here: 31 GB/s against 75 GB/s for ``sum``), the true memory floor;
* ``torch``: ``torch.nn.utils.clip_grad_norm_`` on the per-parameter gradients;
* ``gradclip``: ``gradclip.clip_grad_norm_`` on the same per-parameter gradients;
* ``gradclip flat``: ``gradclip.clip_grad_norm_`` on a :class:`gradclip.FlatGrads` buffer;

and the ratios ``x limit`` and ``x torch`` measured in the same run. Gradients are restored from a
backup before each timed call (outside the timing), so every clipping call really clips.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import gradclip


def gpt2_small_shapes() -> list[tuple[int, ...]]:
    """GPT-2 small (124M parameters, 148 tensors): embeddings, 12 blocks, final layer norm."""
    d, vocab, ctx = 768, 50257, 1024
    block = [
        (d,),
        (d,),
        (d, 3 * d),
        (3 * d,),
        (d, d),
        (d,),
        (d,),
        (d,),
        (d, 4 * d),
        (4 * d,),
        (4 * d, d),
        (d,),
    ]
    return [(vocab, d), (ctx, d), *(block * 12), (d,), (d,)]


def resnet50_shapes() -> list[tuple[int, ...]]:
    """ResNet-50 (25.6M parameters, 161 tensors): convs, batch-norm weights and biases, the fc head."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    in_ch = 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True):
        for b in range(blocks):
            for conv in [(width, in_ch, 1, 1), (width, width, 3, 3), (4 * width, width, 1, 1)]:
                shapes += [conv, (conv[0],), (conv[0],)]
            if b == 0:
                shapes += [(4 * width, in_ch, 1, 1), (4 * width,), (4 * width,)]
            in_ch = 4 * width
    return [*shapes, (1000, 2048), (1000,)]


def many_small_shapes() -> list[tuple[int, ...]]:
    return [(256,)] * 10_000


LAYOUTS = {"gpt2-small": gpt2_small_shapes, "resnet50": resnet50_shapes, "10k x 256": many_small_shapes}


def median_time(fn: Callable[[], object], restore: Callable[[], None], reps: int, device: str) -> float:
    """Median seconds of ``fn()``; ``restore()`` runs untimed before each call."""
    times = []
    for _ in range(reps + 1):  # the first call warms up and is dropped
        restore()
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def bench_layout(name: str, shapes: list[tuple[int, ...]], device: str, reps: int) -> list[dict]:
    gen = torch.Generator(device=device).manual_seed(0)
    params = [torch.nn.Parameter(torch.empty(s, device=device)) for s in shapes]
    flat = gradclip.FlatGrads(params)
    flat.buffer.normal_(generator=gen)  # every p.grad is a view into this buffer
    backup = flat.buffer.clone()
    # torch's path sees ordinary, separately allocated gradients, as after a normal backward().
    torch_params = [torch.nn.Parameter(torch.empty(s, device=device)) for s in shapes]
    for p, v in zip(torch_params, flat.views, strict=True):
        p.grad = v.clone()
    torch_backup = [p.grad.clone() for p in torch_params]
    plain = [torch.nn.Parameter(torch.empty(s, device=device)) for s in shapes]
    for p, v in zip(plain, flat.views, strict=True):
        p.grad = v.clone()
    limit_buffer = backup.clone()
    norm = float(torch.linalg.vector_norm(backup))

    def restore_flat() -> None:
        flat.buffer.copy_(backup)

    def restore_torch() -> None:
        torch._foreach_copy_([p.grad for p in torch_params], torch_backup)

    def restore_plain() -> None:
        torch._foreach_copy_([p.grad for p in plain], torch_backup)

    rows = []
    # The limit sees the same conditions as the others: its buffer freshly written before each read.
    limit = median_time(
        lambda: torch.linalg.vector_norm(limit_buffer), lambda: limit_buffer.copy_(backup), reps, device
    )
    for case, max_norm in (("no clip", 2 * norm), ("clip", 0.5 * norm)):
        t_torch = median_time(
            lambda c=max_norm: torch.nn.utils.clip_grad_norm_(torch_params, c), restore_torch, reps, device
        )
        t_ours = median_time(
            lambda c=max_norm: gradclip.clip_grad_norm_(plain, c), restore_plain, reps, device
        )
        t_flat = median_time(lambda c=max_norm: gradclip.clip_grad_norm_(flat, c), restore_flat, reps, device)
        for impl, t in (("torch", t_torch), ("gradclip", t_ours), ("gradclip flat", t_flat)):
            rows.append(
                {
                    "layout": name,
                    "case": case,
                    "impl": impl,
                    "ms": 1e3 * t,
                    "x_limit": t / limit,
                    "x_torch": t / t_torch,
                }
            )
    # A pure streaming read of the same bytes (sum): on CPUs where vector_norm is compute-bound this
    # is the true floor, and it shows how far below the vector_norm "limit" a read can go.
    floor = median_time(lambda: limit_buffer.sum(), lambda: limit_buffer.copy_(backup), reps, device)
    nan = float("nan")
    rows[:0] = [
        {"layout": name, "case": "-", "impl": "limit (1 norm pass)", "ms": 1e3 * limit, "x_limit": 1.0,
         "x_torch": nan},
        {"layout": name, "case": "-", "impl": "read floor (sum)", "ms": 1e3 * floor, "x_limit": floor / limit,
         "x_torch": nan},
    ]  # fmt: skip
    return rows


def _previous_norm_clipper(params: list[torch.Tensor], policy: object) -> None:
    """``NormClipper.__call__`` as it was before the step object: the reference for its cost."""
    from gradclip.clip import clip_grads_with_norm_
    from gradclip.norms import collect_grads, norms_and_total

    grads = collect_grads(params)
    _, total = norms_and_total(grads)
    threshold = policy(float(total))  # type: ignore[operator]
    clip_grads_with_norm_(grads, threshold, total, eps=1e-6, nonfinite="keep")


def bench_clippers(shapes: list[tuple[int, ...]], device: str, reps: int) -> list[dict]:
    """Each clipper, and the fused optimizer path against clip-then-step, on one layout (clipping)."""
    from gradclip.clippers import AGC, NormClipper, ValueClipper
    from gradclip.optim import ClipOptimizer
    from gradclip.policies import Fixed, Percentile, ZScore
    from gradclip.step import ClipStep

    gen = torch.Generator(device=device).manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, device=device, generator=gen)) for s in shapes]
    backup = [torch.randn(s, device=device, generator=gen) for s in shapes]

    def restore() -> None:
        for p, b in zip(params, backup, strict=True):
            p.grad = b.clone() if p.grad is None else p.grad.copy_(b)

    norm = float(torch.nn.utils.get_total_norm(backup))
    c = 0.5 * norm
    rows = []
    t_torch = median_time(lambda: torch.nn.utils.clip_grad_norm_(params, c), restore, reps, device)

    # A history of smaller norms, so that the 10th percentile is below this norm and every call clips.
    def percentile_policy() -> Percentile:
        policy = Percentile(10, window=1000)
        for _ in range(200):
            policy.update(0.5 * norm)
        return policy

    policies = {
        "Fixed": lambda: Fixed(c),
        "ZScore": lambda: ZScore(warmup=1, max_norm=c),
        "Percentile": percentile_policy,
    }
    rows.append({"impl": "torch clip_grad_norm_", "ms": 1e3 * t_torch, "x_torch": 1.0})
    for name, make in policies.items():
        # The clip path before the step object existed (norm pass, policy fed the host float,
        # clip_grads_with_norm_), measured in the same run as the reference the step must not lose to.
        previous = make()
        t_prev = median_time(
            lambda policy=previous: _previous_norm_clipper(params, policy), restore, reps, device
        )
        step = ClipStep(NormClipper(make()))
        t = median_time(lambda step=step: step.clip_(params), restore, reps, device)
        rows.append(
            {"impl": f"previous NormClipper({name})", "ms": 1e3 * t_prev, "x_torch": t_prev / t_torch}
        )
        rows.append({"impl": f"ClipStep(NormClipper({name}))", "ms": 1e3 * t, "x_torch": t / t_torch,
                     "x_previous": t / t_prev})  # fmt: skip
    for name, clipper in {"ValueClipper": ValueClipper(1e-3), "AGC": AGC(0.01)}.items():
        step = ClipStep(clipper)
        t = median_time(lambda step=step: step.clip_(params), restore, reps, device)
        rows.append({"impl": f"ClipStep({name})", "ms": 1e3 * t, "x_torch": t / t_torch})
    # The fused path against clip-then-step, both with torch's fused Adam (one optimizer step each).
    fused_ok = device == "cuda" or torch.__version__ >= "2.4"
    if fused_ok:
        adam = torch.optim.Adam(params, lr=1e-3, fused=True)
        plain_step = median_time(
            lambda: (torch.nn.utils.clip_grad_norm_(params, c), adam.step()), restore, reps, device
        )
        wrapped = ClipOptimizer(torch.optim.Adam(params, lr=1e-3, fused=True), NormClipper(c))
        fused_step = median_time(wrapped.step, restore, reps, device)
        rows.append({"impl": "torch clip + fused Adam", "ms": 1e3 * plain_step, "x_torch": 1.0})
        rows.append(
            {"impl": "ClipOptimizer fused Adam", "ms": 1e3 * fused_step, "x_torch": fused_step / plain_step}
        )
    return rows


def check_no_sync(device: str) -> str:
    """On CUDA, run the clip paths under sync-debug mode 'error': any host sync raises."""
    if device != "cuda":
        return "sync check: skipped (not CUDA)"
    params = [torch.nn.Parameter(torch.randn(s, device=device)) for s in resnet50_shapes()]
    for p in params:
        p.grad = torch.randn_like(p)
    flat = gradclip.FlatGrads(params)
    flat.buffer.normal_()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for max_norm in (1e9, 1.0, torch.tensor(1.0, device=device)):
            gradclip.clip_grad_norm_(params, max_norm, nonfinite="keep", return_stats=True)
            gradclip.clip_grad_norm_(flat, max_norm)
        gradclip.clip_grad_value_(params, 0.1)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return "sync check: passed (no host sync under torch.cuda.set_sync_debug_mode('error'))"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--layouts", nargs="*", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every layout (smoke runs only)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "clip_bench: error: --device cuda but CUDA is not available\n")
    torch.manual_seed(0)
    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"torch {torch.__version__}, gradclip {gradclip.__version__}, {dev}, median of {args.reps} reps, fp32"
    )
    print(f"| {'layout':<10} | {'case':<7} | {'impl':<19} | {'ms':>9} | {'x limit':>7} | {'x torch':>7} |")
    print(f"|{'-' * 12}|{'-' * 9}|{'-' * 21}|{'-' * 11}|{'-' * 9}|{'-' * 9}|")
    for name in args.layouts:
        shapes = LAYOUTS[name]()
        if args.scale != 1.0:
            shapes = [
                tuple(max(1, int(d * args.scale)) for d in s)
                for s in shapes[: max(2, int(len(shapes) * args.scale))]
            ]
        for r in bench_layout(name, shapes, args.device, args.reps):
            print(
                f"| {r['layout']:<10} | {r['case']:<7} | {r['impl']:<19} | {r['ms']:>9.3f} | "
                f"{r['x_limit']:>7.2f} | {r['x_torch']:>7.2f} |"
            )
    for layout in ("resnet50", "gpt2-small"):
        print(f"\nclippers on the {layout} layout (clipping case); x torch = against the first row of its "
              "block; x previous = against the clip path before the step object, same run")  # fmt: skip
        print(f"| {'impl':<34} | {'ms':>9} | {'x torch':>7} | {'x previous':>10} |")
        print(f"|{'-' * 36}|{'-' * 11}|{'-' * 9}|{'-' * 12}|")
        shapes = LAYOUTS[layout]()
        if args.scale != 1.0:
            shapes = [tuple(max(1, int(d * args.scale)) for d in s) for s in shapes[:8]]
        for r in bench_clippers(shapes, args.device, args.reps):
            prev = f"{r['x_previous']:>10.2f}" if "x_previous" in r else " " * 10
            print(f"| {r['impl']:<34} | {r['ms']:>9.3f} | {r['x_torch']:>7.2f} | {prev} |")
    print(check_no_sync(args.device))


if __name__ == "__main__":
    main()
