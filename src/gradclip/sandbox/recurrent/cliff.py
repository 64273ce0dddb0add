"""The ``cliff`` experiment: gradient descent on the single-unit RNN of Pascanu et al. (2013, Fig. 6).

The network is x_t = w σ(x_{t-1}) + b, t = 1..50, x_0 = 0.5, with error E = (σ(x_50) - 0.7)²
(§2.3, eq. 8). Where the map x -> w σ(x) + b gains or loses a fixed point, x_50 jumps and E has a
wall whose gradient dwarfs the plateaus beside it; one unclipped step that lands on the wall is
thrown far away. Surface and simulations are those of [`gradclip.explorer.cliff`][gradclip.explorer.cliff],
the module the web explorer draws from, so the figure and the page always show the same numbers. This module
only runs them and draws the PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from gradclip._io import atomic_write
from gradclip.explorer import cliff

__all__ = ["CliffResult", "run_cliff"]

SURFACE = "cliff"
# The experiment's own setting (the explorer's default scene uses lr 1 from (4, -4.3)): a small
# learning rate, so that the clipped run's steps of at most lr·c = 0.1 trace the wall closely.
START, LR, THRESHOLD, STEPS = (5.0, -3.5), 0.1, 1.0, 200


class CliffResult(NamedTuple):
    """Both descents, and what they did: ``trajectories['none']`` and ``trajectories['norm']``."""

    trajectories: dict[str, cliff.Trajectory]
    path: Path | None

    def lines(self) -> list[str]:
        out = []
        for method, t in self.trajectories.items():
            label = "unclipped" if method == "none" else "norm-clipped"
            out.append(
                f"{label:>12}: loss {t.loss[0]:.3g} -> {t.loss[-1]:.3g} in {len(t.grad_norm)} steps, "
                f"largest gradient norm {t.grad_norm.max(initial=0.0):.3g}, longest step "
                f"{t.step_length.max(initial=0.0):.3g}, ends at (w, b) = ({t.points[-1, 0]:.3g}, "
                f"{t.points[-1, 1]:.3g}){', diverged' if t.diverged else ''}"
            )
        return out


def run_cliff(
    *,
    start: tuple[float, float] | None = None,
    lr: float | None = None,
    threshold: float | None = None,
    steps: int | None = None,
    grid: int = 201,
    out: str | Path | None = None,
) -> CliffResult:
    """Descend E from ``start`` with and without norm clipping; draw ``out/cliff.png`` when ``out`` is set.

    Unset settings take `START`, `LR`, `THRESHOLD` and `STEPS` ((5, -3.5),
    lr 0.1, c = 1, 200 steps), under which the unclipped run is thrown off the wall and the clipped
    one is not.
    """
    runs = {
        method: cliff.simulate(
            SURFACE,
            START if start is None else start,
            lr=LR if lr is None else lr,
            threshold=THRESHOLD if threshold is None else threshold,
            steps=STEPS if steps is None else steps,
            method=method,
        )
        for method in ("none", "norm")
    }
    path = None if out is None else _draw(runs, cliff.surface(SURFACE, grid=grid), Path(out) / "cliff.png")
    return CliffResult(runs, path)


def _draw(runs: dict[str, cliff.Trajectory], surf: cliff.Surface, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    land = cliff.LANDSCAPES[SURFACE]
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(12, 5))
    mesh = ax.pcolormesh(surf.u, surf.v, surf.loss, shading="auto", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="E(w, b)")
    styles = {"none": ("tab:red", "without clipping"), "norm": ("white", "with norm clipping")}
    (u0, u1), (v0, v1) = land.bounds
    for method, t in runs.items():
        colour, label = styles[method]
        ax.plot(t.points[:, 0], t.points[:, 1], "o-", ms=2.5, lw=1.2, color=colour, label=label)
        inside = (
            (t.points[:, 0] >= u0) & (t.points[:, 0] <= u1) & (t.points[:, 1] >= v0) & (t.points[:, 1] <= v1)
        )
        if not inside.all():
            k = int(np.argmin(inside))  # first point off the plot: say where it went
            ax.annotate(
                f"step {k}: thrown to ({t.points[k, 0]:.3g}, {t.points[k, 1]:.3g})",
                xy=(t.points[k - 1, 0], t.points[k - 1, 1]), xytext=(u0 + 0.3, v1 - 0.6),
                color=colour, arrowprops={"arrowstyle": "->", "color": colour},
            )  # fmt: skip
        ax_loss.semilogy(
            np.maximum(t.loss, 1e-12), color="tab:red" if method == "none" else "tab:blue", label=label
        )
    ax.set_xlim(u0, u1)
    ax.set_ylim(v0, v1)
    ax.set_xlabel("w")
    ax.set_ylabel("b")
    ax.set_title("x_t = w σ(x_{t-1}) + b, 50 steps: E = (σ(x_50) - 0.7)²")
    ax.legend(loc="lower right")
    ax_loss.set_xlabel("gradient-descent step")
    ax_loss.set_ylabel("E (log scale)")
    ax_loss.set_title("Pascanu et al. 2013, §2.3, Fig. 6")
    ax_loss.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path
