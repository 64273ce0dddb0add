"""The same tanh RNN in the NumPy sandbox, and one training step of the experiment in pure NumPy.

The network is `gradclip.sandbox.vectorized.RNN` followed by a
`Dense` read-out in a
`Sequential` (one flat weight buffer, one flat gradient
buffer), loaded with the arrays of `gradclip.sandbox.recurrent.model.init_weights`: W_uh,
W_hh, b_h are the RNN's Wx, Wh, b and W_hy, b_y the Dense layer's W, b. The losses are those of
the torch experiment (mean cross-entropy, mean squared error), so the two give the same gradients
on the same weights and batch; the tests hold them to that.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gradclip import numpy as gnp
from gradclip.sandbox.recurrent.tasks import Batch, Task
from gradclip.sandbox.vectorized import MSE, RNN, SGD, Dense, Sequential, SoftmaxCrossEntropy

__all__ = ["NumpyStep", "loss_and_grads", "named_grads", "named_params", "numpy_rnn", "numpy_step"]

# Where each of the paper's parameters (model.PARAM_NAMES) lives: (layer index, name in the layer).
_LAYOUT = {"W_uh": (0, "Wx"), "W_hh": (0, "Wh"), "b_h": (0, "b"), "W_hy": (1, "W"), "b_y": (1, "b")}


class NumpyStep(NamedTuple):
    loss: float
    grad_norm: float  # before clipping
    clipped: bool


def numpy_rnn(
    weights: dict[str, np.ndarray], *, every_step: bool = False, dtype: type = np.float64
) -> Sequential:
    """RNN + Dense holding copies of ``weights`` (float64 by default, for gradient checks)."""
    n_in, n_hidden = np.shape(weights["W_uh"])
    n_out = np.shape(weights["W_hy"])[1]
    model = Sequential(
        [RNN(n_in, n_hidden, return_sequences=every_step), Dense(n_hidden, n_out)], dtype=dtype
    )
    for name, view in named_params(model).items():
        view[...] = weights[name]  # in place: the flat buffer stays shared
    return model


def named_params(model: Sequential) -> dict[str, np.ndarray]:
    """The weight buffer's views under the paper's names (`PARAM_NAMES`)."""
    return {name: model.layers[layer].params[key] for name, (layer, key) in _LAYOUT.items()}


def named_grads(model: Sequential) -> dict[str, np.ndarray]:
    """The gradient buffer's views under the paper's names (`PARAM_NAMES`)."""
    return {name: model.layers[layer].grads[key] for name, (layer, key) in _LAYOUT.items()}


def loss_and_grads(model: Sequential, task: Task, batch: Batch) -> float:
    """Forward, loss and backward: fills ``model.grads`` with dL/dθ and returns L.

    L = mean cross-entropy over the sequences (over every step and sequence for per-step outputs),
    or mean squared error for value outputs.
    """
    out = model.forward(batch.inputs, training=True)
    if task.output == "last-value":
        loss = MSE()
        value = loss.forward(out, batch.targets.astype(out.dtype))
        model.backward(loss.backward())
        return value
    xent = SoftmaxCrossEntropy()
    flat = out.reshape(-1, out.shape[-1])  # (N·T, O) when every step answers
    value = xent.forward(flat, batch.targets.reshape(-1))
    model.backward(xent.backward().reshape(out.shape))
    return value


def numpy_step(
    model: Sequential, task: Task, batch: Batch, *, optimizer: SGD, threshold: float | None = None
) -> NumpyStep:
    """One step of the experiment: gradients, global-norm clipping at ``threshold`` (None: off), SGD.

    g ← g · c / ||g|| when ||g|| > c (Pascanu et al. 2013, Algorithm 1), via
    [`gradclip.numpy`][gradclip.numpy].
    """
    loss = loss_and_grads(model, task, batch)
    if threshold is None:
        norm, clipped = gnp.get_total_norm(model.grads), False
    else:
        stats = gnp.clip_grad_norm_(model.grads, threshold, return_stats=True)
        norm, clipped = stats.total_norm, stats.clipped
    optimizer.step(model.params, model.grads)
    return NumpyStep(loss, norm, clipped)
