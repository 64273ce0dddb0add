"""GradMonitor: records every step's gradient norms, warns when clipping is misused or mis-set, advises c.

The core, [`GradMonitor.record`][gradclip.monitor.GradMonitor.record], takes Python floats, so the monitor
serves a NumPy loop as well as a torch one; the torch glue (layer names, optimizer and gradient hooks, one
host transfer per step) imports torch only when a model or optimizer is attached. State is bounded: rolling
windows of ``window`` steps, a fixed-size reservoir sample for percentiles, counters; the history itself goes
to the sinks ([`gradclip.sinks`][gradclip.sinks]), which reports read back. Warnings go through `warnings`
with one category per concern (all subclasses of [`GradMonitorWarning`][gradclip.monitor.GradMonitorWarning]),
once per episode: a warning re-arms only after its condition has cleared.

Threshold advice follows two rules: the 90th-95th percentile of the pre-clip norms seen after a
warm-up (AutoClip, Seetharaman et al. 2020, arXiv:2007.14469, clips at a percentile of past norms),
and Pascanu et al. 2013 (arXiv:1211.5063, §3.2): look at the average norm over many updates; training
is not very sensitive to c, half to ten times the average is usually safe.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import sys
import time
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from gradclip._monitor_state import load_state, state_of
from gradclip._monitor_torch import host_floats
from gradclip._validate import check_flag
from gradclip.advice import Advice, threshold_advice
from gradclip.diagnosis import (
    WARNING_KINDS,
    ClipMisuseWarning,
    ClipRateWarning,
    GradMonitorWarning,
    MonitorConfig,
    SpikeWarning,
    Summary,
    VanishingGradientWarning,
)
from gradclip.result import ClipResult
from gradclip.sinks import JSONL_NAME, LAYER_TAG, SCHEMA, SCHEMA_VERSION, TAGS, Sink, make_sink

__all__ = [
    "Advice",
    "ClipMisuseWarning",
    "ClipRateWarning",
    "GradMonitor",
    "GradMonitorWarning",
    "MonitorConfig",
    "SpikeWarning",
    "Summary",
    "VanishingGradientWarning",
    "threshold_advice",
]

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def _stacklevel() -> int:
    """Stack level of the first frame outside gradclip, so a warning points at the user's line."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


_SINK_METHODS = ("open", "write_step", "write_event", "close")


def _real(value: Any, name: str) -> float:
    """``value`` as a float (a number or a one-element tensor/array); anything else: TypeError naming it."""
    if not isinstance(value, (str, bytes)):
        try:
            return float(value)  # numbers, one-element tensors and arrays
        except (TypeError, ValueError, RuntimeError):
            pass
    raise TypeError(f"{name} must be a real number (or a one-element tensor), got {value!r:.60}")


class GradMonitor:
    """Watches gradient norms step by step; warns, advises a threshold and logs to sinks.

    Torch, one line plus one call per step:

    ```python
    monitor = GradMonitor(model, optimizer=opt, log_dir="runs/a")
    ...; loss.backward(); monitor.clip_(1.0, loss=loss); opt.step()
    ```

    ``monitor.observe(stats)`` takes what a clipping call returned instead (``ClipStats`` of
    [`gradclip.clip`][gradclip.clip] or [`gradclip.numpy`][gradclip.numpy], a ``ClipResult`` of
    [`gradclip.clippers`][gradclip.clippers]);
    [`record`][gradclip.monitor.GradMonitor.record] takes plain floats (NumPy loops: pass ``names=`` for the
    layers).

    Args:
        model: a ``torch.nn.Module`` or an iterable of parameters (layer names are the module's
            parameter names); None for a framework-free monitor.
        optimizer: a torch optimizer (or ``ClipOptimizer``): its lr is logged and its step hooks
            detect misuse (stepping without clipping, clipping after stepping).
        log_dir: run directory for the sinks; None keeps nothing on disk.
        sinks: sink names (``'jsonl'``, ``'csv'``, ``'tensorboard'``) or objects; JSONL is always added.
        names: layer names for ``layer_norms`` (defaults: the model's, else ``layer0``, ...).
        max_norm: the fixed threshold in use when it is not passed per step; it also tells the
            monitor from the first step that every step should be clipped.
        name: the run's name in reports (default: the log directory's name).
        config: warning levels and windows, a [`MonitorConfig`][gradclip.monitor.MonitorConfig].
        seed: seed of the reservoir sampler (the advice is reproducible).
        overwrite: replace a run already logged in ``log_dir`` (by default that raises
            ``FileExistsError``: a run's log is never replaced silently).
        resume: continue the run logged in ``log_dir``: call
            [`load_state_dict`][gradclip.monitor.GradMonitor.load_state_dict] with the state saved beside the
            training checkpoint before the first step; the log then keeps its records up to that step, drops
            the ones written after it (the tail of a killed run), marks the resumption and goes on in the same
            file.

    Examples:
        >>> import torch, gradclip
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> monitor = gradclip.GradMonitor(model, optimizer=opt, log_dir="runs/monitor-ex", overwrite=True)
        >>> for _ in range(3):
        ...     opt.zero_grad()
        ...     loss = model(torch.randn(8, 4)).pow(2).mean()
        ...     loss.backward()
        ...     result = monitor.clip_(1.0, loss=loss)
        ...     opt.step()
        >>> summary = monitor.close()
        >>> summary.steps, gradclip.read_run("runs/monitor-ex").layers
        (3, ['weight', 'bias'])
    """

    def __init__(
        self,
        model: Any = None,
        *,
        optimizer: Any = None,
        log_dir: str | Path | None = None,
        sinks: Sequence[str | Sink] = ("jsonl",),
        names: Sequence[str] | None = None,
        max_norm: float | None = None,
        name: str | None = None,
        config: MonitorConfig | None = None,
        seed: int = 0,
        overwrite: bool = False,
        resume: bool = False,
    ) -> None:
        self.config = config if config is not None else MonitorConfig()
        if not isinstance(self.config, MonitorConfig):
            raise TypeError(f"config must be a MonitorConfig, got {type(self.config).__name__}")
        if max_norm is not None and not (isinstance(max_norm, (int, float)) and max_norm >= 0):
            raise ValueError(f"max_norm must be a number >= 0 or None, got {max_norm!r}")
        self.max_norm = None if max_norm is None else float(max_norm)
        if log_dir is not None and (not isinstance(log_dir, (str, os.PathLike)) or os.fspath(log_dir) == ""):
            raise TypeError(f"log_dir must be a directory path or None, got {log_dir!r:.60}")
        self.log_dir = None if log_dir is None else Path(log_dir)
        check_flag(overwrite, "overwrite")
        check_flag(resume, "resume")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a run name (str) or None, got {name!r:.60}")
        if overwrite and resume:
            raise ValueError(
                "overwrite=True and resume=True contradict each other: replace the log or continue it"
            )
        self.resume = bool(resume)
        self._resume_step: int | None = None  # set by load_state_dict: where the log continues
        exists = self.log_dir is not None and (self.log_dir / JSONL_NAME).exists()
        if exists and not (overwrite or resume):
            assert self.log_dir is not None  # exists says so
            # A run's log is its record: never replace one silently.
            raise FileExistsError(
                f"{self.log_dir / JSONL_NAME} already holds a monitored run; choose another log_dir "
                "or pass resume=True to continue it (overwrite=True replaces it)"
            )
        self.name = name or (self.log_dir.name if self.log_dir else "run")
        self._torch = None
        if model is not None or optimizer is not None:
            from gradclip._monitor_torch import TorchGlue

            self._torch = TorchGlue(self, model, optimizer)
        if names is not None and (
            isinstance(names, str)
            or not isinstance(names, Sequence)
            or not all(isinstance(n, str) for n in names)
        ):
            raise TypeError(f"names must be a sequence of layer names (str), got {names!r:.60}")
        self.names = list(names) if names is not None else (self._torch.names if self._torch else None)
        self._sinks = self._make_sinks(sinks)
        self._opened, self._closed = False, False
        w = self.config.window
        self._clip_flags: deque[bool] = deque(maxlen=w)  # steps with a threshold only
        self._recent: deque[float] = deque(maxlen=w)  # finite norms, the spike baseline
        self._reservoir: list[float] = []
        self._rng = random.Random(seed)
        self._post_warmup = 0  # finite norms offered to the reservoir
        self._post_sum = 0.0
        self.step = 0
        self._clipped = self._nonfinite = self._skipped = self._spikes = 0
        self._finite, self._sum, self._min, self._max = 0, 0.0, math.inf, 0.0
        self._threshold: float | None = None
        self._since_clip = self._with_threshold = self._near_zero = 0
        self._latched: dict[str, Any] = {"rate": 0, "idle": False, "spike": False, "zero": False}
        self._warn_counts = dict.fromkeys(WARNING_KINDS.values(), 0)
        self._start = time.perf_counter()
        self._elapsed_before = 0.0  # seconds run before a resume

    def _make_sinks(self, sinks: Sequence[str | Sink]) -> list[Sink]:
        if isinstance(sinks, str) or not isinstance(sinks, Sequence):
            raise TypeError(f"sinks must be a sequence of sink names or objects, got {sinks!r:.60}")
        for i, s in enumerate(sinks):
            if not isinstance(s, str) and not all(callable(getattr(s, m, None)) for m in _SINK_METHODS):
                raise TypeError(f"sinks[{i}] must be a sink name or an object with "
                                f"{', '.join(_SINK_METHODS)}, got {s!r:.60}")  # fmt: skip
        if self.log_dir is None:
            if any(isinstance(s, str) for s in sinks if s != "jsonl"):
                raise ValueError(f"sinks {list(sinks)!r} write files: pass log_dir= too")
            return [s for s in sinks if not isinstance(s, str)]
        kinds = ["jsonl", *(s for s in sinks if isinstance(s, str) and s != "jsonl")]
        return [make_sink(k, self.log_dir) for k in kinds] + [s for s in sinks if not isinstance(s, str)]

    # -- torch and NumPy entry points -------------------------------------------------------------

    def clip_(self, clipper: Any, *, norm_type: float | str = 2.0, loss: Any = None, lr: float | None = None):
        """Clip the attached model's gradients as one [`ClipStep`][gradclip.step.ClipStep] and record it.

        ``clipper`` is a float ``max_norm``, a clipper from [`gradclip.clippers`][gradclip.clippers], or a
        ready ``ClipStep``; the step object is kept across calls, so adaptive thresholds keep their state.
        A NaN/Inf step is skipped as everywhere: its gradients are dropped, so the ``optimizer.step()``
        that follows leaves parameters and optimizer state untouched. Returns the pre-clip norm (a
        0-dim tensor) for a float ``clipper``, as torch's ``clip_grad_norm_`` does, else the
        ``ClipResult``.
        """
        if self._torch is None:
            raise RuntimeError("clip_() needs a torch model: GradMonitor(model, ...); use record() otherwise")
        return self._torch.clip_(clipper, norm_type=norm_type, loss=loss, lr=lr)

    def observe(self, result: Any, *, loss: Any = None, lr: float | None = None) -> None:
        """Record one step from the [`ClipResult`][gradclip.result.ClipResult] a clipped step returned.

        Every clipping entry point (``clip_grad_norm_(..., return_stats=True)``, ``ClipStep``,
        ``ClipOptimizer``, the integrations, both NumPy forms) returns that one type. Its tensors and
        ``loss`` reach the host in one transfer, the only sync the monitor adds (none on the CPU).
        A threshold of ``inf`` (clipping off) is logged as no threshold.
        """
        if not isinstance(result, ClipResult):
            raise TypeError(
                "result must be the gradclip.ClipResult a clipped step returned (ClipStep, ClipOptimizer."
                f"last_result, clip_grad_norm_(..., return_stats=True)), got {type(result).__name__}"
            )
        norms = list(result.tensor_norms)
        head = [result.total_norm, result.clipped, result.finite, result.post_clip_norm, result.threshold,
                result.skipped, loss]  # fmt: skip
        values = host_floats(head + norms)
        total, clipped, finite, post, threshold_f, skipped, loss_f = values[:7]
        layer_norms: list[float] | None = values[7:]
        if self._torch is not None:
            layer_norms = self._torch.align(values[7:])
            lr = self._torch.lr() if lr is None else lr
            self._torch.clipped_now()
        elif self.names is not None and len(values[7:]) != len(self.names):
            layer_norms = None  # some gradients were missing: cannot tell whose norm is whose
        if threshold_f is not None and math.isinf(threshold_f):
            threshold_f = None  # clipping off
        self.record(
            total, threshold=threshold_f, clipped=bool(clipped), post_clip_norm=post, finite=bool(finite),
            skipped=bool(skipped), loss=loss_f, lr=lr, layer_norms=layer_norms,
        )  # fmt: skip

    def record(
        self,
        total_norm: float,
        *,
        threshold: float | None = None,
        clipped: bool | None = None,
        post_clip_norm: float | None = None,
        finite: bool | None = None,
        skipped: bool = False,
        loss: float | None = None,
        lr: float | None = None,
        layer_norms: Sequence[float] | None = None,
    ) -> None:
        """Record one step from plain floats: the framework-free core every entry point ends in.

        Defaults: ``finite = isfinite(total_norm)``; ``clipped = total_norm > threshold``;
        ``post_clip_norm = min(total_norm, threshold)`` under norm clipping.
        """
        total = _real(total_norm, "total_norm")
        if threshold is not None:
            threshold = _real(threshold, "threshold")
        if loss is not None:
            loss = _real(loss, "loss")
        if lr is not None:
            lr = _real(lr, "lr")
        if post_clip_norm is not None:
            post_clip_norm = _real(post_clip_norm, "post_clip_norm")
        for flag, flag_name in ((clipped, "clipped"), (finite, "finite")):
            check_flag(flag, flag_name, optional=True)
        check_flag(skipped, "skipped")
        if layer_norms is not None and (
            isinstance(layer_norms, (str, bytes)) or not hasattr(layer_norms, "__len__")
        ):
            raise TypeError(
                f"layer_norms must be a sequence of per-layer norms or None, got {layer_norms!r:.60}"
            )
        if finite is None:
            finite = math.isfinite(total)
        if clipped is None:
            clipped = threshold is not None and total > threshold
        if post_clip_norm is None and threshold is not None and finite:
            post_clip_norm = min(total, float(threshold))
        if layer_norms is not None and self.names is not None and len(layer_norms) != len(self.names):
            raise ValueError(
                f"layer_norms has {len(layer_norms)} values for {len(self.names)} names {self.names}"
            )
        if not self._opened:
            self._open(layer_norms)
        values = (
            total, post_clip_norm, threshold, bool(clipped), bool(finite), bool(skipped),
            None if loss is None else float(loss), None if lr is None else float(lr),
        )  # fmt: skip
        rec = {
            "type": "step", "step": self.step, **dict(zip(TAGS, values, strict=True)),  # the one tag scheme
            LAYER_TAG: None if layer_norms is None else list(layer_norms), "time": round(self.elapsed(), 6),
        }  # fmt: skip
        for sink in self._sinks:
            sink.write_step(rec)
        self._update(total, threshold, bool(clipped), bool(finite), bool(skipped), layer_norms)
        self.step += 1

    # -- statistics and warnings -------------------------------------------------------------------

    def _open(self, layer_norms: Sequence[float] | None) -> None:
        if self.resume and self._resume_step is None:
            raise RuntimeError(
                "GradMonitor(resume=True) needs load_state_dict(saved_state) before the first step: without "
                "the saved state the log cannot tell where the run continues"
            )
        if self.names is None and layer_norms is not None:
            self.names = [f"layer{i}" for i in range(len(layer_norms))]
        header = {
            "type": "header", "schema": SCHEMA, "version": SCHEMA_VERSION, "name": self.name,
            "layers": self.names or [], "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": asdict(self.config),
        }  # fmt: skip
        for sink in self._sinks:
            if self._resume_step is None:
                sink.open(header)
            elif callable(resume_sink := getattr(sink, "resume", None)):
                resume_sink(header, self._resume_step)
            else:
                raise TypeError(f"sink {type(sink).__name__} cannot continue a run: it has no resume()")
        self._opened = True

    def _update(self, total: float, threshold, clipped, finite, skipped, layer_norms) -> None:
        cfg = self.config
        self._clipped += clipped
        self._skipped += skipped
        if threshold is not None:
            self._threshold = float(threshold)
            self._clip_flags.append(clipped)
            self._with_threshold += 1
            self._since_clip = 0 if clipped else self._since_clip + 1
        if not finite:
            self._nonfinite += 1
            self._check_spike(total, layer_norms, nonfinite=True)
            return
        self._finite += 1
        self._sum += total
        self._min, self._max = min(self._min, total), max(self._max, total)
        if self.step >= cfg.warmup:
            self._sample(total)
        self._check_spike(total, layer_norms, nonfinite=False)
        self._recent.append(total)
        self._check_vanishing(total, layer_norms)
        if threshold is not None:
            self._check_zero(total)
            self._check_rate()

    def _sample(self, norm: float) -> None:
        """Reservoir sampling, Algorithm R (Vitter 1985): a uniform sample of every norm offered."""
        self._post_warmup += 1
        self._post_sum += norm
        if len(self._reservoir) < self.config.reservoir:
            self._reservoir.append(norm)
        else:
            j = self._rng.randrange(self._post_warmup)
            if j < self.config.reservoir:
                self._reservoir[j] = norm

    def _warn(self, category: type[GradMonitorWarning], message: str) -> None:
        kind = WARNING_KINDS[category]
        self._warn_counts[kind] += 1
        event = {"type": "warning", "step": self.step, "kind": kind, "message": message}
        if not self._opened:  # misuse can be seen before the first step is recorded
            self._open(None)
        for sink in self._sinks:
            sink.write_event(event)
        warnings.warn(message, category, stacklevel=_stacklevel())

    def _top_layers(self, layer_norms: Sequence[float] | None, *, largest: bool) -> str:
        if not layer_norms or not self.names:
            return ""
        order = sorted(range(len(layer_norms)), key=lambda i: layer_norms[i], reverse=largest)
        top = ", ".join(f"{self.names[i]} ({layer_norms[i]:.3g})" for i in order[: self.config.top_k])
        return f"; {'largest' if largest else 'smallest'} layers: {top}"

    def _check_spike(self, total: float, layer_norms, *, nonfinite: bool) -> None:
        cfg = self.config
        baseline = statistics.median(self._recent) if len(self._recent) >= cfg.min_history else None
        spike = nonfinite or (baseline is not None and total > cfg.spike_factor * baseline)
        if spike and not self._latched["spike"]:
            self._spikes += 1
            if nonfinite:
                what = f"non-finite gradient norm ({total})"
            else:
                assert baseline is not None  # a finite spike is measured against the median
                what = f"gradient norm {total:.3g} is {total / baseline:.0f}x the median of the last "
                what += f"{len(self._recent)} steps"
            self._warn(SpikeWarning, f"step {self.step}: {what}{self._top_layers(layer_norms, largest=True)}")
        self._latched["spike"] = spike

    def _check_vanishing(self, total: float, layer_norms) -> None:
        cfg = self.config
        self._near_zero = self._near_zero + 1 if total < cfg.vanish_below else 0
        if self._near_zero == cfg.vanish_steps:
            self._warn(
                VanishingGradientWarning,
                f"step {self.step}: gradient norm below {cfg.vanish_below:g} for {cfg.vanish_steps} steps "
                f"(last {total:.3g}){self._top_layers(layer_norms, largest=False)}. Clipping cannot help: it "
                "only shrinks large gradients. Look at the architecture: residual connections, gating "
                "(LSTM/GRU), initialisation (orthogonal, He/Xavier), normalisation layers.",
            )

    def _check_zero(self, total: float) -> None:
        zero = total == 0.0
        if zero and not self._latched["zero"]:
            self._warn(
                ClipMisuseWarning,
                f"step {self.step}: clipping saw no gradient (every gradient is None or zero): was it called "
                "after optimizer.zero_grad() or before loss.backward()? Clip between backward() and step().",
            )
        self._latched["zero"] = zero

    def _check_rate(self) -> None:
        cfg, flags, c = self.config, self._clip_flags, self._threshold
        if len(flags) == cfg.window:
            rate = sum(flags) / len(flags)
            level = 2 if rate >= cfg.always_clip_rate else 1 if rate > cfg.clip_rate else 0
            if level > self._latched["rate"]:
                assert c is not None  # steps are counted as clipped only against a threshold
                advice = self.advice()
                hint = f" Advice: {advice.text()}." if advice else ""
                if level == 2:
                    why = (
                        f"the threshold c={c:.3g} is too small: every update is rescaled to norm c, so "
                        "clipping acts as a smaller learning rate."
                    )
                else:
                    why = f"the learning rate is probably too high or the threshold c={c:.3g} too low."
                msg = f"step {self.step}: {rate:.0%} of the last {len(flags)} steps were clipped; {why}{hint}"
                self._warn(ClipRateWarning, msg)
            self._latched["rate"] = max(level, self._latched["rate"]) if level else 0
        idle = self._with_threshold >= cfg.idle_steps and self._since_clip >= cfg.idle_steps
        if idle and not self._latched["idle"]:
            assert c is not None  # idle steps are counted only against a threshold
            peak, advice = max(self._recent), self.advice()
            self._warn(
                ClipRateWarning,
                f"step {self.step}: no step clipped in {self._since_clip} steps; the largest recent norm "
                f"{peak:.3g} is {c / peak if peak else math.inf:.1f}x below c={c:.3g}, so clipping is idle. "
                "Fine as a safety net against rare spikes; to make it act, lower c "
                f"({advice.text() if advice else 'more steps needed for advice'}).",
            )
        self._latched["idle"] = idle

    # -- checkpoints ---------------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds the run has been monitored, time before a resume included."""
        return self._elapsed_before + time.perf_counter() - self._start

    def state_dict(self) -> dict[str, Any]:
        """Everything the monitor's future records, warnings and advice depend on, as plain data.

        JSON- and ``torch.load(weights_only=True)``-safe;
        [`load_state_dict`][gradclip.monitor.GradMonitor.load_state_dict] restores it exactly.
        """
        return state_of(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a [`state_dict`][gradclip.monitor.GradMonitor.state_dict]; before the first step
        only, all checked before any change.

        With ``log_dir`` the monitor must have been built with ``resume=True``: the log then
        continues at the saved step (see ``resume``).
        """
        if self._opened:
            raise RuntimeError("load_state_dict() must come before the first step is recorded")
        if self.log_dir is not None and not self.resume:
            raise ValueError(
                f"load_state_dict() with log_dir={str(self.log_dir)!r} continues that run's log: build the "
                "monitor with resume=True"
            )
        load_state(self, state_dict)
        self._start = time.perf_counter()
        self._resume_step = self.step

    # -- results -------------------------------------------------------------------------------------

    def advice(self) -> Advice | None:
        """Threshold advice from the post-warm-up norms seen so far (None before enough steps)."""
        mean = self._post_sum / self._post_warmup if self._post_warmup else None
        return threshold_advice(self._reservoir, mean=mean)

    def summary(self) -> Summary:
        flags = self._clip_flags
        return Summary(
            steps=self.step,
            clipped=self._clipped,
            clip_rate=self._clipped / self.step if self.step else 0.0,
            rolling_clip_rate=sum(flags) / len(flags) if flags else 0.0,
            nonfinite=self._nonfinite,
            skipped=self._skipped,
            spikes=self._spikes,
            threshold=self._threshold,
            norm_min=self._min if self._finite else math.nan,
            norm_mean=self._sum / self._finite if self._finite else math.nan,
            norm_max=self._max if self._finite else math.nan,
            warnings=dict(self._warn_counts),
            advice=self.advice(),
        )

    def close(self) -> Summary:
        """Check the last step for misuse, write the summary record, close the sinks and hooks."""
        if self._closed:
            return self.summary()
        if self._torch is not None:
            self._torch.close()
        summary = self.summary()
        record = {"type": "summary", **summary.as_dict()}
        for sink in self._sinks:
            sink.close(record if self._opened else None)
        self._closed = True
        return summary

    def __enter__(self) -> GradMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
