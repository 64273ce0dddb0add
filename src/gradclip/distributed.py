"""Global gradient norms under torch.distributed: DTensor/FSDP2 shards and extra process groups.

What each setup needs, and what is communicated per step:

* DDP: after ``backward()`` every rank holds the same averaged gradients, so the local norm is the
  global one and no collective is needed (the tests check this against a single process).
* FSDP2, FSDP2 + tensor parallelism, HSDP (DTensor gradients): each rank holds a piece of each
  gradient, described per mesh dimension by its placement. ``Shard`` and ``_StridedShard`` (FSDP2
  over TP'd parameters; not a ``Shard`` subclass, and ``is_shard()`` is False for it) split the
  elements, so the p-th powers of the pieces' norms add up, ``||g||_p^p = sum_r ||g_r||_p^p``, and
  the inf-norms combine by ``max``. ``Replicate`` pieces are whole copies: counted once.
  ``Partial`` pieces are addends of the gradient, whose norm is not a sum of norms: their values are
  all-reduced first (one all-reduce per mesh dimension and dtype, only for such gradients).
  The per-tensor p-th powers of all gradients on one mesh are stacked into one float32 vector and
  all-reduced once per mesh dimension that shards any of them (torch's count: one per dimension);
  entries replicated over that dimension are zeroed on all but its first coordinate, so a single
  sum counts them once, exactly. Every rank ends with the same full per-tensor norms and the same
  total (reading a DTensor's local norm gives only the shard's part: a known trap).
* Tensor/pipeline parallelism done by hand: each rank owns different parameters; the caller passes
  ``process_groups`` and the local p-th-power total is all-reduced over each (one 4-byte
  all-reduce per group per step).

NaN in one rank's gradients makes the reduced total NaN on every rank, so all ranks agree to skip
the step (for ``inf`` a NaN is turned into ``+inf`` before the ``max``, which would drop it).
Nothing is read back to the host: collectives are enqueued like any other kernel.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from torch import Tensor

if TYPE_CHECKING:  # annotations only: DTensor may be missing at run time (torch without distributed)
    from torch.distributed.tensor import DTensor
    from typing_extensions import TypeIs

__all__ = [
    "any_dtensor",
    "as_total",
    "check_process_groups",
    "is_dtensor",
    "is_dtensor_type",
    "local_tensor",
    "norm_inputs",
    "plain_total",
    "reduce_norms",
]

_SHARD, _REPLICATE, _PARTIAL = "S", "R", "P"


def _dtensor_type() -> type | None:
    """The DTensor class, or None while no code has imported it (then no tensor can be one).

    Looked up in ``sys.modules`` instead of imported (importing it takes ~0.5 s) and not memoised:
    dynamo warns about ``functools.cache`` (an error under ``python -W error``), and a memo filled
    on the first call would make every compiled caller recompile once.
    """
    return getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)


def is_dtensor_type(cls: type) -> bool:
    """Whether ``cls`` is torch's ``DTensor`` or a subclass (False while DTensor is not imported).

    Examples:
        >>> import torch
        >>> from gradclip.distributed import is_dtensor_type
        >>> is_dtensor_type(torch.Tensor), is_dtensor_type(torch.nn.Parameter)
        (False, False)
    """
    dtensor = _dtensor_type()
    return dtensor is not None and issubclass(cls, dtensor)


def any_dtensor(tensors: Sequence[Tensor]) -> bool:
    """Whether any of ``tensors`` is a DTensor: O(1) while nothing imported DTensor, else one set of types.

    Examples:
        >>> import torch
        >>> from gradclip.distributed import any_dtensor
        >>> any_dtensor([torch.ones(2), torch.zeros(3)])
        False
    """
    dtensor = _dtensor_type()
    return dtensor is not None and any(issubclass(t, dtensor) for t in set(map(type, tensors)))


def is_dtensor(t: Tensor) -> TypeIs[DTensor]:
    """Whether ``t`` is a ``DTensor`` (FSDP2 and tensor-parallel gradients are).

    Examples:
        >>> import torch
        >>> from gradclip.distributed import is_dtensor
        >>> is_dtensor(torch.ones(2))  # a DTensor needs a process group: see the distributed guide
        False
    """
    return is_dtensor_type(type(t))


def local_tensor(t: Tensor) -> Tensor:
    """The shard this rank holds (a view: in-place scaling of it scales the DTensor).

    Examples:
        >>> import torch
        >>> from gradclip.distributed import local_tensor
        >>> g = torch.ones(2)
        >>> local_tensor(g) is g  # a plain tensor is all of itself; a DTensor gives its local shard
        True
    """
    return t.to_local() if is_dtensor(t) else t


def _kind(placement: Any) -> str:
    """'S' for any sharding (``Shard``, ``_StridedShard``), 'R' for ``Replicate``, 'P' for ``Partial``."""
    if placement.is_replicate():
        return _REPLICATE
    if placement.is_partial():
        if getattr(placement, "reduce_op", None) not in ("sum", "avg", "max", "min"):
            raise ValueError(
                f"a gradient DTensor has the placement {placement!r}; Partial gradients are supported "
                "with reduce_op 'sum', 'avg', 'max' or 'min'"
            )
        return _PARTIAL
    if placement.is_shard() or isinstance(getattr(placement, "dim", None), int):
        return _SHARD  # Shard(d), and _StridedShard(d, split_factor=k), which is_shard() denies
    raise TypeError(
        f"a gradient DTensor has the placement {placement!r}, which gradclip cannot reduce; "
        "supported: Shard, _StridedShard, Replicate, Partial"
    )


def _kinds(t: Any) -> tuple[str, ...]:
    return tuple(_kind(p) for p in t.placements)


def _reduce_partial_values(grads: list[Tensor], locals_: list[Tensor]) -> list[Tensor]:
    """Locals whose ``Partial`` addends have been summed (copies; the gradients stay as they are).

    One all-reduce per (mesh, mesh dimension, dtype) that any gradient is ``Partial`` over.
    """
    import torch.distributed as dist

    out = list(locals_)
    pending: dict[tuple, list[int]] = {}
    for i, g in enumerate(grads):
        if not is_dtensor(g):
            continue
        for dim, placement in enumerate(g.placements):
            if _kind(placement) == _PARTIAL:
                pending.setdefault(
                    (g.device_mesh, dim, g.dtype, getattr(placement, "reduce_op", "sum")), []
                ).append(i)
    for (mesh, dim, _, reduce_op), idx in pending.items():
        group = mesh.get_group(dim)
        flat = torch.cat([out[i].reshape(-1) for i in idx])
        op = {"max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}.get(reduce_op, dist.ReduceOp.SUM)
        dist.all_reduce(flat, op=op, group=group)  # gloo has no AVG: sum, then divide
        if reduce_op == "avg":
            flat = flat / mesh.size(dim)
        for i, piece in zip(idx, flat.split([out[i].numel() for i in idx]), strict=True):
            out[i] = piece.view_as(out[i])
    return out


def norm_inputs(grads: Sequence[Tensor]) -> list[Tensor]:
    """The tensors whose local norms [`reduce_norms`][gradclip.distributed.reduce_norms] combines: each rank's
    piece, summed
    over ``Partial`` mesh dimensions first (those pieces alone say nothing about the norm).

    Examples:
        >>> import torch
        >>> from gradclip.distributed import norm_inputs
        >>> grads = [torch.ones(2), torch.zeros(3)]
        >>> [a is b for a, b in zip(norm_inputs(grads), grads)]  # plain tensors: the tensors themselves
        [True, True]
    """
    locals_ = [local_tensor(g) for g in grads]
    if any(is_dtensor(g) and _PARTIAL in _kinds(g) for g in grads):
        locals_ = _reduce_partial_values(list(grads), locals_)
    return locals_


def _group_device(process_groups: Sequence) -> torch.device:
    """CUDA for NCCL groups, CPU otherwise (gloo)."""
    import torch.distributed as dist

    backend = dist.get_backend(process_groups[0]) if process_groups else "gloo"
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def _reduce_over_mesh(powered: Tensor, mesh, kinds: list[tuple[str, ...]], p: float) -> Tensor:
    """All-reduce the per-tensor p-th powers of the gradients on ``mesh``: one call per sharded dim.

    For a sum, an entry replicated over dimension ``d`` (Replicate, or Partial already summed) is
    kept only at coordinate 0 of ``d`` and zeroed elsewhere: adding zeros is exact, so the one
    all-reduce counts it once. ``max`` needs no mask (copies are equal).
    """
    import torch.distributed as dist

    op = dist.ReduceOp.MAX if math.isinf(p) else dist.ReduceOp.SUM
    coordinate = mesh.get_coordinate()
    for dim in range(mesh.ndim):
        sharded = [k[dim] == _SHARD for k in kinds]
        if not any(sharded):
            continue  # nothing split over this dimension: every rank already has the whole value
        if op == dist.ReduceOp.SUM and coordinate[dim] != 0 and not all(sharded):
            keep = torch.tensor(sharded, device=powered.device)
            powered = torch.where(keep, powered, 0.0)  # not a multiply: inf * 0 would be NaN
        dist.all_reduce(powered, op=op, group=mesh.get_group(dim))
    return powered


def check_process_groups(process_groups: object) -> None:
    """``process_groups`` must be a sequence of initialised torch.distributed process groups.

    Examples:
        >>> from gradclip.distributed import check_process_groups
        >>> check_process_groups(())  # no extra group: nothing to reduce over
        >>> check_process_groups(["x"])
        Traceback (most recent call last):
            ...
        TypeError: process_groups[0] must be a torch.distributed ProcessGroup...
    """
    import torch.distributed as dist

    if isinstance(process_groups, (str, bytes)) or not isinstance(process_groups, Sequence):
        raise TypeError(f"process_groups must be a sequence of ProcessGroups, got {process_groups!r:.60}")
    for i, group in enumerate(process_groups):
        if not isinstance(group, dist.ProcessGroup):
            raise TypeError(
                f"process_groups[{i}] must be a torch.distributed ProcessGroup, got {group!r:.60}"
            )


def reduce_norms(
    grads: Sequence[Tensor],
    local_norms: Sequence[Tensor],
    p: float,
    process_groups: Sequence = (),
) -> tuple[list[Tensor], Tensor]:
    """Turn per-piece norms into full per-tensor norms and the global total, equal on every rank.

    ``local_norms[i]`` is the norm of ``norm_inputs(grads)[i]``. Returns the full per-tensor norms
    (float32) and the total over all ranks of ``process_groups`` (float32, 0-dim), both on the
    device of the first norm. One all-reduce per sharded dimension of each mesh, one per extra group.

    Examples:
        >>> import torch
        >>> from gradclip.distributed import norm_inputs, reduce_norms
        >>> grads = [torch.tensor([3.0]), torch.tensor([4.0])]
        >>> local = [piece.norm() for piece in norm_inputs(grads)]
        >>> reduce_norms(grads, local, 2.0)  # no mesh and no extra group: nothing to all-reduce
        ([tensor(3.), tensor(4.)], tensor(5.))
    """
    import torch.distributed as dist

    check_process_groups(process_groups)
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
    by_mesh: dict = {}
    for i, g in enumerate(grads):
        if is_dtensor(g):
            by_mesh.setdefault(g.device_mesh, []).append(i)
    for mesh, idx in by_mesh.items():
        kinds = [_kinds(grads[i]) for i in idx]
        if len(idx) == len(grads):  # the common case, one mesh for all: no gather/scatter
            powered = _reduce_over_mesh(powered, mesh, kinds, p)
            continue
        index = torch.tensor(idx, device=powered.device)
        part = _reduce_over_mesh(powered.index_select(0, index), mesh, kinds, p)
        powered = powered.index_copy(0, index, part)
    total = powered.max() if math.isinf(p) else powered.sum()
    for group in process_groups:
        dist.all_reduce(total, op=op, group=group)
    if math.isinf(p):
        return list(powered.unbind()), total
    return list(powered.pow(1.0 / p).unbind()), total.pow(1.0 / p)


def as_total(total: Tensor, grads: Sequence[Tensor]) -> Tensor:
    """The total norm as torch returns it: a replicated DTensor when the gradients are DTensors
    (on the first one's mesh, so ``.full_tensor()`` works), the plain tensor otherwise.

    Examples:
        >>> import torch
        >>> from gradclip.distributed import as_total
        >>> total = torch.tensor(5.0)
        >>> as_total(total, [torch.ones(2)]) is total  # plain gradients: the plain total
        True
    """
    if not any_dtensor(grads):  # one set of types, not a Python call per tensor (10,000 tensors: ~5 ms)
        return total
    first = next(g for g in grads if is_dtensor(g))
    from torch.distributed.tensor import DTensor, Replicate

    mesh = first.device_mesh
    return DTensor.from_local(total, mesh, [Replicate()] * mesh.ndim, run_check=False)


def plain_total(total: Tensor) -> Tensor:
    """A total norm as a plain tensor: a DTensor (ours, or torch's partial one) is made whole first.

    Examples:
        >>> import torch
        >>> from gradclip.distributed import plain_total
        >>> plain_total(torch.tensor(5.0))  # a DTensor total would be made whole with full_tensor()
        tensor(5.)
    """
    return total.full_tensor() if is_dtensor(total) else total
