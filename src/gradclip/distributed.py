"""Global gradient norms under torch.distributed: DTensor/FSDP2 shards and extra process groups.

What each setup needs, and what is communicated per step:

* DDP: after ``backward()`` every rank holds the same averaged gradients, so the local norm is the
  global one and no collective is needed (the tests check this against a single process).
* FSDP2 / DTensor: each rank holds a shard. For a p-norm the p-th powers of the shards' norms add
  up, ``||g||_p^p = sum_r ||g_r||_p^p``; for the inf-norm the maxima combine by ``max``. The
  per-tensor p-th powers are stacked into one float32 vector and all-reduced once per mesh
  dimension the gradients are sharded over, so every rank ends with the full per-tensor norms and
  the full total (reading a DTensor norm locally gives only the shard's part: a known trap).
* Tensor/pipeline parallelism done by hand: each rank owns different parameters; the caller passes
  ``process_groups`` and the local p-th-power total is all-reduced over each (one 4-byte
  all-reduce per group per step).

NaN in one rank's gradients makes the reduced total NaN on every rank, so all ranks agree to skip
the step (for ``inf`` a NaN is turned into ``+inf`` before the ``max``, which would drop it).
Nothing is read back to the host: collectives are enqueued like any other kernel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from torch import Tensor

if TYPE_CHECKING:  # annotations only: DTensor may be missing at run time (torch without distributed)
    from torch.distributed.tensor import DTensor
    from typing_extensions import TypeIs

__all__ = ["is_dtensor", "is_dtensor_type", "local_tensor", "reduce_norms"]


@functools.cache
def _dtensor_type() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed support
        return None
    return DTensor


def is_dtensor_type(cls: type) -> bool:
    dtensor = _dtensor_type()
    return dtensor is not None and issubclass(cls, dtensor)


def is_dtensor(t: Tensor) -> TypeIs[DTensor]:
    return is_dtensor_type(type(t))


def local_tensor(t: Tensor) -> Tensor:
    """The shard this rank holds (a view: in-place scaling of it scales the DTensor)."""
    return t.to_local() if is_dtensor(t) else t


def _shard_groups(t: Tensor) -> tuple:
    """Process groups of the mesh dimensions over which a DTensor gradient is sharded."""
    if not is_dtensor(t):
        return ()
    groups = []
    for dim, placement in enumerate(t.placements):
        if placement.is_partial():
            raise ValueError(
                "a gradient DTensor has a Partial placement (its reduction is still pending); "
                "clip after the gradients are reduced (FSDP2 does this before backward() returns)"
            )
        if placement.is_shard():
            groups.append(t.device_mesh.get_group(dim))
    return tuple(groups)


def _group_device(process_groups: Sequence) -> torch.device:
    """CUDA for NCCL groups, CPU otherwise (gloo)."""
    import torch.distributed as dist

    backend = dist.get_backend(process_groups[0]) if process_groups else "gloo"
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def reduce_norms(
    grads: Sequence[Tensor],
    local_norms: Sequence[Tensor],
    p: float,
    process_groups: Sequence = (),
) -> tuple[list[Tensor], Tensor]:
    """Turn per-shard norms into full per-tensor norms and the global total.

    ``local_norms[i]`` is the norm of ``local_tensor(grads[i])``. Returns the full per-tensor norms
    (float32) and the total over all ranks of ``process_groups`` (float32, 0-dim), both on the
    device of the first norm. One all-reduce per sharded mesh dimension, one per extra group.
    """
    import torch.distributed as dist

    op = dist.ReduceOp.MAX if math.isinf(p) else dist.ReduceOp.SUM
    if not local_norms:  # this rank holds no gradients but must still join the collectives
        total = torch.zeros((), dtype=torch.float32, device=_group_device(process_groups))
        for group in process_groups:
            dist.all_reduce(total, op=op, group=group)
        return [], total if math.isinf(p) else total.pow(1.0 / p)
    powered = torch.stack([n.to(local_norms[0].device, torch.float32) for n in local_norms])
    if math.isinf(p):
        powered = torch.where(powered.isnan(), math.inf, powered)  # MAX may drop a NaN
    else:
        powered = powered.pow(p)
    by_groups: dict[tuple, list[int]] = {}
    for i, g in enumerate(grads):
        by_groups.setdefault(_shard_groups(g), []).append(i)
    for groups, idx in by_groups.items():
        if not groups:
            continue
        index = torch.tensor(idx, device=powered.device)
        part = powered.index_select(0, index)
        for group in groups:
            dist.all_reduce(part, op=op, group=group)
        powered = powered.index_copy(0, index, part)
    total = powered.max() if math.isinf(p) else powered.sum()
    for group in process_groups:
        dist.all_reduce(total, op=op, group=group)
    if math.isinf(p):
        return list(powered.unbind()), total
    return list(powered.pow(1.0 / p).unbind()), total.pow(1.0 / p)
