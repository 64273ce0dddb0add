"""The explorer's HTTP API through Starlette's test client: answers, and HTTP 400 for every bad input."""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the explorer needs the 'explorer' extra")
from starlette.testclient import TestClient

from gradclip.explorer import cliff, runs
from gradclip.explorer.server import MAX_GRID, MAX_STEPS, STATIC, create_app
from gradclip.monitor import GradMonitor
from gradclip.sinks import JSONL_NAME

LOCAL = "http://127.0.0.1:8765"  # the explorer answers only for loopback Host headers
SIM = {"surface": "cliff", "u": "5", "v": "-3.5", "lr": "0.1", "threshold": "1", "steps": "200"}


def _write_run(path: Path, steps: int, *, spikes=(), threshold: float = 1.0) -> None:
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the spikes are meant to warn
        with GradMonitor(log_dir=path, max_norm=threshold) as monitor:
            for i in range(steps):
                norm = abs(rng.normal(0.8, 0.2)) * (100.0 if i in spikes else 1.0)
                monitor.record(norm, threshold=threshold, loss=1.0 / (1 + i))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    _write_run(root / "exp" / "a", 300, spikes=(150,))
    _write_run(root / "long", 9000, spikes=(4321,))
    secret = tmp_path_factory.mktemp("outside") / "secret"
    _write_run(secret, 10)
    (root / "link").symlink_to(secret, target_is_directory=True)  # a link out of the runs directory
    return root


@pytest.fixture(scope="module")
def client(runs_dir) -> TestClient:
    # raise_server_exceptions (the default) turns any 500 into a failing test.
    with TestClient(create_app(runs_dir=runs_dir), base_url=LOCAL) as c:
        yield c


def test_surfaces_lists_landscapes_defaults_and_limits(client):
    body = client.get("/api/surfaces").json()
    assert [s["name"] for s in body["surfaces"]] == list(cliff.LANDSCAPES)
    assert body["methods"] == ["none", "norm", "value"] and body["limits"]["steps"] == MAX_STEPS
    cliff_info = body["surfaces"][0]
    assert cliff_info["axes"] == ["w", "b"] and cliff_info["bounds"] == [[2.0, 10.0], [-7.0, 0.0]]


def test_surface_returns_the_grid(client):
    body = client.get("/api/surface", params={"surface": "bowl", "grid": 11}).json()
    assert len(body["u"]) == len(body["v"]) == 11 and len(body["loss"]) == 11 and len(body["loss"][0]) == 11
    assert body["loss"][5][5] == pytest.approx(0.0) and body["loss"][0][0] == pytest.approx(0.5 * (25 + 100))


def test_simulate_returns_three_runs_matching_the_library(client):
    body = client.get("/api/simulate", params=SIM).json()
    expected = cliff.simulate_all("cliff", (5.0, -3.5), lr=0.1, threshold=1.0, steps=200)
    assert set(body["runs"]) == {"none", "norm", "value"}
    for method, run in body["runs"].items():
        t = expected[method]
        assert run["u"] == t.points[:, 0].tolist() and run["v"] == t.points[:, 1].tolist()
        assert run["clip_count"] == int(t.clipped.sum()) and run["max_step"] == pytest.approx(
            t.step_length.max()
        )
    assert body["runs"]["norm"]["max_step"] <= 0.1 * 1.0 * (1 + 1e-12)
    assert body["runs"]["none"]["max_step"] > 10


def test_diverged_loss_is_sent_as_null_not_nan(client):
    params = {"surface": "valley", "u": "-8", "v": "2.6", "lr": "0.1", "threshold": "2", "steps": "300"}
    response = client.get("/api/simulate", params=params)
    assert response.status_code == 200 and "NaN" not in response.text and "Infinity" not in response.text
    none = response.json()["runs"]["none"]
    assert none["diverged"] and none["loss"][-1] is None


def test_the_largest_simulation_allowed_is_answered(client):
    response = client.get("/api/simulate", params={**SIM, "steps": str(MAX_STEPS)})
    assert response.status_code == 200
    assert len(response.json()["runs"]["norm"]["u"]) == MAX_STEPS + 1


def test_vector_compares_norm_and_value_clipping(client):
    body = client.get("/api/vector", params={"gx": "3", "gy": "1", "threshold": "1"}).json()
    assert body["value_clipped"] == [1.0, 1.0]
    assert body["angle_deg"] == pytest.approx(45.0 - math.degrees(math.atan(1 / 3)))
    assert body["norm_clipped_norm"] == pytest.approx(1.0, abs=1e-5)


BAD = [
    ("/api/surface", {"surface": "cliffs"}, "unknown surface 'cliffs'"),
    ("/api/surface", {}, "missing parameter 'surface'"),
    (
        "/api/surface",
        {"surface": "cliff", "grid": str(MAX_GRID + 1)},
        "grid must be a whole number in [8, 400]",
    ),
    ("/api/surface", {"surface": "cliff", "grid": "7"}, "grid must be"),
    ("/api/surface", {"surface": "cliff", "grid": "12.5"}, "grid must be a whole number"),
    ("/api/surface", {"surface": "cliff", "colour": "red"}, "unknown parameter 'colour'"),
    ("/api/simulate", {**SIM, "steps": str(MAX_STEPS + 1)}, "steps must be a whole number in [1, 10000]"),
    ("/api/simulate", {**SIM, "steps": "0"}, "steps must be"),
    ("/api/simulate", {**SIM, "steps": "1e3"}, "steps must be a whole number"),
    ("/api/simulate", {**SIM, "lr": "0"}, "lr must be a number in (0, 100]"),
    ("/api/simulate", {**SIM, "lr": "-1"}, "lr must be"),
    ("/api/simulate", {**SIM, "lr": "nan"}, "lr must be"),
    ("/api/simulate", {**SIM, "lr": "inf"}, "lr must be"),
    ("/api/simulate", {**SIM, "lr": "1e999"}, "lr must be"),
    ("/api/simulate", {**SIM, "lr": "abc"}, "lr must be a number"),
    ("/api/simulate", {**SIM, "lr": ""}, "lr must be"),
    ("/api/simulate", {**SIM, "threshold": "0"}, "threshold must be"),
    ("/api/simulate", {**SIM, "threshold": "1e5"}, "threshold must be"),
    ("/api/simulate", {**SIM, "u": "11"}, "u must be a number in [2, 10]"),
    ("/api/simulate", {**SIM, "v": "0.5"}, "v must be a number in [-7, 0]"),
    ("/api/simulate", {**SIM, "surface": "moon"}, "unknown surface 'moon'"),
    ("/api/simulate", {k: v for k, v in SIM.items() if k != "lr"}, "missing parameter 'lr'"),
    ("/api/simulate", {**SIM, "lr": "1" * 400}, "at most 300"),
    ("/api/vector", {"gx": "1", "gy": "1"}, "missing parameter 'threshold'"),
    ("/api/vector", {"gx": "1e5", "gy": "1", "threshold": "1"}, "gx must be a number in [-10000, 10000]"),
    ("/api/vector", {"gx": "1", "gy": "-nan", "threshold": "1"}, "gy must be"),
    ("/api/runs", {"x": "1"}, "unknown parameter 'x'"),
    ("/api/run", {}, "missing parameter 'run'"),
    ("/api/run", {"run": "../outside"}, "unknown run '../outside'"),
    ("/api/run", {"run": "exp/../../etc"}, "unknown run"),
    ("/api/run", {"run": "/etc/passwd"}, "unknown run"),
    ("/api/run", {"run": "link"}, "unknown run 'link'"),
    ("/api/run", {"run": "exp"}, "unknown run 'exp'"),
    ("/api/run", {"run": "exp/a\x00"}, "printable"),
]


@pytest.mark.parametrize(("path", "params", "message"), BAD, ids=[f"{p}-{m[:30]}" for p, _, m in BAD])
def test_bad_input_is_a_400_with_a_json_message(client, path, params, message):
    response = client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


def test_repeated_parameter_is_refused(client):
    response = client.get("/api/simulate?" + "&".join(f"{k}={v}" for k, v in SIM.items()) + "&lr=0.2")
    assert response.status_code == 400 and "'lr' given more than once" in response.json()["error"]


def test_unknown_paths_and_methods_answer_json(client):
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/api/nothing").json() == {"error": "Not Found"}
    assert client.post("/api/simulate", params=SIM).status_code == 405
    assert client.get("/static/../server.py").status_code == 404


def test_page_and_plotly_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/vendor/plotly.min.js" defer>' in page.text
    js = client.get("/vendor/plotly.min.js")
    assert (
        js.status_code == 200 and "javascript" in js.headers["content-type"] and len(js.content) > 1_000_000
    )
    names = "app.js common.js cliff.js contours.js curves.js landscapes.js plot.js region.js story.js"
    names += " vector.js runs.js"
    for name in [*names.split(), "style.css"]:
        assert client.get(f"/static/{name}").status_code == 200


def test_static_files_reference_no_remote_host():
    # Offline: the page must not pull anything from a CDN or any other host.
    for path in STATIC.iterdir():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text()), path


def test_runs_lists_only_real_files_inside_the_directory(client, runs_dir):
    response = client.get("/api/runs")
    body = response.json()
    assert sorted(r["id"] for r in body["runs"]) == ["exp/a", "long"]
    # The directory's name, never its absolute path (which would tell a page about the machine).
    assert body["runs_dir"] == runs_dir.name and str(runs_dir.parent) not in response.text


@pytest.mark.parametrize(
    ("host", "status"),
    [("127.0.0.1:8765", 200), ("localhost", 200), ("localhost:1", 200), ("[::1]:8765", 200),
     ("127.3.2.1", 200), ("evil.example", 421), ("evil.example:8765", 421), ("127.0.0.1.evil.example", 421),
     ("", 421), ("192.168.1.5:8765", 421), ("[2001:db8::1]:80", 421)],
)  # fmt: skip
def test_only_loopback_host_headers_are_answered(runs_dir, host, status):
    # DNS rebinding: a page on evil.example that resolves its name to 127.0.0.1 sends Host: evil.example.
    with TestClient(create_app(runs_dir=runs_dir), base_url=LOCAL) as c:
        response = c.get("/api/runs", headers={"host": host})
        assert response.status_code == status
        if status == 421:
            assert "answers only for localhost" in response.json()["error"]
            assert c.get("/", headers={"host": host}).status_code == 421


def test_any_host_lifts_the_host_check(runs_dir):
    with TestClient(create_app(runs_dir=runs_dir, any_host=True), base_url="http://evil.example") as c:
        assert c.get("/api/runs").status_code == 200


def test_diverged_run_is_flagged_and_a_healthy_one_is_not(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with GradMonitor(log_dir=tmp_path / "bad", max_norm=1.0) as monitor:
            for i in range(200):  # the loss grows 100x over the run: it diverged without overflowing
                monitor.record(0.5 + i, threshold=1.0, loss=1.0 + i / 2)
    _write_run(tmp_path / "good", 200)
    with TestClient(create_app(runs_dir=tmp_path), base_url=LOCAL) as c:
        bad = c.get("/api/run", params={"run": "bad"}).json()
        good = c.get("/api/run", params={"run": "good"}).json()
    assert bad["diverged"].startswith("its loss rose from") and good["diverged"] is None
    assert bad["finished"] and good["finished"]


def test_a_run_still_being_written_is_not_finished(tmp_path):
    monitor = GradMonitor(log_dir=tmp_path / "live", max_norm=1.0)
    for _ in range(5):
        monitor.record(0.5, threshold=1.0, loss=1.0)
    with TestClient(create_app(runs_dir=tmp_path), base_url=LOCAL) as c:
        body = c.get("/api/run", params={"run": "live"}).json()
    monitor.close()
    assert not body["finished"] and body["steps"] == 5


def test_run_reports_clip_rate_warnings_and_advice(client, runs_dir):
    body = client.get("/api/run", params={"run": "exp/a"}).json()
    steps = [json.loads(line) for line in (runs_dir / "exp" / "a" / JSONL_NAME).read_text().splitlines()]
    steps = [r for r in steps if r["type"] == "step"]
    assert body["steps"] == 300 and not body["truncated"]
    assert body["clip_rate"] == pytest.approx(sum(r["gradclip/clipped"] for r in steps) / 300)
    assert any(w["kind"] == "spike" and w["step"] == 150 for w in body["warnings"])
    assert body["advice"]["low"] <= body["advice"]["high"] and "suggested max_norm" in body["advice"]["text"]
    assert body["timeline"]["gradclip/pre_clip_norm"][150] == pytest.approx(
        steps[150]["gradclip/pre_clip_norm"]
    )


def test_long_run_is_bucketed_and_keeps_its_spike(client):
    body = client.get("/api/run", params={"run": "long"}).json()
    t = body["timeline"]
    assert body["steps"] == 9000 and len(t["step"]) <= runs.MAX_POINTS and body["bucket"] == 5
    assert max(t["gradclip/pre_clip_norm"]) > 20  # the 100x spike at step 4321 survives the reduction


def test_truncated_last_line_is_skipped_and_damage_is_a_400(tmp_path):
    _write_run(tmp_path / "r", 150)
    path = tmp_path / "r" / JSONL_NAME
    with TestClient(create_app(runs_dir=tmp_path), base_url=LOCAL) as c:
        lines = path.read_text().splitlines(keepends=True)
        # Drop the summary (last line) and crash in the middle of writing step 150.
        path.write_text("".join(lines[:-1]) + '{"type":"step","step":150,"total_')
        body = c.get("/api/run", params={"run": "r"}).json()
        assert body["truncated"] and body["steps"] == 150 and body["summary"] is None
        assert body["advice"] is not None  # recomputed from the steps when no summary was written
        path.write_text(lines[0] + "not json\n" + "".join(lines[1:]))
        response = c.get("/api/run", params={"run": "r"})
        assert response.status_code == 400 and "cannot be read" in response.json()["error"]
        path.write_text('{"type": "step"}\n')
        assert c.get("/api/run", params={"run": "r"}).status_code == 400


def test_a_log_of_schema_version_1_is_served_under_the_current_names(tmp_path):
    v1 = (
        Path(__file__).parent / "data" / "v1-run" / JSONL_NAME
    )  # written before the tag names (total_norm...)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / JSONL_NAME).write_bytes(v1.read_bytes())
    steps = [json.loads(line) for line in v1.read_text().splitlines()]
    steps = [r for r in steps if r["type"] == "step"]
    with TestClient(create_app(runs_dir=tmp_path), base_url=LOCAL) as c:
        body = c.get("/api/run", params={"run": "old"}).json()
    t = body["timeline"]
    assert list(t) == list(runs.TIMELINE) and body["steps"] == len(steps) and body["finished"]
    assert (
        t["gradclip/pre_clip_norm"][12] == 500.0 and t["gradclip/pre_clip_norm"][18] is None
    )  # the NaN step
    assert t["gradclip/loss"] == pytest.approx([r["loss"] for r in steps])
    assert t["gradclip/threshold"] == [2.0] * len(steps)
    assert body["clip_rate"] == pytest.approx(sum(r["clipped"] for r in steps) / len(steps))
    assert body["diverged"] and "step 18" in body["diverged"]  # a non-finite norm, read from the old field


def test_missing_runs_directory_lists_nothing(tmp_path):
    with TestClient(create_app(runs_dir=tmp_path / "absent"), base_url=LOCAL) as c:
        assert c.get("/api/runs").json()["runs"] == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO to stand in for an unreadable file")
def test_a_fifo_named_like_a_run_is_not_listed(tmp_path):
    (tmp_path / "f").mkdir()
    os.mkfifo(tmp_path / "f" / JSONL_NAME)  # opening it would block: it must never be read
    assert runs.list_runs(tmp_path) == []


def test_listening_socket_and_accepted_connections_set_tcp_nodelay(runs_dir):
    import socket

    import httpx

    from gradclip.explorer.server import serve_in_thread

    url, server, thread = serve_in_thread(runs_dir)
    try:
        (listener,) = server.servers[0].sockets
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        with httpx.Client(base_url=url) as client:
            assert client.get("/api/runs").status_code == 200  # kept alive: the connection stays open
            conns = list(server.server_state.connections)
            assert conns
            for conn in conns:
                sock = conn.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("host", ["", "   "])
def test_cli_refuses_an_empty_host(host, capsys):
    from gradclip.explorer.cli import main

    with pytest.raises(SystemExit) as err:
        main(["--host", host, "--no-browser", "--port", "0"])
    assert err.value.code == 2
    assert "expected an address to listen on" in capsys.readouterr().err
