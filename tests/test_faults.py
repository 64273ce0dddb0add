"""Faults on real processes and files: SIGKILL, a full disk, corrupted and foreign checkpoints, damaged logs.

Each test saves something first (a finished run, a checkpoint, a report), then does its worst, and
asserts that what was saved before is byte-for-byte intact (or, after a kill during a write, either
the old file or a complete new one), that the command answered with one line and exit code 2, and
that it wrote nothing it should not have (no TensorBoard file from a refused resume, no temp file).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gradclip import cli
from gradclip._io import atomic_write_json
from gradclip.monitor import GradMonitor
from gradclip.sandbox.convolutional.checkpoint import load_checkpoint, save_checkpoint
from gradclip.sandbox.convolutional.models import build_model
from gradclip.sandbox.vectorized.checkpoint import load_state

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
VEC = [sys.executable, "-m", "gradclip.sandbox.vectorized", "--dataset", "moons", "--epochs", "2", "--quiet"]
CONV = ["small_cnn", "--image-size", "8", "--batch-size", "256", "--quiet"]


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes): what 'intact' is compared against."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_exit_2(capsys, argv: list[str], main=cli.main) -> str:
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- SIGKILL at random moments ------------------------------------------------------------------


def _check_vectorized_run(out: Path, before: dict[str, bytes]) -> None:
    """After a kill: each file is the old one or a complete new one; nothing half-written survives."""
    for name in ("checkpoint.npz", "history.json"):
        data = (out / name).read_bytes()
        if data != before[name]:  # replaced: must be whole
            if name == "checkpoint.npz":
                assert load_state(out / name)["trainer"]["epoch"] == 2
            else:
                assert json.loads(data)["args"]["seed"] == "1"


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_the_saved_run(tmp_path):
    base = tmp_path / "base"
    subprocess.run([*VEC, "--out", str(base)], check=True, env=ENV, capture_output=True, timeout=120)
    before = _files(base)
    started = time.perf_counter()
    again = tmp_path / "timing"
    shutil.copytree(base, again)
    subprocess.run([*VEC, "--seed", "1", "--overwrite", "--out", str(again)], check=True, env=ENV,
                   capture_output=True, timeout=120)  # fmt: skip
    full = time.perf_counter() - started
    rng = random.Random(19)
    killed_during = 0
    for trial in range(20):
        out = tmp_path / f"t{trial}"
        shutil.copytree(base, out)
        proc = subprocess.Popen([*VEC, "--seed", "1", "--overwrite", "--out", str(out)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.3, 1.1) * full)  # mostly late: the writes happen at the end
        proc.send_signal(signal.SIGKILL)
        killed_during += proc.wait(timeout=60) == -signal.SIGKILL
        _check_vectorized_run(out, before)
    assert killed_during >= 5  # the moments did fall inside the runs, not only after them
    # A killed write leaves at most its temp file; the next run in that directory removes it.
    leftover = tmp_path / "t0" / ".checkpoint.npz.killed.tmp"
    leftover.write_bytes(b"half a checkpoint")
    subprocess.run([*VEC, "--seed", "2", "--overwrite", "--out", str(tmp_path / "t0")], check=True, env=ENV,
                   capture_output=True, timeout=120)  # fmt: skip
    assert not list((tmp_path / "t0").glob(".*.tmp"))


@pytest.mark.slow
def test_sigkill_of_a_conv_run_then_resume_removes_the_temp_files_and_finishes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "conv", *CONV, "--out", str(out)]
    assert cli.main([*argv, "--epochs", "1"]) == 0  # in-process: one interpreter start saved
    proc = subprocess.Popen([sys.executable, "-m", "gradclip", *argv, "--epochs", "3", "--resume"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and load_checkpoint(out / "checkpoint.pt")["epoch"] < 2:
        time.sleep(0.05)  # kill right after the second checkpoint landed, while the third is built
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] in (2, 3)  # whole, never half
    (out / ".checkpoint.pt.killed.tmp").write_bytes(b"half")  # as a kill inside the write leaves
    (out / ".history.json.killed.tmp").write_bytes(b"{")
    code = cli.main([*argv, "--epochs", "4", "--resume"])
    assert code == 0, capsys.readouterr().err
    assert not list(out.glob(".*.tmp"))
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 4
    assert json.loads((out / "history.json").read_text())["config"]["model"] == "small_cnn"


# --- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (needs root); skipped with the reason otherwise."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full-disk test mounts a small tmpfs, which needs root; running as non-root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _fill(disk: Path) -> None:
    """Write until not one more byte fits (chunks halving down to one byte)."""
    with (disk / "filler").open("wb", buffering=0) as f:
        chunk = 1 << 16
        while chunk:
            try:
                f.write(b"\0" * chunk)
            except OSError as err:
                assert err.errno == errno.ENOSPC
                chunk //= 2


@pytest.mark.slow
def test_a_full_disk_is_one_line_exit_2_and_keeps_the_saved_run_and_report(small_disk, tmp_path):
    run = small_disk / "run"
    subprocess.run([*VEC, "--out", str(run)], check=True, env=ENV, capture_output=True, timeout=120)
    log = small_disk / "log"
    with GradMonitor(log_dir=log) as monitor:
        for i in range(20):
            monitor.record(1.0 + i % 3, loss=1.0)
    report = small_disk / "report"
    subprocess.run([sys.executable, "-m", "gradclip", "report", str(log), "--out", str(report)], check=True,
                   env=ENV, capture_output=True, timeout=300)  # fmt: skip
    before = {name: _files(small_disk / name) for name in ("run", "report")}
    _fill(small_disk)
    again = [sys.executable, "-m", "gradclip", "report", str(log), "--out", str(report), "--overwrite"]
    for argv in ([*VEC, "--seed", "1", "--overwrite", "--out", str(run)], again):
        done = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "no space left" in done.stderr
    assert {name: _files(small_disk / name) for name in ("run", "report")} == before
    # history.json, the file the issue saw broken: an atomic replace on a full disk keeps it whole.
    history = run / "history.json"
    with pytest.raises(OSError) as caught:
        atomic_write_json(history, {"big": "x" * 100_000})
    assert caught.value.errno == errno.ENOSPC and history.read_bytes() == before["run"]["history.json"]
    assert not list(run.glob(".*.tmp"))


# --- corrupted and foreign checkpoints ------------------------------------------------------------


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("conv") / "run"
    assert cli.main(["train", "conv", *CONV, "--epochs", "1", "--out", str(out)]) == 0
    return out


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) * 2 // 3  # inside the tensor data of the payload
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


def _resealed(edit):
    def damage(path: Path) -> None:
        state = load_checkpoint(path)
        edit(state)
        save_checkpoint(path, state)  # a valid seal: only the content is wrong

    return damage


def _nan_weights(state):
    for tensor in state["model"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))


def _other_model(state):
    state["model"] = build_model("deep_cnn", in_channels=1, num_classes=10).state_dict()


def _adam_config(state):
    state["extra"]["config"]["optimizer"] = "adam"  # SGD momentum buffers under an Adam run


DAMAGE = {
    "flipped-bytes": (_flip_bytes, "corrupted", []),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-1000]), "truncated", []),
    "empty": (lambda p: p.write_bytes(b""), "not a gradclip checkpoint", []),
    "foreign-torch-file": (lambda p: torch.save({"model": {}}, p), "not a gradclip checkpoint", []),
    "nan-weights": (_resealed(_nan_weights), "non-finite", []),
    "other-model": (_resealed(_other_model), "another model", []),
    "sgd-state-under-adam": (_resealed(_adam_config), "another optimizer", ["--optimizer", "adam"]),
    "missing-rng": (_resealed(lambda s: s.pop("rng")), "rng", []),
    "epoch-text": (_resealed(lambda s: s.update(epoch="abc")), "epoch", []),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_is_refused_by_name_and_nothing_in_the_run_changes(
    capsys, tmp_path, conv_run, damage
):
    edit, message, extra = DAMAGE[damage]
    out = tmp_path / "run"
    shutil.copytree(conv_run, out)
    edit(out / "checkpoint.pt")
    before = _files(out)
    line = _one_line_exit_2(
        capsys, ["train", "conv", *CONV, *extra, "--epochs", "2", "--resume", "--out", str(out)]
    )
    assert "checkpoint.pt" in line
    assert message in line
    assert _files(out) == before  # no TensorBoard events, no monitor directory, no temp file


# --- damaged JSONL --------------------------------------------------------------------------------

HEADER = {
    "type": "header",
    "schema": "gradclip.monitor",
    "version": 1,
    "name": "r",
    "layers": ["a"],
    "config": {},
}
STEP = {"type": "step", "step": 0, "total_norm": 1.0, "post_clip_norm": 1.0, "threshold": 2.0,
        "clipped": False, "finite": True, "skipped": False, "loss": 1.0, "lr": 0.1, "layer_norms": [1.0],
        "time": 0.0}  # fmt: skip
LINES = {
    "a-list": "[1, 2]",
    "a-number": "5",
    "null": "null",
    "a-string": '"step"',
    "total_norm-text": json.dumps({**STEP, "total_norm": "big"}),
    "step-text": json.dumps({**STEP, "step": "zero"}),
    "layer_norms-text": json.dumps({**STEP, "layer_norms": "1.0"}),
    "layer_norms-short": json.dumps({**STEP, "layer_norms": []}),
    "warning-without-message": json.dumps({"type": "warning", "step": 0, "kind": "spike"}),
    "deeply-nested": '{"type": "summary", "x": ' + "[" * 5000 + "]" * 5000 + "}",
    "shallow-but-deep-summary": '{"type": "summary", "x": ' + "[" * 100 + "]" * 100 + "}",
    "not-json": "{oops",
}


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("logs")
    with GradMonitor(log_dir=root / "good") as monitor:
        for i in range(10):
            monitor.record(1.0 + i, loss=1.0)
    assert cli.main(["report", str(root / "good"), "--out", str(root / "report")]) == 0
    return root / "good", root / "report"


@pytest.mark.parametrize("damage", sorted(LINES))
def test_a_damaged_log_is_exit_2_for_report_and_400_for_the_runs_api(capsys, tmp_path, reported, damage):
    report = reported[1]
    run = tmp_path / "runs" / "bad"
    run.mkdir(parents=True)
    lines = [json.dumps(HEADER), json.dumps(STEP), LINES[damage], json.dumps({**STEP, "step": 1})]
    (run / "grads.jsonl").write_text("\n".join(lines) + "\n")
    before = _files(report)
    capsys.readouterr()
    line = _one_line_exit_2(capsys, ["report", str(run), "--out", str(report), "--overwrite"])
    assert "grads.jsonl:3" in line
    assert _files(report) == before
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from gradclip.explorer.server import create_app

    with TestClient(create_app(runs_dir=tmp_path / "runs"), base_url="http://127.0.0.1:8765") as client:
        answer = client.get("/api/run", params={"run": "bad"})
    assert answer.status_code == 400 and "grads.jsonl:3" in answer.json()["error"]
