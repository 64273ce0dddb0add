"""Reports: PNG plots and one HTML page that embeds them with the summary and advice; a terminal table."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from gradclip.monitor import GradMonitor, MonitorConfig, SpikeWarning
from gradclip.report import PLOTS, print_summary, run_advice, write_report
from gradclip.sinks import read_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CFG = MonitorConfig(window=20, min_history=10, warmup=20)


def make_run(log_dir, name, *, max_norm, spike_at=150, steps=300):
    rng = np.random.default_rng(0)
    with GradMonitor(
        names=["conv1.weight", "conv2.weight", "fc.bias"], log_dir=log_dir, name=name, config=CFG
    ) as m:
        for step in range(steps):
            layers = rng.lognormal(0.0, 0.3, 3) * [0.2, 1.0, 0.5]
            if step == spike_at:
                layers = layers * 1e3
                with pytest.warns(SpikeWarning):
                    m.record(float(np.linalg.norm(layers)), threshold=max_norm, layer_norms=layers.tolist())
                continue
            loss = 2.0 * np.exp(-step / 60) + 0.01
            m.record(
                float(np.linalg.norm(layers)), threshold=max_norm, loss=loss, layer_norms=layers.tolist()
            )
    return log_dir


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return [
        make_run(root / "a", "no clipping", max_norm=None),
        make_run(root / "b", "clip 2", max_norm=2.0),
    ]


@pytest.fixture(scope="module")
def report(two_runs, tmp_path_factory):
    return write_report(two_runs, tmp_path_factory.mktemp("report"), title="two runs")


def test_every_plot_is_a_real_non_trivial_png(report):
    for key in PLOTS:
        data = (report.parent / f"{key}.png").read_bytes()
        assert data.startswith(PNG_MAGIC), key
        assert len(data) > 15_000, (key, len(data))  # axes, labels and data, not an empty canvas


def test_the_html_page_embeds_every_plot_with_the_summary_advice_and_warnings(report):
    page = report.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(PLOTS)
    assert all(base64.b64decode(img).startswith(PNG_MAGIC) for img in images)
    assert "<h1>two runs</h1>" in page and "no clipping" in page and "clip 2" in page
    assert page.count("suggested max_norm") == 2 and "Pascanu" in page
    assert "step 150: gradient norm" in page  # the spike warning, from the JSONL
    assert "largest layers: conv2.weight" in page


def test_the_advice_comes_from_every_norm_after_warm_up(two_runs):
    run = read_run(two_runs[0])
    advice = run_advice(run)
    norms = run.columns["gradclip/pre_clip_norm"][20:]
    assert advice.samples == 280
    assert advice.low == pytest.approx(np.percentile(norms, 90)) and advice.mean == pytest.approx(
        norms.mean()
    )


def test_the_terminal_summary_shows_one_column_per_run(two_runs):
    from rich.console import Console

    console = Console(record=True, width=140)
    print_summary([read_run(d) for d in two_runs], console=console)
    text = console.export_text()
    assert "no clipping" in text and "clip 2" in text
    clipped_row = next(line for line in text.splitlines() if "clipped steps" in line)
    assert "0 (0.0%)" in clipped_row and re.search(r"\b\d+ \(\d+\.\d%\)", clipped_row.split("0 (0.0%)")[1])
    assert text.count("suggested max_norm") == 2


def test_a_crashed_run_still_gets_a_report(two_runs, tmp_path):
    path = two_runs[1] / "grads.jsonl"
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    text = path.read_text()
    (crashed / "grads.jsonl").write_text(text[: len(text) // 2])  # cut mid-line, no summary
    page = write_report([crashed], tmp_path / "out").read_text()
    assert "(last line cut off)" in page and page.count("data:image/png;base64,") == len(PLOTS)


def test_a_run_without_layer_norms_or_loss_says_so_in_its_plots(tmp_path):
    with GradMonitor(log_dir=tmp_path / "bare") as m:
        for n in np.linspace(1.0, 2.0, 30):
            m.record(float(n))
    write_report([tmp_path / "bare"], tmp_path / "out")
    assert (tmp_path / "out" / "layers.png").stat().st_size > 5_000


def test_report_needs_a_list_of_runs(tmp_path):
    with pytest.raises(ValueError, match="run_dirs must be a non-empty list of run directories"):
        write_report(str(tmp_path), tmp_path)


def test_a_log_of_schema_version_1_gets_the_same_report(tmp_path, capsys):
    """A run logged before the fields took their tag names (tests/data/v1-run: total_norm, ...)."""
    from gradclip import cli

    v1 = Path(__file__).parent / "data" / "v1-run"
    steps = [json.loads(line) for line in (v1 / "grads.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["type"] == "step"]
    assert cli.main(["report", str(v1), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    clipped = sum(r["clipped"] for r in steps)
    assert re.search(rf"clipped steps\s*│\s*{clipped} \({clipped / len(steps):.1%}\)", text), text
    assert re.search(r"skipped steps\s*│\s*1\b", text) and re.search(r"largest norm\s*│\s*500\b", text)
    assert re.search(rf"last loss\s*│\s*{steps[-1]['loss']:.4g}", text)
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(PLOTS) and "v1-run" in page
