"""Loss surfaces with cliffs, and gradient descent on them with and without clipping (framework-free).

Three landscapes over two parameters ``θ = (u, v)``:

* ``cliff``: the single-unit recurrent network of Pascanu, Mikolov & Bengio (2013, arXiv:1211.5063,
  section 2.3, eq. 8 and Figure 6), ``x_t = w σ(x_{t-1}) + b`` for ``t = 1..50`` from ``x_0 = 0.5``,
  with the paper's error ``E = (σ(x_50) - 0.7)^2`` over ``(w, b)``. Where the map ``x -> w σ(x) + b``
  gains or loses a fixed point (a bifurcation), ``x_50`` jumps and the surface has a wall whose gradient
  is orders of magnitude larger than on the plateaus beside it;
* ``valley``: ``f = u^2/20 + v^4``, a gentle valley floor along ``u`` between quartic walls that
  steepen the further one climbs them;
* ``bowl``: ``f = (u^2 + 4 v^2)/2``, smooth and well conditioned: clipping has nothing to save here.

[`simulate`][gradclip.explorer.cliff.simulate] runs ``θ_{k+1} = θ_k - lr · clip(∇f(θ_k))`` with no clipping,
norm clipping (``g · min(1, c/||g||)``, Pascanu et al. 2013, Algorithm 1) or value clipping
(``clamp(g_i, -c, c)``, Mikolov 2012), through [`gradclip.numpy`][gradclip.numpy].
[`compare_clipping`][gradclip.explorer.cliff.compare_clipping] clips one vector both ways and measures the
angle value clipping turns it by. The explorer's server and ``gradclip experiment cliff`` both draw from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from gradclip.numpy import clip_grad_norm_, clip_grad_value_

__all__ = [
    "LANDSCAPES",
    "METHODS",
    "Landscape",
    "Surface",
    "Trajectory",
    "VectorComparison",
    "compare_clipping",
    "loss_and_grad",
    "simulate",
    "simulate_all",
    "surface",
]

METHODS = ("none", "norm", "value")

# The paper's setting for Figure 6 (section 2.3): 50 steps from x_0 = 0.5, target 0.7 for σ(x_50).
RNN_STEPS, RNN_X0, RNN_TARGET = 50, 0.5, 0.7


def _sigmoid(x: float) -> float:
    # σ(x) = (1 + tanh(x/2))/2: same value as 1/(1 + e^-x) without overflow for very negative x.
    return 0.5 + 0.5 * math.tanh(0.5 * x)


def _cliff(u: float, v: float) -> tuple[float, float, float]:
    """Loss and gradient of the single-unit RNN, by forward-mode differentiation.

    With ``s_t = σ(x_t)`` and ``σ' = s(1 - s)``: ``∂x_t/∂w = s_{t-1} + w σ'(x_{t-1}) ∂x_{t-1}/∂w`` and
    ``∂x_t/∂b = 1 + w σ'(x_{t-1}) ∂x_{t-1}/∂b``; then ``∂E/∂θ = 2 (s_50 - 0.7) σ'(x_50) ∂x_50/∂θ``.
    """
    w, b = u, v
    x, dw, db = RNN_X0, 0.0, 0.0
    for _ in range(RNN_STEPS):
        s = _sigmoid(x)
        k = w * s * (1.0 - s)  # ∂x_t/∂x_{t-1}: its product over t is what explodes
        dw = s + k * dw
        db = 1.0 + k * db
        x = w * s + b
    s = _sigmoid(x)
    r = s - RNN_TARGET
    c = 2.0 * r * s * (1.0 - s)
    return r * r, c * dw, c * db


def _cliff_grid(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x = np.full(np.broadcast(u, v).shape, RNN_X0)
    for _ in range(RNN_STEPS):
        x = u * (0.5 + 0.5 * np.tanh(0.5 * x)) + v
    return (0.5 + 0.5 * np.tanh(0.5 * x) - RNN_TARGET) ** 2


def _valley(u: float, v: float) -> tuple[float, float, float]:
    # Products, not ``**``: a float power raises OverflowError where a product just gives inf.
    v3 = v * v * v
    return u * u / 20.0 + v3 * v, u / 10.0, 4.0 * v3


def _valley_grid(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u / 20.0 + v**4


def _bowl(u: float, v: float) -> tuple[float, float, float]:
    return 0.5 * (u * u + 4.0 * v * v), u, 4.0 * v


def _bowl_grid(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return 0.5 * (u * u + 4.0 * v * v)


@dataclass(frozen=True)
class Landscape:
    """A 2-parameter loss: scalar loss-and-gradient, a vectorised loss for grids, a domain, defaults.

    ``start``, ``lr``, ``threshold`` and ``steps`` are settings under which the three methods part
    ways visibly (on the cliff: all three descend together to a loss near 1e-8, reach the wall at
    step 48, where the unclipped run is thrown onto a plateau at 0.09 for good while the clipped
    ones recover); ``log_color`` says whether the loss spans decades (draw ``log10`` of it).

    Examples:
        >>> from gradclip.explorer.cliff import LANDSCAPES
        >>> cliff = LANDSCAPES["cliff"]
        >>> cliff.axes, cliff.start, cliff.threshold
        (('w', 'b'), (4.0, -4.3), 1.0)
        >>> loss, dw, db = cliff.value_and_grad(*cliff.start)
        >>> 0.0 <= loss <= 1.0
        True
    """

    name: str
    title: str
    axes: tuple[str, str]
    bounds: tuple[tuple[float, float], tuple[float, float]]
    value_and_grad: Callable[[float, float], tuple[float, float, float]]
    grid_loss: Callable[[np.ndarray, np.ndarray], np.ndarray]
    start: tuple[float, float]
    lr: float
    threshold: float
    steps: int
    log_color: bool


LANDSCAPES: dict[str, Landscape] = {
    "cliff": Landscape(
        "cliff", "Single-unit RNN (Pascanu et al. 2013, Fig. 6)", ("w", "b"), ((2.0, 10.0), (-7.0, 0.0)),
        _cliff, _cliff_grid, start=(4.0, -4.3), lr=1.0, threshold=1.0, steps=200, log_color=False,
    ),
    "valley": Landscape(
        "valley", "Steep-walled valley: u²/20 + v⁴", ("u", "v"), ((-10.0, 10.0), (-3.0, 3.0)),
        _valley, _valley_grid, start=(-8.0, 2.6), lr=0.1, threshold=2.0, steps=300, log_color=True,
    ),
    "bowl": Landscape(
        "bowl", "Smooth bowl: (u² + 4v²)/2", ("u", "v"), ((-5.0, 5.0), (-5.0, 5.0)),
        _bowl, _bowl_grid, start=(-4.0, 4.0), lr=0.2, threshold=1.0, steps=100, log_color=True,
    ),
}  # fmt: skip


def _landscape(name: object) -> Landscape:
    if not isinstance(name, str) or name not in LANDSCAPES:
        raise ValueError(f"unknown surface {name!r}; choose from {sorted(LANDSCAPES)}")
    return LANDSCAPES[name]


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _point(point: Sequence[float], name: str = "start") -> tuple[float, float]:
    try:
        u, v = (float(p) for p in point)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers (u, v), got {point!r}") from None
    if not (math.isfinite(u) and math.isfinite(v)):
        raise ValueError(f"{name} must be finite, got {point!r}")
    return u, v


def loss_and_grad(name: str, point: Sequence[float]) -> tuple[float, np.ndarray]:
    """The loss ``f(θ)`` of landscape ``name`` at ``θ = (u, v)`` and its gradient ``∇f(θ)``.

    Examples:
        >>> from gradclip.explorer.cliff import loss_and_grad
        >>> loss, grad = loss_and_grad("bowl", (2.0, 1.0))  # f = (u^2 + 4 v^2) / 2
        >>> loss, grad
        (4.0, array([2., 4.]))
    """
    loss, gu, gv = _landscape(name).value_and_grad(*_point(point, "point"))
    return loss, np.array([gu, gv])


class Surface(NamedTuple):
    """``loss[i, j] = f(u[j], v[i])`` (rows follow ``v``, as a heatmap draws them).

    Examples:
        >>> from gradclip.explorer.cliff import surface
        >>> s = surface("bowl", grid=5)
        >>> s.u.shape, s.v.shape, s.loss.shape
        ((5,), (5,), (5, 5))
        >>> float(s.loss[2, 2])  # the centre of the bowl
        0.0
    """

    u: np.ndarray
    v: np.ndarray
    loss: np.ndarray


@lru_cache(maxsize=16)  # the page asks for the same few grids again and again; 16 x 400² floats at most
def _surface(name: str, grid: int) -> Surface:
    land = LANDSCAPES[name]
    (u0, u1), (v0, v1) = land.bounds
    u, v = np.linspace(u0, u1, grid), np.linspace(v0, v1, grid)
    loss = land.grid_loss(u[None, :], v[:, None])
    for a in (u, v, loss):
        a.flags.writeable = False  # shared by every caller of the cache
    return Surface(u, v, loss)


def surface(name: str, *, grid: int = 121) -> Surface:
    """Landscape ``name`` sampled on a ``grid x grid`` lattice spanning its domain.

    Examples:
        >>> from gradclip.explorer.cliff import surface
        >>> s = surface("valley", grid=3)
        >>> s.u, s.v
        (array([-10.,   0.,  10.]), array([-3.,  0.,  3.]))
    """
    land = _landscape(name)
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 2:
        raise ValueError(f"grid must be a whole number >= 2, got {grid!r}")
    return _surface(land.name, grid)


class Trajectory(NamedTuple):
    """Gradient descent from ``points[0]``: ``n`` steps (fewer than asked when it ``diverged``).

    ``points``: ``(n+1, 2)`` parameters; ``loss``: ``(n+1,)``; ``grad_norm``: ``(n,)`` the pre-clip
    ``||∇f(θ_k)||``; ``clipped``: ``(n,)`` whether the clip changed the gradient; ``step_length``:
    ``(n,)`` ``||θ_{k+1} - θ_k||``. ``diverged`` is True when the run stopped because the loss, the
    gradient or the parameters stopped being finite numbers.

    Examples:
        >>> from gradclip.explorer.cliff import simulate
        >>> run = simulate("bowl", (-4.0, 4.0), lr=0.2, threshold=1.0, steps=10, method="norm")
        >>> run.points.shape, run.grad_norm.shape, bool(run.clipped[0]), run.diverged
        ((11, 2), (10,), True, False)
        >>> bool(run.step_length.max() <= 0.2 + 1e-12)  # norm clipping: no step longer than lr * threshold
        True
    """

    method: str
    points: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    clipped: np.ndarray
    step_length: np.ndarray
    diverged: bool


def _clipped_step(g: np.ndarray, method: str, threshold: float) -> tuple[float, bool]:
    """Clip ``g`` in place with gradclip's NumPy API; return the pre-clip norm and whether it acted."""
    if method == "norm":
        stats = clip_grad_norm_(g, threshold, return_stats=True)
        return stats.total_norm, stats.clipped
    norm = math.hypot(g[0], g[1])
    if method == "value":
        acted = bool(abs(g[0]) > threshold or abs(g[1]) > threshold)
        clip_grad_value_(g, threshold)
        return norm, acted
    return norm, False


def simulate(
    name: str, start: Sequence[float], *, lr: float, threshold: float, steps: int, method: str
) -> Trajectory:
    """Gradient descent ``θ_{k+1} = θ_k - lr · clip(∇f(θ_k))`` on landscape ``name``.

    ``method``: ``'none'``, ``'norm'`` (rescale to norm ``threshold`` when larger, so every step is at
    most ``lr · threshold`` long) or ``'value'`` (clamp each component to ``[-threshold, threshold]``:
    steps up to ``lr · threshold · √2`` long, in a direction bent towards a diagonal).

    Examples:
        >>> from gradclip.explorer.cliff import LANDSCAPES, simulate
        >>> c = LANDSCAPES["cliff"]
        >>> plain = simulate("cliff", c.start, lr=c.lr, threshold=c.threshold, steps=c.steps, method="none")
        >>> clipped = simulate("cliff", c.start, lr=c.lr, threshold=c.threshold, steps=c.steps, method="norm")
        >>> bool(clipped.loss[-1] < plain.loss[-1])  # the unclipped run is thrown off the wall
        True
    """
    land = _landscape(name)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
    lr, threshold = _positive(lr, "lr"), _positive(threshold, "threshold")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}")
    u, v = _point(start)
    f = land.value_and_grad
    g = np.empty(2)
    us, vs, losses, norms, clips = [u], [v], [], [], []
    diverged = False
    for k in range(steps + 1):
        loss, g[0], g[1] = f(u, v)
        losses.append(loss)
        if not (math.isfinite(loss) and math.isfinite(g[0]) and math.isfinite(g[1])):
            diverged = True
            break
        if k == steps:
            break
        norm, acted = _clipped_step(g, method, threshold)
        u, v = u - lr * float(g[0]), v - lr * float(g[1])
        if not (math.isfinite(u) and math.isfinite(v)):
            diverged = True
            break
        norms.append(norm)
        clips.append(acted)
        us.append(u)
        vs.append(v)
    points = np.column_stack([us, vs])
    return Trajectory(
        method=method,
        points=points,
        loss=np.asarray(losses),
        grad_norm=np.asarray(norms),
        clipped=np.asarray(clips, dtype=bool),
        step_length=np.hypot(*np.diff(points, axis=0).T),
        diverged=diverged,
    )


def simulate_all(
    name: str, start: Sequence[float], *, lr: float, threshold: float, steps: int
) -> dict[str, Trajectory]:
    """[`simulate`][gradclip.explorer.cliff.simulate] with each of `METHODS`, from the same start with the
    same settings.

    Examples:
        >>> from gradclip.explorer.cliff import simulate_all
        >>> runs = simulate_all("bowl", (-4.0, 4.0), lr=0.2, threshold=1.0, steps=20)
        >>> sorted(runs), all(len(r.loss) == 21 for r in runs.values())
        (['none', 'norm', 'value'], True)
    """
    return {m: simulate(name, start, lr=lr, threshold=threshold, steps=steps, method=m) for m in METHODS}


class VectorComparison(NamedTuple):
    """One gradient clipped both ways: vectors, their norms, and angles in degrees.

    Examples:
        >>> from gradclip.explorer.cliff import compare_clipping
        >>> c = compare_clipping([3.0, 4.0], 1.0)
        >>> c.norm, round(c.norm_clipped_norm, 4), c.value_clipped.tolist()
        (5.0, 1.0, [1.0, 1.0])
    """

    grad: np.ndarray
    norm_clipped: np.ndarray
    value_clipped: np.ndarray
    norm: float
    norm_clipped_norm: float
    value_clipped_norm: float
    angle_deg: float  # between the value-clipped vector and the gradient (norm clipping keeps 0)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between ``a`` and ``b`` as ``2 atan2(||â - b̂||, ||â + b̂||)`` (Kahan): exact near 0°,
    where ``acos`` of the cosine loses half the digits."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    ua, ub = a / na, b / nb
    return math.degrees(2.0 * math.atan2(float(np.linalg.norm(ua - ub)), float(np.linalg.norm(ua + ub))))


def compare_clipping(grad: Sequence[float], threshold: float) -> VectorComparison:
    """Clip ``grad`` by norm and by value at the same ``threshold`` (both through
    [`gradclip.numpy`][gradclip.numpy]).

    Norm clipping, ``g · min(1, c/||g||)``, keeps the direction; value clipping, ``clamp(g_i, -c, c)``,
    keeps each component's sign but can turn the vector by up to 45° in two dimensions (towards the
    diagonal of the box ``[-c, c]²``) while its length may reach ``c √d``.

    Examples:
        >>> from gradclip.explorer.cliff import compare_clipping
        >>> c = compare_clipping([10.0, 1.0], 1.0)
        >>> round(c.angle_deg, 1)  # value clipping turns (10, 1) to (1, 1): by 45 - 5.7 degrees
        39.3
    """
    g = np.array(grad, dtype=np.float64).ravel()
    if g.size == 0 or not np.isfinite(g).all():
        raise ValueError(f"grad must be a non-empty vector of finite numbers, got {grad!r}")
    c = _positive(threshold, "threshold")
    by_norm, by_value = g.copy(), g.copy()
    clip_grad_norm_(by_norm, c)
    clip_grad_value_(by_value, c)
    return VectorComparison(
        grad=g,
        norm_clipped=by_norm,
        value_clipped=by_value,
        norm=float(np.linalg.norm(g)),
        norm_clipped_norm=float(np.linalg.norm(by_norm)),
        value_clipped_norm=float(np.linalg.norm(by_value)),
        angle_deg=_angle_deg(g, by_value),
    )
