"""One rank of the distributed tests, started by torchrun from tests/test_distributed.py.

Every check compares what the ranks compute together against a reference: a single-process run
that each rank computes alone on the same global batch (torch's own clip_grad_norm_ on an unsharded
copy), or torch's own ``clip_grad_norm_``/``get_total_norm`` on the same DTensor gradients, and the
norms of the gathered full gradients in float64. Collectives are counted with torch's
``CommDebugMode``, as torch's FSDP2 clip test does. Each rank writes ``rank{r}.json``: check name ->
{"ok": bool, "detail": str}.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)
from torch.distributed.tensor.placement_types import _StridedShard
from torch.nn.parallel import DistributedDataParallel

import gradclip
from gradclip.clippers import NormClipper
from gradclip.norms import norms_and_total
from gradclip.optim import ClipOptimizer
from gradclip.policies import ZScore

RTOL = 1e-5  # float32 sums in a different order across ranks
NORMS = (2.0, 1.0, 3.0, math.inf)  # torch's 2-D FSDP clip test covers these
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


# --- against torch's own clipping of the same DTensor gradients ---------------------------------


def full_norm(grads: list[torch.Tensor], norm_type: float) -> float:
    """The truth: the p-norm of the gathered full gradients, in float64."""
    norms = [torch.linalg.vector_norm(g.full_tensor().double(), norm_type) for g in grads]
    return float(torch.linalg.vector_norm(torch.stack(norms), norm_type))


def whole(total: torch.Tensor) -> float:
    """A total norm read as a float; a DTensor one through ``full_tensor()``, as torch's tests do."""
    return float(total.full_tensor() if isinstance(total, DTensor) else total)


def same_on_every_rank(value: float) -> bool:
    values: list = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return all(v == value for v in values)


def compare_with_torch(name: str, m: nn.Module, norm_type: float, expected_all_reduces: int) -> None:
    """gradclip and torch clip the same DTensor gradients: norm, clipped grads, collectives, type."""
    params = list(m.parameters())
    saved = [p.grad.clone() for p in params]
    truth = full_norm(saved, norm_type)
    max_norm = truth / 4  # clipping must happen, or the scaled gradients say nothing
    with CommDebugMode() as comm:
        total = gradclip.clip_grad_norm_(params, max_norm, norm_type)
    ours_comm = comm.get_total_counts()
    ours_grads = [p.grad.full_tensor().clone() for p in params]
    per_tensor = norms_and_total(saved, norm_type)[0]
    for p, g in zip(params, saved, strict=True):
        p.grad = g.clone()
    with CommDebugMode() as comm:
        ref = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type, foreach=True)
    torch_comm = comm.get_total_counts()
    is_replicated = isinstance(total, DTensor) and all(pl.is_replicate() for pl in total.placements)
    value, ok = whole(total), is_replicated
    ok &= math.isclose(value, truth, rel_tol=RTOL) and math.isclose(
        value, float(ref.full_tensor()), rel_tol=RTOL
    )
    ok &= all(close(a, p.grad.full_tensor()) for a, p in zip(ours_grads, params, strict=True))
    ok &= all(
        math.isclose(
            float(n), float(torch.linalg.vector_norm(g.full_tensor().double(), norm_type)), rel_tol=RTOL
        )
        for n, g in zip(per_tensor, saved, strict=True)
    )
    ok &= ours_comm == expected_all_reduces <= torch_comm
    ok &= same_on_every_rank(value)
    check(
        f"{name}_vs_torch_{norm_type}",
        ok,
        f"total {value} vs truth {truth} / torch {float(ref.full_tensor())}; replicated DTensor "
        f"{is_replicated}; "
        f"collectives {ours_comm} (torch {torch_comm}, expected {expected_all_reduces})",
    )


def backward(m: nn.Module, mesh, dp_dim: int, shape: tuple[int, ...] = (4, 12)) -> None:
    """Each data-parallel coordinate gets its own batch; ranks of one TP group the same one."""
    coordinate = mesh.get_coordinate()[dp_dim]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(100 + coordinate)) * 3
    m(x).pow(2).sum().backward()


def fsdp_1d(mesh) -> nn.Module:
    m = fsdp_model(mesh)
    backward(m, mesh, 0)
    return m


def fsdp_tp(mesh2d) -> nn.Module:
    """dp x tp MLP, every layer tensor-parallel (torch's test Transformer does the same): under
    fully_shard the column-parallel weights carry _StridedShard on dp, the norm gains Replicate on tp."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.LayerNorm(16),
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4),
    )  # fmt: skip
    plan = {
        "0": ColwiseParallel(),
        "2": RowwiseParallel(output_layouts=Shard(1)),
        "3": SequenceParallel(),
        "4": ColwiseParallel(input_layouts=Shard(1)),
        "6": RowwiseParallel(),
    }
    parallelize_module(m, mesh2d["tp"], plan)
    for i in (0, 2, 4, 6):
        fully_shard(m[i], mesh=mesh2d["dp"])
    fully_shard(m, mesh=mesh2d["dp"])
    backward(m, mesh2d, 0, (4, 6, 12))
    return m


def hsdp(mesh2d) -> nn.Module:
    """Hybrid sharding: replicate over the first mesh dimension, shard over the second."""
    m = model()
    for layer in m:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh2d)
    fully_shard(m, mesh=mesh2d)
    backward(m, mesh2d, 0)
    return m


def check_mixed_meshes(mesh2d) -> None:
    """TP'd first layers on the 2-D mesh, the rest on the dp mesh only (torch refuses this mix)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.LayerNorm(16), nn.Linear(16, 4))
    parallelize_module(m, mesh2d["tp"], {"0": ColwiseParallel(), "2": RowwiseParallel()})
    fully_shard(m, mesh=mesh2d["dp"])
    backward(m, mesh2d, 0)
    for norm_type in (2.0, math.inf):
        grads = [p.grad for p in m.parameters()]
        truth = full_norm(grads, norm_type)
        value = whole(gradclip.get_total_norm(grads, norm_type))
        ok = math.isclose(value, truth, rel_tol=RTOL) and same_on_every_rank(value)
        check(f"mixed_meshes_{norm_type}", ok, f"{value} vs {truth}")


def check_placements(mesh2d) -> None:
    """Hand-made DTensor gradients on every placement, Partial(sum/avg) included, against the truth."""
    gen = torch.Generator().manual_seed(7)
    full = [torch.randn(8, 6, generator=gen) * (i + 1) for i in range(5)]
    layouts = [
        [Shard(0), Shard(1)],
        [_StridedShard(0, split_factor=2), Shard(0)],
        [Replicate(), Shard(0)],
        [Shard(1), Replicate()],
        [Replicate(), Replicate()],
    ]
    grads = [distribute_tensor(f, mesh2d, pl) for f, pl in zip(full, layouts, strict=True)]
    local = torch.randn(4, 3, generator=torch.Generator().manual_seed(dist.get_rank()))
    grads.append(DTensor.from_local(local, mesh2d, [Partial("sum"), Shard(0)], run_check=False))
    # replicated over dim 0: the same addend on both rows of the mesh
    addend = torch.randn(4, 3, generator=torch.Generator().manual_seed(50 + mesh2d.get_coordinate()[1]))
    grads.append(DTensor.from_local(addend, mesh2d, [Replicate(), Partial("avg")], run_check=False))
    for norm_type in (2.0, 3.0, math.inf):
        truth = full_norm(grads, norm_type)
        expected = [g.full_tensor().clone() for g in grads]  # a Replicate full_tensor is the local
        with CommDebugMode() as comm:
            total = gradclip.clip_grad_norm_([g for g in grads], truth / 2, norm_type)
        # 2 partial all-reduces (one per Partial mesh dimension) + 1 per sharded mesh dimension
        ok = comm.get_total_counts() == 4
        value = whole(total)
        ok &= math.isclose(value, truth, rel_tol=RTOL) and same_on_every_rank(value)
        scale = (truth / 2) / (value + 1e-6)
        ok &= all(close(g.full_tensor(), e * scale) for g, e in zip(grads, expected, strict=True))
        check(f"placements_{norm_type}", ok, f"{value} vs {truth}, collectives {comm.get_total_counts()}")
        for g, e in zip(grads, expected, strict=True):  # undo the clip for the next norm type
            g.to_local().div_(scale)
            assert close(g.full_tensor(), e)


def main(out_dir: str) -> None:
    # a short timeout: ranks that disagree on their collectives fail the test instead of hanging it
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    checks = [(f"fsdp1d_{p}", lambda p=p: compare_with_torch("fsdp1d", fsdp_1d(mesh), p, 1)) for p in NORMS]
    if world == 4:
        mesh2d = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
        checks += [
            (f"tp_{p}", lambda p=p: compare_with_torch("fsdp_tp", fsdp_tp(mesh2d), p, 2)) for p in NORMS
        ]
        checks += [(f"hsdp_{p}", lambda p=p: compare_with_torch("hsdp", hsdp(mesh2d), p, 1)) for p in NORMS]
        checks += [
            ("mixed", lambda: check_mixed_meshes(mesh2d)),
            ("placements", lambda: check_placements(mesh2d)),
        ]
    for name, fn in [
        *checks,
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
