"""One rank of the distributed tests, started by torchrun from tests/test_distributed.py.

Every check compares what the ranks compute together against a single-process reference that each
rank computes alone on the same global batch (torch's own clip_grad_norm_ on an unsharded copy).
Each rank writes ``rank{r}.json``: check name -> {"ok": bool, "detail": str}.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

import gradclip
from gradclip.clippers import NormClipper
from gradclip.optim import ClipOptimizer
from gradclip.policies import ZScore

RTOL = 1e-5  # float32 sums in a different order across ranks
results: dict[str, dict] = {}


def check(name: str, ok: bool, detail: str = "") -> None:
    results[name] = {"ok": bool(ok), "detail": detail}


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))


def global_batch(step: int = 0, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(n, 12, generator=g) * 3, torch.randn(n, 4, generator=g)


def local_part(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    return t.chunk(world)[rank]


def reference(max_norm: float, norm_type: float) -> tuple[float, list[torch.Tensor]]:
    """Single process, whole batch, torch's clip: the norm and the clipped gradients."""
    ref = model()
    x, y = global_batch()
    nn.functional.mse_loss(ref(x), y).backward()
    total = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm, norm_type)
    return float(total), [p.grad.clone() for p in ref.parameters()]


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=RTOL, atol=1e-7)


def check_ddp(rank: int, world: int) -> None:
    ddp = DistributedDataParallel(model())
    x, y = global_batch()
    nn.functional.mse_loss(ddp(local_part(x, rank, world)), local_part(y, rank, world)).backward()
    ref_total, ref_grads = reference(0.5, 2.0)
    total = gradclip.clip_grad_norm_(ddp.parameters(), 0.5)  # local norm: no collective needed
    ok = math.isclose(float(total), ref_total, rel_tol=RTOL)
    ok &= all(close(p.grad, r) for p, r in zip(ddp.parameters(), ref_grads, strict=True))
    check("ddp_norm_and_clipped_grads", ok, f"total {float(total)} vs {ref_total}")


def fsdp_model(mesh) -> nn.Module:
    m = model()
    for layer in m:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(m, mesh=mesh)
    return m


def check_fsdp(rank: int, world: int, mesh, norm_type: float) -> None:
    m = fsdp_model(mesh)
    x, y = global_batch()
    nn.functional.mse_loss(m(local_part(x, rank, world)), local_part(y, rank, world)).backward()
    ref_total, ref_grads = reference(0.5, norm_type)
    ref_tensor_norms = [
        float(torch.linalg.vector_norm(g, norm_type)) for g in reference(math.inf, norm_type)[1]
    ]
    local_view = float(torch.linalg.vector_norm(next(m.parameters()).grad.to_local(), norm_type))
    stats = gradclip.clip_grad_norm_(m.parameters(), 0.5, norm_type, return_stats=True)
    full = [p.grad.full_tensor() for p in m.parameters()]
    ok = math.isclose(float(stats.total_norm), ref_total, rel_tol=RTOL)
    ok &= all(close(g, r) for g, r in zip(full, ref_grads, strict=True))
    ok &= all(
        math.isclose(float(n), r, rel_tol=RTOL)
        for n, r in zip(stats.tensor_norms, ref_tensor_norms, strict=True)
    )
    # the trap: the first weight's local shard norm is only part of the full per-tensor norm
    # (for the inf-norm the rank holding the largest element sees it whole, so only finite p)
    if math.isfinite(norm_type):
        ok &= local_view < ref_tensor_norms[0] * (1 - 1e-3)
    check(f"fsdp_norm_{norm_type}", ok, f"total {float(stats.total_norm)} vs {ref_total}")


def check_fsdp_nan_on_one_rank(rank: int, world: int, mesh) -> None:
    m = fsdp_model(mesh)
    opt = ClipOptimizer(torch.optim.SGD(m.parameters(), lr=0.1), NormClipper(1.0))
    before = [p.detach().to_local().clone() for p in m.parameters()]
    x, y = global_batch()
    nn.functional.mse_loss(m(local_part(x, rank, world)), local_part(y, rank, world)).backward()
    if rank == world - 1:
        next(m.parameters()).grad.to_local().view(-1)[0] = math.nan  # an overflow in one shard only
    opt.step()
    unchanged = all(
        torch.equal(p.detach().to_local(), b) for p, b in zip(m.parameters(), before, strict=True)
    )
    check("fsdp_nan_one_rank_all_skip", unchanged and opt.skipped_steps == 1, f"skipped {opt.skipped_steps}")


def check_policy_in_sync(rank: int, world: int, mesh) -> None:
    m = fsdp_model(mesh)
    opt = ClipOptimizer(torch.optim.SGD(m.parameters(), lr=0.05), NormClipper(ZScore(warmup=10)))
    for step in range(50):
        x, y = global_batch(step)
        x = x * (50.0 if step in (20, 35) else 1.0)  # spikes, so that the z-score policy clips
        opt.zero_grad()
        nn.functional.mse_loss(m(local_part(x, rank, world)), local_part(y, rank, world)).backward()
        opt.step()
    state = opt.clipper.state_dict()
    states: list = [None] * world
    dist.all_gather_object(states, state)
    same = all(
        json.dumps(s, sort_keys=True, default=str) == json.dumps(state, sort_keys=True, default=str)
        for s in states
    )
    check("zscore_state_identical_after_50_steps", same, json.dumps(state, default=str)[:200])


def check_pipeline_groups(rank: int, world: int) -> None:
    """Each rank owns one 'stage' of a model; pipelines of 2 ranks share the norm via a group."""
    pairs = [list(range(i, i + 2)) for i in range(0, world, 2)]
    groups = [dist.new_group(p) for p in pairs]  # every rank must create every group
    mine = next(g for g, p in zip(groups, pairs, strict=True) if rank in p)
    members = next(p for p in pairs if rank in p)

    def stage_grads(r: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(r)
        return [torch.randn(5, 7, generator=g) * (r + 1), torch.randn(3, generator=g)]

    for norm_type in (2.0, 3.0, math.inf):
        grads = stage_grads(rank)
        expected = float(
            torch.nn.utils.get_total_norm([g for r in members for g in stage_grads(r)], norm_type)
        )
        total = gradclip.clip_grad_norm_(grads, 1.0, norm_type, process_groups=[mine])
        ok = math.isclose(float(total), expected, rel_tol=RTOL) and expected > 1.0
        # every stage was scaled by the same global factor c / (total + eps)
        scale = 1.0 / (expected + 1e-6)
        ok &= all(close(g, o * scale) for g, o in zip(grads, stage_grads(rank), strict=True))
        check(f"pipeline_group_norm_{norm_type}", ok, f"{float(total)} vs {expected}")


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    for name, fn in [
        ("ddp", lambda: check_ddp(rank, world)),
        ("fsdp2", lambda: check_fsdp(rank, world, mesh, 2.0)),
        ("fsdp_inf", lambda: check_fsdp(rank, world, mesh, math.inf)),
        ("fsdp_nan", lambda: check_fsdp_nan_on_one_rank(rank, world, mesh)),
        ("policy", lambda: check_policy_in_sync(rank, world, mesh)),
        ("pipeline", lambda: check_pipeline_groups(rank, world)),
    ]:
        try:
            fn()
        except Exception as err:  # report, so that the test names what broke on which rank
            check(f"{name}_raised", False, f"{type(err).__name__}: {err}")
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results, indent=1))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
