"""Optimizer wrappers for torch: clip-and-step with non-finite skipping (ClipOptimizer), and Lookahead.

[`ClipOptimizer`][gradclip.optim.ClipOptimizer] makes ``step()`` clip the gradients with a clipper from
[`gradclip.clippers`][gradclip.clippers], then step the wrapped optimizer; a step whose gradient norm is
NaN/Inf is skipped (parameters and optimizer state untouched) and counted. With torch's fused Adam, AdamW or
SGD and a [`NormClipper`][gradclip.clippers.NormClipper], the clip factor and the skip flag go to the fused
kernel through the optimizer's ``grad_scale``/``found_inf`` inputs (the mechanism ``GradScaler``
uses): the gradients are divided by ``1/scale`` inside the update, so clipping adds no pass over the
gradients beyond the norm and no host sync. [`Lookahead`][gradclip.optim.Lookahead] keeps slow weights that
follow the fast ones every ``k`` steps. Both are thin: param groups and state are the wrapped optimizer's,
so pass ``wrapper.optimizer`` to an LR scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from torch import Tensor

from gradclip._state import check_int, check_keys, check_mapping, check_optimizer_state
from gradclip.clippers import Clipper
from gradclip.result import ClipResult
from gradclip.skip import SpikeSkip
from gradclip.step import ClipStep

__all__ = ["ClipOptimizer", "Lookahead"]


def _params(param_groups: list[dict[str, Any]]) -> list[Tensor]:
    return [p for group in param_groups for p in group["params"]]


class _Wrapper:
    """Shares the wrapped optimizer's param groups, state and ``zero_grad``."""

    optimizer: Any

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:
        return self.optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:
        return self.optimizer.defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)


class ClipOptimizer(_Wrapper):
    """Wrap ``optimizer`` so that ``step()`` is one [`ClipStep`][gradclip.step.ClipStep]: clip, then step or
    skip.

    Args:
        optimizer: any ``torch.optim.Optimizer`` (or a wrapper such as
            [`Lookahead`][gradclip.optim.Lookahead]).
        clipper: a clipper, a threshold policy, or a float ``max_norm`` (None / ``<= 0``: no clipping).
        skip_nonfinite: skip the step when the pre-clip norm is NaN/Inf (counted in
            [`skipped_steps`][gradclip.optim.ClipOptimizer.skipped_steps]); with False the optimizer steps on
            whatever the gradients hold.
        skip_spikes: a [`SpikeSkip`][gradclip.skip.SpikeSkip] to skip spikes too.
        fused: pass the clip through ``grad_scale``/``found_inf`` (None: whenever possible, i.e. a
            ``NormClipper`` and torch Adam/AdamW/SGD built with ``fused=True``; True: require it;
            False: never).

    Under ``torch.amp.GradScaler`` call ``scaler.step(clip_optimizer)``: the scaler unscales first
    and skips inf/NaN steps before this ``step()`` runs. Host syncs: the fused path has none;
    otherwise deciding a skip reads the ``finite`` flag (free on the CPU, one sync on CUDA).

    Examples:
        >>> import torch, gradclip
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = gradclip.ClipOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), gradclip.ZScore())
        >>> for _ in range(3):
        ...     opt.zero_grad()
        ...     model(torch.randn(8, 4)).pow(2).mean().backward()
        ...     opt.step()  # clip, then step
        >>> _ = model.weight.grad.fill_(float("nan"))  # a bad batch
        >>> before = model.weight.detach().clone()
        >>> opt.step()  # skipped: the weights and the optimizer state stay as they were
        >>> opt.skipped_steps, torch.equal(model.weight, before), bool(opt.last_result.finite)
        (1, True, False)
    """

    def __init__(
        self,
        optimizer: Any,
        clipper: Clipper | float | None = 1.0,
        *,
        skip_nonfinite: bool = True,
        skip_spikes: SpikeSkip | None = None,
        fused: bool | None = None,
    ) -> None:
        if not hasattr(optimizer, "step") or not hasattr(optimizer, "param_groups"):
            raise TypeError(f"optimizer must be a torch optimizer, got {type(optimizer).__name__}")
        if not (fused is None or isinstance(fused, bool)):
            raise ValueError(f"fused must be None, True or False, got {fused!r:.60}")
        self.optimizer = optimizer
        self.clip_step = ClipStep(clipper, skip_nonfinite=skip_nonfinite, skip_spikes=skip_spikes)
        can_fuse = self.clip_step.fuses(optimizer)
        if fused and not can_fuse:
            raise ValueError(
                "fused=True needs a NormClipper and torch.optim Adam, AdamW or SGD built with fused=True; "
                f"got {type(self.clip_step.clipper).__name__} and {type(optimizer).__name__}"
            )
        self.fused = can_fuse if fused is None else fused

    @property
    def clipper(self) -> Clipper | None:
        return self.clip_step.clipper

    @property
    def skip_nonfinite(self) -> bool:
        return self.clip_step.skip_nonfinite

    @property
    def last_result(self) -> ClipResult[Tensor, Tensor] | None:
        return self.clip_step.last

    @property
    def skipped_steps(self) -> int:
        """Steps skipped for a non-finite norm (reading it syncs once on CUDA)."""
        return self.clip_step.skipped_steps

    @property
    def spike_skips(self) -> int:
        return self.clip_step.spike_skips

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Clip the gradients, then step (or skip); returns the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.clip_step.step(self.optimizer, fused=self.fused)
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state and the step's (clipper, spike rule, counters)."""
        return {"optimizer": self.optimizer.state_dict(), "clip_step": self.clip_step.state_dict()}

    def check_state_dict(self, state_dict: object) -> None:
        """Raise TypeError/ValueError unless ``state_dict`` came from a compatible ``ClipOptimizer``."""
        state = check_mapping(state_dict, "ClipOptimizer state_dict")
        check_keys(state, ("optimizer", "clip_step"), "ClipOptimizer state_dict")
        check_optimizer_state(self.optimizer, state["optimizer"], "ClipOptimizer state_dict['optimizer']")

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore [`state_dict`][gradclip.optim.ClipOptimizer.state_dict]: everything checked first; a late
        failure restores the step."""
        self.check_state_dict(state_dict)
        before = self.clip_step.state_dict()
        self.clip_step.load_state_dict(state_dict["clip_step"])
        try:
            self.optimizer.load_state_dict(state_dict["optimizer"])
        except Exception:
            self.clip_step.load_state_dict(before)
            raise

    def __repr__(self) -> str:
        return f"ClipOptimizer({type(self.optimizer).__name__}, {self.clipper!r}, fused={self.fused})"


def _by_device(tensors: list[Tensor], others: list[Tensor]) -> list[tuple[list[Tensor], list[Tensor]]]:
    groups: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[Tensor]]] = {}
    for a, b in zip(tensors, others, strict=True):
        pair = groups.setdefault((a.device, a.dtype), ([], []))
        pair[0].append(a)
        pair[1].append(b)
    return list(groups.values())


class Lookahead(_Wrapper):
    """Lookahead (Zhang et al. 2019): every ``k`` steps ``phi += alpha (theta - phi)``; ``theta <- phi``.

    The fast weights ``theta`` are the parameters, updated by the wrapped optimizer; the slow
    weights ``phi`` start as a copy of the parameters at the first step. The inner optimizer's state
    is kept across synchronisations. Every call to [`step`][gradclip.optim.Lookahead.step] counts as an inner
    step, also one a wrapped [`ClipOptimizer`][gradclip.optim.ClipOptimizer] skipped (its parameters did not
    move, so the sync is still exact maths, only one step earlier). Composable both ways:
    ``Lookahead(ClipOptimizer(opt))`` clips the fast steps; ``ClipOptimizer(Lookahead(opt))`` also skips the
    counting on non-finite steps.

    References: M. R. Zhang, J. Lucas, G. Hinton, J. Ba, "Lookahead Optimizer: k steps forward, 1 step
    back", NeurIPS 2019, arXiv:1907.08610.

    Examples:
        >>> import torch, gradclip
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = gradclip.Lookahead(torch.optim.SGD([w], lr=0.1), k=2, alpha=0.5)
        >>> for _ in range(2):
        ...     opt.zero_grad()
        ...     w.sum().backward()  # gradient 1: each fast step subtracts 0.1
        ...     opt.step()
        >>> round(w.item(), 4)  # after k=2 fast steps (1.0 -> 0.8), half-way back towards the slow 1.0
        0.9
    """

    def __init__(self, optimizer: Any, k: int = 5, alpha: float = 0.5) -> None:
        if not hasattr(optimizer, "step") or not hasattr(optimizer, "param_groups"):
            raise TypeError(f"optimizer must be a torch optimizer, got {type(optimizer).__name__}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
            raise ValueError(f"alpha must be a real number in (0, 1], got {alpha!r}")
        self.optimizer, self.k, self.alpha = optimizer, k, float(alpha)
        self.steps = 0
        self.slow: list[Tensor] | None = None

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One fast step of the wrapped optimizer; every ``k``-th also synchronises the weights."""
        params = _params(self.param_groups)
        if self.slow is None:
            self.slow = [p.detach().clone() for p in params]
        loss = self.optimizer.step(closure)
        self.steps += 1
        if self.steps % self.k == 0:
            for slow, fast in _by_device(self.slow, params):
                torch._foreach_lerp_(slow, fast, self.alpha)  # phi += alpha * (theta - phi)
                torch._foreach_copy_(fast, slow)
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state, the step count and the slow weights."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "lookahead": {"k": self.k, "alpha": self.alpha, "steps": self.steps, "slow": self.slow},
        }

    def check_state_dict(self, state_dict: object) -> None:
        """Raise TypeError/ValueError unless ``state_dict`` came from a ``Lookahead`` like this one."""
        state = check_mapping(state_dict, "Lookahead state_dict")
        check_keys(state, ("optimizer", "lookahead"), "Lookahead state_dict")
        own = check_mapping(state["lookahead"], "Lookahead state_dict['lookahead']")
        check_keys(own, ("k", "alpha", "steps", "slow"), "Lookahead state_dict['lookahead']")
        if (own["k"], own["alpha"]) != (self.k, self.alpha):
            raise ValueError(
                f"state_dict has k={own['k']!r}, alpha={own['alpha']!r}; this Lookahead has "
                f"k={self.k!r}, alpha={self.alpha!r}"
            )
        check_int(own["steps"], "Lookahead state_dict['lookahead']['steps']")
        params, slow = _params(self.param_groups), own["slow"]
        if slow is not None:
            if not isinstance(slow, (list, tuple)) or len(slow) != len(params):
                n = len(slow) if isinstance(slow, (list, tuple)) else type(slow).__name__
                raise ValueError(f"state_dict holds {n} slow weights for {len(params)} parameters")
            for i, (s, p) in enumerate(zip(slow, params, strict=True)):
                if not isinstance(s, Tensor) or s.shape != p.shape:
                    shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                    raise ValueError(
                        f"state_dict slow weight {i} has shape {shape}, its parameter {tuple(p.shape)}"
                    )
        check_optimizer_state(self.optimizer, state["optimizer"], "Lookahead state_dict['optimizer']")

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore [`state_dict`][gradclip.optim.Lookahead.state_dict]; everything is checked before anything
        changes."""
        self.check_state_dict(state_dict)
        own = state_dict["lookahead"]
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self.steps = int(own["steps"])
        params, slow = _params(self.param_groups), own["slow"]
        self.slow = None if slow is None else [s.to(p).clone() for s, p in zip(slow, params, strict=True)]

    def __repr__(self) -> str:
        return f"Lookahead({type(self.optimizer).__name__}, k={self.k}, alpha={self.alpha})"
