"""Gradient norms for torch: per-tensor norms and the total norm from one read pass.

Norms are accumulated in float32 at least, whatever the gradient dtype: torch's own
``get_total_norm`` reduces fp16/bf16 gradients in their own dtype, so a total above 65504 becomes
``inf`` in fp16. Here each tensor is reduced with ``dtype=float32`` (float64 stays float64), the
per-tensor norms are combined as ``||(n_1, ..., n_k)||_p`` (which equals the p-norm of all elements
concatenated) and the total is returned as a 0-dim float32 tensor (float64 if any gradient is
float64, as torch does) on the first gradient's device.
Nothing here reads a value back to the host, so the pass is free of CUDA synchronisations.
"""

from __future__ import annotations

import itertools
import math
import types
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from operator import attrgetter
from typing import overload

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from torch import Tensor

from gradclip._validate import check_flag, check_norm_type, nonfinite_message
from gradclip.distributed import any_dtensor, as_total, check_process_groups, norm_inputs, reduce_norms

__all__ = [
    "FlatGrads",
    "NormRows",
    "collect_grads",
    "get_total_norm",
    "norm_rows_and_total",
    "norms_and_total",
    "param_grad_pairs",
    "param_list",
    "tensor_norms",
    "total_from_norms",
    "total_norm",
]


def _describe(t: object) -> str:
    if not isinstance(t, Tensor):
        return f"a {type(t).__name__}"
    return f"a tensor of shape {tuple(t.shape)} and dtype {t.dtype}"


def _as_param_grad(t: object, i: int) -> tuple[bool, Tensor | None]:
    """``(is_parameter, gradient)`` of item ``i``: a parameter's ``.grad``, or a plain tensor itself.

    Parameters are ``nn.Parameter``, tensors that require grad, and tensors given a ``.grad`` by
    hand; a parameter without a gradient (frozen, unused, or not a leaf) gives None. A plain tensor
    (none of these) is a gradient candidate: the caller decides whether the input allows it.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"parameters must be tensors, got {_describe(t)} at position {i}")
    if isinstance(t, torch.nn.Parameter) or t.requires_grad:
        return True, t.grad if (t.is_leaf or t.retains_grad) else None
    if t.grad is not None:  # a plain tensor that was given a gradient by hand
        return True, t.grad
    if not t.is_floating_point():
        raise TypeError(
            f"parameters: the tensor at position {i} has dtype {t.dtype}; gradients must be real "
            "floating point tensors (integer and boolean tensors are never clipped)"
        )
    return False, t


def _mixed_error(i: int, t: Tensor) -> TypeError:
    return TypeError(
        f"parameters mixes parameters with plain tensors: position {i} holds {_describe(t)} that is "
        "neither a parameter nor has a .grad (a buffer such as BatchNorm's running_var, or a "
        "detached weight), and it would be rescaled as if it were a gradient. Pass parameters "
        "only (their .grad is clipped) or gradient tensors only ([p.grad for p in ...])"
    )


def _items(parameters: Tensor | Iterable[Tensor]) -> Iterable[Tensor]:
    """The input as an iterable read once, with torch's warning for an exhausted generator."""
    if isinstance(parameters, Tensor):
        return (parameters,)
    if isinstance(parameters, types.GeneratorType):
        items = list(parameters)
        if not items:
            warnings.warn(
                "`parameters` is an empty generator (was model.parameters() consumed already?): "
                "no gradient clipping will occur",
                UserWarning,
                stacklevel=4,
            )
        return items
    return parameters


def _check_iterable(parameters: object, name: str = "parameters") -> None:
    if parameters is None or isinstance(parameters, (str, bytes)) or not hasattr(parameters, "__iter__"):
        raise TypeError(f"{name} must be a tensor or an iterable of tensors, got {parameters!r:.60}")


def param_list(parameters: Tensor | Iterable[Tensor], name: str = "parameters") -> list[Tensor]:
    """``parameters`` as a list (a tensor as ``[tensor]``); None, text, non-iterables: TypeError.

    Examples:
        >>> import torch
        >>> from gradclip.norms import param_list
        >>> len(param_list(torch.nn.Linear(2, 1).parameters())), len(param_list(torch.ones(3)))
        (2, 1)
        >>> param_list(None)
        Traceback (most recent call last):
            ...
        TypeError: parameters must be...
    """
    if isinstance(parameters, Tensor):
        return [parameters]
    _check_iterable(parameters, name)
    return list(parameters)


def _check_options(foreach: object, process_groups: object) -> None:
    check_flag(foreach, "foreach", optional=True)
    if not isinstance(process_groups, (tuple, list)):  # a tuple or list is checked where it is used
        check_process_groups(process_groups)


def collect_grads(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    """Turn a tensor, parameters or gradient tensors into the list of gradients to clip.

    The safe input rule: parameters (``nn.Parameter``, tensors that require grad or carry a
    ``.grad``) give their ``.grad`` (None skipped); plain tensors count as gradients only when the
    whole input is plain tensors. A mix raises ``TypeError`` naming the first plain tensor (it is
    most likely a buffer or a detached weight that must not be rescaled), as do integer and boolean
    tensors. A gradient listed twice (the same parameter, or the same tensor) is counted and
    scaled once.

    Examples:
        >>> import torch
        >>> from gradclip.norms import collect_grads
        >>> model = torch.nn.Linear(2, 1)
        >>> model(torch.ones(1, 2)).sum().backward()
        >>> [tuple(g.shape) for g in collect_grads(model.parameters())]
        [(1, 2), (1,)]
        >>> collect_grads([model.weight, torch.zeros(3)])  # a parameter mixed with a plain tensor
        Traceback (most recent call last):
            ...
        TypeError: parameters ...
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    else:
        _check_iterable(parameters)
    param_type = torch.nn.Parameter
    items = _items(parameters)
    fast = isinstance(items, (list, tuple)) and len(items) > 64 and not torch.compiler.is_compiling()
    if fast and set(map(type, items)) == {param_type}:
        # Only plain parameters (the common case of a big model): the loop in C (10,000 tensors:
        # ~1 ms instead of ~3 ms).
        grads = [g for g in map(_GRAD, items) if g is not None]
    else:
        grads = []
        _collect(items, param_type, grads)
    # Duplicates are found by identity; under torch.compile an id() would guard on each object and
    # recompile every step, so a compiled step does not look for them (documented in clip.py).
    if len(grads) > 1 and not torch.compiler.is_compiling() and len(set(map(id, grads))) != len(grads):
        grads = list({id(g): g for g in grads}.values())  # first occurrence kept, input order
    return grads


_GRAD = attrgetter("grad")


def _collect(items: Iterable[Tensor], param_type: type, grads: list[Tensor]) -> None:
    """The gradients of ``items`` appended to ``grads``, by the safe input rule."""
    it = iter(items)
    n = 0
    # Plain parameters (the common case, always leaves) take the short loop: it runs once per
    # tensor per step, so it matters for models with thousands of tensors.
    for t in it:
        if type(t) is not param_type:
            _collect_rest(t, it, n, grads)
            break
        g = t.grad
        if g is not None:
            grads.append(g)
        n += 1


def _collect_rest(first: Tensor, rest: Iterable[Tensor], start: int, grads: list[Tensor]) -> None:
    """The general loop of [`collect_grads`][gradclip.norms.collect_grads], from position ``start`` on
    (``start`` parameters
    came before it): classify each item and apply the mixing rule."""
    first_plain: tuple[int, Tensor] | None = None
    any_param = start > 0
    for i, t in enumerate(itertools.chain((first,), rest), start):
        is_param, g = _as_param_grad(t, i)
        if is_param:
            any_param = True
        elif first_plain is None:
            first_plain = (i, t)
        if any_param and first_plain is not None:
            raise _mixed_error(*first_plain)
        if g is not None:
            grads.append(g)


def param_grad_pairs(parameters: Tensor | Iterable[Tensor], *, who: str) -> list[tuple[Tensor, Tensor]]:
    """``(parameter, gradient)`` pairs for rules that need the weights (AGC), each pair once.

    Plain tensors raise ``TypeError``: a gradient alone does not carry the weight it is compared to.

    Examples:
        >>> import torch
        >>> from gradclip.norms import param_grad_pairs
        >>> w = torch.nn.Parameter(torch.ones(2))
        >>> w.grad = torch.full((2,), 0.5)
        >>> [(p is w, g.tolist()) for p, g in param_grad_pairs([w, w], who="AGC")]  # listed twice: once
        [(True, [0.5, 0.5])]
    """
    pairs: dict[int, tuple[Tensor, Tensor]] = {}
    if not isinstance(parameters, Tensor):
        _check_iterable(parameters)
    for i, t in enumerate(_items(parameters)):
        is_param, g = _as_param_grad(t, i)
        if not is_param:
            raise TypeError(
                f"{who} needs the parameters (it compares each gradient with its weight), but position "
                f"{i} holds {_describe(t)} without a .grad; pass model.parameters() instead of gradients"
            )
        if g is not None:
            # Compiled, an id() would guard on each gradient and recompile every step: no repeat check
            # there (as in collect_grads).
            key = len(pairs) if torch.compiler.is_compiling() else id(g)
            pairs.setdefault(key, (t, g))
    return list(pairs.values())


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every narrower float is reduced in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


_DTYPE, _IS_CPU = attrgetter("dtype"), attrgetter("is_cpu")


def _group(grads: list[Tensor]) -> dict[tuple[torch.device, torch.dtype], list[int]]:
    # The common case first: all on the CPU in one dtype. ``g.device`` builds a new object per call
    # (10,000 tensors: ~3 ms); ``is_cpu`` and ``dtype`` do not (~1 ms).
    if torch.compiler.is_compiling():  # dynamo cannot trace attrgetter
        one_cpu_kind = len({(g.is_cpu, g.dtype) for g in grads}) == 1 and grads[0].is_cpu
    else:
        one_cpu_kind = len(set(map(_DTYPE, grads))) == 1 and all(map(_IS_CPU, grads))
    if one_cpu_kind:
        groups = {(grads[0].device, grads[0].dtype): list(range(len(grads)))}
    else:
        groups = defaultdict(list)
        for i, g in enumerate(grads):
            groups[(g.device, g.dtype)].append(i)
    for _, dtype in groups:
        if not dtype.is_floating_point:
            raise TypeError(f"gradients must be real floating point tensors, got dtype {dtype}")
    return groups


def _group_norms(
    group: list[Tensor],
    p: float,
    device: torch.device,
    dtype: torch.dtype,
    foreach: bool | None,
    *,
    per_tensor: bool = True,
) -> tuple[Sequence[Tensor], Tensor]:
    """Per-tensor norms and the total of one (device, dtype) group.

    With ``per_tensor=False`` the per-tensor list may come back empty where the total alone is
    cheaper (CPU 2-norms of many small tensors).
    """
    use_foreach = foreach if foreach is not None else device.type in ("cpu", "cuda")
    if use_foreach and device.type not in ("cpu", "cuda"):
        raise ValueError(f"foreach=True was passed, but {device.type} tensors have no foreach kernels")
    # Only narrower-than-fp32 grads need the dtype argument (it costs a little on CPU).
    acc = None if dtype in (torch.float32, torch.float64) else torch.float32
    if p == 2.0 and device.type == "cpu" and acc is None:
        return _cpu_l2_norms(group, use_foreach, per_tensor)
    if math.isinf(p):
        norms = _inf_norms(group, device, acc or dtype, use_foreach)
    elif use_foreach:
        norms = list(torch._foreach_norm(group, p, dtype=acc))
    else:
        norms = [torch.linalg.vector_norm(g, p, dtype=acc) for g in group]
    # ||(n)||_p = n: a flat buffer's total is its norm, no extra kernels.
    return norms, norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms), p)


_DOT_MIN_NUMEL = 1 << 14  # below this a BLAS call's overhead outweighs its speed
# Below this many elements in the large tensors together, the dots' extra kernels (dot, stack, sqrt,
# cat, unbind) cost more than their faster read saves: a 26k-parameter MLP's norms took 77-83 us
# with one 16k-element dot against 41-52 us for the foreach kernel over all six tensors.
_DOT_MIN_TOTAL = 1 << 20
# Small tensors are packed shape by shape, for shapes held by at least _PACK_MIN_COUNT tensors of at
# most _PACK_MAX_NUMEL elements each (the others keep the foreach kernel); see `_packed_norms`.
_PACK_MIN_COUNT = 32
_PACK_MAX_NUMEL = 2048


def _cpu_l2_norms(group: list[Tensor], foreach: bool, per_tensor: bool) -> tuple[Sequence[Tensor], Tensor]:
    """2-norms of float32/float64 CPU tensors and their total: BLAS dots for the large ones.

    Measured on ResNet-50's gradients (2 cores): the per-tensor dots read 25.5M floats in 2.4 ms,
    where ``vector_norm`` over one flat buffer of the same bytes takes 2.8 ms and ``_foreach_norm``
    3.0 ms; the BLAS reduction is also the more accurate (wider SIMD accumulators). Many small
    tensors of one shape are packed (`_packed_norms`); the other small ones keep the foreach kernel,
    as do large ones that together hold fewer than ``_DOT_MIN_TOTAL`` elements (a small model:
    kernel count dominates; a 4-layer, 930k-parameter GPT's 52 tensors: 270-280 us against torch's
    450-460 us, and 470 us when its 35 small tensors were packed in 4 shapes and the rest copied).
    """
    big: list[Tensor] = []
    small: list[Tensor] = []
    is_big: list[bool] = []
    for g in group:  # one pass: this runs per tensor per step (10,000 tensors: ~1 ms)
        b = g.numel() >= _DOT_MIN_NUMEL and g.is_contiguous()
        (big if b else small).append(g)
        is_big.append(b)
    dots = bool(big) and sum(map(Tensor.numel, big)) >= _DOT_MIN_TOTAL
    packed = _packed_norms(small, foreach) if len(small) >= _PACK_MIN_COUNT else None
    if not dots and packed is None:  # a small model: one foreach kernel over every tensor
        big, small, is_big = [], group, [False] * len(group)
    parts = []  # 1-D tensors of per-tensor norms: big ones, then small ones
    big_norms: Sequence[Tensor] = ()
    if big and dots:
        parts.append(torch.stack([torch.dot(v, v) for v in (g.view(-1) for g in big)]).sqrt())
    elif big:  # too few elements for the dots to pay, too large for a copy into a pack to
        big_norms = _each_norm(big, foreach)
        parts.append(torch.stack(big_norms))
    small_norms: Sequence[Tensor] = ()
    if packed is not None:
        parts.append(packed)
    elif small:
        small_norms = _each_norm(small, foreach)
        parts.append(torch.stack(small_norms))
    total = parts[0] if len(parts) == 1 else torch.cat(parts)
    total = total[0] if len(group) == 1 else torch.linalg.vector_norm(total)
    if not per_tensor:
        return [], total
    if not big and packed is not None and not torch.compiler.is_compiling():
        return NormRows(packed), total  # the 0-dim tensors only if someone reads them
    if dots:
        big_norms = parts[0].unbind()
    if packed is not None:
        small_norms = packed.unbind()
    if not big:
        return list(small_norms), total
    if not small:
        return list(big_norms), total
    it_big, it_small = iter(big_norms), iter(small_norms)
    return [next(it_big) if b else next(it_small) for b in is_big], total


def _packed_l2(grads: list[Tensor], per_tensor: bool) -> tuple[Sequence[Tensor], Tensor] | None:
    """2-norms of many same-shape small float32/float64 CPU tensors from one copy, else None.

    The common layout of many small tensors, taken before `_group`: one pass reads the dtypes, and
    ``torch.stack`` (which refuses other shapes and other devices) both checks the rest and packs
    the rows, so no Python loop runs per tensor. The total alone is a BLAS dot over the packed
    buffer (10,000 x 256 floats: more accurate than ``vector_norm`` against a float64 reference,
    1.7e-5 against 4.6e-5 relative, and faster); per-tensor norms stay one tensor (`NormRows`).
    Tensors of more than ``_PACK_MAX_NUMEL`` elements are not copied (the total of 256 tensors of
    8192 elements: 1062 us packed against 809 us by the general path; of 2048: 318 against 393).
    """
    first = grads[0]
    if len(grads) < _PACK_MIN_COUNT or not first.is_cpu or first.numel() > _PACK_MAX_NUMEL:
        return None
    if first.shape != grads[-1].shape:  # a model's mixed shapes: no failed copy (ResNet-50's first is small)
        return None
    if first.dtype not in (torch.float32, torch.float64) or set(map(_DTYPE, grads)) != {first.dtype}:
        return None
    try:
        rows = _stack_rows(grads)
    except RuntimeError:  # other shapes, other devices, or empty tensors: the general path
        return None
    if per_tensor:
        norms = torch.linalg.vector_norm(rows, dim=1)
        return NormRows(norms), torch.linalg.vector_norm(norms)
    flat = rows.view(-1)
    return [], torch.dot(flat, flat).sqrt()


def _each_norm(group: list[Tensor], foreach: bool) -> tuple[Tensor, ...] | list[Tensor]:
    return torch._foreach_norm(group) if foreach else [torch.linalg.vector_norm(g) for g in group]


def _packed_norms(small: list[Tensor], foreach: bool) -> Tensor | None:
    """2-norms of many small CPU tensors (a 1-D tensor, input order), packing them into buffers.

    Each per-tensor kernel costs ~1.2 us of dispatch on a CPU, far more than reading 256 floats;
    ``torch.stack`` copies same-shape tensors into one buffer in a single call, whose row norms are
    then one vectorised reduction. Measured (2 cores, 256 tensors, stack and row norms against
    ``_foreach_norm``): 61 against 327 us at 256 elements each, 232 against 388 us at 2048, 534
    against 457 us at 4096 (the copy costs more than it saves), hence ``_PACK_MAX_NUMEL``. Mixed
    shapes are packed shape by shape, only the shapes that ``_PACK_MIN_COUNT`` tensors share (32
    small tensors, 8 in each of 4 shapes, took 105 us packed shape by shape against 52 us by
    foreach); the rest keep the foreach kernel. None when no shape is packed.
    """
    first = small[0]
    if first.numel() <= _PACK_MAX_NUMEL and first.shape == small[-1].shape:
        try:  # the common case: all small tensors share one shape (one call, no Python loop)
            return torch.linalg.vector_norm(_stack_rows(small), dim=1)
        except RuntimeError:  # another shape in between
            pass
    by_shape: dict[torch.Size, list[int]] = {}
    for i, g in enumerate(small):
        if g.numel() <= _PACK_MAX_NUMEL:
            by_shape.setdefault(g.shape, []).append(i)
    packs = [idx for idx in by_shape.values() if len(idx) >= _PACK_MIN_COUNT]
    if not packs:
        return None
    out = torch.empty(len(small), dtype=first.dtype)
    for idx in packs:
        out[torch.tensor(idx)] = torch.linalg.vector_norm(_stack_rows([small[i] for i in idx]), dim=1)
    in_packs = {i for idx in packs for i in idx}
    rest = [i for i in range(len(small)) if i not in in_packs]
    if rest:
        out[torch.tensor(rest)] = torch.stack(_each_norm([small[i] for i in rest], foreach))
    return out


def _stack_rows(group: list[Tensor]) -> Tensor:
    """Same-shape tensors copied into one ``(k, numel)`` buffer (RuntimeError if shapes differ)."""
    return torch.stack(group).reshape(len(group), -1)


def _inf_norms(group: list[Tensor], device: torch.device, dtype: torch.dtype, foreach: bool) -> list[Tensor]:
    """``max |g|`` per tensor; an empty tensor has norm 0 (torch's kernels refuse it: no identity)."""
    keep = [i for i, g in enumerate(group) if g.numel()]
    if keep:
        if device.type == "cpu":
            # torch's CPU inf-norm kernel is ~10x slower than aminmax (one vectorised read pass):
            # ||g||_inf = max(max g, -min g), NaN propagating, exact in any dtype.
            lows, highs = zip(*(torch.aminmax(group[i]) for i in keep), strict=True)
            norms = torch.maximum(torch.stack(highs), -torch.stack(lows))
        elif foreach:
            norms = torch.stack(torch._foreach_norm([group[i] for i in keep], math.inf))
        else:
            norms = torch.stack([torch.linalg.vector_norm(group[i], math.inf) for i in keep])
        if len(keep) == len(group):
            return list(norms.to(dtype).unbind())  # the common case: no scatter (no index tensor)
    out = torch.zeros(len(group), dtype=dtype, device=device)
    if keep:
        out[keep] = norms.to(dtype)
    return list(out.unbind())


def norms_and_total(
    grads: list[Tensor],
    norm_type: float = 2.0,
    *,
    foreach: bool | None = None,
    process_groups: Sequence = (),
) -> tuple[list[Tensor], Tensor]:
    """Per-tensor norms (input order) and the total norm, from one read pass over the gradients.

    Per-tensor norms are float32 (float64 for float64 grads). The total is ``||(n_1..n_k)||_p``, a
    0-dim tensor on the first gradient's device, float32 unless a gradient is float64.
    DTensor (FSDP2) gradients and extra ``process_groups`` give global norms, reduced in float32
    (see [`gradclip.distributed`][gradclip.distributed]).

    Examples:
        >>> import torch
        >>> from gradclip.norms import norms_and_total
        >>> norms_and_total([torch.tensor([3.0, 4.0]), torch.tensor([12.0])])
        ([tensor(5.), tensor(12.)], tensor(13.))
    """
    _check_options(foreach, process_groups)
    norms, total = norm_rows_and_total(grads, norm_type, foreach=foreach, process_groups=process_groups)
    return (norms if isinstance(norms, list) else list(norms)), total


def norm_rows_and_total(
    grads: list[Tensor], norm_type: float, *, foreach: bool | None, process_groups: Sequence
) -> tuple[Sequence[Tensor], Tensor]:
    """[`norms_and_total`][gradclip.norms.norms_and_total], with the per-tensor norms possibly as
    [`NormRows`][gradclip.norms.NormRows]: their 0-dim tensors are made only when they are read.

    Examples:
        >>> import torch
        >>> from gradclip.norms import norm_rows_and_total
        >>> norms, total = norm_rows_and_total([torch.ones(4)] * 40, 2.0, foreach=None, process_groups=())
        >>> len(norms), float(norms[0]), float(total)
        (40, 2.0, 12.649110794067383)
    """
    p = check_norm_type(norm_type)
    if process_groups or any_dtensor(grads):
        local = norm_inputs(grads)
        local_norms = (
            list(norm_rows_and_total(local, p, foreach=foreach, process_groups=())[0]) if local else []
        )
        return reduce_norms(grads, local_norms, p, process_groups)
    return _local_norms_and_total(grads, p, foreach, per_tensor=True)


class NormRows(Sequence[Tensor]):
    """Per-tensor norms held as one 1-D tensor; the 0-dim tensors are made on first access.

    A step on 10,000 small tensors reads their norms from one packed reduction; making 10,000 tensor
    objects out of it costs more (~4 ms) than the reduction itself, and most steps never read them.

    Examples:
        >>> import torch
        >>> from gradclip.norms import NormRows
        >>> rows = NormRows(torch.tensor([3.0, 4.0]))
        >>> len(rows), rows[1], list(rows)
        (2, tensor(4.), [tensor(3.), tensor(4.)])
    """

    __slots__ = ("_rows", "values")

    def __init__(self, values: Tensor) -> None:
        self.values = values
        self._rows: tuple[Tensor, ...] | None = None

    def _unbound(self) -> tuple[Tensor, ...]:
        if self._rows is None:
            self._rows = self.values.unbind()
        return self._rows

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @overload
    def __getitem__(self, i: int) -> Tensor: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Tensor, ...]: ...
    def __getitem__(self, i: int | slice) -> Tensor | tuple[Tensor, ...]:
        return self._unbound()[i]

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self._unbound())

    def __repr__(self) -> str:
        return repr(list(self))


def _local_norms_and_total(
    grads: list[Tensor], p: float, foreach: bool | None, *, per_tensor: bool
) -> tuple[Sequence[Tensor], Tensor]:
    if not grads:
        return [], torch.zeros((), dtype=torch.float32)
    if p == 2.0 and not torch.compiler.is_compiling():
        packed = _packed_l2(grads, per_tensor)
        if packed is not None:
            return packed
    groups = _group(grads)
    if len(groups) == 1:  # one device, one dtype: no reordering, no extra stacking
        ((device, dtype),) = groups
        return _group_norms(grads, p, device, dtype, foreach, per_tensor=per_tensor)
    out: list[Tensor] = [grads[0]] * len(grads)
    group_totals = []
    for (device, dtype), idx in groups.items():
        norms, total = _group_norms([grads[i] for i in idx], p, device, dtype, foreach)
        for i, n in zip(idx, norms, strict=True):
            out[i] = n
        group_totals.append(total)
    return out, total_from_norms(group_totals, p)


def total_norm(
    grads: list[Tensor],
    norm_type: float = 2.0,
    *,
    foreach: bool | None = None,
    process_groups: Sequence = (),
) -> Tensor:
    """The total norm alone: ``norms_and_total(...)[1]``, skipping per-tensor outputs where cheaper.

    On the CPU, 2-norms of many small tensors are then one packed read with no per-tensor tensors
    created (10,000 x 256 floats: ~3 ms against ~15 ms for the per-tensor norms).

    Examples:
        >>> import torch
        >>> from gradclip.norms import total_norm
        >>> total_norm([torch.full((256,), 0.5) for _ in range(100)])  # sqrt(100 * 256 * 0.25)
        tensor(80.)
    """
    p = check_norm_type(norm_type)
    _check_options(foreach, process_groups)
    if process_groups or any_dtensor(grads):
        return norms_and_total(grads, p, foreach=foreach, process_groups=process_groups)[1]
    return _local_norms_and_total(grads, p, foreach, per_tensor=False)[1]


def tensor_norms(grads: list[Tensor], norm_type: float = 2.0, *, foreach: bool | None = None) -> list[Tensor]:
    """Per-tensor p-norms ``||g_i||_p`` in float32 (float64 for float64 grads), in input order.

    One read pass over the gradients; the foreach kernel is used per (device, dtype) group where
    the device supports it (``foreach=None``), forced with ``True``, avoided with ``False``.

    Examples:
        >>> import torch, gradclip
        >>> gradclip.tensor_norms([torch.tensor([3.0, 4.0]), torch.ones(4, dtype=torch.float64)])
        [tensor(5.), tensor(2., dtype=torch.float64)]
    """
    if not isinstance(grads, (list, tuple)):
        raise TypeError(f"grads must be a list of gradient tensors, got {grads!r:.60}")
    for i, g in enumerate(grads):
        if not isinstance(g, Tensor):
            raise TypeError(f"grads[{i}] must be a tensor, got {g!r:.60} ({type(g).__name__})")
    return norms_and_total(list(grads), norm_type, foreach=foreach)[0]


def total_from_norms(norms: list[Tensor], norm_type: float = 2.0) -> Tensor:
    """Combine per-tensor norms into the total norm: ``(sum n_i^p)^(1/p)``, or ``max n_i`` for inf.

    Returned as a 0-dim tensor on the first norm's device: float32, or float64 when any gradient
    is float64 (0 for an empty list).

    Examples:
        >>> import torch
        >>> from gradclip.norms import total_from_norms
        >>> total_from_norms([torch.tensor(3.0), torch.tensor(4.0)])
        tensor(5.)
        >>> total_from_norms([torch.tensor(3.0), torch.tensor(4.0)], float("inf"))
        tensor(4.)
    """
    p = check_norm_type(norm_type)
    if not norms:
        return torch.zeros((), dtype=torch.float32)
    device = norms[0].device
    acc = torch.float64 if any(n.dtype == torch.float64 for n in norms) else torch.float32
    if any(n.device != device or n.dtype != acc for n in norms):
        norms = [n.to(device=device, dtype=acc) for n in norms]
    return torch.linalg.vector_norm(torch.stack(norms), p)


def get_total_norm(
    tensors: Tensor | Iterable[Tensor],
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
    *,
    process_groups: Sequence = (),
) -> Tensor:
    """Total p-norm of ``tensors`` (gradients, or parameters whose ``.grad`` is read).

    ``||g||_p = (sum_i sum_j |g_ij|^p)^(1/p)``; ``max |g_ij|`` for ``inf``. Same signature as
    ``torch.nn.utils.get_total_norm`` but accumulated in float32 at least; inputs follow the
    safe rule of [`collect_grads`][gradclip.norms.collect_grads]. For DTensor gradients the global norm is
    returned as a replicated DTensor, as torch does (``.full_tensor()`` gives the plain value).

    Examples:
        >>> import torch, gradclip
        >>> grads = [torch.tensor([3.0]), torch.tensor([4.0])]
        >>> gradclip.get_total_norm(grads)
        tensor(5.)
        >>> gradclip.get_total_norm(grads, norm_type="inf")
        tensor(4.)
    """
    p = check_norm_type(norm_type)
    check_flag(error_if_nonfinite, "error_if_nonfinite")
    grads = collect_grads(tensors)
    total = total_norm(grads, p, foreach=foreach, process_groups=process_groups)
    if error_if_nonfinite and not bool(torch.isfinite(total)):
        raise RuntimeError(nonfinite_message(p))
    return as_total(total, grads)


class FlatGrads:
    """Gradients laid out as views into one contiguous buffer, so norm and scale are one op each.

    ``flat = FlatGrads(model.parameters())`` allocates ``flat.buffer`` and sets every parameter's
    ``.grad`` to a view into it; ``backward()`` then accumulates in place into the buffer and
    ``clip_grad_norm_(flat.buffer, c)`` reads and scales all gradients with a single kernel each,
    instead of one per tensor. Zero the gradients with ``flat.zero_()`` or
    ``optimizer.zero_grad(set_to_none=False)``: ``set_to_none=True`` drops the views, after which
    the buffer no longer holds the gradients (``flat.attached`` turns False and the gradclip entry
    points that take a ``FlatGrads`` raise instead of clipping stale zeros).

    Examples:
        >>> import torch, gradclip
        >>> model = torch.nn.Linear(3, 2)
        >>> flat = gradclip.FlatGrads(model.parameters())
        >>> model(torch.ones(4, 3)).sum().backward()  # accumulates into flat.buffer
        >>> flat.buffer.numel(), flat.attached
        (8, True)
        >>> norm = gradclip.clip_grad_norm_(flat, 1.0)  # one norm kernel, one scale kernel
        >>> round(float(flat.buffer.norm()), 4)
        1.0
    """

    def __init__(self, parameters: Iterable[Tensor]) -> None:
        if isinstance(parameters, Tensor):
            parameters = [parameters]
        elif isinstance(parameters, (str, bytes)) or not hasattr(parameters, "__iter__"):
            raise TypeError(f"parameters must be an iterable of tensors, got {parameters!r:.60}")
        parameters = list(parameters)
        for i, p in enumerate(parameters):
            if not isinstance(p, Tensor):
                raise TypeError(f"parameters[{i}] must be a tensor, got {p!r:.60} ({type(p).__name__})")
        self.params = [p for p in parameters if p.requires_grad]
        if not self.params:
            raise ValueError(f"parameters must hold a tensor that requires grad, got {parameters!r:.60}")
        kinds = {(p.device, p.dtype) for p in self.params}
        if len(kinds) != 1:
            raise ValueError(
                f"FlatGrads needs parameters on one device with one dtype, got {sorted(map(str, kinds))}"
            )
        ((device, dtype),) = kinds
        self.buffer = torch.zeros(sum(p.numel() for p in self.params), device=device, dtype=dtype)
        self.views: list[Tensor] = []
        offset = 0
        for p in self.params:
            view = self.buffer[offset : offset + p.numel()].view_as(p)
            if p.grad is not None:
                view.copy_(p.grad)
            p.grad = view
            self.views.append(view)
            offset += p.numel()

    @property
    def attached(self) -> bool:
        """Whether the parameters' ``.grad`` still live in the buffer (checks the ends: O(1))."""
        return all(
            p.grad is not None and p.grad.data_ptr() == v.data_ptr()
            for p, v in ((self.params[0], self.views[0]), (self.params[-1], self.views[-1]))
        )

    def zero_(self) -> None:
        """Zero every gradient in one op (and re-attach views dropped by ``set_to_none``)."""
        self.buffer.zero_()
        for p, v in zip(self.params, self.views, strict=True):
            if p.grad is None or p.grad.data_ptr() != v.data_ptr():
                p.grad = v

    def tensor_norms(self, norm_type: float = 2.0) -> list[Tensor]:
        """Per-parameter norms, read from the views (one foreach pass)."""
        return tensor_norms(self.views, norm_type)
