"""The main job: `gradclip demo` shows a bad batch wrecking training and clipping saving it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gradclip.sandbox.demo import train_digits


def test_clipping_survives_the_bad_batch_that_wrecks_the_unclipped_run():
    clean = train_digits(max_norm=None, spike=1.0)
    wrecked = train_digits(max_norm=None, spike=1e4)
    clipped = train_digits(max_norm=5.0, spike=1e4)
    assert clean.clip_count == 0 and clean.max_grad_norm < 5.0  # c = 5 only ever clips the spike
    assert wrecked.max_grad_norm > 1000 and clipped.max_grad_norm > 1000  # the same spike hit both
    assert wrecked.accuracy < 0.5 and wrecked.final_loss > 10 * clean.final_loss  # thrown off the cliff
    assert clipped.clip_count == 1
    assert clipped.accuracy > 0.95 and clipped.accuracy == pytest.approx(clean.accuracy, abs=0.02)


def test_demo_command_prints_the_side_by_side_table_and_writes_a_report(tmp_path):
    argv = [sys.executable, "-m", "gradclip", "demo", "--epochs", "2", "--out", str(tmp_path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for run in ("no-clipping", "clipped"):
        assert (tmp_path / run / "grads.jsonl").stat().st_size > 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert "no clipping" in page and "clip norm 5" in page and "data:image/png;base64" in page
    for label in (
        "no clipping",
        "clip norm 5",
        "final test loss",
        "test accuracy",
        "largest grad norm",
        "clipped steps",
        "NaN/Inf seen",
    ):
        assert label in out.stdout


@pytest.mark.parametrize("argv", [["demo", "--epochs", "0"], ["demo", "--max-norm", "-1"], ["nope"]])
def test_bad_command_lines_exit_2_with_one_line(argv):
    out = subprocess.run([sys.executable, "-m", "gradclip", *argv], capture_output=True, text=True)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "error" in out.stderr


def test_train_vectorized_subcommand_trains_and_writes_its_run(tmp_path):
    argv = ["train", "vectorized", "--epochs", "3", "--grad-clip", "1.0", "--quiet", "--out", str(tmp_path)]
    out = subprocess.run(
        [sys.executable, "-m", "gradclip", *argv], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "test accuracy" in out.stdout
    assert (tmp_path / "checkpoint.npz").stat().st_size > 0 and (tmp_path / "history.json").exists()


def test_train_vectorized_bad_value_exits_2_and_writes_nothing(tmp_path):
    argv = ["train", "vectorized", "--batch-size", "0", "--quiet", "--out", str(tmp_path / "run")]
    out = subprocess.run(
        [sys.executable, "-m", "gradclip", *argv], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--batch-size" in out.stderr
    assert not (tmp_path / "run").exists()


def test_report_command_reads_monitored_runs_and_rejects_missing_ones(tmp_path):
    from gradclip.sandbox.demo import run_demo

    run_demo(epochs=1, out_dir=tmp_path / "demo")
    argv = [
        sys.executable,
        "-m",
        "gradclip",
        "report",
        str(tmp_path / "demo" / "clipped"),
        "--out",
        str(tmp_path / "r"),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r" / "report.html").exists() and (
        tmp_path / "r" / "norms.png"
    ).stat().st_size > 10_000
    assert "clip norm 5" in out.stdout  # the terminal summary table
    missing = subprocess.run(
        [sys.executable, "-m", "gradclip", "report", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_train_conv_subcommand_and_gpu_without_cuda(tmp_path):
    argv = [
        "train",
        "conv",
        "small_cnn",
        "--epochs",
        "1",
        "--image-size",
        "8",
        "--quiet",
        "--out",
        str(tmp_path / "c"),
    ]
    out = subprocess.run(
        [sys.executable, "-m", "gradclip", *argv], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert any((tmp_path / "c").iterdir())
    if not __import__("torch").cuda.is_available():
        gpu = subprocess.run(
            [sys.executable, "-m", "gradclip", "train", "conv", "resnet18", "--gpu", "--grad-clip", "5.0"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert gpu.returncode == 2 and gpu.stderr.count("\n") == 1 and "CUDA" in gpu.stderr
