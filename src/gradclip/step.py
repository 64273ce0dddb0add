"""The clipped step: the one object every loop composes to clip, skip and report a training step.

A [`ClipStep`][gradclip.step.ClipStep] is called once per optimizer step, after ``backward()``. In that order
it runs the clipper's norm pass (true norms: a loss scale the gradients still carry is divided out), asks the
threshold policy for this step's threshold, decides whether the update is skipped
([`gradclip.skip`][gradclip.skip]: a NaN/Inf norm, optionally a spike), rescales the gradients unless the step
is skipped, keeps the policy's new state only when it is not, and returns one
[`ClipResult`][gradclip.result.ClipResult]. Three ways to drive it, one rule for all:

* [`ClipStep.step`][gradclip.step.ClipStep.step] runs the whole step for a loop that owns it
  (``ClipOptimizer``, the trainers): clip, then the optimizer (torch's fused Adam/AdamW/SGD get the factor and
  the skip flag through their ``grad_scale``/``found_inf`` inputs, so nothing is read back to the host), or
  nothing at all; a ``torch.amp.GradScaler`` is unscaled first, stepped and updated;
* [`ClipStep.attach`][gradclip.step.ClipStep.attach] clips from an optimizer step pre-hook, for loops and
  frameworks that call ``optimizer.step()`` themselves; a skipped step drops the gradients (``.grad = None``),
  which torch optimizers honour by leaving parameters and state untouched;
* [`ClipStep.clip_`][gradclip.step.ClipStep.clip_] clips and reports, dropping the gradients of a skipped step
  the same way.

Host reads: on the CPU none cost anything. On CUDA, a fixed or z-score threshold with the fused path
reads nothing back; deciding a skip for an unfused optimizer, a ``Percentile`` threshold and spike
skipping each read the norm once per step.

Under ``torch.compile`` the step takes a branch-free path instead (`ClipStep._run_branch_free`): the policy
gets the norm as a tensor, the skip is a tensor flag that selects the policy's and the spike rule's next
state and the factor (1 on a skipped step), and the counters and the clip-rate window become tensors, so
``clip_`` compiles with ``fullgraph=True`` and the number of graphs does not depend on the norms. Two
things differ from eager there: ``clip_`` cannot drop the gradients of a skipped step (that needs a
branch), so it zeroes them in place (NaN/Inf never reach a following ``optimizer.step()``, but an
optimizer with momentum or weight decay still moves: use ``step(optimizer)`` for a true skip); and
``step(optimizer)`` reads the skip flag before an unfused optimizer's step, a graph break that falls
where torch's ``Optimizer.step`` breaks the graph anyway (a fused optimizer gets the flag as
``found_inf`` instead).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from torch import Tensor

from gradclip._validate import check_flag, check_off_or_threshold
from gradclip.clippers import Clipper, Measured, NormClipper, cpu_constant, measure_grads
from gradclip.norms import param_list
from gradclip.policies import Fixed, push_newest, ring_of
from gradclip.result import ClipResult
from gradclip.skip import SpikeSkip, check_recent, check_step_options, decide, load_all_or_nothing

__all__ = ["METRICS", "ClipStep", "as_clipper"]

# The logged fields of a step, in the order integrations write them (one tag scheme: gradclip/...).
METRICS = (
    "gradclip/pre_clip_norm",
    "gradclip/post_clip_norm",
    "gradclip/threshold",
    "gradclip/clip_rate",
    "gradclip/skipped_steps",
    "gradclip/spike_skips",
)

_FUSED_TYPES = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


def as_clipper(clipper: Any) -> Clipper | None:
    """A clipper from what a user passes: a clipper, a threshold policy, a float ``max_norm``, or off.

    ``None`` and numbers ``<= 0`` turn clipping off (the seed sandboxes' rule, ``check_off_or_threshold``);
    a number ``> 0`` is ``NormClipper(Fixed(c))``; a policy is ``NormClipper(policy)``.

    Examples:
        >>> import gradclip
        >>> from gradclip.step import as_clipper
        >>> as_clipper(1.0)
        NormClipper(Fixed(max_norm=1.0), norm_type=2.0, eps=1e-06)
        >>> as_clipper(gradclip.ZScore(warmup=10)).policy
        ZScore(alpha=0.97, z_thresh=2.5, warmup=10, ...)
        >>> as_clipper(0) is None  # 0 (or None) turns clipping off
        True
    """
    if clipper is None:
        return None
    if callable(getattr(clipper, "apply_", None)) and callable(getattr(clipper, "measure", None)):
        return clipper
    if callable(getattr(clipper, "propose", None)):
        return NormClipper(clipper)
    if isinstance(clipper, bool) or not isinstance(clipper, (int, float)):
        raise TypeError(
            "clipper must be a gradclip clipper (NormClipper, ValueClipper, AGC), a threshold policy "
            f"(Fixed, Percentile, ZScore), a float max_norm, or None for no clipping; got {clipper!r}"
        )
    c = check_off_or_threshold(clipper, "clipper as a max_norm", "a real number (<= 0 or None: off)")
    return None if c is None else NormClipper(Fixed(c))


def _flag(value: bool, device: torch.device) -> Tensor:
    return cpu_constant(value, torch.bool) if device.type == "cpu" else torch.tensor(value, device=device)


def _params_of(optimizer: Any) -> list[Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _fused(optimizer: Any) -> bool:
    """torch Adam/AdamW/SGD built with ``fused=True`` (they take ``grad_scale``/``found_inf``)."""
    groups = getattr(optimizer, "param_groups", ())
    return isinstance(optimizer, _FUSED_TYPES) and bool(groups) and all(g.get("fused") for g in groups)


def _first_fused_sgd_step(optimizer: Any) -> bool:
    """torch's fused SGD fills the momentum buffers of a skipped first step with garbage."""
    return isinstance(optimizer, torch.optim.SGD) and any(
        g["momentum"] != 0 and "momentum_buffer" not in optimizer.state.get(p, {})
        for g in optimizer.param_groups
        for p in g["params"]
        if p.grad is not None
    )


class ClipStep:
    """Clip, decide the skip, and report one training step; the same object for every loop.

    Args:
        clipper: a clipper (``NormClipper(ZScore())``, ``ValueClipper(c)``, ``AGC(f)``), a threshold
            policy, a float ``max_norm``, or None / a number ``<= 0`` for no clipping (the step still
            measures, reports and skips non-finite steps).
        skip_nonfinite: skip the update when the pre-clip norm is NaN/Inf (the default everywhere);
            False steps on whatever the gradients hold.
        skip_spikes: a [`SpikeSkip`][gradclip.skip.SpikeSkip] to also skip spikes, or None.
        rate_window: the clip rate is the fraction of clipped steps among the last ``rate_window``.

    Examples:
        >>> import torch, gradclip
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> step = gradclip.ClipStep(1.0)
        >>> model(torch.randn(8, 4)).pow(2).sum().mul(1e4).backward()
        >>> result = step.step(opt)
        >>> bool(result.clipped), float(result.post_clip_norm) <= 1.0
        (True, True)
    """

    def __init__(
        self,
        clipper: Any = 1.0,
        *,
        skip_nonfinite: bool = True,
        skip_spikes: SpikeSkip | None = None,
        rate_window: int = 100,
    ) -> None:
        self.clipper = as_clipper(clipper)
        check_step_options(skip_nonfinite, skip_spikes, rate_window)
        self.skip_nonfinite, self.spikes = skip_nonfinite, skip_spikes
        self._steps: int | Tensor = 0
        self._skipped: int | Tensor = 0
        self._spike_skips: int | Tensor = 0
        self.last: ClipResult[Tensor, Tensor] | None = None
        self._recent: deque[Any] = deque(maxlen=rate_window)
        self._recent_sum: Any = 0.0  # running sum over _recent: O(1) per step
        self._ring: Tensor | None = None  # the clip-rate window as a tensor, once a compiled step ran
        self._rate_window = rate_window

    @property
    def steps(self) -> int:
        """Steps run (skipped ones included)."""
        return int(self._steps)

    # -- the step ---------------------------------------------------------------------------------

    def _measure(self, params: list[Tensor], grad_scale: Tensor | None) -> Measured:
        if self.clipper is None:
            return measure_grads(params, 2.0, grad_scale, None, ())
        return self.clipper.measure(params, grad_scale)

    def _run(
        self, parameters: Any, grad_scale: Tensor | None, *, defer: bool, drop: bool
    ) -> ClipResult[Tensor, Tensor]:
        """Measure, threshold, decide, rescale (unless ``defer``: the fused kernel applies it)."""
        m = self._measure(param_list(parameters), grad_scale)
        if torch.compiler.is_compiling():
            return self._run_branch_free(m, grad_scale, defer=defer, drop=drop)
        total, host = m.total, m.host  # host: the total as a float, read once (eager CPU), else None
        threshold: float | Tensor
        if self.clipper is None:
            threshold, pending = math.inf, None
        else:
            threshold, pending = self.clipper.propose(total if host is None else host)
        finite = torch.isfinite(total) if host is None else cpu_constant(math.isfinite(host), torch.bool)
        if defer and self.spikes is None and total.device.type != "cpu":
            # Decided on the device: the kernel's found_inf input skips; policies ignore NaN/Inf.
            skipped = ~finite if self.skip_nonfinite else torch.zeros_like(finite)
            spike = torch.zeros_like(finite)
        else:
            t = float(total) if host is None else host  # one sync on CUDA
            skipped_b, spike_b = decide(
                math.isfinite(t), t, skip_nonfinite=self.skip_nonfinite, spikes=self.spikes
            )
            if skipped_b:
                return self._skip(m, threshold, finite, spike_b, drop=drop)
            skipped = spike = _flag(False, total.device)
        if self.clipper is not None:
            self.clipper.commit(pending)
        scale: Tensor | None  # None for value clipping and AGC
        if self.clipper is None:
            scale, post, clipped = torch.ones_like(total), total, _flag(False, total.device)
        elif defer:
            scale = self.clipper.factor(total, threshold)  # type: ignore[attr-defined]
            post, clipped = total * scale, (total > threshold) & finite
        else:
            scale, post, clipped = self.clipper.apply_(m, threshold, grad_scale)
        return self._record(
            ClipResult(total, threshold, scale, post, clipped, finite, skipped, spike, m.tensor_norms)
        )

    def _run_branch_free(
        self, m: Measured, grad_scale: Tensor | None, *, defer: bool, drop: bool
    ) -> ClipResult:
        """``_run`` with tensor flags instead of branches (under ``torch.compile``)."""
        total = m.total
        self._tensor_counters(total)
        finite = torch.isfinite(total)
        threshold, pending = (math.inf, None) if self.clipper is None else self.clipper.propose(total)
        spike = (
            torch.zeros_like(finite)
            if self.spikes is None
            else self.spikes.check_tensor(total).to(total.device)
        )
        skipped = spike | ~finite if self.skip_nonfinite else spike
        keep = ~skipped
        scale: Tensor | None
        if self.clipper is None:
            scale, post, clipped = torch.ones_like(total), total, torch.zeros_like(finite)
        else:
            self.clipper.commit_where(keep, pending)
            if defer:
                factor = self.clipper.factor(total, threshold)  # type: ignore[attr-defined]
                scale = torch.where(keep, factor, torch.ones_like(factor))
                post, clipped = total * scale, (total > threshold) & finite & keep
            else:
                scale, post, clipped = self.clipper.apply_(m, threshold, grad_scale, keep)
        if drop and (self.skip_nonfinite or self.spikes is not None):
            for g in m.grads:  # a skipped step's gradients cannot be dropped without a branch: zeroed
                g.masked_fill_(skipped.to(g.device), 0)
        self._skipped = self._skipped + (skipped & ~spike).long()
        self._spike_skips = self._spike_skips + spike.long()
        result = ClipResult(total, threshold, scale, post, clipped, finite, skipped, spike, m.tensor_norms)
        return self._record(result)

    def _tensor_counters(self, like: Tensor) -> None:
        """The counters and the clip-rate window as tensors on ``like``'s device (once; no reads after)."""
        if self._ring is not None:
            return
        # (the window's length from _rate_window: dynamo reads a deque's maxlen as None)
        self._ring = ring_of(self._recent, self._rate_window, like.float())
        self._steps, self._skipped, self._spike_skips = (
            torch.tensor(int(v), device=like.device) for v in (self._steps, self._skipped, self._spike_skips)
        )

    def _skip(
        self, m: Measured, threshold: Any, finite: Tensor, spike: bool, *, drop: bool
    ) -> ClipResult[Tensor, Tensor]:
        """A skipped step: nothing rescaled, the policy's state kept, the gradients dropped if asked."""
        if drop:
            for p in m.params:
                if p.grad is not None and (isinstance(p, torch.nn.Parameter) or p.requires_grad):
                    p.grad = None  # torch optimizers leave a parameter without a gradient untouched
        self._skipped = self._skipped + (not spike)
        self._spike_skips = self._spike_skips + spike
        total = m.total
        scale = (
            torch.ones_like(total) if self.clipper is None or isinstance(self.clipper, NormClipper) else None
        )
        no, yes = _flag(False, total.device), _flag(True, total.device)
        result = ClipResult(
            total, threshold, scale, total, no, finite, yes, _flag(spike, total.device), m.tensor_norms
        )
        return self._record(result)

    def _record(self, result: ClipResult[Tensor, Tensor]) -> ClipResult[Tensor, Tensor]:
        clipped = result.clipped
        if self._ring is not None:  # the tensor window: the newest flag goes in the last slot
            self._ring = push_newest(self._ring, clipped.to(self._ring))
            self._steps = self._steps + 1
            self.last = result
            return result
        value = float(clipped) if clipped.device.type == "cpu" else clipped.float()
        if len(self._recent) == self._recent.maxlen:
            self._recent_sum = self._recent_sum - self._recent[0]
        self._recent.append(value)
        self._recent_sum = self._recent_sum + value
        self._steps += 1
        self.last = result
        return result

    @torch.no_grad()
    def clip_(
        self, parameters: Tensor | Iterable[Tensor], *, grad_scale: Tensor | None = None
    ) -> ClipResult[Tensor, Tensor]:
        """Clip ``parameters``' gradients in place and report; a skipped step drops their gradients.

        Args:
            parameters: parameters (their ``.grad`` is used) or gradient tensors. Gradient tensors
                cannot be dropped: honour ``result.skipped`` yourself.
            grad_scale: the loss scale the gradients still carry, as a one-element tensor
                (``torch.tensor(scaler.get_scale())``; unscaled here in the same pass as the clip),
                or None.
        """
        return self._run(parameters, grad_scale, defer=False, drop=True)

    __call__ = clip_

    @torch.no_grad()
    def step(
        self,
        optimizer: Any,
        *,
        scaler: Any = None,
        closure: Callable[[], Any] | None = None,
        fused: bool | None = None,
    ) -> ClipResult[Tensor, Tensor]:
        """Clip, then step ``optimizer`` or skip; with ``scaler``, unscale first and update after.

        ``closure`` (re)computes the loss and gradients first. ``fused``: hand the clip to a torch
        fused optimizer's kernel (None: whenever [`fuses`][gradclip.step.ClipStep.fuses]; False: never). This
        is the whole optimizer step: do not call ``optimizer.step()`` (or ``scaler.step``/``update``) again.
        """
        if not callable(getattr(optimizer, "step", None)) or not hasattr(optimizer, "param_groups"):
            raise TypeError(
                f"optimizer must be a torch optimizer (step, param_groups), got {optimizer!r:.60}"
            )
        if closure is not None and not callable(closure):
            raise TypeError(f"closure must be a callable (recomputing the loss) or None, got {closure!r:.40}")
        if scaler is not None and not callable(getattr(scaler, "unscale_", None)):
            raise TypeError(f"scaler must be a torch.amp.GradScaler or None, got {scaler!r:.60}")
        check_flag(fused, "fused", optional=True)
        if closure is not None:
            with torch.enable_grad():
                closure()
        params = _params_of(optimizer)
        if scaler is not None and scaler.is_enabled():
            scaler.unscale_(optimizer)  # records the scaler's own inf check, gradients now true
            result = self._run(params, None, defer=False, drop=False)
            if not bool(result.skipped):
                scaler.step(optimizer)
            scaler.update()
            return result
        if fused is not False and self.fuses(optimizer) and not _first_fused_sgd_step(optimizer):
            result = self._run(params, None, defer=True, drop=False)
            # The kernel divides the gradients by grad_scale (a fused step's scale is never None);
            # found_inf leaves params and state alone.
            _fused_step(optimizer, torch.reciprocal(cast(Tensor, result.scale)), result.skipped.float())
            return result
        result = self._run(params, None, defer=False, drop=False)
        can_skip = self.skip_nonfinite or self.spikes is not None
        # Free on the CPU, one sync on CUDA; compiled, a graph break just where torch's step breaks anyway.
        if not (can_skip and bool(result.skipped)):
            optimizer.step()
        return result

    def fuses(self, optimizer: Any) -> bool:
        """Whether [`step`][gradclip.step.ClipStep.step] hands the clip to ``optimizer``'s fused kernel (no
        extra pass)."""
        return (self.clipper is None or isinstance(self.clipper, NormClipper)) and _fused(optimizer)

    def attach(self, optimizer: Any) -> Any:
        """Clip inside ``optimizer.step()`` from a step pre-hook; returns a handle with ``remove()``.

        For loops that call ``optimizer.step()`` (or ``scaler.step(optimizer)``) themselves. Under
        ``torch.amp.GradScaler`` with a fused optimizer the gradients reach the hook still scaled
        (the kernel unscales): the hook measures true norms and folds the clip into the kernel's
        ``grad_scale``. A skipped step drops the gradients (or, fused, sets ``found_inf``).
        """
        if not hasattr(optimizer, "register_step_pre_hook"):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer (with register_step_pre_hook), got "
                f"{type(optimizer).__name__}; use ClipStep.step(optimizer) or gradclip.ClipOptimizer instead"
            )
        ours: list[bool] = []

        def pre_step(opt: Any, args: tuple, kwargs: dict) -> None:
            if any(a is not None for a in args[1:]) or kwargs.get("closure") is not None:
                # The hook runs before step() evaluates the closure: it would clip stale gradients.
                raise ValueError(
                    "a ClipStep attached to an optimizer cannot clip optimizer.step(closure): the "
                    "closure computes the gradients after the hook; use ClipStep.step(optimizer, "
                    "closure=...) or gradclip.ClipOptimizer instead"
                )
            carried = getattr(opt, "grad_scale", None)  # GradScaler's, on a fused optimizer
            params = _params_of(opt)
            if self.fuses(opt) and not _first_fused_sgd_step(opt):
                result = self._run(params, carried, defer=True, drop=False)
                factor = torch.reciprocal(cast(Tensor, result.scale))
                opt.grad_scale = factor if carried is None else carried.to(factor) * factor
                found = result.skipped.float()
                base = getattr(opt, "found_inf", None)
                opt.found_inf = found if base is None else torch.maximum(base.to(found), found)
                ours.append(carried is None)
                return
            result = self._run(params, carried, defer=False, drop=True)
            if carried is not None:  # the gradients were unscaled by the clip's own pass
                opt.grad_scale = None
                if bool(result.skipped):
                    opt.found_inf = torch.ones_like(opt.found_inf)
            ours.append(False)

        def post_step(opt: Any, args: tuple, kwargs: dict) -> None:
            if ours and ours.pop():
                del opt.grad_scale, opt.found_inf

        return _Handles(
            optimizer.register_step_pre_hook(pre_step), optimizer.register_step_post_hook(post_step)
        )

    # -- what happened ---------------------------------------------------------------------------

    @property
    def skipped_steps(self) -> int:
        """Steps skipped for a non-finite norm (reading it syncs once on CUDA)."""
        return int(self._skipped)

    @property
    def spike_skips(self) -> int:
        """Steps skipped as spikes."""
        return int(self._spike_skips)

    @property
    def clip_rate(self) -> Any:
        """Fraction of the last ``rate_window`` steps that were clipped (0 before the first step)."""
        if self._ring is not None:  # NaN marks the slots of a window not yet full
            return torch.nan_to_num(self._ring.nanmean(), nan=0.0)
        return self._recent_sum / len(self._recent) if self._recent else 0.0

    def _recent_flags(self) -> list[float]:
        if self._ring is not None:
            return [v for v in self._ring.tolist() if v == v]
        return [float(v) for v in self._recent]

    def metrics(self) -> dict[str, Any]:
        """The last step's fields (see `METRICS`), as tensors where the step gave tensors."""
        if self.last is None:
            return {}
        r = self.last
        values = (
            r.total_norm,
            r.post_clip_norm,
            r.threshold,
            self.clip_rate,
            self._skipped,
            self._spike_skips,
        )
        return dict(zip(METRICS, values, strict=True))

    def float_metrics(self) -> dict[str, float]:
        """[`metrics`][gradclip.step.ClipStep.metrics] read back as Python floats (one host transfer each, for
        text loggers)."""
        return {k: float(v) for k, v in self.metrics().items()}

    def state_dict(self) -> dict[str, Any]:
        """The clipper's and the spike rule's state, the counters and the clip-rate window."""
        return {
            "kind": "clip_step",
            "clipper": None if self.clipper is None else self.clipper.state_dict(),
            "spikes": None if self.spikes is None else self.spikes.state_dict(),
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
            "spike_skips": self.spike_skips,
            "recent": self._recent_flags(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a [`state_dict`][gradclip.step.ClipStep.state_dict]; validated in full first, so a bad one
        changes nothing."""
        if not isinstance(state_dict, Mapping) or state_dict.get("kind") != "clip_step":
            raise ValueError(
                f"state_dict is not a ClipStep state (expected kind 'clip_step'), got {state_dict!r:.200}"
            )
        counts = {}
        for key in ("steps", "skipped_steps", "spike_skips"):
            v = state_dict.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"state_dict {key!r} must be an integer >= 0, got {v!r}")
            counts[key] = v
        recent = check_recent(state_dict.get("recent"), self._recent.maxlen or 0)
        for name, own, saved in (("clipper", self.clipper, state_dict.get("clipper")),
                                 ("spikes", self.spikes, state_dict.get("spikes"))):  # fmt: skip
            if (own is None) != (saved is None):
                have = "none" if own is None else repr(own)
                raise ValueError(
                    f"state_dict {name} is {'absent' if saved is None else 'present'}; "
                    f"this ClipStep has {have}"
                )

        def load_clipper() -> None:
            if self.clipper is not None:
                self.clipper.load_state_dict(state_dict["clipper"])

        load_all_or_nothing(self.spikes, state_dict["spikes"], load_clipper)
        self._steps, self._skipped, self._spike_skips = (
            counts["steps"],
            counts["skipped_steps"],
            counts["spike_skips"],
        )
        self._recent = deque(recent, maxlen=self._recent.maxlen)
        self._recent_sum = float(sum(recent))
        self._ring = None

    def __repr__(self) -> str:
        return (
            f"ClipStep({self.clipper!r}, skip_nonfinite={self.skip_nonfinite}, skip_spikes={self.spikes!r})"
        )


def _fused_step(optimizer: Any, grad_scale: Tensor, found_inf: Tensor) -> None:
    """One step of a torch fused optimizer with ``grad_scale``/``found_inf`` as its kernel inputs (eager:
    the fused kernel is one kernel already).

    Under torch.compile it runs outside dynamo, which loses attributes set on the optimizer across
    its step's graph break. The wrapper is made here rather than as a decorator: that would import
    torch._dynamo (and DTensor with it: seconds) with this module, for eager users too.
    """
    if torch.compiler.is_compiling():
        torch.compiler.disable(_set_and_step)(optimizer, grad_scale, found_inf)
    else:
        _set_and_step(optimizer, grad_scale, found_inf)


def _set_and_step(optimizer: Any, grad_scale: Tensor, found_inf: Tensor) -> None:
    optimizer.grad_scale, optimizer.found_inf = grad_scale, found_inf
    try:
        optimizer.step()
    finally:
        del optimizer.grad_scale, optimizer.found_inf


class _Handles:
    """The hooks of [`ClipStep.attach`][gradclip.step.ClipStep.attach], removed together."""

    def __init__(self, *handles: Any) -> None:
        self._handles = handles

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
