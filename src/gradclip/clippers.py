"""Clipper objects for torch: one call per step combines the norm pass, a threshold policy and the scaling.

A clipper is called with the parameters after ``backward()``, clips their gradients in place and
returns a :class:`ClipResult`: the pre-clip total norm, the threshold used, and 0-dim bool tensors
saying whether anything was clipped and whether the norm was finite. Three kinds:

* :class:`NormClipper`: global-norm clipping with any policy from :mod:`gradclip.policies`;
* :class:`ValueClipper`: element-wise clamping to ``[-c, c]``;
* :class:`AGC`: adaptive gradient clipping, unit-wise against the weight norm (Brock et al. 2021).

Non-finite gradients are never rescaled (``nonfinite='keep'``): the ``finite`` flag lets the caller
skip the step instead. On CUDA no clipper reads a value back to the host with a ``Fixed`` or
``ZScore`` policy (their state stays on the device); ``Percentile`` must sort past norms on the
host, which costs exactly one sync per step (reading the total norm).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from gradclip._validate import check_eps, check_norm_type, check_threshold
from gradclip.clip import clip_grad_value_, clip_grads_with_norm_
from gradclip.norms import collect_grads, norms_and_total
from gradclip.policies import Fixed, Policy

__all__ = ["AGC", "ClipResult", "Clipper", "NormClipper", "ValueClipper", "unitwise_norm"]

Params = Tensor | Iterable[Tensor]


class ClipResult(NamedTuple):
    """What one clipper call saw, as tensors (nothing read back to the host).

    ``total_norm``: pre-clip total norm, 0-dim float32 (the inf-norm for :class:`ValueClipper`);
    ``threshold``: the threshold used (a float, or a 0-dim tensor for device-side policies);
    ``clipped``/``finite``: 0-dim bool tensors; ``scale``: the global factor applied by
    :class:`NormClipper` (1 when not clipped), None for the other clippers; ``tensor_norms``: the
    per-tensor pre-clip norms from the same pass as the total, in input order.
    """

    total_norm: Tensor
    threshold: float | Tensor
    clipped: Tensor
    finite: Tensor
    scale: Tensor | None
    tensor_norms: list[Tensor]


class Clipper(Protocol):
    """Clips the gradients of ``parameters`` in place and reports what it did."""

    def __call__(self, parameters: Params) -> ClipResult: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None: ...


def _false(device: torch.device) -> Tensor:
    return torch.zeros((), dtype=torch.bool, device=device)


class NormClipper:
    """Global-norm clipping with a threshold policy: ``g <- g * min(1, c_t / (||g|| + eps))``.

    ``c_t = policy(||g||_t)`` (a float ``max_norm`` means :class:`~gradclip.policies.Fixed`). The
    norm is fed to the policy as a device tensor when the policy is ``sync_free`` and the gradients
    live off the CPU, and as a Python float otherwise (free on the CPU; the one sync of
    ``Percentile`` on CUDA). The update keeps its direction (Pascanu et al. 2013, arXiv:1211.5063).
    """

    def __init__(
        self,
        policy: Policy | float = 1.0,
        *,
        norm_type: float | str = 2.0,
        eps: float = 1e-6,
        foreach: bool | None = None,
        process_groups: Sequence = (),
    ) -> None:
        if not callable(policy):
            if isinstance(policy, bool) or not isinstance(policy, (int, float)):
                raise TypeError(
                    f"policy must be a threshold policy (Fixed, Percentile, ZScore) or a float max_norm, "
                    f"got {policy!r}"
                )
            policy = Fixed(check_threshold(policy, "policy"))
        self.policy = policy
        self.norm_type = check_norm_type(norm_type)
        self.eps = check_eps(eps)
        self.foreach = foreach
        self.process_groups = tuple(process_groups)  # extra groups for a global norm (distributed.py)

    def measure(self, parameters: Params) -> tuple[list[Tensor], ClipResult]:
        """Norms, threshold and scale, without touching the gradients (the fused optimizer path)."""
        grads = collect_grads(parameters)
        norms, total = norms_and_total(
            grads, self.norm_type, foreach=self.foreach, process_groups=self.process_groups
        )
        on_host = total.device.type == "cpu" or not getattr(self.policy, "sync_free", False)
        threshold = self.policy(float(total) if on_host else total)
        finite = torch.isfinite(total)
        scale = torch.clamp(threshold / (total + self.eps), max=1.0)
        scale = torch.where(finite, scale, torch.ones_like(scale))
        return grads, ClipResult(total, threshold, total > threshold, finite, scale, norms)

    def __call__(self, parameters: Params) -> ClipResult:
        grads, result = self.measure(parameters)
        if grads:
            clip_grads_with_norm_(
                grads, result.threshold, result.total_norm, self.foreach, eps=self.eps, nonfinite="keep"
            )
        return result

    def state_dict(self) -> dict[str, Any]:
        return {"clipper": "NormClipper", "policy": self.policy.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the policy's state; a state of another clipper or policy is refused, nothing changes."""
        _check_clipper_state(state_dict, "NormClipper", ("policy",))
        self.policy.load_state_dict(state_dict["policy"])

    def __repr__(self) -> str:
        return f"NormClipper({self.policy!r}, norm_type={self.norm_type}, eps={self.eps})"


class _Stateless:
    """The checkpoint interface of a clipper with nothing to remember between steps."""

    def state_dict(self) -> dict[str, Any]:
        return {"clipper": type(self).__name__}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Nothing to restore; only the state of the same clipper class is accepted."""
        _check_clipper_state(state_dict, type(self).__name__, ())


def _check_clipper_state(state_dict: object, kind: str, keys: tuple[str, ...]) -> None:
    """Refuse anything but a mapping saved by the clipper class ``kind`` (entries ``clipper`` + ``keys``)."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict must be a mapping saved by {kind}.state_dict(), got {type(state_dict).__name__}"
        )
    if set(state_dict) != {"clipper", *keys} or state_dict["clipper"] != kind:
        expected = sorted({"clipper", *keys})
        raise ValueError(f"state_dict {dict(state_dict)!r:.100} was not saved by a {kind} "
                         f"(expected entries {expected} with clipper={kind!r})")  # fmt: skip


class ValueClipper(_Stateless):
    """Clamp every gradient element to ``[-c, c]`` (changes the update's direction when it clips).

    ``total_norm`` in the result is the inf-norm ``max |g_ij|``, the quantity value clipping
    bounds, so ``clipped = total_norm > c`` comes from the same read pass. When that norm is not
    finite the elements are still clamped (NaN stays NaN); ``finite`` tells the caller to skip.
    """

    def __init__(self, clip_value: float, *, foreach: bool | None = None) -> None:
        self.clip_value = check_threshold(clip_value, "clip_value")
        self.foreach = foreach

    def __call__(self, parameters: Params) -> ClipResult:
        grads = collect_grads(parameters)
        norms, total = norms_and_total(grads, float("inf"), foreach=self.foreach)
        clip_grad_value_(grads, self.clip_value, self.foreach)
        c = self.clip_value
        return ClipResult(total, c, total > c, torch.isfinite(total), None, norms)

    def __repr__(self) -> str:
        return f"ValueClipper({self.clip_value})"


def unitwise_norm(x: Tensor) -> Tensor:
    """L2 norm of each unit of ``x`` in float32, shaped to broadcast against ``x``.

    A unit is one output row: torch stores weights as ``(out, in, *kernel)``, so the norm reduces
    over every dimension but the first (linear rows, conv filters). Vectors (biases, norm gains) and
    scalars are taken as a single unit, as in the paper's reference code.
    """
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x, 2, dtype=torch.float32)
    return torch.linalg.vector_norm(x, 2, dim=tuple(range(1, x.ndim)), keepdim=True, dtype=torch.float32)


class AGC(_Stateless):
    """Adaptive gradient clipping (Brock et al. 2021): each unit is clipped relative to its weight.

    For every unit ``i`` (see :func:`unitwise_norm`), with ``W*_i = max(||W_i||, eps)``:
    ``G_i <- G_i * min(1, clip_factor * W*_i / ||G_i||)``, i.e. the unit is rescaled to norm
    ``clip_factor * W*_i`` when ``||G_i|| / W*_i > clip_factor``. ``eps`` keeps zero-initialised
    weights (biases) from freezing. The paper does not clip the final classifier: pass its
    parameters as ``exclude`` (they still count in ``total_norm`` and ``finite``). Computed branch
    free on the device; on the CPU tensors with nothing to clip are not rewritten.

    ``threshold`` in the result is ``clip_factor``; ``clipped`` is True when any unit was clipped.

    References: A. Brock, S. De, S. L. Smith, K. Simonyan, "High-Performance Large-Scale Image
    Recognition Without Normalization", ICML 2021, arXiv:2102.06171.
    """

    def __init__(
        self, clip_factor: float = 0.01, *, eps: float = 1e-3, exclude: Iterable[Tensor] = ()
    ) -> None:
        self.clip_factor = check_threshold(clip_factor, "clip_factor")
        self.eps = check_eps(eps)
        excluded = list(exclude.parameters() if isinstance(exclude, torch.nn.Module) else exclude)
        for t in excluded:
            if not isinstance(t, Tensor):
                raise TypeError(f"exclude must hold parameters (tensors), got a {type(t).__name__}")
        self._excluded = excluded  # kept alive so that their ids stay theirs
        self._excluded_ids = {id(t) for t in excluded}

    def __call__(self, parameters: Params) -> ClipResult:
        params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
        pairs = [(p, p.grad) for p in params if p.grad is not None]
        grads = collect_grads([g for _, g in pairs])
        norms, total = norms_and_total(grads)
        finite = torch.isfinite(total)
        any_clipped = [_false(total.device)]
        for p, g in pairs:
            if id(p) in self._excluded_ids:
                continue
            limit = self.clip_factor * unitwise_norm(p.detach()).clamp(min=self.eps)
            g_norm = unitwise_norm(g)
            clipped = g_norm > limit
            any_clipped.append(clipped.any().to(total.device))
            if g.device.type == "cpu" and not bool(any_clipped[-1]):
                continue  # reading a CPU flag is free: skip the write pass
            scale = torch.clamp(limit / g_norm, max=1.0)  # ||G_i|| = 0 gives inf -> 1
            scale = torch.where(finite.to(g.device), scale, torch.ones_like(scale))
            g.mul_(scale)  # in float32, rounded once to the gradient's dtype
        clipped_any = torch.stack(any_clipped).any()
        return ClipResult(total, self.clip_factor, clipped_any, finite, None, norms)

    def __repr__(self) -> str:
        return f"AGC(clip_factor={self.clip_factor}, eps={self.eps}, excluded={len(self._excluded)})"
