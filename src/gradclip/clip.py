"""Torch functional clipping API, a drop-in for ``torch.nn.utils.clip_grad_norm_`` and friends.

Global-norm clipping (Pascanu et al. 2013, arXiv:1211.5063) rescales all gradients together,
``g <- g * c / (||g|| + eps)`` when ``||g|| > c``, which keeps the update's direction. The signatures
match torch's; options beyond torch's are keyword-only; code written for torch (an exhausted
generator warns, DTensor gradients give a replicated DTensor total) keeps working. Differences
from torch, each on purpose and never looser:

* norms accumulate in float32 at least: torch reduces fp16/bf16 in their own dtype, where a
  total above 65504 overflows to ``inf`` and a step is lost;
* gradient tensors may be passed directly (``[p.grad for p in ...]``): torch silently clips
  nothing, a silent no-op in the one place meant to keep training stable;
* the safe input rule (see [`gradclip.norms.collect_grads`][gradclip.norms.collect_grads]): plain tensors
  count as gradients only when the whole input is plain tensors or a [`FlatGrads`][gradclip.norms.FlatGrads];
  a mix of parameters and plain tensors raises ``TypeError`` naming the first plain one, and integer/boolean
  tensors raise, because a plain tensor beside parameters is a buffer or a detached weight that rescaling
  would corrupt (torch skips them, gradclip would otherwise rescale them);
* a gradient passed twice (the same parameter or tensor) is counted and scaled once: torch counts
  it twice and scales it twice, so its post-clip norm is not ``max_norm`` (eager only: under
  ``torch.compile`` an identity check would recompile every step, so duplicates are not looked for);
* ``clip_grad_value_`` warns on an exhausted generator as well (torch warns only for the norm):
  the same mistake gets the same warning;
* DTensor gradients on any placement (``Shard``, ``_StridedShard`` of FSDP2 + TP, ``Replicate``,
  ``Partial``) and on several meshes give one global norm, the same on every rank; torch refuses
  gradients on different meshes (a TP'd model whose unsharded layers sit on the data-parallel
  mesh);
* a norm of at most ``c`` is never rescaled: torch multiplies by ``c / (||g|| + eps)`` whenever that is
  below 1, so at ``||g|| = c`` it shrinks a gradient that is within the threshold;
* on CPU the scaling pass is skipped when ``||g|| <= c``: reading a CPU scalar costs no sync, and
  most steps are not clipped, so the common step costs one read pass instead of read + write;
* on CUDA nothing is read back to the host unless ``error_if_nonfinite=True``: the factor
  ([`clip_factor`][gradclip.clip.clip_factor]) is computed on the device, and multiplying by
  exactly 1 leaves gradients bitwise unchanged;
* ``nonfinite='keep'`` leaves gradients untouched when the norm is NaN/Inf (torch scales them by
  NaN or 0), and ``return_stats=True`` returns a `ClipStats` whose ``finite`` flag is a
  0-dim bool tensor, so a caller can skip the optimizer step without a host sync (its
  ``total_norm`` is this rank's plain tensor, also for DTensor gradients).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal, TypeAlias, overload

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from torch import Tensor

from gradclip._validate import (
    check_eps,
    check_flag,
    check_nonfinite,
    check_norm_type,
    check_threshold,
    nonfinite_message,
)
from gradclip.distributed import any_dtensor, as_total, local_tensor, plain_total
from gradclip.norms import FlatGrads, collect_grads, get_total_norm, norms_and_total
from gradclip.norms import total_norm as _total_norm
from gradclip.result import ClipResult

__all__ = [
    "ClipResult",
    "ClipStats",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
]

Params = Tensor | Iterable[Tensor] | FlatGrads


if TYPE_CHECKING:  # the torch API's results hold tensors: ``stats.total_norm.item()`` type-checks
    ClipStats: TypeAlias = ClipResult[Tensor, Tensor]
else:  # at run time the class itself, so ``isinstance(x, ClipStats)`` works
    ClipStats = ClipResult  # the functional form's name for the one result type


def eager_cpu(t: Tensor) -> bool:
    """The eager CPU path: reading the value is free (no device, no graph to keep whole).

    Examples:
        >>> import torch
        >>> from gradclip.clip import eager_cpu
        >>> eager_cpu(torch.ones(()))
        True
    """
    return t.is_cpu and not torch.compiler.is_compiling()


def _threshold(value: float | Tensor, name: str) -> float | Tensor:
    """Validate a threshold; a 0-dim tensor is accepted (checked only when it lives on the CPU)."""
    if isinstance(value, Tensor):
        if value.ndim != 0 or not value.is_floating_point():
            raise TypeError(f"{name} as a tensor must be a 0-dim floating point tensor, got {value!r}")
        if eager_cpu(value):
            check_threshold(float(value), name)
        return value
    return check_threshold(value, name)


def _local(grads: list[Tensor]) -> list[Tensor]:
    """The shards this rank holds, for in-place scaling (plain tensors pass through)."""
    if not any_dtensor(grads):
        return grads  # one set of types, not a call per tensor: matters with 10,000 tensors
    return [local_tensor(g) for g in grads]


def _grads(parameters: Params) -> list[Tensor]:
    if isinstance(parameters, FlatGrads):
        if not parameters.attached:
            raise RuntimeError(
                "FlatGrads: the parameters' .grad no longer live in the flat buffer (zero_grad with "
                "set_to_none=True replaces them); use flat.zero_() or zero_grad(set_to_none=False)"
            )
        return [parameters.buffer]
    return collect_grads(parameters)


def _by_device(grads: list[Tensor]) -> dict[torch.device, list[Tensor]]:
    """Gradients grouped by device (foreach kernels take one device at a time)."""
    if grads and grads[0].is_cpu and all(g.is_cpu for g in grads):
        return {grads[0].device: grads}  # ``is_cpu`` is cheaper than building each ``g.device``
    groups: dict[torch.device, list[Tensor]] = {}
    for g in grads:
        groups.setdefault(g.device, []).append(g)
    return groups


def _scale_(grads: list[Tensor], scale: float | Tensor, foreach: bool | None) -> None:
    """Multiply every gradient by ``scale`` in place, grouped by device for the foreach kernel."""
    for device, group in _by_device(grads).items():
        s = scale.to(device) if isinstance(scale, Tensor) else scale
        if foreach is False or device.type not in ("cpu", "cuda"):
            for g in group:
                g.mul_(s)
        else:
            torch._foreach_mul_(group, s)


def _raw_factor(max_norm: float | Tensor, total: Tensor, eps: float) -> Tensor:
    """``min(1, max_norm / (total + eps))`` for any norm: the maths of every applied factor, before
    [`clip_factor`][gradclip.clip.clip_factor] keeps 1 within the threshold and for a non-finite norm."""
    return torch.clamp(max_norm / (total + eps), max=1.0)


def clip_factor(max_norm: float | Tensor, total: Tensor, eps: float, nonfinite: str = "keep") -> Tensor:
    """The factor ``max_norm / (total + eps)`` when ``total > max_norm``, else exactly 1, as a 0-dim tensor.

    Computed on the device (``where`` instead of an ``if``: no host read). Within the threshold the
    gradients pass untouched (torch multiplies them by ``c / (c + eps)`` at ``total = c``; here a
    norm of at most ``c`` is never rescaled). With ``nonfinite='keep'`` a NaN/Inf total gives 1
    (gradients left alone); with ``'propagate'`` it gives NaN or 0 as in torch. This is the one place
    the factor is computed: what is applied is what is reported.
    """
    scale = _raw_factor(max_norm, total, eps)
    one = torch.ones_like(scale)
    if nonfinite == "keep":
        return torch.where((total > max_norm) & torch.isfinite(total), scale, one)
    return torch.where(total <= max_norm, one, scale)


def scale_grads_(grads: list[Tensor], scale: Tensor, foreach: bool | None) -> None:
    """Multiply ``grads`` by the 0-dim ``scale`` in place, skipping the pass when it is exactly 1 on CPU.

    Reading a CPU scalar costs no sync, and most steps are not clipped, so the common CPU step costs
    one read pass instead of read + write. Elsewhere the multiply always runs (no host read); a
    factor of exactly 1 leaves the gradients bitwise unchanged.
    """
    # Under torch.compile the multiply always runs: reading the factor would be a data-dependent
    # guard (a graph break, or an error with fullgraph=True).
    if eager_cpu(scale) and float(scale) == 1.0:
        return
    _scale_(grads, scale, foreach)


@torch.no_grad()
def clip_grads_with_norm_(
    parameters: Params,
    max_norm: float | Tensor,
    total_norm: Tensor,
    foreach: bool | None = None,
    *,
    eps: float = 1e-6,
    nonfinite: str = "propagate",
) -> None:
    """Scale gradients by ``min(max_norm / (total_norm + eps), 1)`` given a precomputed total norm.

    Same contract as ``torch.nn.utils.clip_grads_with_norm_``; use it with
    [`get_total_norm`][gradclip.clip.get_total_norm] when the norm must be reduced across processes in
    between.

    Examples:
        >>> import torch, gradclip
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> w.grad = torch.tensor([3.0, 4.0])
        >>> total = gradclip.get_total_norm([w])  # measured first: logged, or reduced across processes
        >>> gradclip.clip_grads_with_norm_([w], 1.0, total)
        >>> w.grad
        tensor([0.6000, 0.8000])
    """
    max_norm = _threshold(max_norm, "max_norm")
    eps, nonfinite = check_eps(eps), check_nonfinite(nonfinite)
    if not isinstance(total_norm, Tensor) or total_norm.ndim != 0:
        raise TypeError(f"total_norm must be a 0-dim tensor (from get_total_norm), got {total_norm!r:.60}")
    check_flag(foreach, "foreach", optional=True)
    total_norm = plain_total(total_norm)  # a DTensor total (ours, or torch's partial one) made whole
    grads = _local(_grads(parameters))
    if grads:
        scale_grads_(grads, clip_factor(max_norm, total_norm, eps, nonfinite), foreach)


@overload
def clip_grad_norm_(
    parameters: Params,
    max_norm: float | Tensor,
    norm_type: float | str = ...,
    error_if_nonfinite: bool = ...,
    foreach: bool | None = ...,
    *,
    eps: float = ...,
    nonfinite: str = ...,
    return_stats: Literal[False] = ...,
    process_groups: Sequence = ...,
) -> Tensor: ...
@overload
def clip_grad_norm_(
    parameters: Params,
    max_norm: float | Tensor,
    norm_type: float | str = ...,
    error_if_nonfinite: bool = ...,
    foreach: bool | None = ...,
    *,
    eps: float = ...,
    nonfinite: str = ...,
    return_stats: Literal[True],
    process_groups: Sequence = ...,
) -> ClipStats: ...
@overload
def clip_grad_norm_(
    parameters: Params,
    max_norm: float | Tensor,
    norm_type: float | str = ...,
    error_if_nonfinite: bool = ...,
    foreach: bool | None = ...,
    *,
    eps: float = ...,
    nonfinite: str = ...,
    return_stats: bool,
    process_groups: Sequence = ...,
) -> Tensor | ClipStats: ...
@torch.no_grad()
def clip_grad_norm_(
    parameters: Params,
    max_norm: float | Tensor,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
    *,
    eps: float = 1e-6,
    nonfinite: str = "propagate",
    return_stats: bool = False,
    process_groups: Sequence = (),
) -> Tensor | ClipStats:
    """Clip the global p-norm of the gradients to ``max_norm``, in place; return the pre-clip norm.

    ``total = ||(g_1, ..., g_k)||_p``; if ``total > max_norm`` every gradient is multiplied by
    ``max_norm / (total + eps)`` (Pascanu et al. 2013, arXiv:1211.5063), keeping the direction.

    Args:
        parameters: a tensor, parameters (their ``.grad`` is used, None skipped), gradient tensors
            (only gradient tensors: a mix with parameters raises ``TypeError``), or a
            [`FlatGrads`][gradclip.norms.FlatGrads]; duplicates count once.
        max_norm: threshold c >= 0 (a 0-dim tensor is allowed, for thresholds kept on the device).
        norm_type: p > 0 or ``inf``.
        error_if_nonfinite: raise ``RuntimeError`` when the total norm is NaN/Inf (syncs on CUDA).
        foreach: use the foreach kernels (None: where the device has them).
        eps: added to the norm in the denominator.
        nonfinite: ``'propagate'`` scales by the non-finite norm like torch; ``'keep'`` leaves the
            gradients as they are (skip the step using ``ClipStats.finite``).
        return_stats: return a [`ClipResult`][gradclip.result.ClipResult] (``ClipStats``) instead of the
            bare norm: the stateless special case of [`gradclip.step.ClipStep`][gradclip.step.ClipStep]
            (nothing is skipped here; ``finite`` tells the caller whether to step).
        process_groups: extra groups whose ranks hold different parameters (pipeline or hand-made
            tensor parallelism): the norm is all-reduced over each. DTensor (FSDP2) gradients are
            reduced over their mesh without being named here; DDP needs nothing.

    Returns:
        The pre-clip total norm, a 0-dim float32 tensor (float64 for float64 gradients) on the
        gradients' (first) device; for DTensor gradients a replicated DTensor (as torch).

    Examples:
        >>> import torch, gradclip
        >>> model = torch.nn.Linear(4, 1)
        >>> model(torch.ones(8, 4)).sum().backward()
        >>> norm = gradclip.clip_grad_norm_(model.parameters(), 1.0)  # the pre-clip norm, a 0-dim tensor
        >>> round(norm.item(), 3)
        17.889
        >>> round(gradclip.get_total_norm(model.parameters()).item(), 4)
        1.0
        >>> stats = gradclip.clip_grad_norm_(model.parameters(), 0.5, return_stats=True)
        >>> bool(stats.clipped), round(stats.post_clip_norm.item(), 4)
        (True, 0.5)
    """
    max_norm = _threshold(max_norm, "max_norm")
    p = check_norm_type(norm_type)
    eps, nonfinite = check_eps(eps), check_nonfinite(nonfinite)
    check_flag(error_if_nonfinite, "error_if_nonfinite")
    check_flag(return_stats, "return_stats")
    grads = grads_in = _grads(parameters)
    if isinstance(parameters, FlatGrads) and return_stats:
        # Per-parameter norms from the views: still one pass over the buffer.
        per_tensor, total = norms_and_total(
            parameters.views, p, foreach=foreach, process_groups=process_groups
        )
    elif return_stats:
        per_tensor, total = norms_and_total(grads, p, foreach=foreach, process_groups=process_groups)
    else:  # the per-tensor norms are not returned: let the norm pass skip making them
        per_tensor, total = [], _total_norm(grads, p, foreach=foreach, process_groups=process_groups)
    grads = _local(grads)
    if error_if_nonfinite and not bool(torch.isfinite(total)):
        raise RuntimeError(nonfinite_message(p))
    if not return_stats and not isinstance(max_norm, Tensor) and eager_cpu(total):
        # The eager CPU: reading the norm is free, so an unclipped step makes no tensor at all, and
        # a clipped one the factor of clip_factor's own maths (the same bits), without its where().
        t = float(total)
        if grads and not t <= max_norm and (nonfinite == "propagate" or math.isfinite(t)):
            _scale_(grads, _raw_factor(max_norm, total, eps), foreach)
        return as_total(total, grads_in)
    scale = clip_factor(max_norm, total, eps, nonfinite)
    if grads:
        scale_grads_(grads, scale, foreach)
    if not return_stats:
        return as_total(total, grads_in)
    finite = torch.isfinite(total)
    no = torch.zeros((), dtype=torch.bool, device=total.device)
    clipped = (total > max_norm) & finite if nonfinite == "keep" else total > max_norm
    return ClipResult(total, max_norm, scale, total * scale, clipped, finite, no, no, per_tensor)


@torch.no_grad()
def clip_grad_value_(
    parameters: Params,
    clip_value: float,
    foreach: bool | None = None,
) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place (torch's semantics).

    Unlike norm clipping this changes the update's direction whenever an element is clamped.
    NaN elements stay NaN; +-inf become +-clip_value.

    Examples:
        >>> import torch, gradclip
        >>> w = torch.nn.Parameter(torch.zeros(3))
        >>> w.grad = torch.tensor([-3.0, 0.5, 2.0])
        >>> gradclip.clip_grad_value_([w], 1.0)
        >>> w.grad
        tensor([-1.0000,  0.5000,  1.0000])
    """
    c = check_threshold(clip_value, "clip_value")
    check_flag(foreach, "foreach", optional=True)
    for device, group in _by_device(_local(_grads(parameters))).items():
        if not all(g.is_floating_point() for g in group):  # clamping an integer tensor to a float fails late
            raise TypeError(
                f"parameters must hold floating-point gradients, got {sorted({str(g.dtype) for g in group})}"
            )
        # On CUDA the foreach kernels fuse launches; on the CPU they loop over tensors anyway, with
        # two passes (min, then max) where clamp_ makes one: measured ~1.8x slower on ResNet-50.
        if foreach is False or device.type != "cuda":
            for g in group:
                g.clamp_(-c, c)
        else:
            torch._foreach_clamp_min_(group, -c)
            torch._foreach_clamp_max_(group, c)
