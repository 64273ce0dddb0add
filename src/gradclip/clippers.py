"""Clipping rules for torch: how each kind of clipping measures the gradients and rescales them.

A clipper does not clip on its own: [`gradclip.step.ClipStep`][gradclip.step.ClipStep] drives it, so that the
threshold, the skip decision and the result are decided in one place for every loop. Each clipper gives the
step three things: `measure` (the norm pass), [`propose`][gradclip.clippers.NormClipper.propose]/`commit` (the
threshold, and the policy state kept only when the step is not skipped) and `apply_` (the in-place
rescaling, returning the factor applied and the post-clip norm derived from it). Three kinds:

* [`NormClipper`][gradclip.clippers.NormClipper]: global-norm clipping with any policy from
  [`gradclip.policies`][gradclip.policies];
* [`ValueClipper`][gradclip.clippers.ValueClipper]: element-wise clamping to ``[-c, c]``;
* [`AGC`][gradclip.clippers.AGC]: adaptive gradient clipping, unit-wise against the weight norm (Brock et al.
  2021).

Non-finite gradients are never rescaled: the step skips them. On CUDA nothing is read back to the
host with a ``Fixed`` or ``ZScore`` policy (their state stays on the device); ``Percentile`` must
sort past norms on the host, which costs exactly one sync per step (reading the total norm).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, cast

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from torch import Tensor

from gradclip._validate import check_eps, check_flag, check_norm_type, check_threshold
from gradclip.clip import clip_factor, clip_grad_value_, eager_cpu, scale_grads_
from gradclip.distributed import check_process_groups
from gradclip.norms import collect_grads, norm_rows_and_total, param_grad_pairs, param_list
from gradclip.policies import Fixed, Policy
from gradclip.result import ClipResult

__all__ = [
    "AGC",
    "ClipResult",
    "Clipper",
    "Measured",
    "NormClipper",
    "ValueClipper",
    "measure_grads",
    "unitwise_norm",
]

Params = Tensor | Iterable[Tensor]


class Measured(NamedTuple):
    """One norm pass: the gradients, their per-tensor norms and the total (true, unscaled norms).

    Examples:
        >>> import torch
        >>> from gradclip.clippers import NormClipper
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> w.grad = torch.tensor([3.0, 4.0])
        >>> m = NormClipper(1.0).measure([w])
        >>> m.total, m.tensor_norms, m.grads[0] is w.grad
        (tensor(5.), [tensor(5.)], True)
    """

    params: list[Tensor]
    grads: list[Tensor]
    tensor_norms: Sequence[Tensor]
    total: Tensor
    host: float | None = None  # the total read as a float once, on the eager CPU path (free there)


class Clipper(Protocol):
    """A clipping rule driven by [`gradclip.step.ClipStep`][gradclip.step.ClipStep].

    Examples:
        >>> import torch
        >>> from gradclip.clippers import Clipper, NormClipper
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> w.grad = torch.tensor([3.0, 4.0])
        >>> clipper: Clipper = NormClipper(1.0)
        >>> m = clipper.measure([w])  # what a ClipStep does with its clipper, each step:
        >>> threshold, pending = clipper.propose(m.total)
        >>> clipper.commit(pending)  # a skipped step does not commit: the policy keeps its state
        >>> scale, post, clipped = clipper.apply_(m, threshold, None)
        >>> w.grad, bool(clipped)
        (tensor([0.6000, 0.8000]), True)
    """

    def measure(self, parameters: Params, grad_scale: Tensor | None = None) -> Measured: ...
    def propose(self, total: Tensor | float) -> tuple[float | Tensor, Any]: ...
    def commit(self, pending: Any) -> None: ...
    def commit_where(self, keep: Tensor, pending: Any) -> None: ...
    def apply_(
        self, m: Measured, threshold: float | Tensor, grad_scale: Tensor | None, keep: Tensor | None = None
    ) -> tuple[Tensor | None, Tensor, Tensor]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None: ...


_CPU_CONSTANTS: dict[tuple[object, torch.dtype], Tensor] = {}


def cpu_constant(value: bool | float, dtype: torch.dtype) -> Tensor:
    """A shared, read-only 0-dim CPU tensor (the flags and unit factors of a result).

    Making a tensor costs microseconds, the whole budget of a small model's clip: the CPU step reuses
    these instead. Results hold them: do not modify a result's tensors in place.
    """
    key = (value, dtype)
    t = _CPU_CONSTANTS.get(key)
    if t is None:
        t = _CPU_CONSTANTS[key] = torch.tensor(value, dtype=dtype)
    return t


def measure_grads(
    parameters: Params, norm_type: float, grad_scale: Tensor | None, foreach: bool | None, groups: Sequence
) -> Measured:
    """One read pass: per-tensor norms and the total, divided by ``grad_scale`` (a loss scale) if given.

    Examples:
        >>> import torch
        >>> from gradclip.clippers import measure_grads
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> w.grad = torch.tensor([300.0, 400.0])  # still multiplied by a loss scale of 100
        >>> measure_grads([w], 2.0, torch.tensor(100.0), None, ()).total  # the true norm
        tensor(5.)
    """
    params = param_list(parameters)
    if grad_scale is not None and not (isinstance(grad_scale, Tensor) and grad_scale.numel() == 1):
        raise TypeError(
            f"grad_scale must be a one-element tensor (a loss scale) or None, got {grad_scale!r:.40}"
        )
    grads = collect_grads(params)
    norms, total = norm_rows_and_total(grads, norm_type, foreach=foreach, process_groups=groups)
    if grad_scale is not None:  # the gradients still carry the loss scale: measure true norms
        inv = torch.reciprocal(grad_scale.to(total.device, total.dtype))
        norms, total = [n * inv.to(n.device, n.dtype) for n in norms], total * inv
    return Measured(params, grads, norms, total, float(total) if eager_cpu(total) else None)


def _false(device: torch.device) -> Tensor:
    return torch.zeros((), dtype=torch.bool, device=device)


def _unscale_(grads: list[Tensor], grad_scale: Tensor | None, foreach: bool | None) -> None:
    if grad_scale is not None and grads:
        scale_grads_(grads, torch.reciprocal(grad_scale.float()), foreach)


class NormClipper:
    """Global-norm clipping with a threshold policy: ``g <- g * min(1, c_t / (||g|| + eps))``.

    ``c_t = policy(||g||_t)`` (a float ``max_norm`` means [`Fixed`][gradclip.policies.Fixed]). The
    norm is fed to the policy as a device tensor when the policy is ``sync_free`` and the gradients
    live off the CPU, and as a Python float otherwise (free on the CPU; the one sync of
    ``Percentile`` on CUDA). The update keeps its direction (Pascanu et al. 2013, arXiv:1211.5063).

    Examples:
        >>> import torch, gradclip
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> w.grad = torch.tensor([3.0, 4.0])
        >>> step = gradclip.ClipStep(gradclip.NormClipper(2.0))  # or NormClipper(gradclip.ZScore())
        >>> result = step.clip_([w])
        >>> w.grad, round(result.post_clip_norm.item(), 4)
        (tensor([1.2000, 1.6000]), 2.0)
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
        if not callable(getattr(policy, "propose", None)):
            if isinstance(policy, bool) or not isinstance(policy, (int, float)):
                raise TypeError(
                    "policy must be a threshold policy (Fixed, Percentile, ZScore, or an object with "
                    f"propose/commit) or a float max_norm, got {policy!r:.60}"
                )
            policy = Fixed(check_threshold(policy, "policy"))
        self.policy = cast(Policy, policy)  # a number became Fixed above
        self.norm_type = check_norm_type(norm_type)
        self.eps = check_eps(eps)
        self.foreach = check_flag(foreach, "foreach", optional=True)
        check_process_groups(process_groups)
        self.process_groups = tuple(process_groups)  # extra groups for a global norm (distributed.py)

    def measure(self, parameters: Params, grad_scale: Tensor | None = None) -> Measured:
        """The norm pass: per-tensor norms and the total, divided by ``grad_scale`` when given."""
        return measure_grads(parameters, self.norm_type, grad_scale, self.foreach, self.process_groups)

    def propose(self, total: Tensor | float) -> tuple[float | Tensor, Any]:
        """This step's threshold from the policy, and the policy state to keep if the step goes on.

        ``total`` is the pre-clip norm, a 0-dim tensor or the float already read from one.

        Under ``torch.compile`` the norm always goes to the policy as a float64 tensor (no host read; the
        precision of the eager path's host floats), and the threshold comes back in the norm's dtype.
        """
        if not isinstance(total, Tensor):
            return self.policy.propose(total)
        if torch.compiler.is_compiling():
            config = getattr(self.policy, "config", {})
            if getattr(self.policy, "kind", None) == "percentile" and config.get("window") is None:
                raise ValueError(
                    "Percentile(window=None) keeps its growing history on the host and cannot run under "
                    "torch.compile; give it a bounded window (e.g. window=1000)"
                )
            # The statistics in float64, as the host floats of the eager path (0-dim: no cost).
            wide = total if total.device.type == "mps" else total.double()
            threshold, pending = self.policy.propose(wide)
            return (threshold.to(total.dtype) if isinstance(threshold, Tensor) else threshold), pending
        on_host = total.device.type == "cpu" or not getattr(self.policy, "sync_free", False)
        return self.policy.propose(float(total) if on_host else total)

    def commit(self, pending: Any) -> None:
        self.policy.commit(pending)

    def commit_where(self, keep: Tensor, pending: Any) -> None:
        """Keep the policy's new state where the tensor flag ``keep`` holds, else the old one (no branch).

        A policy without ``commit_where`` keeps the new state whatever ``keep`` says.
        """
        commit_where = getattr(self.policy, "commit_where", None)
        if commit_where is None:
            self.policy.commit(pending)
        else:
            commit_where(keep, pending)

    def factor(self, total: Tensor, threshold: float | Tensor) -> Tensor:
        """``min(1, c / (||g|| + eps))``, 1 for a non-finite norm (see
        [`gradclip.clip.clip_factor`][gradclip.clip.clip_factor])."""
        return clip_factor(threshold, total, self.eps, "keep")

    def apply_(
        self, m: Measured, threshold: float | Tensor, grad_scale: Tensor | None, keep: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Rescale in place; return (factor, post-clip norm ``total * factor``, clipped).

        ``keep``: a 0-dim bool tensor, False for a step being skipped (factor 1: nothing rescaled), for
        a caller that decides the skip without a branch (a compiled step).
        """
        if keep is None and eager_cpu(m.total) and not isinstance(threshold, Tensor):
            return self._apply_cpu_(m, float(threshold), grad_scale)
        scale = self.factor(m.total, threshold)
        clipped = (m.total > threshold) & torch.isfinite(m.total)
        if keep is not None:
            scale, clipped = torch.where(keep, scale, torch.ones_like(scale)), clipped & keep
        if m.grads:
            applied = scale if grad_scale is None else scale / grad_scale.to(scale.device, scale.dtype)
            scale_grads_(m.grads, applied, self.foreach)
        return scale, m.total * scale, clipped

    def _apply_cpu_(self, m: Measured, c: float, grad_scale: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """The same maths with the CPU scalars read once: no tensor is made on an unclipped step.

        The factor is computed once, ``min(1, c / (||g|| + eps))`` rounded to the norm's dtype, and that
        one tensor is both multiplied into the gradients and reported (1 for a non-finite norm).
        """
        t = float(m.total) if m.host is None else m.host
        finite = math.isfinite(t)
        scale_f = min(c / (t + self.eps), 1.0) if finite and t > c else 1.0
        dtype = m.total.dtype
        if scale_f == 1.0 and grad_scale is None:
            return cpu_constant(1.0, dtype), m.total, cpu_constant(finite and t > c, torch.bool)
        scale = torch.scalar_tensor(scale_f, dtype=dtype)
        if grad_scale is None and self.foreach is not False and all(g.is_cpu for g in m.grads):
            torch._foreach_mul_(m.grads, scale)  # the common CPU case, without grouping by device
        elif m.grads:
            applied = scale if grad_scale is None else scale / grad_scale.to(scale.device, scale.dtype)
            scale_grads_(m.grads, applied, self.foreach)
        return scale, m.total * scale, cpu_constant(finite and t > c, torch.bool)

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

    def commit(self, pending: Any) -> None:
        pass

    def commit_where(self, keep: Tensor, pending: Any) -> None:
        pass

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

    Examples:
        >>> import torch, gradclip
        >>> w = torch.nn.Parameter(torch.zeros(3))
        >>> w.grad = torch.tensor([-3.0, 0.5, 2.0])
        >>> result = gradclip.ClipStep(gradclip.ValueClipper(1.0)).clip_([w])
        >>> w.grad, result.total_norm, result.scale  # the inf-norm; no single scale factor
        (tensor([-1.0000,  0.5000,  1.0000]), tensor(3.), None)
    """

    def __init__(self, clip_value: float, *, foreach: bool | None = None) -> None:
        self.clip_value = check_threshold(clip_value, "clip_value")
        self.foreach = check_flag(foreach, "foreach", optional=True)

    def measure(self, parameters: Params, grad_scale: Tensor | None = None) -> Measured:
        """The inf-norm pass (the quantity value clipping bounds)."""
        return measure_grads(parameters, float("inf"), grad_scale, self.foreach, ())

    def propose(self, total: Tensor | float) -> tuple[float, None]:
        return self.clip_value, None

    def apply_(
        self, m: Measured, threshold: float | Tensor, grad_scale: Tensor | None, keep: Tensor | None = None
    ) -> tuple[None, Tensor, Tensor]:
        """Clamp in place; return (None, post-clip inf-norm ``min(total, c)``, clipped).

        ``keep``: a 0-dim bool tensor, False for a step being skipped (nothing clamped).
        """
        c = self.clip_value
        clipped = m.total > c
        _unscale_(m.grads, grad_scale, self.foreach)
        if keep is not None:  # branch free: the bound is inf on a skipped step
            bound = torch.where(keep, c, math.inf).to(m.total)
            for g in m.grads:
                b = bound.to(g.device, g.dtype)
                g.clamp_(-b, b)
            return None, torch.where(keep, torch.clamp(m.total, max=c), m.total), clipped & keep
        if m.grads and (not eager_cpu(m.total) or bool(clipped)):  # a CPU flag is free to read
            clip_grad_value_(m.grads, c, self.foreach)
        return None, torch.clamp(m.total, max=c), clipped

    def __repr__(self) -> str:
        return f"ValueClipper({self.clip_value})"


def unitwise_norm(x: Tensor) -> Tensor:
    """L2 norm of each unit of ``x``, accumulated in float32 at least (float64 stays float64),
    shaped to broadcast against ``x``.

    A unit is one output row: torch stores weights as ``(out, in, *kernel)``, so the norm reduces
    over every dimension but the first (linear rows, conv filters). Vectors (biases, norm gains) and
    scalars are taken as a single unit, as in the paper's reference code.

    Examples:
        >>> import torch
        >>> from gradclip.clippers import unitwise_norm
        >>> unitwise_norm(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))  # one norm per output row
        tensor([[5.],
                [1.]])
        >>> unitwise_norm(torch.tensor([3.0, 4.0]))  # a vector is one unit
        tensor(5.)
    """
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32  # torch refuses to narrow
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x, 2, dtype=acc)
    return torch.linalg.vector_norm(x, 2, dim=tuple(range(1, x.ndim)), keepdim=True, dtype=acc)


class AGC(_Stateless):
    """Adaptive gradient clipping (Brock et al. 2021): each unit is clipped relative to its weight.

    For every unit ``i`` (see [`unitwise_norm`][gradclip.clippers.unitwise_norm]), with
    ``W*_i = max(||W_i||, eps)``: ``G_i <- G_i * min(1, clip_factor * W*_i / ||G_i||)``, i.e. the unit is
    rescaled to norm ``clip_factor * W*_i`` when ``||G_i|| / W*_i > clip_factor``. ``eps`` keeps
    zero-initialised weights (biases) from freezing. The paper does not clip the final classifier: pass its
    parameters as ``exclude`` (they still count in ``total_norm`` and ``finite``). Computed branch
    free on the device; on the CPU tensors with nothing to clip are not rewritten.

    ``threshold`` in the result is ``clip_factor``; ``clipped`` is True when any unit was clipped.
    Any float dtype works (fp16/bf16 norms accumulate in float32, float64 in float64; the scaled
    gradient keeps its dtype). It needs the parameters: gradient tensors alone raise ``TypeError``.

    References: A. Brock, S. De, S. L. Smith, K. Simonyan, "High-Performance Large-Scale Image
    Recognition Without Normalization", ICML 2021, arXiv:2102.06171.

    Examples:
        >>> import torch, gradclip
        >>> layer = torch.nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.eye(2))
        >>> layer.weight.grad = torch.tensor([[1.0, 0.0], [0.0, 0.001]])
        >>> layer.bias.grad = torch.zeros(2)
        >>> result = gradclip.ClipStep(gradclip.AGC(0.01)).clip_(layer.parameters())
        >>> layer.weight.grad  # row 0: ||G|| = 1 > 0.01 * ||W|| = 0.01, rescaled; row 1 is within
        tensor([[0.0100, 0.0000],
                [0.0000, 0.0010]])
    """

    def __init__(
        self, clip_factor: float = 0.01, *, eps: float = 1e-3, exclude: Iterable[Tensor] = ()
    ) -> None:
        self.clip_factor = check_threshold(clip_factor, "clip_factor")
        self.eps = check_eps(eps)
        excluded = param_list(
            exclude.parameters() if isinstance(exclude, torch.nn.Module) else exclude, "exclude"
        )
        for t in excluded:
            if not isinstance(t, Tensor):
                raise TypeError(f"exclude must hold parameters (tensors), got a {type(t).__name__}")
        self._excluded = excluded  # kept alive so that their ids stay theirs
        self._excluded_ids = {id(t) for t in excluded}

    def measure(self, parameters: Params, grad_scale: Tensor | None = None) -> Measured:
        """The global 2-norm pass (what the step's finite flag and the monitor read).

        The weights are needed: gradient tensors alone raise ``TypeError``; each parameter counts once.
        """
        pairs = param_grad_pairs(parameters, who="AGC")
        return measure_grads([p for p, _ in pairs], 2.0, grad_scale, None, ())

    def propose(self, total: Tensor | float) -> tuple[float, None]:
        return self.clip_factor, None

    def apply_(
        self, m: Measured, threshold: float | Tensor, grad_scale: Tensor | None, keep: Tensor | None = None
    ) -> tuple[None, Tensor, Tensor]:
        """Clip unit-wise in place; return (None, post-clip 2-norm, any unit clipped).

        The post-clip norm comes from the unit norms and the factors applied to them:
        ``sqrt(sum_i (s_i ||G_i||)^2)``, no second pass over the gradients. ``keep``: a 0-dim bool
        tensor, False for a step being skipped (nothing rescaled).
        """
        _unscale_(m.grads, grad_scale, None)
        total = m.total
        rescale = torch.isfinite(total) if keep is None else torch.isfinite(total) & keep
        any_clipped = [_false(total.device)]
        post_sq = [torch.zeros((), dtype=torch.float32, device=total.device)]
        for p in m.params:  # each parameter once (measure dropped repeats)
            g = p.grad
            if g is None:
                continue
            g_norm = unitwise_norm(g)
            if id(p) in self._excluded_ids:
                post_sq.append(g_norm.square().sum().to(total.device))
                continue
            limit = self.clip_factor * unitwise_norm(p.detach()).clamp(min=self.eps)
            clipped = g_norm > limit
            any_clipped.append((clipped.any() & rescale.to(g.device)).to(total.device))
            if eager_cpu(g) and not bool(any_clipped[-1]):
                post_sq.append(g_norm.square().sum().to(total.device))
                continue  # reading a CPU flag is free: skip the write pass
            scale = torch.clamp(limit / g_norm, max=1.0)  # ||G_i|| = 0 gives inf -> 1
            scale = torch.where(rescale.to(g.device), scale, torch.ones_like(scale))
            g.mul_(scale)  # in float32, rounded once to the gradient's dtype
            post_sq.append((scale * g_norm).square().sum().to(total.device))
        post = torch.stack(post_sq).sum().sqrt().to(total.dtype)
        return None, post, torch.stack(any_clipped).any()

    def __repr__(self) -> str:
        return f"AGC(clip_factor={self.clip_factor}, eps={self.eps}, excluded={len(self._excluded)})"
