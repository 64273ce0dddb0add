"""The vanilla tanh RNN of Pascanu et al. (2013) in PyTorch, its two initialisations, and plain SGD.

h_t = tanh(u_t W_uh + h_{t-1} W_hh + b_h), h_0 = 0;  y = h_T W_hy + b_y (or y_t = h_t W_hy + b_y at
every step for the memorisation task). Weights are stored ``(in, out)`` as in the authors' code
and in `gradclip.sandbox.vectorized.RNN`, so the same arrays load into both models.
Initial weights are drawn with NumPy (`init_weights`) so that a seed gives the same network
in torch and in the NumPy sandbox. Training uses plain SGD, θ ← θ - lr g, without momentum, as the
paper does (``torch.optim.SGD`` with its defaults).
"""

from __future__ import annotations

import numpy as np

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from torch import Tensor, nn

__all__ = ["INITS", "PARAM_NAMES", "TanhRNN", "init_weights", "sparse_recurrent"]

PARAM_NAMES = ("W_uh", "W_hh", "b_h", "W_hy", "b_y")
INITS = ("smart", "gaussian")


def sparse_recurrent(
    n_hidden: int, rng: np.random.Generator, *, nonzero: int = 15, std: float = 0.01, radius: float = 0.95
) -> np.ndarray:
    """Sparse Gaussian W_hh rescaled to spectral radius ``radius`` (Pascanu et al. 2013, §4.1).

    Entries ~ N(0, std²); each row keeps ``nonzero`` of them at random places (all when
    n_hidden <= nonzero), then W ← radius · W / ρ(W) with ρ the largest |eigenvalue|. A radius just
    under 1 starts the net near the edge of the one-attractor regime: long memory without
    exploding at once (Jaeger's echo-state initialisation, which the paper calls "smart").
    """
    if isinstance(n_hidden, bool) or not isinstance(n_hidden, int) or n_hidden < 1:
        raise ValueError(f"n_hidden must be an integer >= 1, got {n_hidden!r}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius!r}")
    w = rng.normal(0.0, std, size=(n_hidden, n_hidden))
    for row in w:
        row[rng.permutation(n_hidden)[nonzero:]] = 0.0
    rho = float(np.max(np.abs(np.linalg.eigvals(w))))
    if rho == 0.0:  # every kept weight drew exactly 0: nothing to rescale
        return w
    return radius * w / rho


def init_weights(
    n_in: int, n_hidden: int, n_out: int, *, init: str = "smart", seed: int = 0
) -> dict[str, np.ndarray]:
    """Initial weights as float64 arrays named `PARAM_NAMES`; biases start at zero.

    ``"smart"``: W_uh, W_hy ~ N(0, 0.01²) and W_hh from `sparse_recurrent` (spectral radius
    0.95). ``"gaussian"``: every matrix ~ N(0, 0.1²) (the paper's plain tanh initialisation).
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose from {list(INITS)}")
    rng = np.random.default_rng(seed)
    std = 0.01 if init == "smart" else 0.1
    w_uh = rng.normal(0.0, std, size=(n_in, n_hidden))
    if init == "smart":
        w_hh = sparse_recurrent(n_hidden, rng)
    else:
        w_hh = rng.normal(0.0, std, size=(n_hidden, n_hidden))
    w_hy = rng.normal(0.0, std, size=(n_hidden, n_out))
    return {"W_uh": w_uh, "W_hh": w_hh, "b_h": np.zeros(n_hidden), "W_hy": w_hy, "b_y": np.zeros(n_out)}


class TanhRNN(nn.Module):
    """Elman RNN with tanh units and a linear read-out of the last (or every) hidden state.

    ``forward(u)``: u ``(N, T, n_in)`` -> ``(N, n_out)``, or ``(N, T, n_out)`` with
    ``every_step=True``. Build it with `from_weights` to share weights with the NumPy model.
    """

    # Registered by name in __init__ (PARAM_NAMES); declared here so that their type is known.
    W_uh: nn.Parameter
    W_hh: nn.Parameter
    b_h: nn.Parameter
    W_hy: nn.Parameter
    b_y: nn.Parameter

    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        n_out: int,
        *,
        every_step: bool = False,
        init: str = "smart",
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        weights = init_weights(n_in, n_hidden, n_out, init=init, seed=seed)
        for name in PARAM_NAMES:
            self.register_parameter(name, nn.Parameter(torch.tensor(weights[name], dtype=dtype)))
        self.every_step = bool(every_step)

    @classmethod
    def from_weights(
        cls, weights: dict[str, np.ndarray], *, every_step: bool = False, dtype: torch.dtype = torch.float32
    ) -> TanhRNN:
        """A model holding copies of ``weights`` (the arrays of `init_weights`)."""
        missing = sorted(set(PARAM_NAMES) - set(weights))
        if missing:
            raise ValueError(f"weights lack {missing}; need {list(PARAM_NAMES)}")
        n_in, n_hidden = weights["W_uh"].shape
        model = cls(n_in, n_hidden, weights["W_hy"].shape[1], every_step=every_step, dtype=dtype)
        with torch.no_grad():
            for name in PARAM_NAMES:
                getattr(model, name).copy_(torch.as_tensor(weights[name]))
        return model

    def forward(self, u: Tensor) -> Tensor:
        if u.ndim != 3 or u.shape[2] != self.W_uh.shape[0]:
            raise ValueError(
                f"inputs must have shape (batch, time, {self.W_uh.shape[0]}), got {tuple(u.shape)}"
            )
        n, steps, _ = u.shape
        a = u @ self.W_uh + self.b_h  # (N, T, H): the input part of every pre-activation at once
        h = u.new_zeros(n, self.W_hh.shape[0])  # h_0 = 0
        states = []
        for t in range(steps):
            h = torch.tanh(torch.addmm(a[:, t], h, self.W_hh))  # a_t + h_{t-1} W_hh
            states.append(h)
        if self.every_step:
            return torch.stack(states, dim=1) @ self.W_hy + self.b_y  # (N, T, O)
        return h @ self.W_hy + self.b_y  # (N, O)

    def weights(self) -> dict[str, np.ndarray]:
        """The current weights as NumPy float64 arrays named `PARAM_NAMES`."""
        return {name: getattr(self, name).detach().double().numpy().copy() for name in PARAM_NAMES}

    def spectral_radius(self) -> float:
        """ρ(W_hh), the largest |eigenvalue| of the recurrent matrix (above 1: gradients may explode)."""
        return float(np.max(np.abs(np.linalg.eigvals(self.W_hh.detach().double().numpy()))))
