"""What the ``pascanu`` experiment writes: the table, a figure in the style of Fig. 7, the summaries.

`format_table` prints one line per (task, T, lr): each arm's successes, rate and 95% Wilson
interval, and the Fisher exact p-value of the difference; each arm's median final error with its
95% order-statistic interval, and the Mann-Whitney p-value of the difference of the errors (which
still separates the arms when no run is solved); the median steps to success. `plot_rates` draws
the success rates against T, one panel per task, SGD and SGD-C side by side with their intervals
(Pascanu et al. 2013, Fig. 7), and below them the median final errors with theirs. `write_outputs` writes
``summary.json``, ``summary.md`` and ``pascanu.png`` atomically into the output directory, and
`log_runs` replays every run through [`gradclip.monitor.GradMonitor`][gradclip.monitor.GradMonitor] so that
``gradclip report`` and the explorer read them.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gradclip._io import atomic_write
from gradclip.sandbox.recurrent.experiment import Arm, Comparison, run_name
from gradclip.sandbox.recurrent.model import PARAM_NAMES
from gradclip.sandbox.recurrent.train import RunConfig, RunResult
from gradclip.sandbox.stats import Interval
from gradclip.sandbox.tables import markdown_table, text_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["format_markdown", "format_table", "log_runs", "plot_rates", "write_outputs"]

NOTE = ("success: error < 1% on fresh sequences within the step budget; solved [a, b]: 95% Wilson interval; "
        "p: two-sided Fisher exact test of the success rates of SGD vs SGD-C; "
        "err: median error of the last evaluation (a diverged run counts as 1) [a, b]: 95% "
        "order-statistic interval of the median; p err: two-sided Mann-Whitney U test of the final "
        "errors (normal approximation, tie-corrected); c: median clipping threshold; "
        "clipped: share of SGD-C's steps that were clipped")  # fmt: skip


def _rate(arm: Arm) -> str:
    return f"{arm.solved}/{arm.runs} [{arm.rate.low:.2f}, {arm.rate.high:.2f}]"


def _num(value: float, spec: str = ".0f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


def _error(arm: Arm) -> str:
    e = arm.error
    return f"{_num(e.estimate, '.2f')} [{_num(e.low, '.2f')}, {_num(e.high, '.2f')}]"


def _cells(c: Comparison) -> list[str]:
    s, k = c.sgd, c.clipped
    return [s.task, str(s.length), f"{s.lr:g}", _rate(s), _rate(k), f"{c.p_value:.3g}", _error(s),
            _error(k), _num(c.error_test.p_value, ".2g"), _num(s.median_steps),
            _num(k.median_steps), _num(k.median_threshold, ".3g"), f"{k.clip_rate:.1%}",
            f"{s.diverged}/{k.diverged}", f"{s.jumps}/{k.jumps}"]  # fmt: skip


HEAD = ["task", "T", "lr", "SGD solved", "SGD-C solved", "p", "SGD err", "SGD-C err", "p err",
        "SGD steps", "SGD-C steps", "c", "clipped", "NaN", "jumps"]  # fmt: skip


def format_table(comparisons: Sequence[Comparison]) -> str:
    """Plain-text table, one line per (task, T, lr)."""
    return text_table(HEAD, [_cells(c) for c in comparisons])


def format_markdown(comparisons: Sequence[Comparison]) -> str:
    """The same table in Markdown."""
    return markdown_table(HEAD, [_cells(c) for c in comparisons])


def _bars(
    ax: Axes, comparisons: Sequence[Comparison], lrs: list[float], pick: Callable[[Arm], Interval]
) -> None:
    """One task's panel: the interval ``pick(arm)`` per T, SGD and SGD-C side by side per lr."""
    lengths = sorted({c.sgd.length for c in comparisons})
    width = 0.8 / (2 * len(lrs))
    styles = {False: ("tab:red", "o", "SGD"), True: ("tab:blue", "s", "SGD-C")}
    for j, lr in enumerate(lrs):
        at_lr = {c.sgd.length: c for c in comparisons if c.sgd.lr == lr}
        for arm_index, clipped in enumerate((False, True)):
            colour, marker, name = styles[clipped]
            arms = [at_lr[n].clipped if clipped else at_lr[n].sgd for n in lengths if n in at_lr]
            x = [lengths.index(a.length) + (2 * j + arm_index + 0.5) * width - 0.4 for a in arms]
            values = [pick(a) for a in arms]
            y = [v.estimate for v in values]
            err = [  # an unbounded or undefined end draws no bar on that side
                [v.estimate - v.low if math.isfinite(v.estimate - v.low) else 0.0 for v in values],
                [v.high - v.estimate if math.isfinite(v.high - v.estimate) else 0.0 for v in values],
            ]
            ax.errorbar(x, y, yerr=err, fmt=marker, color=colour, capsize=3, alpha=1.0 - 0.45 * j,
                        label=f"{name}, lr {lr:g}")  # fmt: skip
    ax.set_xticks(range(len(lengths)), [f"T={n}" for n in lengths])
    ax.grid(axis="y", alpha=0.3)


def plot_rates(comparisons: Sequence[Comparison], *, title: str = "") -> bytes:
    """PNG bytes: success rates (top) and median final errors (bottom) against T, one column per task.

    SGD and SGD-C side by side per lr; the rates with their 95% Wilson intervals, the errors with
    their 95% order-statistic intervals.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(c.sgd.task for c in comparisons))
    lrs = sorted({c.sgd.lr for c in comparisons})
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 6.8), squeeze=False, sharex="col")
    for col, task in enumerate(tasks):
        rows = [c for c in comparisons if c.sgd.task == task]
        _bars(axes[0][col], rows, lrs, lambda a: a.rate)
        axes[0][col].set_ylim(-0.05, 1.05)
        axes[0][col].set_title(task)
        _bars(axes[1][col], rows, lrs, lambda a: a.error)
        axes[1][col].set_ylim(bottom=0.0)
    axes[0][0].set_ylabel("rate of success (95% Wilson interval)")
    axes[1][0].set_ylabel("median final error (95% interval)")
    axes[0][-1].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _json_value(value: object) -> object:
    """NaN and inf as null (JSON has neither), intervals and tests as objects, tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "_asdict"):
        return {k: _json_value(v) for k, v in value._asdict().items()}
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def _arm_json(arm: Arm) -> dict:
    return {k: _json_value(v) for k, v in arm._asdict().items()}


def summary_markdown(
    comparisons: Sequence[Comparison], *, command: str, settings: dict, seconds: float
) -> str:
    """The short ``summary.md``: the command, the settings, the table and what it says."""
    better = [c for c in comparisons if c.p_value < 0.05 and c.clipped.solved > c.sgd.solved]
    worse = [c for c in comparisons if c.p_value < 0.05 and c.clipped.solved < c.sgd.solved]
    lines = [f"# pascanu: SGD vs SGD-C ({seconds:.0f} s)", "", f"Command: `{command}`", "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), "",
             format_markdown(comparisons), "", NOTE + ".", "",
             f"Clipping solved significantly more runs (p < 0.05) in {len(better)} of {len(comparisons)} "
             f"settings, significantly fewer in {len(worse)}; in the other "
             f"{len(comparisons) - len(better) - len(worse)} the difference is within chance.",
             "", _errors_sentence(comparisons), ""]  # fmt: skip
    return "\n".join(lines)


def _errors_sentence(comparisons: Sequence[Comparison]) -> str:
    """What the rank tests of the final errors say, with the count that survives Bonferroni."""
    tested = [c for c in comparisons if not math.isnan(c.error_test.p_value)]
    if not tested:
        return "The runs were not evaluated, so their final errors were not compared."

    def lowered(c: Comparison) -> bool:  # SGD's errors rank above SGD-C's: clipping lowered them
        n1, n2 = (sum(not math.isnan(e) for e in arm.errors) for arm in (c.sgd, c.clipped))
        return c.error_test.u > n1 * n2 / 2

    strict = 0.05 / len(tested)
    low = [c for c in tested if c.error_test.p_value < 0.05 and lowered(c)]
    high = [c for c in tested if c.error_test.p_value < 0.05 and not lowered(c)]
    survive = [c for c in low + high if c.error_test.p_value < strict]
    return (f"The final errors (Mann-Whitney, p < 0.05) were significantly lower with clipping in "
            f"{len(low)} of {len(tested)} settings and significantly higher in {len(high)}; "
            f"{len(survive)} of these {len(low) + len(high)} stay below the Bonferroni threshold "
            f"0.05/{len(tested)} = {strict:.2g} for {len(tested)} tests.")  # fmt: skip


def write_outputs(comparisons: Sequence[Comparison], out: Path, *, command: str, settings: dict,
                  seconds: float) -> list[Path]:  # fmt: skip
    """``summary.json``, ``summary.md`` and ``pascanu.png`` in ``out`` (atomic writes); their paths."""
    out.mkdir(parents=True, exist_ok=True)
    data = {"command": command, "settings": settings, "wall_seconds": seconds,
            "comparisons": [{"sgd": _arm_json(c.sgd), "clipped": _arm_json(c.clipped), "p_value": c.p_value,
                             "error_test": _json_value(c.error_test)} for c in comparisons]}  # fmt: skip
    paths = [out / "summary.json", out / "summary.md", out / "pascanu.png"]
    markdown = summary_markdown(comparisons, command=command, settings=settings, seconds=seconds)
    figure = plot_rates(comparisons, title="SGD vs SGD-C (cf. Pascanu et al. 2013, Fig. 7)")
    blobs = (json.dumps(data, indent=1, default=str).encode(), markdown.encode(), figure)
    for path, blob in zip(paths, blobs, strict=True):
        atomic_write(path, lambda f, blob=blob: f.write(blob))  # type: ignore[misc]  # mypy cannot type a default-bound lambda
    return paths


def log_runs(results: Sequence[RunResult], out: Path) -> Path:
    """Every run's per-step norm, threshold, clipped flag and loss through GradMonitor, ``out/runs/<run>``."""
    from gradclip.monitor import GradMonitor, GradMonitorWarning

    root = out / "runs"
    for r in results:
        config = RunConfig(**r.config)
        c = config.threshold
        monitor = GradMonitor(log_dir=root / run_name(config), names=list(PARAM_NAMES), max_norm=c,
                              name=run_name(config), overwrite=True)  # fmt: skip
        with warnings.catch_warnings(), monitor:
            warnings.simplefilter("ignore", GradMonitorWarning)  # spikes are what this experiment provokes
            for norm, loss in zip(r.grad_norms, r.losses, strict=True):
                monitor.record(norm, threshold=c, clipped=c is not None and norm > c, loss=loss, lr=config.lr)
    return root
