"""Sequential: a stack of layers whose parameters and gradients live in one flat buffer each.

Every layer gets views into ``model.params`` and ``model.grads`` (both 1-D, float32 by default,
float64 for gradient checks), so clipping and the optimizers act on the whole model with a single
vectorized NumPy operation and a checkpoint is one array. ``backward`` overwrites the gradient
buffer. Dropout draws from the model's own generator, whose state is part of ``state_dict()``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradclip.sandbox.vectorized.layers import Dense, Dropout, Layer, ReLU

__all__ = ["Sequential", "mlp"]

DTYPES = (np.float32, np.float64)


class Sequential:
    """Layers applied in order; ``params``/``grads`` are the flat buffers the layers view."""

    def __init__(self, layers: Sequence[Layer], *, dtype: type = np.float32, seed: int = 0) -> None:
        layers = list(layers)
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise TypeError(f"layers must be a non-empty sequence of Layer objects, got {layers!r}")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("the same layer object appears twice; each layer caches its own activations")
        if np.dtype(dtype) not in [np.dtype(d) for d in DTYPES]:
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.layers, self.dtype = layers, np.dtype(dtype)
        sizes = [int(np.prod(s)) for layer in layers for s in layer.shapes().values()]
        self.params = np.zeros(sum(sizes), dtype=self.dtype)  # (P,) every weight of the model
        self.grads = np.zeros(sum(sizes), dtype=self.dtype)  # (P,) dL/dparams after backward
        offset = 0
        for layer in layers:
            views_p, views_g = {}, {}
            for name, shape in layer.shapes().items():
                n = int(np.prod(shape))
                views_p[name] = self.params[offset : offset + n].reshape(shape)
                views_g[name] = self.grads[offset : offset + n].reshape(shape)
                offset += n
            layer.bind(views_p, views_g)
        init_rng, self.rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        for layer in layers:
            layer.init(init_rng)

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        """Run every layer; ``training`` turns dropout on."""
        out = np.asarray(x, dtype=self.dtype)
        for layer in self.layers:
            out = layer.forward(out, training=training, rng=self.rng)
        return out

    __call__ = forward

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Back-propagate dL/dout through the layers (reverse order); fills ``grads``; returns dL/dx."""
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def predict(self, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
        """Outputs at evaluation time, computed in batches to bound memory."""
        outs = [self.forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else self.forward(x)

    def named_parameters(self) -> list[tuple[str, np.ndarray]]:
        """``('0.W', view), ...`` for per-layer reports; the views alias ``params``."""
        return [(f"{i}.{k}", v) for i, layer in enumerate(self.layers) for k, v in layer.params.items()]

    def state_dict(self) -> dict[str, object]:
        return {"params": self.params.copy(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        params = np.asarray(state["params"])
        if params.shape != self.params.shape:
            raise ValueError(
                f"checkpoint has {params.size} parameters, this model has {self.params.size}; "
                "was it saved from a different architecture?"
            )
        probe = type(self.rng.bit_generator)()
        probe.state = state["rng"]  # a bad generator state fails here, before the weights change
        self.params[...] = params  # in place: the layers keep their views
        self.rng.bit_generator.state = state["rng"]

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.layers))
        return f"Sequential([{inner}], params={self.params.size}, dtype={self.dtype.name})"


def mlp(sizes: Sequence[int], *, dropout: float = 0.0, dtype: type = np.float32, seed: int = 0) -> Sequential:
    """Dense-ReLU stack: ``mlp([64, 128, 10])`` is Dense(64,128), ReLU, Dense(128,10)."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        raise TypeError(f"sizes must be a sequence of layer sizes, got {sizes!r:.60}")
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output size, got {list(sizes)!r}")
    for i, n in enumerate(sizes):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"sizes[{i}] must be a whole number >= 1, got {n!r:.60}")
    layers: list[Layer] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(Dense(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ReLU())
            if dropout:
                layers.append(Dropout(dropout))
    return Sequential(layers, dtype=dtype, seed=seed)
