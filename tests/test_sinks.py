"""Sinks: every record comes back from JSONL, CSV and TensorBoard files; a crash never breaks a reader."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gradclip.monitor import GradMonitor, MonitorConfig, SpikeWarning
from gradclip.sinks import COLUMNS, LAYER_TAG, SCHEMA_VERSION, TAGS, JsonlSink, make_sink, read_run

NORMS = [1.0, 2.0, math.inf, 0.5, math.nan, 3.0]
LAYERS = [[0.6, 0.8], [1.2, 1.6], [math.inf, 1.0], [0.3, 0.4], [math.nan, 0.0], [1.8, 2.4]]
# A log written by gradclip before the fields took their tag names (schema version 1: total_norm, ...):
# 24 steps, a spike at step 12, a NaN (skipped) at 18, threshold 2.
V1_RUN = Path(__file__).parent / "data" / "v1-run"


def write_run(log_dir, sinks=("jsonl",)):
    # min_history=10 > steps: no spike baseline, so only the non-finite norms warn.
    monitor = GradMonitor(
        names=["w", "b"], log_dir=log_dir, sinks=sinks, config=MonitorConfig(min_history=10)
    )
    with pytest.warns(SpikeWarning):
        for i, n in enumerate(NORMS):
            monitor.record(n, threshold=2.5, loss=1.0 / (i + 1), lr=0.1, layer_norms=LAYERS[i])
    return monitor.close()


def test_jsonl_round_trips_every_field_including_non_finite_values(tmp_path):
    write_run(tmp_path)
    run = read_run(tmp_path)
    assert run.header["version"] == SCHEMA_VERSION and run.layers == ["w", "b"] and not run.truncated
    np.testing.assert_array_equal(run.columns["gradclip/pre_clip_norm"], NORMS)
    np.testing.assert_array_equal(run.layer_norms, LAYERS)
    # As in gradclip.clip: clipped = norm > c, so True for inf and False for NaN.
    assert run.columns["gradclip/clipped"].tolist() == [0, 0, 1, 0, 0, 1]
    assert run.columns["gradclip/finite"].tolist() == [1, 1, 0, 1, 0, 1]
    np.testing.assert_allclose(run.columns["gradclip/loss"], [1 / (i + 1) for i in range(6)])
    assert [w["step"] for w in run.warnings] == [2, 4] and {w["kind"] for w in run.warnings} == {"spike"}
    assert run.summary["steps"] == 6 and run.summary["nonfinite"] == 2


def test_jsonl_is_strict_json_that_any_reader_parses(tmp_path):
    write_run(tmp_path)

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    lines = (tmp_path / "grads.jsonl").read_text().splitlines()
    records = [json.loads(line, parse_constant=refuse) for line in lines]
    kinds = ["header", "step", "step", "step", "warning", "step", "step", "warning", "step", "summary"]
    assert [r["type"] for r in records] == kinds
    assert records[3]["gradclip/pre_clip_norm"] == "inf" and records[3]["gradclip/layer_norm"][0] == "inf"


def test_a_record_is_on_disk_as_soon_as_it_is_written(tmp_path):
    monitor = GradMonitor(log_dir=tmp_path)
    monitor.record(1.5)
    assert read_run(tmp_path).columns["gradclip/pre_clip_norm"].tolist() == [1.5]  # before close()
    monitor.record(2.5)
    assert read_run(tmp_path).steps == 2
    monitor.close()


def test_a_process_killed_mid_run_leaves_every_finished_record_readable(tmp_path):
    code = textwrap.dedent(
        f"""
        import os
        from gradclip.monitor import GradMonitor
        m = GradMonitor(names=["w"], log_dir={str(tmp_path)!r})
        for i in range(50):
            m.record(1.0 + i % 3, layer_norms=[1.0])
        os._exit(1)  # no close(), no atexit, no buffer flushing: as a crash
        """
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    run = read_run(tmp_path)
    assert run.steps == 50 and run.summary is None and not run.truncated


def test_a_half_written_last_line_is_skipped_and_flagged(tmp_path):
    write_run(tmp_path)
    path = tmp_path / "grads.jsonl"
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    path.write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])  # cut inside the 4th record
    run = read_run(tmp_path)
    assert (
        run.truncated and run.steps == 3 and run.columns["gradclip/pre_clip_norm"].tolist()[:2] == [1.0, 2.0]
    )


def test_damage_before_the_last_line_is_an_error_naming_the_line(tmp_path):
    write_run(tmp_path)
    path = tmp_path / "grads.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "{broken\n"
    path.write_text("".join(lines))
    with pytest.raises(ValueError, match=r"grads.jsonl:3: not a JSON record"):
        read_run(tmp_path)


def test_a_newer_schema_or_a_foreign_file_is_refused(tmp_path):
    (tmp_path / "grads.jsonl").write_text(json.dumps({"schema": "gradclip.monitor", "version": 99}) + "\n")
    with pytest.raises(ValueError, match="schema version 99 is newer than this gradclip reads"):
        read_run(tmp_path)
    (tmp_path / "grads.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(ValueError, match=r"not a gradclip\.monitor header"):
        read_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="no gradient log at"):
        read_run(tmp_path / "missing")


def test_csv_holds_one_row_per_step_with_a_column_per_layer(tmp_path):
    write_run(tmp_path, sinks=("csv",))
    with (tmp_path / "grads.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(NORMS)
    norms = [r["gradclip/pre_clip_norm"] for r in rows]
    assert [float(n) for n in norms][:2] == [1.0, 2.0] and norms[2] == "inf"
    assert float(rows[5]["gradclip/layer_norm/b"]) == 2.4 and rows[5]["gradclip/clipped"] == "True"
    assert float(rows[0]["gradclip/lr"]) == 0.1


def test_unknown_sinks_are_named():
    with pytest.raises(
        ValueError, match=r"unknown sink 'parquet'; choose from \['csv', 'jsonl', 'tensorboard'\]"
    ):
        make_sink("parquet", ".")


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_scalars_and_histograms(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    write_run(tmp_path, sinks=("tensorboard",))
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    norms = acc.Scalars("gradclip/pre_clip_norm")
    assert [e.step for e in norms] == list(range(6))
    assert [e.value for e in norms][:2] == [1.0, 2.0] and math.isinf(norms[2].value)
    assert [e.value for e in acc.Scalars("gradclip/layer_norm/b")][-1] == pytest.approx(2.4)
    assert [e.value for e in acc.Scalars("gradclip/loss")][1] == pytest.approx(0.5)
    # One tag scheme: every tag gradclip writes is under gradclip/, never a bare loss or lr.
    tags = acc.Tags()
    assert all(t.startswith("gradclip/") for kind in ("scalars", "histograms") for t in tags[kind])
    histogram = acc.Histograms("gradclip/log10_layer_norms")
    assert histogram[0].step == 0 and histogram[0].histogram_value.num == 2


def test_a_step_record_names_every_field_by_its_tag_and_nothing_bare(tmp_path):
    write_run(tmp_path)
    records = [json.loads(line) for line in (tmp_path / "grads.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    assert all(list(r) == ["type", "step", *TAGS, LAYER_TAG, "time"] for r in steps)
    assert steps[1]["gradclip/loss"] == 0.5 and steps[1]["gradclip/lr"] == 0.1 and "loss" not in steps[1]
    assert all(t.startswith("gradclip/") for t in TAGS) and COLUMNS == ("step", *TAGS)


def test_a_version_1_log_is_read_under_the_current_names():
    raw = [json.loads(line) for line in (V1_RUN / "grads.jsonl").read_text().splitlines()]
    assert raw[0]["version"] == 1 and "total_norm" in raw[1]  # the fixture is the old format
    old = [r for r in raw if r["type"] == "step"]
    run = read_run(V1_RUN)
    assert list(run.columns) == list(COLUMNS) and run.steps == len(old) == 24
    assert run.columns["gradclip/pre_clip_norm"][12] == 500.0 and math.isnan(
        run.columns["gradclip/pre_clip_norm"][18]
    )
    for new, bare in zip(TAGS, ("total_norm", "post_clip_norm", "threshold", "clipped", "finite", "skipped",
                                "loss", "lr"), strict=True):  # fmt: skip
        np.testing.assert_array_equal(
            run.columns[new], [math.nan if r[bare] is None else float(r[bare]) for r in old]
        )
    np.testing.assert_array_equal(run.layer_norms, [[float(x) for x in r["layer_norms"]] for r in old])
    assert [w["step"] for w in run.warnings if w["kind"] == "spike"] == [12, 18] and run.summary[
        "steps"
    ] == 24


def test_resuming_a_version_1_log_rewrites_it_in_the_current_schema(tmp_path):
    shutil.copy(V1_RUN / "grads.jsonl", tmp_path / "grads.jsonl")
    header = json.loads((tmp_path / "grads.jsonl").read_text().splitlines()[0])
    sink = JsonlSink(tmp_path)
    sink.resume({**header, "version": SCHEMA_VERSION}, 20)
    step = {"type": "step", "step": 20, **dict.fromkeys(TAGS), "gradclip/pre_clip_norm": 3.0, LAYER_TAG: None}
    sink.write_step({**step, "time": 1.0})
    sink.close(None)
    records = [json.loads(line) for line in (tmp_path / "grads.jsonl").read_text().splitlines()]
    assert records[0]["version"] == SCHEMA_VERSION and records[0]["created"] == header["created"]
    assert all("total_norm" not in r and "layer_norms" not in r for r in records)
    assert [r["type"] for r in records].count("resume") == 1
    run = read_run(tmp_path)
    assert run.columns["step"].tolist() == list(range(21)) and run.summary is None  # the old summary dropped
    assert (
        run.columns["gradclip/pre_clip_norm"][12] == 500.0
        and run.columns["gradclip/pre_clip_norm"][20] == 3.0
    )
    np.testing.assert_array_equal(run.layer_norms[:20], read_run(V1_RUN).layer_norms[:20])


def test_resuming_a_csv_of_the_old_names_keeps_its_rows_under_the_current_header(tmp_path):
    old = ["step", "total_norm", "post_clip_norm", "threshold", "clipped", "finite", "skipped", "loss", "lr"]
    rows = [[str(i), "1.5", "1.5", "2.0", "False", "True", "False", "0.5", "0.1", "1.0"] for i in range(3)]
    with (tmp_path / "grads.csv").open("w", newline="") as f:
        csv.writer(f).writerows([[*old, "norm/w"], *rows])
    sink = make_sink("csv", tmp_path)
    sink.resume({"layers": ["w"]}, 2)
    sink.close(None)
    with (tmp_path / "grads.csv").open(newline="") as f:
        got = list(csv.reader(f))
    assert got == [[*COLUMNS, f"{LAYER_TAG}/w"], *rows[:2]]


def test_a_log_of_a_newer_schema_is_not_continued(tmp_path):
    (tmp_path / "grads.jsonl").write_text(json.dumps({"schema": "gradclip.monitor", "version": 99}) + "\n")
    with pytest.raises(ValueError, match="schema version 99 is newer than this gradclip reads"):
        JsonlSink(tmp_path).resume({"layers": []}, 0)
    assert json.loads((tmp_path / "grads.jsonl").read_text())["version"] == 99  # left as it was
