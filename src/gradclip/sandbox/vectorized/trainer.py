"""VTrainer: mini-batch training of a `Sequential` with gradient clipping from gradclip.numpy.

One step is forward, loss, backward, ``_clip_gradients`` (global-norm or value clipping of the flat
gradient buffer, with a fixed threshold or an adaptive policy), then the optimizer step; a step whose
gradient norm is not finite is skipped. ``grad_clip_norm=None`` or ``<= 0`` disables clipping, as
in the seed system. Inputs are checked before the first step. ``save``/``load`` store weights,
optimizer, policy, generators and history in one ``.npz``; resuming continues bit-for-bit.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from gradclip import numpy as gnp
from gradclip._validate import check_count, check_off_or_threshold
from gradclip.sandbox.vectorized.checkpoint import check_trainer_state, load_state, save_state
from gradclip.sandbox.vectorized.losses import Loss, SoftmaxCrossEntropy
from gradclip.sandbox.vectorized.model import Sequential
from gradclip.sandbox.vectorized.optim import Lookahead, Optimizer

if TYPE_CHECKING:  # for the annotation only: the monitor is the caller's, imported by them
    from gradclip.monitor import GradMonitor

__all__ = ["Metrics", "VTrainer"]

CLIP_MODES = ("norm", "value")
EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "clip_fraction", "skipped")
STEP_KEYS = ("grad_norm", "clipped_norm", "threshold")  # one float per step, pre/post clip


# Overflow and NaN in a step are caught by the gradient norm (the step is skipped and counted in
# history["skipped"]), so NumPy's floating-point warnings would only repeat that, once per layer.
_QUIET_FP: dict[str, Any] = {"over": "ignore", "invalid": "ignore", "divide": "ignore"}


class Metrics(NamedTuple):
    """What [`VTrainer.evaluate`][gradclip.sandbox.vectorized.trainer.VTrainer.evaluate] returns: the mean
    loss and the accuracy.

    Examples:
        >>> import numpy as np
        >>> from gradclip.sandbox.vectorized.model import mlp
        >>> from gradclip.sandbox.vectorized.optim import SGD
        >>> from gradclip.sandbox.vectorized.trainer import VTrainer
        >>> trainer = VTrainer(mlp([2, 8, 2], seed=0), SGD(0.5), grad_clip_norm=1.0)
        >>> X = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        >>> y = (X[:, 0] > 0).astype(np.int64)
        >>> _ = trainer.fit(X, y, epochs=5, batch_size=16)
        >>> metrics = trainer.evaluate(X, y)
        >>> metrics.accuracy > 0.9
        True
    """

    loss: float
    accuracy: float  # NaN for regression losses


class VTrainer:
    """``VTrainer(model, Adam(lr=1e-3), grad_clip_norm=1.0).fit(X, y, epochs=10, batch_size=64)``.

    Every step goes through one [`gradclip.numpy.ClipStep`][gradclip.numpy.ClipStep], the NumPy twin of the
    torch step: ``clip_mode='norm'`` rescales the whole gradient when ||g||_2 > c (Pascanu et al. 2013);
    ``'value'`` clamps each element to [-c, c]; ``grad_clip_norm=None`` or ``<= 0`` disables
    clipping. ``clipper`` is a ready clipper instead: a threshold policy from
    [`gradclip.policies`][gradclip.policies] (``ZScore()``: norm clipping at the policy's threshold) or a
    ``gradclip.numpy.ClipStep`` (as in ``ConvTrainer``, where it is a torch clipper or step). A step
    whose norm is NaN/Inf is skipped either way. ``monitor``, if given, is a
    [`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor] fed the step's result; build it with
    ``names=trainer.grad_names()`` to get per-layer norms labelled.

    Examples:
        >>> import numpy as np
        >>> import gradclip
        >>> from gradclip.sandbox.vectorized.model import mlp
        >>> from gradclip.sandbox.vectorized.optim import Adam
        >>> from gradclip.sandbox.vectorized.trainer import VTrainer
        >>> X = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        >>> y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)  # XOR of the signs
        >>> trainer = VTrainer(mlp([2, 16, 2], seed=0), Adam(1e-2), clipper=gradclip.ZScore())
        >>> history = trainer.fit(X, y, epochs=3, batch_size=16)
        >>> len(history["loss"]), len(history["grad_norm"])  # one value per epoch, one per step
        (3, 12)
    """

    def __init__(
        self,
        model: Sequential,
        optimizer: Optimizer | Lookahead,
        grad_clip_norm: float | None = None,
        *,
        clip_mode: str = "norm",
        clipper: object = None,
        monitor: GradMonitor | None = None,
        loss: Loss | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, Sequential):
            raise TypeError(f"model must be a Sequential, got {type(model).__name__}")
        if not isinstance(optimizer, (Optimizer, Lookahead)):
            raise TypeError(f"optimizer must be SGD, Adam or Lookahead, got {type(optimizer).__name__}")
        if not isinstance(clip_mode, str) or clip_mode not in CLIP_MODES:
            raise ValueError(f"unknown clip_mode {clip_mode!r}; choose from {list(CLIP_MODES)}")
        if clipper is not None and (grad_clip_norm is not None or clip_mode != "norm"):
            raise ValueError(
                "give grad_clip_norm (with clip_mode) or a ready clipper, not both: the clipper sets its "
                "own threshold"
            )
        if isinstance(clipper, gnp.ClipStep):
            self.clip_step = clipper
        elif clipper is not None:
            if not callable(getattr(clipper, "propose", None)):
                raise TypeError(
                    "clipper must be a threshold policy (gradclip.Fixed, Percentile, ZScore) or a "
                    f"gradclip.numpy.ClipStep, got {type(clipper).__name__}"
                )
            self.clip_step = gnp.ClipStep(clipper)
        else:
            self.clip_step = gnp.ClipStep(
                check_off_or_threshold(grad_clip_norm, "grad_clip_norm"), mode=clip_mode
            )
        self.grad_clip_norm = self.clip_step.max_norm
        if monitor is not None and not callable(getattr(monitor, "observe", None)):
            raise TypeError(
                f"monitor must be a GradMonitor (with an observe() method), got {type(monitor).__name__}"
            )
        self.model, self.optimizer, self.clip_mode = model, optimizer, clip_mode
        self.monitor = monitor
        if loss is not None and not all(
            callable(getattr(loss, m, None)) for m in ("forward", "backward", "check_targets")
        ):
            raise TypeError(f"loss must be a Loss (SoftmaxCrossEntropy, MSE, ...) or None, got {loss!r:.60}")
        self.loss = loss if loss is not None else SoftmaxCrossEntropy()
        self.rng = np.random.default_rng(check_count(seed, "seed", 0, 2**64 - 1))  # batch order
        self.epoch = 0
        self.step_count = 0
        self.history: dict[str, list[float]] = {k: [] for k in EPOCH_KEYS + STEP_KEYS}

    # -- one step ---------------------------------------------------------------------------------------
    def _clip_gradients(self) -> gnp.ClipResult:
        """Clip ``model.grads`` in place through the step object; return its result.

        With a monitor the per-layer views are passed (their norms become the monitor's layer
        norms, from the same pass); without, the flat buffer (one norm).
        """
        arrays = self._grad_views() if self.monitor is not None else [self.model.grads]
        return self.clip_step.clip_(arrays)

    @np.errstate(**_QUIET_FP)
    def _train_step(self, xb: np.ndarray, yb: np.ndarray) -> tuple[float, int, bool, bool]:
        """One update; return (batch loss, correct predictions, clipped?, skipped?)."""
        out = self.model.forward(xb, training=True)
        loss = self.loss.forward(out, yb)
        self.model.backward(self.loss.backward())
        result = self._clip_gradients()
        lr = self.optimizer.lr
        if not result.skipped:
            self.optimizer.step(self.model.params, self.model.grads)
        self.step_count += 1
        self.history["grad_norm"].append(result.total_norm)
        self.history["clipped_norm"].append(result.post_clip_norm)
        self.history["threshold"].append(result.threshold)
        if self.monitor is not None:
            self.monitor.observe(result, loss=float(loss), lr=float(lr))
        return loss, self._correct(out, yb), result.clipped, result.skipped

    def _grad_views(self) -> list[np.ndarray]:
        return [g for layer in self.model.layers for g in getattr(layer, "grads", {}).values()]

    def grad_names(self) -> list[str]:
        """One name per gradient array, in buffer order (``"0.Dense.W"``): the monitor's layer names."""
        return [
            f"{i}.{type(layer).__name__}.{name}"
            for i, layer in enumerate(self.model.layers)
            for name in getattr(layer, "grads", {})
        ]

    def _correct(self, out: np.ndarray, y: np.ndarray) -> int:
        if not isinstance(self.loss, SoftmaxCrossEntropy):
            return 0
        return int(np.count_nonzero(out.argmax(axis=1) == y))

    # -- public API -------------------------------------------------------------------------------------
    def check_data(
        self, X: Any, y: Any, *, names: tuple[str, str] = ("X", "y")
    ) -> tuple[np.ndarray, np.ndarray]:
        """Validate and convert one data set; raise ValueError/TypeError naming the bad argument."""
        nx, ny = names
        X = np.asarray(X)
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
            raise TypeError(f"{nx} must be a numeric array, got dtype {X.dtype}")
        if X.ndim < 2 or len(X) == 0:
            raise ValueError(
                f"{nx} must have shape (samples, features...) with at least one sample, got {X.shape}"
            )
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{nx} contains {np.count_nonzero(~np.isfinite(X))} NaN or inf values")
        y = np.asarray(y)
        if y.ndim == 0 or len(y) != len(X):
            raise ValueError(
                f"{nx} and {ny} must have the same number of samples, got {len(X)} and {y.shape}"
            )
        try:
            with np.errstate(**_QUIET_FP):
                out_shape = self.model.forward(X[:1]).shape
        except ValueError as err:
            raise ValueError(f"{nx} of shape {X.shape} does not fit the model: {err}") from err
        y = self.loss.check_targets(y, out_shape, name=ny)
        if np.issubdtype(y.dtype, np.floating):
            y = np.ascontiguousarray(y, dtype=self.model.dtype)
        return np.ascontiguousarray(X, dtype=self.model.dtype), y

    def fit(
        self,
        X: Any,
        y: Any,
        epochs: int = 1,
        batch_size: int = 32,
        *,
        validation: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        progress: bool = False,
    ) -> dict[str, list[float]]:
        """Train for ``epochs`` more epochs; return the history (per epoch and per step)."""
        for name, count in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
                raise ValueError(f"{name} must be a positive integer, got {count!r}")
        X, y = self.check_data(X, y)
        val = (
            None
            if validation is None
            else self.check_data(*validation, names=("validation[0]", "validation[1]"))
        )
        n = len(X)
        for _ in range(epochs):
            order = self.rng.permutation(n) if shuffle else np.arange(n)
            total_loss, correct, clipped, skipped, steps0 = 0.0, 0, 0, 0, self.step_count
            lr = self.optimizer.lr
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                loss, right, was_clipped, was_skipped = self._train_step(X[idx], y[idx])
                total_loss += loss * len(idx)
                correct += right
                clipped += was_clipped or was_skipped
                skipped += was_skipped
                if progress:
                    self._progress(start + len(idx), n, total_loss / (start + len(idx)))
            self.epoch += 1
            steps = self.step_count - steps0
            acc = correct / n if isinstance(self.loss, SoftmaxCrossEntropy) else math.nan
            vl, va = self.evaluate(*val, checked=True) if val is not None else (math.nan, math.nan)
            for key, value in zip(
                EPOCH_KEYS, (total_loss / n, acc, vl, va, lr, clipped / steps, float(skipped)), strict=True
            ):
                self.history[key].append(value)
            if progress:
                print(
                    f" epoch {self.epoch}: loss {total_loss / n:.4f} acc {acc:.4f} val_acc {va:.4f}",
                    file=sys.stderr,
                )
        return self.history

    @np.errstate(**_QUIET_FP)
    def evaluate(self, X: Any, y: Any, *, batch_size: int = 1024, checked: bool = False) -> Metrics:
        """Mean loss and accuracy on (X, y) in evaluation mode (dropout off)."""
        if not checked:
            X, y = self.check_data(X, y)
        total, correct = 0.0, 0
        for start in range(0, len(X), batch_size):
            out = self.model.forward(X[start : start + batch_size])
            yb = y[start : start + batch_size]
            total += self.loss.forward(out, yb) * len(out)
            correct += self._correct(out, yb)
        acc = correct / len(X) if isinstance(self.loss, SoftmaxCrossEntropy) else math.nan
        return Metrics(total / len(X), acc)

    @staticmethod
    def _progress(done: int, total: int, loss: float) -> None:
        bar = "#" * (30 * done // total)
        print(f"\r[{bar:<30}] {done}/{total} loss {loss:.4f}", end="", file=sys.stderr, flush=True)

    # -- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_type": type(self.optimizer).__name__,
            "clipper": self.clip_step.state_dict(),
            "trainer": {"epoch": self.epoch, "step": self.step_count, "rng": self.rng.bit_generator.state},
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`; everything is checked first, and a failure changes nothing."""
        own = self.state_dict()
        state = check_trainer_state(state, own=own, history_keys=EPOCH_KEYS + STEP_KEYS)
        if (state["clipper"] is None) != (own["clipper"] is None):
            raise ValueError(
                "checkpoint and trainer differ in their clipping policy (one has state, one not)"
            )
        backup = copy.deepcopy(own)
        try:
            self._restore(state)
        except BaseException:
            self._restore(backup)  # all or nothing: a policy or RNG state that fails late undoes the rest
            raise

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.clip_step.load_state_dict(state["clipper"])
        self.epoch, self.step_count = int(state["trainer"]["epoch"]), int(state["trainer"]["step"])
        self.rng.bit_generator.state = state["trainer"]["rng"]
        self.history = {k: [float(v) for v in state["history"][k]] for k in EPOCH_KEYS + STEP_KEYS}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the full training state to ``path`` (.npz) atomically."""
        save_state(path, self.state_dict())

    def load(self, path: str | os.PathLike[str]) -> None:
        """Restore a state written by [`save`][gradclip.sandbox.vectorized.trainer.VTrainer.save] into this
        (identically built) trainer."""
        self.load_state_dict(load_state(path))
