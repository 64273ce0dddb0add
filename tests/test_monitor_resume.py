"""Runs that resume: GradMonitor.state_dict round-trips exactly; a resumed log reads as one run."""

from __future__ import annotations

import io
import json
import math
import warnings

import pytest
import torch

from gradclip.monitor import GradMonitor, GradMonitorWarning, MonitorConfig
from gradclip.sinks import read_run

# Small windows, so that every piece of state (reservoir replacement, latches, rolling windows) is
# exercised within a few dozen steps.
CONFIG = MonitorConfig(window=8, warmup=3, reservoir=5, min_history=4, idle_steps=6)


def norms(n: int) -> list[float]:
    """A norm sequence with a spike, a NaN and a calm stretch: every warning kind but vanishing."""
    out = [1.0 + 0.1 * math.sin(i) for i in range(n)]
    out[9], out[14] = 80.0, math.nan
    return out


def feed(monitor: GradMonitor, values: list[float], start: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradMonitorWarning)
        for i, x in enumerate(values, start=start):
            monitor.record(x, threshold=1.05, loss=1.0 / (i + 1), lr=0.1, layer_norms=[x / 2, x / 2])


def step_records(path) -> list[dict]:
    lines = [json.loads(line) for line in (path / "grads.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in lines if r["type"] in ("step", "warning")]


def test_state_dict_round_trips_exactly_through_json_and_weights_only_torch():
    first = GradMonitor(names=["a", "b"], config=CONFIG, seed=7)
    feed(first, norms(30), 0)
    state = first.state_dict()
    as_json = json.loads(json.dumps(state))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    as_torch = torch.load(buffer, weights_only=True)
    for saved in (as_json, as_torch):
        again = GradMonitor(names=["a", "b"], config=CONFIG, seed=0)  # another seed: the state wins
        again.load_state_dict(saved)
        assert again.state_dict() | {"elapsed": 0} == state | {"elapsed": 0}


def test_a_restored_monitor_continues_exactly_like_the_original():
    first = GradMonitor(names=["a", "b"], config=CONFIG, seed=7)
    feed(first, norms(20), 0)
    restored = GradMonitor(names=["a", "b"], config=CONFIG)
    restored.load_state_dict(first.state_dict())
    rest = [1.0 + 0.05 * i for i in range(25)]  # the reservoir keeps replacing: the RNG must match
    feed(first, rest, 20)
    feed(restored, rest, 20)
    assert first.summary() == restored.summary()
    assert first.state_dict() | {"elapsed": 0} == restored.state_dict() | {"elapsed": 0}


def test_a_resumed_log_drops_the_killed_tail_and_matches_an_uninterrupted_run(tmp_path):
    values = norms(30)
    straight = GradMonitor(names=["a", "b"], config=CONFIG, log_dir=tmp_path / "straight", seed=1)
    feed(straight, values, 0)
    straight.close()

    killed = GradMonitor(names=["a", "b"], config=CONFIG, log_dir=tmp_path / "run", seed=1)
    feed(killed, values[:12], 0)
    checkpoint = json.loads(json.dumps(killed.state_dict()))  # saved beside the training checkpoint
    feed(killed, values[12:17], 12)  # written after the checkpoint, then the process dies
    killed.close()  # (the SIGKILL test of the conv sandbox kills for real; here the summary is dropped too)
    with (tmp_path / "run" / "grads.jsonl").open("a") as f:
        f.write('{"type": "step", "step": 17, "total_')  # a record cut in half

    resumed = GradMonitor(names=["a", "b"], config=CONFIG, log_dir=tmp_path / "run", resume=True)
    resumed.load_state_dict(checkpoint)
    feed(resumed, values[12:], 12)
    summary = resumed.close()

    assert step_records(tmp_path / "run") == step_records(tmp_path / "straight")
    run = read_run(tmp_path / "run")
    assert run.columns["step"].tolist() == list(range(30)) and not run.truncated
    assert summary == straight.summary() and run.summary == read_run(tmp_path / "straight").summary
    marks = [json.loads(line) for line in (tmp_path / "run" / "grads.jsonl").read_text().splitlines()]
    assert [m for m in marks if m["type"] == "resume"] == [{"type": "resume", "step": 12, "dropped": 7}]


def test_a_clean_run_resumed_loses_its_summary_and_continues(tmp_path):
    first = GradMonitor(log_dir=tmp_path, config=CONFIG)
    feed_plain = [1.0, 2.0, 3.0]
    for x in feed_plain:
        first.record(x)
    state = first.state_dict()
    first.close()
    resumed = GradMonitor(log_dir=tmp_path, config=CONFIG, resume=True)
    resumed.load_state_dict(state)
    resumed.record(4.0)
    resumed.close()
    run = read_run(tmp_path)
    assert (
        run.columns["gradclip/pre_clip_norm"].tolist() == [1.0, 2.0, 3.0, 4.0] and run.summary["steps"] == 4
    )
    kinds = [json.loads(line)["type"] for line in (tmp_path / "grads.jsonl").read_text().splitlines()]
    assert kinds.count("summary") == 1 and kinds[-1] == "summary"


def test_the_csv_log_resumes_too(tmp_path):
    first = GradMonitor(log_dir=tmp_path, sinks=("csv",), config=CONFIG)
    for x in (1.0, 2.0, 3.0):
        first.record(x)
    state = first.state_dict()
    first.record(99.0)  # past the checkpoint
    first.close()
    resumed = GradMonitor(log_dir=tmp_path, sinks=("csv",), config=CONFIG, resume=True)
    resumed.load_state_dict(state)
    resumed.record(4.0)
    resumed.close()
    rows = (tmp_path / "grads.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in rows[1:]] == [[str(i), f"{i + 1}.0"] for i in range(4)]


def test_bad_states_and_misuse_are_refused_before_anything_changes(tmp_path):
    monitor = GradMonitor(config=CONFIG)
    monitor.record(1.0)
    state = monitor.state_dict()
    fresh = GradMonitor(config=CONFIG)
    with pytest.raises(ValueError, match="not a GradMonitor state"):
        fresh.load_state_dict({"policy": "zscore"})
    with pytest.raises(ValueError, match="differs from this monitor's"):
        GradMonitor(config=MonitorConfig()).load_state_dict(state)
    with pytest.raises(ValueError, match="lacks"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "reservoir"})
    with pytest.raises(ValueError, match="saved for layers"):
        GradMonitor(names=["x"], config=CONFIG).load_state_dict({**state, "names": ["y"]})
    untouched = GradMonitor(config=CONFIG).state_dict()["counters"]
    assert fresh.step == 0 and fresh.state_dict()["counters"] == untouched
    with pytest.raises(RuntimeError, match="before the first step"):
        monitor.load_state_dict(state)
    logged = GradMonitor(log_dir=tmp_path / "a", config=CONFIG)
    with pytest.raises(ValueError, match="resume=True"):
        logged.load_state_dict(state)
    forgot = GradMonitor(log_dir=tmp_path / "b", config=CONFIG, resume=True)
    with pytest.raises(RuntimeError, match="needs load_state_dict"):
        forgot.record(1.0)
    with pytest.raises(ValueError, match="contradict"):
        GradMonitor(log_dir=tmp_path, overwrite=True, resume=True)


def test_a_run_logged_by_an_older_gradclip_resumes_into_one_log_of_the_current_schema(tmp_path):
    """tests/data/v1-run was written (schema version 1: total_norm, ...) with the values below."""
    import shutil
    from pathlib import Path

    from gradclip.sinks import SCHEMA_VERSION, TAGS

    def values(i: int) -> tuple[float, list[float]]:
        n = {12: 500.0, 18: math.nan}.get(i, 1.0 + 0.05 * i)
        return n, [0.6 * n, 0.8 * n]

    def record(monitor: GradMonitor, i: int) -> None:
        n, layers = values(i)
        monitor.record(n, threshold=2.0, loss=2.0 / (i + 1), lr=0.1, layer_norms=layers, skipped=i == 18)

    config = MonitorConfig(warmup=2, min_history=5, window=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradMonitorWarning)
        replay = GradMonitor(names=["w", "b"], config=config)  # the old run's state at its checkpoint
        for i in range(20):
            record(replay, i)
        shutil.copytree(Path(__file__).parent / "data" / "v1-run", tmp_path / "run")
        resumed = GradMonitor(names=["w", "b"], log_dir=tmp_path / "run", config=config, resume=True)
        resumed.load_state_dict(replay.state_dict())
        for i in range(20, 26):
            record(resumed, i)
        resumed.close()
    lines = [json.loads(line) for line in (tmp_path / "run" / "grads.jsonl").read_text().splitlines()]
    assert lines[0]["version"] == SCHEMA_VERSION and lines[0]["name"] == "v1-run"
    assert all(set(TAGS) <= set(r) for r in lines if r["type"] == "step")
    run = read_run(tmp_path / "run")
    assert run.columns["step"].tolist() == list(range(26)) and run.summary["steps"] == 26
    assert run.columns["gradclip/pre_clip_norm"][12] == 500.0 and run.columns["gradclip/skipped"][18] == 1
    assert [r["type"] for r in lines].count("resume") == 1 and run.layer_norms.shape == (26, 2)
