"""Losses with forward and backward side by side: softmax cross-entropy and mean squared error.

``forward(pred, target)`` returns the mean loss over the batch as a float and caches what
``backward()`` needs; ``backward()`` returns dL/dpred with the same shape and dtype as ``pred``.
``check_targets`` validates labels before training so a wrong label range fails at once.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MSE", "Loss", "SoftmaxCrossEntropy"]


class Loss:
    """Interface: ``forward(pred, target) -> float``, ``backward() -> dL/dpred``."""

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def check_targets(self, target: np.ndarray, out_shape: tuple[int, ...], name: str = "y") -> np.ndarray:
        """Return ``target`` in the form ``forward`` expects, or raise a ValueError naming ``name``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    """L = -(1/N) Σ_n log softmax(z_n)[y_n];  dL/dz = (softmax(z) - onehot(y)) / N."""

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        z = pred - pred.max(axis=1, keepdims=True)  # shift: exp never overflows
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        self.probs, self.target = z, target
        rows = np.arange(len(target))
        return float(-np.mean(np.log(np.maximum(z[rows, target], np.finfo(z.dtype).tiny))))

    def backward(self) -> np.ndarray:
        grad = self.probs.copy()
        grad[np.arange(len(self.target)), self.target] -= 1
        grad /= grad.dtype.type(len(self.target))
        return grad

    def check_targets(self, target: np.ndarray, out_shape: tuple[int, ...], name: str = "y") -> np.ndarray:
        target = np.asarray(target)
        if len(out_shape) != 2:
            raise ValueError(
                f"SoftmaxCrossEntropy needs (batch, classes) outputs, the model gives {out_shape}"
            )
        if target.ndim != 1 or not np.issubdtype(target.dtype, np.integer):
            raise ValueError(
                f"{name} must be a 1-D array of integer class labels, got shape {target.shape} "
                f"and dtype {target.dtype}"
            )
        n_classes = out_shape[1]
        if target.size and (target.min() < 0 or target.max() >= n_classes):
            raise ValueError(
                f"{name} holds labels in [{target.min()}, {target.max()}]; the model has {n_classes} "
                f"outputs, so labels must lie in [0, {n_classes - 1}]"
            )
        return target.astype(np.intp, copy=False)


class MSE(Loss):
    """L = mean((pred - target)²) over all elements;  dL/dpred = 2 (pred - target) / size."""

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        self.diff = pred - target
        return float(np.mean(self.diff * self.diff))

    def backward(self) -> np.ndarray:
        return self.diff * self.diff.dtype.type(2.0 / self.diff.size)

    def check_targets(self, target: np.ndarray, out_shape: tuple[int, ...], name: str = "y") -> np.ndarray:
        target = np.asarray(target)
        if not np.issubdtype(target.dtype, np.number):
            raise ValueError(f"{name} must be numeric for MSE, got dtype {target.dtype}")
        if target.shape[1:] != tuple(out_shape[1:]):
            raise ValueError(
                f"{name} must have per-sample shape {tuple(out_shape[1:])} to match the model output, "
                f"got {target.shape[1:]}"
            )
        if not np.all(np.isfinite(target)):
            raise ValueError(f"{name} contains NaN or inf values")
        return target
