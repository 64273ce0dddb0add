"""Layers with hand-written backward passes, forward and backward side by side (micrograd style).

A layer declares its parameter shapes; `Sequential`
allocates one flat parameter buffer and one flat gradient buffer and hands each layer *views* of
them, so ``forward`` reads its weights from the shared buffer and ``backward`` writes (overwrites,
never accumulates across calls) its gradients into it. ``forward`` caches what ``backward`` needs.
Shapes: dense layers act on the last axis, recurrent layers take ``(batch, time, features)``.
Weights are stored ``(in, out)`` so that ``y = x @ W + b`` (torch stores ``(out, in)``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["LSTM", "RNN", "Dense", "Dropout", "Layer", "ReLU", "Sigmoid", "Tanh", "sigmoid"]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + e^-x), computed as exp(-log(1 + e^-x)) so large |x| never overflows."""
    return np.exp(-np.logaddexp(0.0, -x)).astype(x.dtype, copy=False)


class Layer:
    """A parameter-free layer; subclasses with weights override ``shapes`` and ``init``."""

    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter, in buffer order."""
        return {}

    def bind(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Receive views of the model's flat parameter and gradient buffers."""
        self.params, self.grads = params, grads

    def init(self, rng: np.random.Generator) -> None:
        """Write initial values into the parameter views."""

    def forward(self, x: np.ndarray, *, training: bool, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Dense(Layer):
    """y = x W + b over the last axis; He (ReLU) or Glorot (tanh/sigmoid) uniform initialisation."""

    def __init__(self, in_features: int, out_features: int, *, init: str = "he") -> None:
        self.n_in = _positive_int(in_features, "in_features")
        self.n_out = _positive_int(out_features, "out_features")
        if init not in ("he", "glorot"):
            raise ValueError(f"unknown init {init!r}; choose from ['glorot', 'he']")
        self.init_name = init

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"W": (self.n_in, self.n_out), "b": (self.n_out,)}

    def init(self, rng: np.random.Generator) -> None:
        fan = self.n_in if self.init_name == "he" else (self.n_in + self.n_out) / 2
        limit = np.sqrt(6.0 / fan) if self.init_name == "he" else np.sqrt(3.0 / fan)
        self.params["W"][...] = rng.uniform(-limit, limit, size=(self.n_in, self.n_out))
        self.params["b"][...] = 0.0

    def forward(self, x: np.ndarray, *, training: bool, rng: np.random.Generator) -> np.ndarray:
        if x.shape[-1] != self.n_in:
            raise ValueError(f"Dense expects inputs with {self.n_in} features, got shape {x.shape}")
        self.x = x.reshape(-1, self.n_in)  # (N, in); time steps fold into the batch
        y = self.x @ self.params["W"]
        y += self.params["b"]
        return y.reshape(*x.shape[:-1], self.n_out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        d2 = dout.reshape(-1, self.n_out)  # (N, out)
        np.dot(self.x.T, d2, out=self.grads["W"])  # dL/dW = x^T dout
        np.sum(d2, axis=0, out=self.grads["b"])  # dL/db = sum over the batch
        return (d2 @ self.params["W"].T).reshape(*dout.shape[:-1], self.n_in)  # dL/dx = dout W^T

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out})"


class ReLU(Layer):
    """y = max(x, 0); dy/dx = 1 where x > 0 else 0."""

    def forward(self, x: np.ndarray, *, training: bool, rng: np.random.Generator) -> np.ndarray:
        self.mask = x > 0
        return np.maximum(x, 0, dtype=x.dtype)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.mask


class Tanh(Layer):
    """y = tanh(x); dy/dx = 1 - y²."""

    def forward(self, x: np.ndarray, *, training: bool, rng: np.random.Generator) -> np.ndarray:
        self.y = np.tanh(x)
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1 - self.y * self.y)


class Sigmoid(Layer):
    """y = σ(x); dy/dx = y (1 - y)."""

    def forward(self, x: np.ndarray, *, training: bool, rng: np.random.Generator) -> np.ndarray:
        self.y = sigmoid(x)
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.y * (1 - self.y)


class Dropout(Layer):
    """Inverted dropout (Srivastava et al. 2014): y = x m / (1-p), m ~ Bernoulli(1-p); identity at eval."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: np.ndarray, *, training: bool, rng: np.random.Generator) -> np.ndarray:
        if not training or self.p == 0.0:
            self.mask = None
            return x
        keep = rng.random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64) >= self.p
        self.mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.p)
        return x * self.mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout if self.mask is None else dout * self.mask

    def __repr__(self) -> str:
        return f"Dropout({self.p})"


class RNN(Layer):
    """Vanilla RNN (Elman 1990): h_t = tanh(x_t Wx + h_{t-1} Wh + b), h_0 = 0, full BPTT.

    Input ``(N, T, D)``; output every hidden state ``(N, T, H)``, or only the last ``(N, H)``
    with ``return_sequences=False`` (the setting of Pascanu et al. 2013's long-term tasks).
    """

    def __init__(self, input_size: int, hidden_size: int, *, return_sequences: bool = True) -> None:
        self.D = _positive_int(input_size, "input_size")
        self.H = _positive_int(hidden_size, "hidden_size")
        self.return_sequences = bool(return_sequences)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"Wx": (self.D, self.H), "Wh": (self.H, self.H), "b": (self.H,)}

    def init(self, rng: np.random.Generator) -> None:
        self.params["Wx"][...] = rng.uniform(-1, 1, size=(self.D, self.H)) * np.sqrt(3.0 / self.D)
        q, _ = np.linalg.qr(rng.standard_normal((self.H, self.H)))  # orthogonal: eigenvalues on |z|=1
        self.params["Wh"][...] = q
        self.params["b"][...] = 0.0

    def forward(self, x: np.ndarray, *, training: bool, rng: np.random.Generator) -> np.ndarray:
        if x.ndim != 3 or x.shape[2] != self.D:
            raise ValueError(f"RNN expects inputs of shape (batch, time, {self.D}), got {x.shape}")
        N, T, _ = x.shape
        self.x = x
        a = (x.reshape(N * T, self.D) @ self.params["Wx"]).reshape(N, T, self.H) + self.params["b"]
        self.h = np.zeros((N, T + 1, self.H), dtype=x.dtype)  # h[:, 0] is h_0 = 0
        for t in range(T):
            self.h[:, t + 1] = np.tanh(a[:, t] + self.h[:, t] @ self.params["Wh"])
        return self.h[:, 1:].copy() if self.return_sequences else self.h[:, T].copy()

    def backward(self, dout: np.ndarray) -> np.ndarray:
        N, T, _ = self.x.shape
        Wh = self.params["Wh"]
        da = np.empty((N, T, self.H), dtype=self.x.dtype)  # dL/d(pre-activation) at every step
        gWh = np.zeros_like(Wh)
        dh_next = np.zeros((N, self.H), dtype=self.x.dtype)
        for t in reversed(range(T)):
            dh = dh_next + (dout[:, t] if self.return_sequences else (dout if t == T - 1 else 0))
            ht = self.h[:, t + 1]
            da[:, t] = dh * (1 - ht * ht)  # tanh'
            gWh += self.h[:, t].T @ da[:, t]
            dh_next = da[:, t] @ Wh.T
        self.grads["Wh"][...] = gWh
        da2 = da.reshape(N * T, self.H)
        self.grads["Wx"][...] = self.x.reshape(N * T, self.D).T @ da2
        self.grads["b"][...] = da2.sum(axis=0)
        return (da2 @ self.params["Wx"].T).reshape(N, T, self.D)

    def __repr__(self) -> str:
        return f"RNN({self.D}, {self.H}, return_sequences={self.return_sequences})"


class LSTM(RNN):
    """LSTM (Hochreiter & Schmidhuber 1997, forget gate of Gers et al. 2000), full BPTT.

    [i f g o] = x_t W + h_{t-1} U + b;  i, f, o = σ(.), g = tanh(.);
    c_t = f c_{t-1} + i g;  h_t = o tanh(c_t). The forget-gate bias starts at 1.
    """

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"W": (self.D, 4 * self.H), "U": (self.H, 4 * self.H), "b": (4 * self.H,)}

    def init(self, rng: np.random.Generator) -> None:
        H = self.H
        self.params["W"][...] = rng.uniform(-1, 1, size=(self.D, 4 * H)) * np.sqrt(3.0 / self.D)
        self.params["U"][...] = rng.uniform(-1, 1, size=(H, 4 * H)) * np.sqrt(3.0 / H)
        self.params["b"][...] = 0.0
        self.params["b"][H : 2 * H] = 1.0

    def forward(self, x: np.ndarray, *, training: bool, rng: np.random.Generator) -> np.ndarray:
        if x.ndim != 3 or x.shape[2] != self.D:
            raise ValueError(f"LSTM expects inputs of shape (batch, time, {self.D}), got {x.shape}")
        N, T, _ = x.shape
        H = self.H
        self.x = x
        a = (x.reshape(N * T, self.D) @ self.params["W"]).reshape(N, T, 4 * H) + self.params["b"]
        self.gates = np.empty((N, T, 4 * H), dtype=x.dtype)  # activated i, f, g, o
        self.h = np.zeros((N, T + 1, H), dtype=x.dtype)
        self.c = np.zeros((N, T + 1, H), dtype=x.dtype)
        for t in range(T):
            z = a[:, t] + self.h[:, t] @ self.params["U"]
            gate = self.gates[:, t]
            gate[:, : 2 * H] = sigmoid(z[:, : 2 * H])
            gate[:, 2 * H : 3 * H] = np.tanh(z[:, 2 * H : 3 * H])
            gate[:, 3 * H :] = sigmoid(z[:, 3 * H :])
            i, f, g, o = np.split(gate, 4, axis=1)
            self.c[:, t + 1] = f * self.c[:, t] + i * g
            self.h[:, t + 1] = o * np.tanh(self.c[:, t + 1])
        return self.h[:, 1:].copy() if self.return_sequences else self.h[:, T].copy()

    def backward(self, dout: np.ndarray) -> np.ndarray:
        N, T, _ = self.x.shape
        H = self.H
        U = self.params["U"]
        dz = np.empty((N, T, 4 * H), dtype=self.x.dtype)
        gU = np.zeros_like(U)
        dh_next = np.zeros((N, H), dtype=self.x.dtype)
        dc_next = np.zeros((N, H), dtype=self.x.dtype)
        for t in reversed(range(T)):
            dh = dh_next + (dout[:, t] if self.return_sequences else (dout if t == T - 1 else 0))
            i, f, g, o = np.split(self.gates[:, t], 4, axis=1)
            tc = np.tanh(self.c[:, t + 1])
            dc = dc_next + dh * o * (1 - tc * tc)
            dz[:, t, :H] = dc * g * i * (1 - i)  # through i = σ(z_i)
            dz[:, t, H : 2 * H] = dc * self.c[:, t] * f * (1 - f)  # through f = σ(z_f)
            dz[:, t, 2 * H : 3 * H] = dc * i * (1 - g * g)  # through g = tanh(z_g)
            dz[:, t, 3 * H :] = dh * tc * o * (1 - o)  # through o = σ(z_o)
            dc_next = dc * f
            gU += self.h[:, t].T @ dz[:, t]
            dh_next = dz[:, t] @ U.T
        self.grads["U"][...] = gU
        dz2 = dz.reshape(N * T, 4 * H)
        self.grads["W"][...] = self.x.reshape(N * T, self.D).T @ dz2
        self.grads["b"][...] = dz2.sum(axis=0)
        return (dz2 @ self.params["W"].T).reshape(N, T, self.D)

    def __repr__(self) -> str:
        return f"LSTM({self.D}, {self.H}, return_sequences={self.return_sequences})"
