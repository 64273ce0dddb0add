"""Reports of monitored runs: PNG plots, one self-contained HTML page, and a terminal summary table.

Everything is read back from the runs' JSONL ([`gradclip.sinks.read_run`][gradclip.sinks.read_run]), so a
report can be made from a finished run, a crashed one, or one still training, and several runs can be compared
on the same axes. Plots use matplotlib's object API (``Figure`` saved with the Agg canvas): no
pyplot state, no GUI backend, safe in threads and on headless machines. Norms span decades (a spike
is 10^3-10^4 times a normal step), so norm axes are logarithmic.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradclip._io import atomic_write, atomic_write_text, check_path
from gradclip.monitor import Advice, threshold_advice
from gradclip.sinks import RunLog, read_run

__all__ = [
    "PLOTS",
    "headline",
    "plot_histogram",
    "plot_layers",
    "plot_loss",
    "plot_norms",
    "print_summary",
    "render_report",
    "run_advice",
    "summary_rows",
    "write_report",
]

_MAX_COLUMNS = 600  # heatmap columns: longer runs are binned, keeping each bin's largest norm
_MAX_LAYER_LABELS = 40


def _figure(rows: int = 1, *, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, height * rows), dpi=100, layout="constrained")
    return fig, fig.subplots(rows, 1, squeeze=False)[:, 0]


def _colors(n: int) -> list[str]:
    return [f"C{i % 10}" for i in range(n)]


def _finite_norms(run: RunLog) -> np.ndarray:
    norms = run.columns["gradclip/pre_clip_norm"]
    return norms[np.isfinite(norms)]


def run_advice(run: RunLog) -> Advice | None:
    """Threshold advice from every finite pre-clip norm after the run's warm-up (exact, no sampling).

    Examples:
        >>> from gradclip import GradMonitor, MonitorConfig, read_run
        >>> from gradclip.report import run_advice
        >>> config = MonitorConfig(warmup=10)  # the first 10 steps are left out of the advice
        >>> with GradMonitor(log_dir="runs/advice-example", config=config, overwrite=True) as monitor:
        ...     for step in range(40):
        ...         monitor.record(100.0 if step < 10 else 1.0 + step % 7)
        >>> advice = run_advice(read_run("runs/advice-example"))
        >>> advice.samples, round(advice.mean, 2), advice.high <= 7.0
        (30, 4.03, True)
    """
    warmup = int(run.header.get("config", {}).get("warmup", 0))
    keep = run.columns["step"] >= warmup
    return threshold_advice(run.columns["gradclip/pre_clip_norm"][keep].tolist())


def plot_norms(runs: Sequence[RunLog], path: Path) -> Path:
    """Pre-clip norm per step (log axis), the threshold as a dashed line, clipped steps as triangles.

    Examples:
        >>> from gradclip import GradMonitor, read_run
        >>> with GradMonitor(log_dir="runs/report-example", names=["w", "b"], overwrite=True) as monitor:
        ...     for step in range(30):
        ...         monitor.record(1.0 + step % 7, threshold=5.0, loss=1 / (step + 1), layer_norms=[1.0, 0.1])
        >>> run = read_run("runs/report-example")
        >>> from pathlib import Path
        >>> from gradclip.report import plot_norms
        >>> plot_norms([run], Path("norms.png")).stat().st_size > 0
        True
    """
    fig, (ax,) = _figure()
    for run, color in zip(runs, _colors(len(runs)), strict=True):
        c = run.columns
        step, norm = c["step"], np.where(c["gradclip/pre_clip_norm"] > 0, c["gradclip/pre_clip_norm"], np.nan)
        ax.plot(step, norm, color=color, lw=0.8, label=f"{run.name}: pre-clip norm")
        if np.isfinite(c["gradclip/threshold"]).any():
            ax.plot(step, c["gradclip/threshold"], color=color, ls="--", lw=1.2, drawstyle="steps-post",
                    label=f"{run.name}: threshold")  # fmt: skip
        hit = c["gradclip/clipped"] == 1
        if hit.any():
            ax.scatter(step[hit], norm[hit], color=color, marker="v", s=18, zorder=3,
                       label=f"{run.name}: clipped ({int(hit.sum())} steps)")  # fmt: skip
        for s in step[c["gradclip/finite"] == 0]:
            ax.axvline(s, color=color, ls=":", lw=1)
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="gradient norm (pre-clip, log scale)", title="Gradient norm per step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path


def _histogram_figure(runs: Sequence[RunLog]) -> Any:
    fig, (ax,) = _figure()
    all_norms = np.concatenate([_finite_norms(r) for r in runs])
    positive = all_norms[all_norms > 0]
    if positive.size == 0:
        ax.text(0.5, 0.5, "no finite, non-zero norms recorded", ha="center", transform=ax.transAxes)
    else:
        lo, hi = positive.min(), positive.max()
        bins = np.geomspace(lo, hi * 1.0001 if hi > lo else lo * 10, 60)
        for run, color in zip(runs, _colors(len(runs)), strict=True):
            norms = _finite_norms(run)
            norms = norms[norms > 0]
            if norms.size == 0:
                continue
            p50, p95, p99 = np.percentile(norms, (50, 95, 99))
            label = f"{run.name}: {norms.size} steps, median {p50:.3g}, p95 {p95:.3g}, p99 {p99:.3g}"
            ax.hist(norms, bins=bins, histtype="step", lw=1.5, color=color, label=label)
            threshold = run.columns["gradclip/threshold"]
            last = threshold[np.isfinite(threshold)]
            if last.size:  # where the threshold sat in the distribution: one line per run, no more
                ax.axvline(
                    last[-1], color=color, ls="--", lw=1, label=f"{run.name}: last threshold {last[-1]:.3g}"
                )
        ax.set_xscale("log")
        # The legend (with the percentiles as numbers) sits above the axes, never over the bars.
        fig.legend(
            loc="outside upper center", fontsize="small", ncols=1 if len(runs) < 3 else 2, frameon=False
        )
    ax.set(xlabel="gradient norm (pre-clip, log scale)", ylabel="steps")
    ax.set_title("Distribution of gradient norms", loc="left")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_histogram(runs: Sequence[RunLog], path: Path) -> Path:
    """Histogram of the finite pre-clip norms on log-spaced bins; the last threshold as a dashed line.

    The median, p95 and p99 of each run are given as numbers in the legend, which is placed above the
    axes so that it never hides the bars.

    Examples:
        >>> from gradclip import GradMonitor, read_run
        >>> with GradMonitor(log_dir="runs/report-example", names=["w", "b"], overwrite=True) as monitor:
        ...     for step in range(30):
        ...         monitor.record(1.0 + step % 7, threshold=5.0, loss=1 / (step + 1), layer_norms=[1.0, 0.1])
        >>> run = read_run("runs/report-example")
        >>> from pathlib import Path
        >>> from gradclip.report import plot_histogram
        >>> plot_histogram([run], Path("histogram.png")).stat().st_size > 0
        True
    """
    fig = _histogram_figure(runs)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path


def _binned_max(values: np.ndarray, columns: int) -> tuple[np.ndarray, int]:
    """``(steps, layers)`` -> at most ``columns`` rows, each the max over its bin (NaN-aware)."""
    width = max(1, math.ceil(len(values) / columns))
    pad = (-len(values)) % width
    padded = np.concatenate([values, np.full((pad, values.shape[1]), np.nan)])
    blocks = padded.reshape(-1, width, values.shape[1])
    all_nan = np.isnan(blocks).all(axis=1)
    return np.where(all_nan, np.nan, np.nanmax(np.where(np.isnan(blocks), -np.inf, blocks), axis=1)), width


def plot_layers(runs: Sequence[RunLog], path: Path) -> Path:
    """Per-layer norm heatmap (layers x steps, colour = log10 norm), one panel per run.

    Examples:
        >>> from gradclip import GradMonitor, read_run
        >>> with GradMonitor(log_dir="runs/report-example", names=["w", "b"], overwrite=True) as monitor:
        ...     for step in range(30):
        ...         monitor.record(1.0 + step % 7, threshold=5.0, loss=1 / (step + 1), layer_norms=[1.0, 0.1])
        >>> run = read_run("runs/report-example")
        >>> from pathlib import Path
        >>> from gradclip.report import plot_layers
        >>> plot_layers([run], Path("layers.png")).stat().st_size > 0
        True
    """
    fig, axes = _figure(len(runs), height=max(3.0, min(9.0, 1.5 + 0.18 * max(len(r.layers) for r in runs))))
    for ax, run in zip(axes, runs, strict=True):
        if run.layer_norms is None or run.steps == 0:
            ax.text(0.5, 0.5, f"{run.name}: no per-layer norms recorded", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        binned, width = _binned_max(run.layer_norms, _MAX_COLUMNS)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(np.where(binned > 0, binned, np.nan))
        first, last = run.columns["step"][0], run.columns["step"][-1]
        image = ax.imshow(logs.T, aspect="auto", interpolation="nearest", cmap="viridis",
                          extent=(first - 0.5, last + 0.5, len(run.layers) - 0.5, -0.5))  # fmt: skip
        ticks = np.arange(len(run.layers))[:: max(1, math.ceil(len(run.layers) / _MAX_LAYER_LABELS))]
        ax.set_yticks(ticks, [run.layers[i] for i in ticks], fontsize="small")
        binning = f" (max over bins of {width} steps)" if width > 1 else ""
        ax.set(
            xlabel="step",
            ylabel="layer",
            title=f"{run.name}: per-layer gradient norm{binning}; white: zero or not recorded",
        )
        fig.colorbar(image, ax=ax, label="log10 gradient norm")
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path


def plot_loss(runs: Sequence[RunLog], path: Path) -> Path:
    """Training loss per step for each run; log axis when it is positive and spans two decades.

    Examples:
        >>> from gradclip import GradMonitor, read_run
        >>> with GradMonitor(log_dir="runs/report-example", names=["w", "b"], overwrite=True) as monitor:
        ...     for step in range(30):
        ...         monitor.record(1.0 + step % 7, threshold=5.0, loss=1 / (step + 1), layer_norms=[1.0, 0.1])
        >>> run = read_run("runs/report-example")
        >>> from pathlib import Path
        >>> from gradclip.report import plot_loss
        >>> plot_loss([run], Path("loss.png")).stat().st_size > 0
        True
    """
    fig, (ax,) = _figure()
    losses = [r.columns["gradclip/loss"] for r in runs]
    finite = np.concatenate([x[np.isfinite(x)] for x in losses])
    if finite.size == 0:
        ax.text(0.5, 0.5, "no loss recorded", ha="center", transform=ax.transAxes)
    for run, loss, color in zip(runs, losses, _colors(len(runs)), strict=True):
        if np.isfinite(loss).any():
            ax.plot(run.columns["step"], loss, color=color, lw=0.8, label=run.name)
    log = finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > 100
    if log:
        ax.set_yscale("log")
    ax.set(
        xlabel="step", ylabel="training loss (log scale)" if log else "training loss", title="Training loss"
    )
    ax.grid(True, which="both", alpha=0.3)
    if finite.size:
        ax.legend(fontsize="small")
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path


PLOTS = {"norms": plot_norms, "histogram": plot_histogram, "layers": plot_layers, "loss": plot_loss}


def _fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def summary_rows(runs: Sequence[RunLog]) -> list[tuple[str, list[str]]]:
    """The summary table: one row per statistic, one column per run (text cells).

    Examples:
        >>> from gradclip import GradMonitor, read_run
        >>> with GradMonitor(log_dir="runs/report-example", names=["w", "b"], overwrite=True) as monitor:
        ...     for step in range(30):
        ...         monitor.record(1.0 + step % 7, threshold=5.0, loss=1 / (step + 1), layer_norms=[1.0, 0.1])
        >>> run = read_run("runs/report-example")
        >>> from gradclip.report import summary_rows
        >>> rows = summary_rows([run])
        >>> all(len(values) == 1 for label, values in rows)  # one text cell per run
        True
    """

    def col(fn: Any) -> list[str]:
        return [fn(r) for r in runs]

    def pct(run: RunLog, q: int) -> str:
        norms = _finite_norms(run)
        return _fmt(float(np.percentile(norms, q))) if norms.size else "-"

    def last_loss(run: RunLog) -> str:
        loss = run.columns["gradclip/loss"]
        return _fmt(float(loss[-1])) if loss.size else "-"

    return [
        ("steps", col(lambda r: f"{r.steps}" + (" (last line cut off)" if r.truncated else ""))),
        ("clipped steps", col(lambda r: f"{int(np.nansum(r.columns['gradclip/clipped']))} ({_rate(r):.1%})")),
        ("non-finite norms", col(lambda r: f"{int(np.sum(r.columns['gradclip/finite'] == 0))}")),
        ("skipped steps", col(lambda r: f"{int(np.nansum(r.columns['gradclip/skipped']))}")),
        ("median norm", col(lambda r: pct(r, 50))),
        ("p95 norm", col(lambda r: pct(r, 95))),
        (
            "largest norm",
            col(lambda r: _fmt(float(_finite_norms(r).max())) if _finite_norms(r).size else "-"),
        ),
        (
            "last threshold",
            col(lambda r: _fmt(float(r.columns["gradclip/threshold"][-1])) if r.steps else "-"),
        ),
        ("last loss", col(last_loss)),
        ("warnings", col(lambda r: f"{len(r.warnings)}")),
    ]


def _rate(run: RunLog) -> float:
    return float(np.nansum(run.columns["gradclip/clipped"])) / run.steps if run.steps else 0.0


def print_summary(runs: Sequence[RunLog], *, console: Any = None) -> None:
    """Print the summary table and the advice with rich (to ``console``, default stdout).

    Examples:
        >>> from gradclip import GradMonitor, read_run
        >>> with GradMonitor(log_dir="runs/report-example", names=["w", "b"], overwrite=True) as monitor:
        ...     for step in range(30):
        ...         monitor.record(1.0 + step % 7, threshold=5.0, loss=1 / (step + 1), layer_norms=[1.0, 0.1])
        >>> run = read_run("runs/report-example")
        >>> import io
        >>> from rich.console import Console
        >>> from gradclip.report import print_summary
        >>> out = io.StringIO()
        >>> print_summary([run], console=Console(file=out, width=100))
        >>> "report-example" in out.getvalue()
        True
    """
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="Gradient monitor summary")
    table.add_column("")
    for run in runs:
        table.add_column(run.name, justify="right")
    for label, values in summary_rows(runs):
        table.add_row(label, *values)
    console.print(table)
    for run in runs:
        advice = run_advice(run)
        console.print(f"[bold]{run.name}[/bold]: {advice.text() if advice else 'too few steps for advice'}")


Results = Mapping[str, Mapping[str, float]]


def _last_finite(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else None


def headline(run: RunLog, results: Mapping[str, float] | None = None) -> list[tuple[str, str]]:
    """The numbers a reader wants first: final loss, the run's own results (accuracy...), clipping.

    ``results`` are the run's final metrics when the caller knows them (for example
    ``{"test accuracy": 0.975}``); a name ending in ``accuracy`` is shown as a percentage.

    Examples:
        >>> from gradclip import GradMonitor, read_run
        >>> with GradMonitor(log_dir="runs/report-example", names=["w", "b"], overwrite=True) as monitor:
        ...     for step in range(30):
        ...         monitor.record(1.0 + step % 7, threshold=5.0, loss=1 / (step + 1), layer_norms=[1.0, 0.1])
        >>> run = read_run("runs/report-example")
        >>> from gradclip.report import headline
        >>> numbers = dict(headline(run, {"test accuracy": 0.975}))
        >>> numbers["test accuracy"], numbers["final loss"]
        ('97.5%', '0.03333')
    """
    loss = _last_finite(run.columns["gradclip/loss"])
    items = [("final loss", _fmt(loss) if loss is not None else "not logged")]
    for name, value in (results or {}).items():
        shown = f"{100 * value:.1f}%" if name.endswith("accuracy") else _fmt(float(value))
        items.append((name, shown))
    items.append(
        (
            "clipped",
            f"{int(np.nansum(run.columns['gradclip/clipped']))} of {run.steps} steps ({_rate(run):.1%})",
        )
    )
    items.append(("skipped", f"{int(np.nansum(run.columns['gradclip/skipped']))} steps"))
    norms = _finite_norms(run)
    items.append(("largest norm", _fmt(float(norms.max())) if norms.size else "-"))
    return items


def _headline_html(runs: Sequence[RunLog], results: Results | None) -> str:
    esc = html.escape
    cards = []
    for run in runs:
        cells = "".join(
            f'<div class="num"><span>{esc(label)}</span><b>{esc(value)}</b></div>'
            for label, value in headline(run, (results or {}).get(run.name))
        )
        cards.append(f'<section class="card"><h2>{esc(run.name)}</h2>{cells}</section>')
    return f'<div class="headline">{"".join(cards)}</div>'


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"></figure>'


def _html(runs: Sequence[RunLog], images: dict[str, Path], title: str, results: Results | None) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(r.name)}</th>" for r in runs)
    body = "".join(
        f"<tr><th>{esc(label)}</th>" + "".join(f"<td>{esc(v)}</td>" for v in values) + "</tr>"
        for label, values in summary_rows(runs)
    )
    # First screen: the headline numbers of every run, then the norms over steps.
    parts = [f"<h1>{esc(title)}</h1>", _headline_html(runs, results), _img(images["norms"], "norms plot")]
    parts += [
        "<h2>Summary</h2>",
        f"<table><tr><th></th>{head}</tr>{body}</table>",
        "<h2>Threshold advice</h2>",
    ]
    for run in runs:
        advice = run_advice(run)
        parts.append(
            f"<p><b>{esc(run.name)}</b>: {esc(advice.text() if advice else 'too few steps for advice')}</p>"
        )
    parts.append("<h2>Plots</h2>")
    parts += [_img(path, f"{key} plot") for key, path in images.items() if key != "norms"]
    parts.append("<h2>Warnings</h2>")
    for run in runs:
        items = "".join(f"<li>{esc(w['message'])}</li>" for w in run.warnings[:50])
        more = f"<li>... and {len(run.warnings) - 50} more</li>" if len(run.warnings) > 50 else ""
        parts.append(f"<h3>{esc(run.name)}</h3><ul>{items or '<li>none</li>'}{more}</ul>")
    style = (
        "body{font-family:sans-serif;max-width:1050px;margin:auto;padding:1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "img{max-width:100%}"
        ".headline{display:flex;flex-wrap:wrap;gap:1em;margin:1em 0}"
        ".card{border:1px solid #ccc;border-radius:6px;padding:.5em 1em;flex:1;min-width:280px}"
        ".card h2{margin:.2em 0 .4em;font-size:1.1em}"
        ".num{display:flex;justify-content:space-between;gap:1em;padding:2px 0}"
        ".num b{font-size:1.15em}"
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def _check_title(title: object) -> None:
    if not isinstance(title, str):
        raise TypeError(f"title must be text or None, got {type(title).__name__}")
    try:
        title.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"title must be UTF-8 text, got {title!r:.60}") from None


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    title: str | None = None,
    results: Results | None = None,
) -> Path:
    """Write the PNG plots and ``report.html`` (plots embedded) for one or more runs; return the HTML path.

    Args:
        run_dirs: the monitored runs' directories.
        out_dir: where the plots and the page go.
        title: the page's title (default: the runs' names).
        results: final metrics per run name, shown first on the page (``{"clipped": {"test
            accuracy": 0.975}}``); the final loss comes from the log itself.

    Examples:
        >>> from gradclip import GradMonitor, read_run
        >>> with GradMonitor(log_dir="runs/report-example", names=["w", "b"], overwrite=True) as monitor:
        ...     for step in range(30):
        ...         monitor.record(1.0 + step % 7, threshold=5.0, loss=1 / (step + 1), layer_norms=[1.0, 0.1])
        >>> run = read_run("runs/report-example")
        >>> from gradclip.report import write_report
        >>> results = {"report-example": {"test accuracy": 0.9}}  # shown first, with the final loss
        >>> page = write_report(["runs/report-example"], "report-example", results=results)
        >>> page.name, sorted(p.name for p in page.parent.glob("*.png"))
        ('report.html', ['histogram.png', 'layers.png', 'loss.png', 'norms.png'])
    """
    if isinstance(run_dirs, (str, Path)) or not run_dirs:
        raise ValueError(f"run_dirs must be a non-empty list of run directories, got {run_dirs!r}")
    if not isinstance(run_dirs, Sequence):
        raise TypeError(f"run_dirs must be a list of run directories, got {run_dirs!r:.60}")
    dirs = [check_path(d, f"run_dirs[{i}]") for i, d in enumerate(run_dirs)]
    _check_results(results)
    check_path(out_dir, "out_dir")
    return render_report([read_run(d) for d in dirs], out_dir, title=title, results=results)


def _check_results(results: object) -> None:
    if results is not None and (
        not isinstance(results, Mapping) or not all(isinstance(v, Mapping) for v in results.values())
    ):
        raise TypeError(
            f"results must be None or a mapping of run name to {{metric: value}}, got {results!r:.60}"
        )


def render_report(
    runs: Sequence[RunLog], out_dir: str | Path, *, title: str | None = None, results: Results | None = None
) -> Path:
    """[`write_report`][gradclip.report.write_report] for runs already read with
    [`gradclip.sinks.read_run`][gradclip.sinks.read_run].

    Examples:
        >>> from gradclip import GradMonitor, read_run
        >>> with GradMonitor(log_dir="runs/report-example", names=["w", "b"], overwrite=True) as monitor:
        ...     for step in range(30):
        ...         monitor.record(1.0 + step % 7, threshold=5.0, loss=1 / (step + 1), layer_norms=[1.0, 0.1])
        >>> run = read_run("runs/report-example")
        >>> from gradclip.report import render_report
        >>> page = render_report([run], "report-example", title="A small run")
        >>> "<title>A small run</title>" in page.read_text()
        True
    """
    out = check_path(out_dir, "out_dir")
    if isinstance(runs, (str, bytes)) or not isinstance(runs, Sequence) or not runs:
        raise TypeError(f"runs must be a non-empty list of runs read with read_run, got {runs!r:.60}")
    for i, run in enumerate(runs):
        if not isinstance(run, RunLog):
            raise TypeError(f"runs[{i}] must be a RunLog (from gradclip.sinks.read_run), got {run!r:.60}")
    _check_results(results)
    if title is not None:
        _check_title(title)
    out.mkdir(parents=True, exist_ok=True)
    images = {key: plot(runs, out / f"{key}.png") for key, plot in PLOTS.items()}
    page = out / "report.html"
    # Built and encoded before anything is written: a title that is not UTF-8 leaves the old report.
    text = _html(runs, images, title or "Gradient report: " + ", ".join(r.name for r in runs), results)
    atomic_write_text(page, text)
    return page
