"""ConvTrainer: mini-batch training of a torch image classifier with gradient clipping and a monitor.

One step is forward (under autocast with ``amp``), cross-entropy, backward, then ``_clip_gradients``:
one call into the trainer's [`ClipStep`][gradclip.step.ClipStep], which clips, decides the skip and
steps the optimizer. ``grad_clip_norm=None`` or ``<= 0`` disables clipping, as in the seed system; a
step whose gradient norm is NaN/Inf is skipped (and counted) with or without clipping, the one rule
of every gradclip loop. Under fp16 AMP on CUDA the step unscales the ``GradScaler``'s gradients
before it measures them (clipping scaled gradients would compare c with ``scale * ||g||``).

Per-step values (loss, pre-clip norm, threshold, clipped) stay on the device during an epoch and
are read back once at its end, so the step itself has no host sync unless a monitor is attached
(one transfer per step) or clipping must decide to skip a step on CUDA (one read of a flag).
``save``/``load`` write and read the full state (weights, optimizer, clipper, scaler, history, data
order and every RNG) atomically; a run resumed from an epoch's checkpoint continues bit-for-bit.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from typing import Any, NamedTuple

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

import torch.nn.functional as F
from torch import Tensor, nn

from gradclip._validate import check_count, check_off_or_threshold
from gradclip.result import ClipResult
from gradclip.sandbox.convolutional.checkpoint import (
    check_trainer_state,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from gradclip.sandbox.convolutional.clipping import CLIP_MODES, make_clipper
from gradclip.step import ClipStep, as_clipper

__all__ = ["EPOCH_KEYS", "STEP_KEYS", "ConvTrainer", "Metrics", "unwrap"]

EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "clip_fraction", "skipped", "seconds")
STEP_KEYS = ("step_loss", "grad_norm", "threshold", "clipped", "step_skipped")  # one float per step


class Metrics(NamedTuple):
    """What [`ConvTrainer.evaluate`][gradclip.sandbox.convolutional.trainer.ConvTrainer.evaluate] returns:
    the mean cross-entropy and the accuracy.

    Examples:
        >>> import torch
        >>> from gradclip.sandbox.convolutional.trainer import ConvTrainer
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> trainer = ConvTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), grad_clip_norm=1.0)
        >>> metrics = trainer.evaluate(torch.zeros(8, 1, 2, 2), torch.zeros(8, dtype=torch.long))
        >>> 0.0 <= metrics.accuracy <= 1.0, metrics.loss > 0
        (True, True)
    """

    loss: float  # mean cross-entropy
    accuracy: float  # in [0, 1]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself).

    Examples:
        >>> import torch
        >>> from gradclip.sandbox.convolutional.trainer import unwrap
        >>> model = torch.nn.Linear(2, 2)
        >>> unwrap(model) is model  # a DistributedDataParallel wrapper would give its .module
        True
    """
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _rank_world() -> tuple[int, int]:
    """This process's rank and the world size under torch.distributed (0, 1 otherwise)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _spike(spike: Any) -> tuple[int, float] | None:
    if spike is None:
        return None
    ok = isinstance(spike, tuple) and len(spike) == 2 and isinstance(spike[0], int) and spike[0] >= 0
    if not ok or isinstance(spike[1], bool) or not isinstance(spike[1], (int, float)):
        raise ValueError(f"spike must be None or (step >= 0, factor), got {spike!r}")
    return int(spike[0]), float(spike[1])


class ConvTrainer:
    """``ConvTrainer(model, torch.optim.SGD(...), grad_clip_norm=5.0).fit(split, epochs=5, batch_size=128)``.

    Args:
        model: a classifier ``(N, C, H, W) -> (N, classes)``; moved to ``device``.
        optimizer: a torch optimizer over the model's parameters, or a wrapper (``Lookahead``).
        grad_clip_norm: the clipping knob of ``clip_mode`` (see
            [`clipping`][gradclip.integrations.loop.clipping]); None/<= 0: off.
        clip_mode: ``norm``, ``value``, ``agc``, ``percentile`` or ``zscore``.
        clipper: a ready clipper instead of the two above: a clipper
            ([`gradclip.clippers`][gradclip.clippers]), a threshold policy (norm clipping at its threshold) or
            a [`ClipStep`][gradclip.step.ClipStep] (with its spike rule), as in ``VTrainer``.
        monitor: a [`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor]; every step is
            ``observe``-d.
        device: where the model and batches live (``"cpu"``, ``"cuda"``, ...).
        amp: autocast (fp16 + GradScaler on CUDA, bfloat16 on the CPU).
        spike: ``(step, factor)``: that step's loss is multiplied by factor (a bad batch).
        log_dir: TensorBoard directory (per-step loss and norms, per-epoch metrics); None: off.
        progress: show a progress bar (rich when installed, else one line per epoch).
        seed: seed of the data order generator.

    Examples:
        >>> from types import SimpleNamespace
        >>> import torch
        >>> from gradclip.sandbox.convolutional.trainer import ConvTrainer
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(64, 3))
        >>> x, y = torch.randn(32, 1, 6, 6), torch.randint(0, 3, (32,))
        >>> data = SimpleNamespace(x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> trainer = ConvTrainer(model, opt, 1.0, clip_mode="zscore")
        >>> history = trainer.fit(data, epochs=2, batch_size=8)
        >>> len(history["loss"]), len(history["grad_norm"]), trainer.step_count  # per epoch, per step
        (2, 8, 8)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Any,
        grad_clip_norm: float | None = None,
        *,
        clip_mode: str = "norm",
        clipper: Any = None,
        monitor: Any = None,
        device: str | torch.device = "cpu",
        amp: bool = False,
        spike: tuple[int, float] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        progress: bool = False,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not (callable(getattr(optimizer, "step", None)) and hasattr(optimizer, "param_groups")):
            raise TypeError(f"optimizer must be a torch optimizer, got {type(optimizer).__name__}")
        if not isinstance(clip_mode, str) or clip_mode not in CLIP_MODES:
            raise ValueError(f"unknown clip_mode {clip_mode!r}; choose from {sorted(CLIP_MODES)}")
        self.grad_clip_norm = check_off_or_threshold(grad_clip_norm, "grad_clip_norm")
        if clipper is not None and self.grad_clip_norm is not None:
            raise ValueError("give grad_clip_norm (with clip_mode) or a ready clipper, not both")
        if isinstance(clipper, ClipStep):
            self.clip_step = clipper
        elif clipper is not None:
            self.clip_step = ClipStep(as_clipper(clipper))
        else:
            knob = self.grad_clip_norm
            self.clip_step = ClipStep(None if knob is None else make_clipper(clip_mode, knob, model))
        if monitor is not None and not callable(getattr(monitor, "observe", None)):
            raise TypeError(f"monitor must be a GradMonitor (with observe()), got {type(monitor).__name__}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.optimizer, self.clip_mode, self.monitor = optimizer, clip_mode, monitor
        self.amp = bool(amp)
        cuda_fp16 = self.amp and self.device.type == "cuda"
        self._amp_dtype = torch.float16 if cuda_fp16 else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda") if cuda_fp16 else None
        self.spike = _spike(spike)
        self.progress = progress
        seed = check_count(seed, "seed", 0, 2**64 - 1)
        self.generator = torch.Generator().manual_seed(seed)  # data order, saved in checkpoints
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.log_dir = log_dir
        self.writer: Any = None  # opens at fit(): a failed load writes nothing
        self.epoch = 0
        self.step_count = 0
        self.history: dict[str, list[float]] = {k: [] for k in EPOCH_KEYS + STEP_KEYS}

    # -- one step ---------------------------------------------------------------------------------------
    @property
    def clipper(self) -> Any:
        """The clipper the step applies (None when clipping is off)."""
        return self.clip_step.clipper

    def _clip_gradients(self) -> ClipResult:
        """One call into the step object: clip, then step the optimizer (through the scaler) or skip."""
        return self.clip_step.step(self.optimizer, scaler=self.scaler)

    def _train_step(self, xb: Tensor, yb: Tensor, *, weight: float = 1.0) -> tuple[Tensor, Tensor]:
        """One update; return (batch loss, correct predictions) as 0-dim device tensors.

        ``weight`` multiplies the objective (not the reported loss): the DDP share of a batch.
        """
        with torch.autocast(self.device.type, dtype=self._amp_dtype, enabled=self.amp):
            logits = self.model(xb)  # (B, classes)
            loss = F.cross_entropy(logits, yb)
        objective = loss if weight == 1.0 else loss * weight
        if self.spike is not None and self.step_count == self.spike[0]:
            objective = (
                objective * self.spike[1]
            )  # the bad batch: same direction, `factor` times the gradient
        self.optimizer.zero_grad(set_to_none=True)
        (objective if self.scaler is None else self.scaler.scale(objective)).backward()
        result = self._clip_gradients()
        threshold = result.threshold
        if not isinstance(threshold, Tensor):
            threshold = result.total_norm.new_full((), threshold)
        row = torch.stack([loss.detach().float(), result.total_norm.float(), threshold.float(),
                           result.clipped.float(), result.skipped.float()])  # fmt: skip
        self._pending.append(row)
        if self.monitor is not None:
            self.monitor.observe(result, loss=loss.detach())
        self.step_count += 1
        return loss.detach(), (logits.argmax(1) == yb).sum()

    # -- loops ------------------------------------------------------------------------------------------
    @staticmethod
    def check_data(x: Any, y: Any, *, names: tuple[str, str] = ("x", "y")) -> None:
        """Raise ValueError/TypeError naming the bad argument unless x is (N, C, H, W) float, y (N,) int."""
        nx, ny = names
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 4 or len(x) == 0:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{nx} must be a float tensor of shape (N >= 1, C, H, W), got {shape}")
        if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.shape != (len(x),):
            got = (y.dtype, tuple(y.shape)) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"{ny} must be an int64 tensor of shape ({len(x)},), got {got}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{nx} contains NaN or inf values")

    def fit(
        self,
        data: Any,
        epochs: int,
        batch_size: int,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, list[float]]:
        """Train until ``epochs`` epochs are done in total (a resumed run does the rest).

        ``data`` is an `ImageSplit` (or anything with ``x_train``, ``y_train``,
        ``x_test``, ``y_test``); the test set is evaluated after every epoch. With ``checkpoint``
        the full state (plus ``extra``) is saved there after every epoch.
        """
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not all(hasattr(data, k) for k in ("x_train", "y_train", "x_test", "y_test")):
            raise TypeError(
                f"data must be an ImageSplit (x_train, y_train, x_test, y_test), got {data!r:.60}"
            )
        self.check_data(data.x_train, data.y_train, names=("x_train", "y_train"))
        self.check_data(data.x_test, data.y_test, names=("x_test", "y_test"))
        n = len(data.x_train)
        rank, world = _rank_world()
        if world > 1 and batch_size < world:
            raise ValueError(
                f"batch_size {batch_size} is smaller than the {world} processes sharing each batch"
            )
        if self.log_dir is not None and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.fspath(self.log_dir))
        bar = _Progress(self.progress, total=(epochs - self.epoch) * math.ceil(n / batch_size))
        with bar:
            while self.epoch < epochs:
                start = time.perf_counter()
                self._pending: list[Tensor] = []  # one row of per-step values per step, read once per epoch
                self.model.train()
                total_loss = torch.zeros((), device=self.device)
                correct = torch.zeros((), dtype=torch.int64, device=self.device)
                seen = 0
                for batch in torch.randperm(n, generator=self.generator).split(batch_size):
                    # Under DDP every rank draws the same global batch and takes every world-th
                    # sample; weighting the local mean by n_local * world / n_global makes DDP's
                    # gradient average equal the gradient of the global batch's mean loss.
                    idx = batch[rank::world]
                    if len(idx) == 0:
                        continue  # only when a global batch is smaller than the world
                    xb = data.x_train[idx].to(self.device, non_blocking=True)
                    yb = data.y_train[idx].to(self.device, non_blocking=True)
                    loss, right = self._train_step(xb, yb, weight=len(idx) * world / len(batch))
                    total_loss += loss * len(idx)
                    correct += right
                    seen += len(idx)
                    bar.advance()
                val = self.evaluate(data.x_test, data.y_test, checked=True)
                self._end_epoch(total_loss, correct, seen, val, time.perf_counter() - start)
                bar.note(self._epoch_line())
                if checkpoint is not None:
                    self.save(checkpoint, extra=extra)
        if self.writer is not None:
            self.writer.flush()
        return self.history

    def _end_epoch(self, total_loss: Tensor, correct: Tensor, n: int, val: Metrics, seconds: float) -> None:
        rows = torch.stack(self._pending).tolist()  # the epoch's one read-back of per-step values
        first = self.step_count - len(rows)
        for key, column in zip(STEP_KEYS, zip(*rows, strict=True), strict=True):
            self.history[key].extend(column)
        clipped = sum(r[3] for r in rows)
        skipped = sum(r[4] for r in rows)
        values = (float(total_loss) / n, int(correct) / n, val.loss, val.accuracy,
                  clipped / len(rows), float(skipped), seconds)  # fmt: skip
        for key, value in zip(EPOCH_KEYS, values, strict=True):
            self.history[key].append(value)
        self.epoch += 1
        if self.writer is not None:
            for i, (loss, norm, threshold, *_) in enumerate(rows):
                self.writer.add_scalar("step/loss", loss, first + i)
                self.writer.add_scalar("step/grad_norm", norm, first + i)
                if math.isfinite(threshold):
                    self.writer.add_scalar("step/threshold", threshold, first + i)
            for key, value in zip(EPOCH_KEYS, values, strict=True):
                self.writer.add_scalar(f"epoch/{key}", value, self.epoch)

    def _epoch_line(self) -> str:
        h = self.history
        return (f"epoch {self.epoch}: loss {h['loss'][-1]:.4f} acc {h['accuracy'][-1]:.4f} "
                f"test loss {h['val_loss'][-1]:.4f} test acc {h['val_accuracy'][-1]:.4f} "
                f"clipped {100 * h['clip_fraction'][-1]:.0f}% ({h['seconds'][-1]:.1f}s)")  # fmt: skip

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor, *, batch_size: int = 512, checked: bool = False) -> Metrics:
        """Mean cross-entropy and accuracy on (x, y) in eval mode (batch norm uses running statistics)."""
        if not checked:
            self.check_data(x, y)
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(self.device)
            yb = y[start : start + batch_size].to(self.device)
            with torch.autocast(self.device.type, dtype=self._amp_dtype, enabled=self.amp):
                logits = self.model(xb)
            total += F.cross_entropy(logits.float(), yb, reduction="sum")
            correct += (logits.argmax(1) == yb).sum()
        return Metrics(float(total) / len(x), int(correct) / len(x))

    # -- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a bit-for-bit resume needs, in types ``torch.load(weights_only=True)`` accepts."""
        return {
            "model": unwrap(self.model).state_dict(),  # the same keys with or without DDP
            "optimizer": self.optimizer.state_dict(),
            "clipper": self.clip_step.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step_count,
            "history": self.history,
            "data_order": self.generator.get_state(),
            "rng": rng_state(),
            "monitor": None if self.monitor is None else self.monitor.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore [`state_dict`][gradclip.sandbox.convolutional.trainer.ConvTrainer.state_dict]; everything
        is checked first, and a failure changes nothing."""
        state = check_trainer_state(
            state, model=unwrap(self.model), optimizer=self.optimizer, history_keys=EPOCH_KEYS + STEP_KEYS
        )
        saved = state["clipper"]
        if not isinstance(saved, dict) or (saved.get("clipper") is None) != (self.clipper is None):
            have = "no clipping" if self.clipper is None else repr(self.clipper)
            was = "without" if isinstance(saved, dict) and saved.get("clipper") is None else "with"
            raise ValueError(f"checkpoint was saved {was} clipping; this trainer has {have}")
        backup = copy.deepcopy(self.state_dict())
        try:
            self._restore(state)
        except BaseException:
            self._restore(backup)  # all or nothing: a clipper or RNG state that fails late undoes the rest
            raise

    def _restore(self, state: dict[str, Any]) -> None:
        self.clip_step.load_state_dict(state["clipper"])
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step_count = int(state["epoch"]), int(state["step"])
        self.history = {k: [float(v) for v in state["history"][k]] for k in EPOCH_KEYS + STEP_KEYS}
        self.generator.set_state(state["data_order"])
        set_rng_state(state["rng"])
        if self.monitor is not None and state.get("monitor") is not None:
            self.monitor.load_state_dict(state["monitor"])  # the run log continues at this step

    def save(self, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> None:
        """Write the full training state (plus ``extra``, e.g. the run's configuration) atomically."""
        save_checkpoint(path, {**self.state_dict(), "extra": extra or {}})

    def load(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Restore a state written by [`save`][gradclip.sandbox.convolutional.trainer.ConvTrainer.save] into
        this (identically built) trainer; return ``extra``."""
        state = load_checkpoint(path, map_location=self.device)
        self.load_state_dict(state)
        return state.get("extra", {})


class _Progress:
    """A rich progress bar over all steps when asked for and installed; else one printed line per epoch."""

    def __init__(self, enabled: bool, *, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar: Any = None  # a rich Progress when enabled and installed
        self._task: Any = None  # its task id
        if enabled:
            try:
                from rich.progress import Progress
            except ModuleNotFoundError:
                return
            self._bar = Progress(transient=False)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("training", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def note(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line)
        elif self.enabled:
            print(line, file=sys.stderr, flush=True)
