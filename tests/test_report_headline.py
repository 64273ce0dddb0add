"""The report's first screen: each run's headline numbers before any plot; a histogram that reads."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from gradclip.monitor import GradMonitor
from gradclip.report import _histogram_figure, headline, write_report
from gradclip.sinks import read_run


@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    dirs = []
    for name, scale in (("calm", 1.0), ("spiky", 3.0)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with GradMonitor(log_dir=tmp_path / name, max_norm=2.0, name=name) as monitor:
                for step in range(120):
                    norm = float(rng.lognormal(0.0, 0.5)) * scale
                    monitor.record(
                        norm, threshold=2.0, loss=1.0 / (step + 1) + (0.5 if name == "spiky" else 0)
                    )
        dirs.append(tmp_path / name)
    return dirs


def test_first_screen_has_final_loss_and_accuracy_before_any_plot(two_runs, tmp_path):
    results = {"calm": {"test accuracy": 0.975}, "spiky": {"test accuracy": 0.117}}
    page = write_report(two_runs, tmp_path / "report", results=results).read_text()
    first_image = page.index("<img")
    body = page.index("<body>")
    top = re.sub(r"<[^>]+>", " ", page[page.index("</h1>", body) : first_image])  # after the title
    assert "97.5%" in top and "11.7%" in top, top
    calm_loss = read_run(two_runs[0]).columns["gradclip/loss"][-1]
    assert "final loss" in top and f"{calm_loss:.4g}" in top
    assert top.index("calm") < top.index("97.5%") < top.index("spiky") < top.index("11.7%")
    assert 'alt="norms plot"' in page[first_image : page.index(">", first_image)]  # the first plot shown


def test_headline_without_results_still_gives_the_loss_and_the_clipping(two_runs):
    run = read_run(two_runs[1])
    items = dict(headline(run))
    assert items["final loss"] == f"{run.columns['gradclip/loss'][-1]:.4g}"
    clipped = int(np.nansum(run.columns["gradclip/clipped"]))
    assert items["clipped"].startswith(f"{clipped} of {run.steps} steps") and clipped > 0
    assert "test accuracy" not in items


def test_histogram_has_one_line_per_run_and_its_legend_off_the_bars(two_runs):
    runs = [read_run(d) for d in two_runs]
    fig = _histogram_figure(runs)
    (ax,) = fig.axes
    fig.draw_without_rendering()  # runs the constrained layout, as savefig does
    assert len(ax.lines) == len(runs)  # the last threshold per run; percentiles are in the legend text
    assert ax.get_legend() is None and len(fig.legends) == 1
    legend_box = fig.legends[0].get_window_extent()
    assert not legend_box.overlaps(ax.get_window_extent())
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("median" in t and "p95" in t and "p99" in t for t in texts), texts
