"""The torch side of [`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor]: names, hooks and one host
transfer per step.

Imported by the monitor only when a model or optimizer is attached (``host_floats`` never imports
torch itself: a tensor can only reach it when torch is already imported), so the monitor keeps
working in a NumPy-only environment.
"""

from __future__ import annotations

import math
import sys
from typing import Any, NoReturn

from gradclip.diagnosis import ClipMisuseWarning

__all__ = ["TorchGlue", "host_floats"]


def host_floats(values: list[Any]) -> list[Any]:
    """``values`` as Python floats (None kept), all tensors among them brought over in one transfer.

    Tensors are stacked per (device, dtype) group (norms, flags: two groups, whatever the number of
    layers), cast to float64 and concatenated, then read once: one sync on CUDA, a few ops on the CPU.
    """
    torch = sys.modules.get("torch")  # a tensor can only be here if torch is imported already
    out: list[Any] = []
    for v in values:
        if v is None or (torch and isinstance(v, torch.Tensor)):
            if v is not None and v.numel() != 1:
                _refuse(v)
            out.append(None)  # a tensor: read below, with the others
        else:
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                _refuse(v)
    groups: dict[Any, tuple[list[int], list[Any]]] = {}
    for i, v in enumerate(values):
        if out[i] is None and v is not None:
            t = v.detach() if v.requires_grad else v
            t = t.reshape(()) if t.ndim else t
            ids, tensors = groups.setdefault((t.device, t.dtype), ([], []))
            ids.append(i)
            tensors.append(t)
    if groups:
        assert torch is not None  # tensors were found, so torch is imported
        device = next(iter(groups))[0]
        parts = [torch.stack(ts).to(device, torch.float64) for _, ts in groups.values()]
        flat = (parts[0] if len(parts) == 1 else torch.cat(parts)).tolist()
        for i, v in zip([i for ids, _ in groups.values() for i in ids], flat, strict=True):
            out[i] = v
    return out


def _refuse(value: Any) -> NoReturn:
    """The one value observe() cannot log; the loss is the one a caller passes in by hand."""
    raise TypeError(f"loss (and every value observe() logs) must be a number or a one-element tensor, "
                    f"got {value!r:.60}")  # fmt: skip


def _plain_name(name: str) -> str:
    """A parameter's name as the model spells it, without dynamo's ``_orig_mod`` components.

    ``torch.compile`` wraps a module in one whose parameters are named ``_orig_mod.<name>`` (inside
    the name too, for a compiled submodule); layer names in the run file stay the model's own.
    """
    return ".".join(part for part in name.split(".") if part != "_orig_mod")


class TorchGlue:
    """The torch side: parameters and names, and hooks that see backward() and optimizer.step().

    A post-accumulate-grad hook on each parameter notes that a backward ran (a flag set, a few
    hundred nanoseconds per parameter); step pre/post hooks on the optimizer note the steps. From
    these: a step on gradients not clipped since the last backward is reported at the next step (or
    at close), because a result may legitimately be observed just after the step that used it;
    clipping after a step is reported by [`clip_`][gradclip.monitor.GradMonitor.clip_], which knows when it
    clips.
    """

    def __init__(self, monitor: Any, model: Any, optimizer: Any) -> None:
        import torch

        self._monitor = monitor
        if optimizer is not None and not hasattr(optimizer, "param_groups"):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or wrap one, got {optimizer!r:.60}")
        if model is None:
            named = [
                (f"param{i}", p) for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])
            ]
        elif isinstance(model, torch.nn.Module):
            named = [(_plain_name(n), p) for n, p in model.named_parameters()]
        else:
            iterable = hasattr(model, "__iter__") and not isinstance(model, (str, bytes))
            params = [model] if isinstance(model, torch.Tensor) else list(model) if iterable else [None]
            if not all(isinstance(p, torch.Tensor) for p in params):
                raise TypeError(
                    "model must be a torch.nn.Module or an iterable of torch tensors (for NumPy, pass "
                    f"names= and call record() or observe()), got {type(model).__name__}"
                )
            named = [(f"param{i}", p) for i, p in enumerate(params)]
        named = [(n, p) for n, p in named if p.requires_grad]
        if not named:
            raise ValueError("the model has no parameters that require grad: nothing to monitor")
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self._index = {id(p): i for i, p in enumerate(self.params)}
        self.optimizer = optimizer
        # A ClipOptimizer clips inside its own step(), over its param groups' order.
        self._clips_itself = hasattr(optimizer, "clipper")
        self._source = self.params
        self._handles = [p.register_post_accumulate_grad_hook(self._on_grad) for p in self.params]
        if optimizer is not None:
            if self._clips_itself:
                self._source = [p for g in optimizer.param_groups for p in g["params"]]
            inner = optimizer
            while not hasattr(inner, "register_step_pre_hook") and hasattr(inner, "optimizer"):
                inner = inner.optimizer  # wrappers keep the torch optimizer in .optimizer
            if not hasattr(inner, "register_step_pre_hook"):
                raise TypeError(
                    f"optimizer must be a torch.optim.Optimizer or wrap one, got {type(optimizer).__name__}"
                )
            self._handles += [
                inner.register_step_pre_hook(self._pre_step),
                inner.register_step_post_hook(self._post_step),
            ]
        self._fresh = False  # a backward ran since the last clip
        self._stepped = False  # optimizer.step() ran since the last backward
        self._unclipped_step: int | None = None  # a step that used unclipped gradients, not yet reported
        self._clip_calls = 0
        self._step: Any = None  # the ClipStep behind clip_(), and what it was built from
        self._step_key: Any = None

    def _on_grad(self, param: Any) -> None:
        self._fresh, self._stepped = True, False

    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._report_unclipped()
        expects = self._monitor.max_norm is not None or self._clip_calls > 0
        if self._fresh and expects and not self._clips_itself:
            self._unclipped_step = self._monitor.step

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._stepped = True

    def _report_unclipped(self) -> None:
        if self._unclipped_step is not None:
            self._monitor._warn(
                ClipMisuseWarning,
                f"step {self._unclipped_step}: optimizer.step() ran on gradients not clipped since the last "
                "backward(); clip every step, between backward() and step().",
            )
            self._unclipped_step = None

    def clipped_now(self) -> None:
        self._fresh, self._unclipped_step = False, None
        self._clip_calls += 1

    def clip_(self, clipper: Any, *, norm_type: float | str, loss: Any, lr: float | None) -> Any:
        if self._stepped:
            self._unclipped_step = None  # the same mistake, reported once
            self._monitor._warn(
                ClipMisuseWarning,
                f"step {self._monitor.step}: clipping after optimizer.step(): that step already used the "
                "unclipped gradients. Clip between backward() and step().",
            )
        step = self._step_for(clipper, norm_type)
        result = step.clip_(self.params)
        self._monitor.observe(result, loss=loss, lr=lr)
        return result.total_norm if isinstance(clipper, (int, float)) else result

    def _step_for(self, clipper: Any, norm_type: float | str) -> Any:
        """The monitor's ClipStep for ``clipper``: kept while the same clipper (or number) comes back."""
        from gradclip._validate import check_threshold
        from gradclip.clippers import NormClipper
        from gradclip.policies import Fixed
        from gradclip.step import ClipStep

        if isinstance(clipper, ClipStep):
            return clipper
        key = (clipper, norm_type) if isinstance(clipper, (int, float)) else (id(clipper), norm_type)
        if self._step is None or self._step_key != key:
            if isinstance(clipper, (int, float)) and not isinstance(clipper, bool) and clipper > 0:
                clipper = NormClipper(Fixed(check_threshold(clipper, "clipper")), norm_type=norm_type)
            self._step, self._step_key = ClipStep(clipper), key
        return self._step

    def align(self, norms: list[float]) -> list[float] | None:
        """Per-tensor norms (one per gradient present, in the clipper's order) placed by layer name."""
        if self._source is self.params and len(norms) == len(self.params):
            return norms
        present = [p for p in self._source if p.grad is not None]
        if len(present) != len(norms):
            return None  # the gradients changed since the clip: cannot tell whose norm is whose
        out = [math.nan] * len(self.params)
        for p, n in zip(present, norms, strict=True):
            if id(p) in self._index:
                out[self._index[id(p)]] = n
        return out

    def lr(self) -> float | None:
        return None if self.optimizer is None else float(self.optimizer.param_groups[0]["lr"])

    def close(self) -> None:
        self._report_unclipped()
        for handle in self._handles:
            handle.remove()
        self._handles = []
