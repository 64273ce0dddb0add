"""Optimizers over the flat parameter buffer: SGD (momentum, Nesterov), Adam(W), Lookahead; LR schedules.

``step(params, grads)`` updates ``params`` in place with a handful of whole-buffer NumPy operations
(state buffers are allocated once, at the first step). The update rules follow ``torch.optim`` so
the tests can compare numbers step by step. ``lr`` is a float or a schedule: any callable mapping
the 0-based step index to a learning rate ([`StepLR`][gradclip.sandbox.vectorized.optim.StepLR],
[`CosineWarmup`][gradclip.sandbox.vectorized.optim.CosineWarmup] below). Every optimizer has
``state_dict()``/``load_state_dict()`` that round-trip exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradclip._state import check_int, check_keys, check_mapping

__all__ = ["SGD", "Adam", "Constant", "CosineWarmup", "Lookahead", "Optimizer", "StepLR"]

Schedule = Callable[[int], float]


def _check_nonneg(value: object, name: str, *, upper: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < upper:
        bound = f"in [0, {upper})" if math.isfinite(upper) else ">= 0"
        raise ValueError(f"{name} must be a real number {bound}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Constant:
    """lr_t = lr.

    Examples:
        >>> from gradclip.sandbox.vectorized.optim import Constant
        >>> Constant(0.1)(0), Constant(0.1)(1000)
        (0.1, 0.1)
    """

    lr: float

    def __call__(self, step: int) -> float:
        return self.lr


@dataclass(frozen=True)
class StepLR:
    """lr_t = lr · gamma^⌊t / step_size⌋ (torch.optim.lr_scheduler.StepLR, stepped per update).

    Examples:
        >>> from gradclip.sandbox.vectorized.optim import StepLR
        >>> [StepLR(1.0, step_size=2, gamma=0.5)(t) for t in range(5)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    lr: float
    step_size: int
    gamma: float = 0.1

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)


@dataclass(frozen=True)
class CosineWarmup:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then cosine decay to ``min_lr`` at ``total``.

    lr_t = lr (t+1)/warmup for t < warmup, else
    min_lr + (lr - min_lr) (1 + cos(π (t - warmup) / (total - warmup))) / 2 (Loshchilov & Hutter 2017,
    arXiv:1608.03983; warm-up as in Goyal et al. 2017, arXiv:1706.02677). Constant at ``min_lr`` after.

    Examples:
        >>> from gradclip.sandbox.vectorized.optim import CosineWarmup
        >>> schedule = CosineWarmup(1.0, total=10, warmup=2)
        >>> [round(schedule(t), 3) for t in (0, 1, 2, 6, 10, 20)]  # warm-up, peak, half-way, floor
        [0.5, 1.0, 1.0, 0.5, 0.0, 0.0]
    """

    lr: float
    total: int
    warmup: int = 0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.warmup < self.total:
            raise ValueError(f"need 0 <= warmup < total, got warmup={self.warmup!r}, total={self.total!r}")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = min((step - self.warmup) / (self.total - self.warmup), 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Optimizer:
    """Holds the schedule and the step count ``t``; subclasses implement ``_update``.

    Examples:
        >>> import numpy as np
        >>> from gradclip.sandbox.vectorized.optim import SGD, StepLR
        >>> opt = SGD(StepLR(0.1, step_size=1, gamma=0.5))  # every optimizer takes a float or a schedule
        >>> params, grads = np.zeros(2, np.float32), np.ones(2, np.float32)
        >>> opt.lr
        0.1
        >>> opt.step(params, grads)
        >>> opt.t, opt.lr, params
        (1, 0.05, array([-0.1, -0.1], dtype=float32))
    """

    def __init__(self, lr: float | Schedule) -> None:
        if callable(lr):
            self.schedule: Schedule = lr
        else:
            self.schedule = Constant(_check_nonneg(lr, "lr"))
        self.t = 0  # updates done so far

    @property
    def lr(self) -> float:
        """The learning rate the next step will use."""
        return float(self.schedule(self.t))

    def step(self, params: np.ndarray, grads: np.ndarray) -> None:
        """One update of the flat ``params`` buffer in place, from the flat ``grads`` buffer."""
        if params.shape != grads.shape or params.ndim != 1:
            raise ValueError(
                f"params and grads must be 1-D buffers of equal size, got {params.shape}, {grads.shape}"
            )
        lr = self.lr
        self.t += 1
        self._update(params, grads, params.dtype.type(lr))

    def _update(self, params: np.ndarray, grads: np.ndarray, lr: np.floating) -> None:
        raise NotImplementedError

    def _buffers(self) -> dict[str, np.ndarray | None]:
        return {}

    def state_dict(self) -> dict[str, object]:
        bufs = {k: (None if v is None else v.copy()) for k, v in self._buffers().items()}
        return {"t": self.t, **bufs}

    def check_state_dict(self, state: object) -> None:
        """Raise TypeError/ValueError unless ``state`` is a state this optimizer saved; change nothing."""
        owner = f"{type(self).__name__} state"
        state = check_mapping(state, owner)
        check_keys(state, ("t", *self._buffers()), owner)
        check_int(state["t"], f"{owner} 't'")
        for name in self._buffers():
            value = state[name]
            if value is not None and (not isinstance(value, np.ndarray) or value.ndim != 1):
                raise ValueError(f"{owner} {name!r} must be a flat array or None, got {type(value).__name__}")

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.check_state_dict(state)
        self.t = int(state["t"])  # type: ignore[call-overload]
        for name in self._buffers():
            value = state.get(name)
            setattr(self, name, None if value is None else np.array(value, copy=True))


class SGD(Optimizer):
    """SGD with momentum μ and Nesterov (Sutskever et al. 2013), as torch.optim.SGD (no dampening).

    g ← g + λ p;  b ← μ b + g;  g ← g + μ b (Nesterov) or g ← b;  p ← p - lr g.

    Examples:
        >>> import numpy as np
        >>> from gradclip.sandbox.vectorized.optim import SGD
        >>> opt = SGD(0.1, momentum=0.9)
        >>> params = np.zeros(1)
        >>> for _ in range(2):
        ...     opt.step(params, np.ones(1))  # b = 1, then 0.9 * 1 + 1 = 1.9
        >>> params.round(6)
        array([-0.29])
    """

    def __init__(
        self,
        lr: float | Schedule = 0.01,
        *,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        self.momentum = _check_nonneg(momentum, "momentum", upper=1.0)
        self.weight_decay = _check_nonneg(weight_decay, "weight_decay")
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self.buf: np.ndarray | None = None
        self.work: np.ndarray | None = None

    def _buffers(self) -> dict[str, np.ndarray | None]:
        return {"buf": self.buf}

    def _update(self, params: np.ndarray, grads: np.ndarray, lr: np.floating) -> None:
        if self.weight_decay == 0.0 and self.momentum == 0.0:
            params -= lr * grads
            return
        if self.work is None or self.work.shape != params.shape:
            self.work = np.empty_like(params)
        g = self.work
        np.multiply(params, params.dtype.type(self.weight_decay), out=g)
        g += grads
        if self.momentum:
            if self.buf is None:
                self.buf = np.zeros_like(params)
            self.buf *= self.buf.dtype.type(self.momentum)
            self.buf += g
            if self.nesterov:
                g += self.buf * self.buf.dtype.type(self.momentum)
            else:
                g[...] = self.buf
        g *= lr
        params -= g


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba 2015, arXiv:1412.6980), as torch.optim.Adam.

    m ← β1 m + (1-β1) g;  v ← β2 v + (1-β2) g²;  p ← p - lr/(1-β1^t) · m / (√v/√(1-β2^t) + ε).
    ``weight_decay`` is added to g (L2), or with ``decoupled=True`` applied as p ← p(1 - lr λ)
    before the update (AdamW, Loshchilov & Hutter 2019, arXiv:1711.05101).

    Examples:
        >>> import numpy as np
        >>> from gradclip.sandbox.vectorized.optim import Adam
        >>> opt = Adam(1e-3)
        >>> params = np.zeros(2)
        >>> opt.step(params, np.array([5.0, -0.01]))  # the first step moves each weight by about lr
        >>> params.round(6)
        array([-0.001,  0.001])
    """

    def __init__(
        self,
        lr: float | Schedule = 1e-3,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        super().__init__(lr)
        self.beta1 = _check_nonneg(betas[0], "betas[0]", upper=1.0)
        self.beta2 = _check_nonneg(betas[1], "betas[1]", upper=1.0)
        self.eps = _check_nonneg(eps, "eps")
        self.weight_decay = _check_nonneg(weight_decay, "weight_decay")
        self.decoupled = bool(decoupled)
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.work: np.ndarray | None = None

    def _buffers(self) -> dict[str, np.ndarray | None]:
        return {"m": self.m, "v": self.v}

    def _update(self, params: np.ndarray, grads: np.ndarray, lr: np.floating) -> None:
        f = params.dtype.type
        if self.m is None or self.v is None:
            self.m, self.v = np.zeros_like(params), np.zeros_like(params)
        if self.work is None or self.work.shape != params.shape:
            self.work = np.empty_like(params)
        g, w = grads, self.work
        if self.weight_decay and self.decoupled:
            params *= f(1.0 - lr * self.weight_decay)
        elif self.weight_decay:
            np.multiply(params, f(self.weight_decay), out=w)
            w += grads
            g = w.copy()
        self.m *= f(self.beta1)
        np.multiply(g, f(1.0 - self.beta1), out=w)
        self.m += w
        self.v *= f(self.beta2)
        np.multiply(g, g, out=w)
        w *= f(1.0 - self.beta2)
        self.v += w
        bc1 = 1.0 - self.beta1**self.t
        bc2_sqrt = math.sqrt(1.0 - self.beta2**self.t)
        np.sqrt(self.v, out=w)
        w /= f(bc2_sqrt)
        w += f(self.eps)
        np.divide(self.m, w, out=w)
        w *= f(lr / bc1)
        params -= w


class Lookahead:
    """Lookahead (Zhang et al. 2019, arXiv:1907.08610) around any inner optimizer.

    The inner optimizer moves the fast weights; every k steps the slow weights move
    φ ← φ + α (θ - φ) and the fast weights restart from them: θ ← φ. φ starts at the first θ seen.

    Examples:
        >>> import numpy as np
        >>> from gradclip.sandbox.vectorized.optim import SGD, Lookahead
        >>> opt = Lookahead(SGD(0.1), k=2, alpha=0.5)
        >>> params = np.zeros(1)
        >>> for _ in range(2):
        ...     opt.step(params, np.ones(1))  # fast weights 0 -> -0.1 -> -0.2
        >>> params.round(6)  # then half-way back towards the slow weights: -0.1
        array([-0.1])
    """

    def __init__(self, inner: Optimizer, *, k: int = 5, alpha: float = 0.5) -> None:
        if not isinstance(inner, Optimizer):
            raise TypeError(f"inner must be an Optimizer (SGD, Adam), got {type(inner).__name__}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.inner, self.k, self.alpha = inner, k, float(alpha)
        self.slow: np.ndarray | None = None
        self.count = 0  # fast steps since the start

    @property
    def lr(self) -> float:
        return self.inner.lr

    def step(self, params: np.ndarray, grads: np.ndarray) -> None:
        if self.slow is None:
            self.slow = params.copy()
        self.inner.step(params, grads)
        self.count += 1
        if self.count % self.k == 0:
            self.slow += params.dtype.type(self.alpha) * (params - self.slow)
            params[...] = self.slow

    def state_dict(self) -> dict[str, object]:
        slow = None if self.slow is None else self.slow.copy()
        return {"count": self.count, "slow": slow, "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        state = check_mapping(state, "Lookahead state")  # type: ignore[assignment]
        check_keys(state, ("count", "slow", "inner"), "Lookahead state")
        check_int(state["count"], "Lookahead state 'count'")
        if state["slow"] is not None and not isinstance(state["slow"], np.ndarray):
            raise ValueError(
                f"Lookahead state 'slow' must be an array or None, got {type(state['slow']).__name__}"
            )
        self.inner.check_state_dict(state["inner"])
        self.count = int(state["count"])  # type: ignore[call-overload]
        self.slow = None if state["slow"] is None else np.array(state["slow"], copy=True)
        self.inner.load_state_dict(state["inner"])  # type: ignore[arg-type]  # checked just above
