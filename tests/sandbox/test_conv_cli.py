"""The convolutional sandbox's command line: one-line errors, run directories, SIGKILL and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gradclip.sandbox.convolutional.checkpoint import load_checkpoint
from gradclip.sandbox.convolutional.cli import main

CMD = [sys.executable, "-m", "gradclip.sandbox.convolutional"]
TINY = ["small_cnn", "--image-size", "8", "--quiet"]


def _error_line(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and ": error: " in err
    return err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is missing")
def test_gpu_without_cuda_is_a_one_line_error_with_exit_code_2():
    argv = ["resnet18", "--epochs", "5", "--batch-size", "128", "--gpu", "--grad-clip", "5.0"]
    out = subprocess.run([*CMD, *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "--gpu was given but CUDA is not available" in out.stderr


def test_unknown_model_lists_the_choices(capsys):
    err = _error_line(capsys, ["resnet50"])
    assert "invalid choice: 'resnet50' (choose from 'deep_cnn', 'resnet18', 'small_cnn')" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*TINY, "--inject-spike", "10"], "expected STEP:FACTOR"),
        ([*TINY, "--inject-spike", "a:2"], "expected STEP:FACTOR"),
        ([*TINY, "--epochs", "0"], "expected a whole number in [1, 100000], got '0'"),
        ([*TINY, "--lr", "-1"], "expected a finite number in [1e-300, 1000]"),
        ([*TINY, "--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
        ([*TINY, "--clip-mode", "agc"], "--clip-mode agc needs --grad-clip > 0"),
        ([*TINY, "--grad-clip", "nan"], "argument --grad-clip: expected a finite number"),
        ([*TINY, "--grad-clip", "1e39"], "argument --grad-clip: expected a finite number within float32"),
        ([*TINY, "--data", "cifar10"], "--data cifar10 is read from disk: give --data-dir"),
        ([*TINY, "--resume"], "--resume needs --out"),
        (
            [*TINY, "--clip-mode", "percentile", "--grad-clip", "500"],
            "--grad-clip for --clip-mode percentile is p in (0, 100]",
        ),
    ],
)
def test_bad_flags_are_one_line_errors(capsys, argv, message):
    assert message in _error_line(capsys, argv)


def test_missing_cifar_files_are_a_one_line_error(capsys, tmp_path):
    err = _error_line(capsys, ["small_cnn", "--data", "cifar10", "--data-dir", str(tmp_path)])
    assert "no CIFAR-10 python batches in" in err
    assert "size must be 32" in _error_line(capsys, [*TINY, "--data", "cifar10", "--data-dir", str(tmp_path)])


def test_a_run_writes_its_directory_and_refuses_to_overwrite_it(capsys, tmp_path):
    out = tmp_path / "run"
    assert main([*TINY, "--epochs", "1", "--batch-size", "64", "--grad-clip", "1", "--out", str(out)]) == 0
    assert "small_cnn on digits: test loss" in capsys.readouterr().out
    history = json.loads((out / "history.json").read_text())
    assert history["config"]["grad_clip"] == "1.0" and len(history["val_accuracy"]) == 1
    assert (out / "monitor" / "grads.jsonl").is_file() and list((out / "tensorboard").iterdir())
    saved = (out / "checkpoint.pt").read_bytes()
    assert "already holds a run" in _error_line(capsys, [*TINY, "--out", str(out)])
    same = [*TINY, "--epochs", "1", "--batch-size", "64", "--grad-clip", "1", "--out", str(out), "--resume"]
    assert "raise --epochs" in _error_line(capsys, same)
    err = _error_line(capsys, [*TINY, "--epochs", "2", "--batch-size", "64", "--out", str(out), "--resume"])
    assert "differ from the saved run: grad_clip was 1.0 now None" in err
    assert (out / "checkpoint.pt").read_bytes() == saved  # nothing was lost


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    args = [*TINY, "--epochs", "4", "--batch-size", "8", "--grad-clip", "2", "--no-monitor", "--seed", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same thread count in every run: same float sums
    straight = subprocess.run([*CMD, *args, "--out", str(tmp_path / "a")], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
    assert straight.returncode == 0, straight.stderr
    ckpt = tmp_path / "b" / "checkpoint.pt"
    proc = subprocess.Popen([*CMD, *args, "--out", str(tmp_path / "b")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.1)  # into the second epoch (180 steps)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL  # killed, not finished
    assert load_checkpoint(ckpt)["epoch"] < 4
    resumed = subprocess.run([*CMD, *args, "--out", str(tmp_path / "b"), "--resume"], env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(ckpt)
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["history"]["grad_norm"] == b["history"]["grad_norm"]


def _monitor_steps(run_dir) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "monitor" / "grads.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in lines if r["type"] in ("step", "warning")]


@pytest.mark.slow
def test_a_run_killed_and_resumed_leaves_the_monitor_log_of_an_uninterrupted_run(tmp_path):
    args = [*TINY, "--epochs", "3", "--batch-size", "8", "--grad-clip", "2", "--seed", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = subprocess.run([*CMD, *args, "--out", str(tmp_path / "a")], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
    assert straight.returncode == 0, straight.stderr
    ckpt, log = tmp_path / "b" / "checkpoint.pt", tmp_path / "b" / "monitor" / "grads.jsonl"
    proc = subprocess.Popen([*CMD, *args, "--out", str(tmp_path / "b")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    first = load_checkpoint(ckpt)["step"]
    while log.read_text().count('"type":"step"') < first + 20 and proc.poll() is None:
        time.sleep(0.005)  # the killed run has logged steps past its checkpoint
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    saved = load_checkpoint(ckpt)["step"]
    assert load_checkpoint(ckpt)["epoch"] < 3 and log.read_text().count('"type":"step"') > saved
    resumed = subprocess.run([*CMD, *args, "--out", str(tmp_path / "b"), "--resume"], env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert _monitor_steps(tmp_path / "b") == _monitor_steps(tmp_path / "a")
    marks = [json.loads(line) for line in log.read_text().splitlines() if '"resume"' in line]
    assert len(marks) == 1 and marks[0]["step"] == saved and marks[0]["dropped"] > 0
    report = subprocess.run([sys.executable, "-m", "gradclip", "report", str(tmp_path / "b" / "monitor")],
                            env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert not list(tmp_path.glob("b/monitor-from-epoch-*"))  # one run directory, one log


def test_train_conv_grad_clip_reaches_the_multiply(tmp_path):
    """``gradclip train conv ... --grad-clip 1``: the thresholds applied (logged per step) are the flag's."""
    from gradclip.cli import main as gradclip_main

    out = tmp_path / "run"
    argv = ["train", "conv", *TINY, "--epochs", "1", "--batch-size", "64", "--inject-spike", "3:1e4"]
    assert gradclip_main([*argv, "--lr", "0.01", "--grad-clip", "1", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "monitor" / "grads.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["type"] == "step"]
    assert len(steps) == 23 and steps[3]["gradclip/pre_clip_norm"] > 100 and steps[3]["gradclip/clipped"]
    assert {r["gradclip/threshold"] for r in steps} == {1.0}
    assert all(r["gradclip/post_clip_norm"] <= 1.0 * (1 + 1e-6) for r in steps)
    assert steps[3]["gradclip/post_clip_norm"] == pytest.approx(1.0, rel=1e-5)
    history = json.loads((out / "history.json").read_text())
    assert history["threshold"] == [1.0] * 23 and history["clipped"][3] == 1.0


def test_train_vectorized_grad_clip_reaches_the_multiply(tmp_path, capsys):
    from gradclip.cli import main as gradclip_main
    from gradclip.sandbox.vectorized.checkpoint import load_state

    out = tmp_path / "v"
    argv = ["train", "vectorized", "--dataset", "moons", "--epochs", "1", "--grad-clip", "0.05", "--quiet"]
    assert gradclip_main([*argv, "--out", str(out)]) == 0
    history = json.loads((out / "history.json").read_text())
    pre, post = history["grad_norm"], history["clipped_norm"]
    assert set(history["threshold"]) == {0.05} and any(p > 0.05 for p in pre)
    assert all(q <= 0.05 * (1 + 1e-6) for q in post)
    assert load_state(out / "checkpoint.npz")["clipper"]["counts"][0] == len(pre)
