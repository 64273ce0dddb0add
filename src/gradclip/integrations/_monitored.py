"""The clip step plus its monitor, as one checkpointable piece the Lightning and Hugging Face callbacks share.

A framework callback decides when to clip and where its checkpoints live; everything else is here:
the [`ClipStep`][gradclip.step.ClipStep] (clip, the skip rule, counters, the ``gradclip/...`` metrics),
the [`GradMonitor`][gradclip.monitor.GradMonitor] that turns every step into a JSONL run log (the one
``gradclip report`` and the explorer read) with warnings and advice, and one state that holds both.
A run resumed from a checkpoint continues the same run log: the saved state names the log's
directory, and the monitor picks up at the saved step (see ``GradMonitor(resume=True)``).
Nothing here measures or scales: the step does, and the monitor records the result it returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradclip.diagnosis import MonitorConfig
from gradclip.result import ClipResult
from gradclip.skip import SpikeSkip
from gradclip.step import ClipStep

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["FORMAT", "MonitoredStep"]

FORMAT = "gradclip.integration/1"


class MonitoredStep:
    """A [`ClipStep`][gradclip.step.ClipStep] and, once training starts, a ``GradMonitor`` fed by every step.

    Args:
        clipper: a gradclip clipper, a threshold policy or a float ``max_norm`` (see ``ClipStep``).
        skip_nonfinite: skip a step whose gradients hold NaN/Inf.
        skip_spikes: a [`SpikeSkip`][gradclip.skip.SpikeSkip] to also skip spikes, or None.
        rate_window: steps over which ``gradclip/clip_rate`` is measured.
        log_dir: the monitor's run directory; None: the framework's default (see `start`);
            False: no monitor.
        sinks: the monitor's sinks (JSONL is always written).
        config: the monitor's warning levels.
    """

    def __init__(
        self,
        clipper: Any,
        *,
        skip_nonfinite: bool,
        skip_spikes: SpikeSkip | None,
        rate_window: int,
        log_dir: str | Path | bool | None,
        sinks: Sequence[str],
        config: MonitorConfig | None,
    ) -> None:
        if log_dir is True or not (log_dir is None or log_dir is False or isinstance(log_dir, (str, Path))):
            raise TypeError(
                f"log_dir must be a path, None (the default place) or False (off), got {log_dir!r}"
            )
        self.step = ClipStep(
            clipper, skip_nonfinite=skip_nonfinite, skip_spikes=skip_spikes, rate_window=rate_window
        )
        self.log_dir, self.sinks, self.config = log_dir, tuple(sinks), config
        self.monitor: Any = None
        self._saved: dict[str, Any] | None = None  # monitor state from a checkpoint, until start()
        self._last: dict[str, Any] | None = None  # the closed monitor's, for a checkpoint saved after fit

    def start(self, default_dir: str | Path, names: Sequence[str]) -> None:
        """Open the monitor (at training start): in the saved run's directory when resuming."""
        if self.monitor is not None or self.log_dir is False:
            return
        from gradclip.monitor import GradMonitor

        saved = self._saved
        log_dir = Path(saved["log_dir"]) if saved else Path(self.log_dir or default_dir)
        # A default directory is always called "gradclip": name the run after the one holding it.
        name = log_dir.parent.name if self.log_dir is None and saved is None else None
        self.monitor = GradMonitor(
            names=list(names), log_dir=log_dir, sinks=self.sinks, config=self.config, name=name,
            resume=saved is not None,
        )  # fmt: skip
        if saved is not None:
            self.monitor.load_state_dict(saved["state"])
            self._saved = None

    def clip(
        self, parameters: Iterable[Tensor], *, lr: float | None = None, loss: Tensor | float | None = None
    ) -> ClipResult:
        """Clip ``parameters``' gradients as one step (a skipped step's are dropped) and record it with
        the step's training ``loss`` (a tensor reaches the host with the step's other numbers at once)."""
        result = self.step.clip_(parameters)
        if self.monitor is not None:
            self.monitor.observe(result, loss=loss, lr=lr)
        return result

    def _monitor_state(self) -> dict[str, Any]:
        return {"log_dir": str(self.monitor.log_dir), "state": self.monitor.state_dict()}

    def close(self) -> None:
        if self.monitor is not None:
            self._last = self._monitor_state()
            self.monitor.close()
            self.monitor = None

    def state_dict(self) -> dict[str, Any]:
        """The step's state and the monitor's (with its run directory), for the framework's checkpoint."""
        monitor = self._monitor_state() if self.monitor is not None else self._saved or self._last
        return {"format": FORMAT, "step": self.step.state_dict(), "monitor": monitor}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the step now; the monitor continues its run log when training starts."""
        if not isinstance(state_dict, Mapping) or state_dict.get("format") != FORMAT:
            got = state_dict.get("format") if isinstance(state_dict, Mapping) else type(state_dict).__name__
            raise ValueError(f"not a gradclip callback state (format {got!r}, expected {FORMAT!r})")
        if self.monitor is not None:
            raise RuntimeError("load_state_dict() must come before training starts")
        self.step.load_state_dict(state_dict["step"])
        saved = state_dict["monitor"]
        self._saved = None if saved is None or self.log_dir is False else dict(saved)
