"""Bad input everywhere: every CLI flag and public constructor or method, fed values it must refuse.

A command line must exit with code 2 and one stderr line naming the flag, before writing anything;
a Python entry point must raise TypeError/ValueError naming the argument (never AttributeError,
KeyError or IndexError from inside gradclip); a ``load_state_dict`` given garbage or another class's
state must raise and leave the object exactly as it was. Values come from hypothesis where a family
of bad values fits (numbers out of range, non-numbers, garbage states), from lists otherwise.
"""

from __future__ import annotations

import copy
import ctypes
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradclip.numpy as gnp
from gradclip import cli
from gradclip.advice import threshold_advice
from gradclip.clip import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm
from gradclip.clippers import AGC, NormClipper, ValueClipper
from gradclip.integrations.loop import clipping
from gradclip.monitor import GradMonitor, MonitorConfig
from gradclip.norms import FlatGrads, tensor_norms
from gradclip.optim import ClipOptimizer, Lookahead
from gradclip.policies import Fixed, Percentile, ZScore
from gradclip.report import render_report, write_report
from gradclip.sandbox.convolutional import cli as conv_cli
from gradclip.sandbox.convolutional.trainer import ConvTrainer
from gradclip.sandbox.recurrent.train import RunConfig
from gradclip.sandbox.vectorized import cli as vectorized_cli
from gradclip.sandbox.vectorized.model import mlp
from gradclip.sandbox.vectorized.optim import SGD as NumpySGD
from gradclip.sandbox.vectorized.optim import Adam
from gradclip.sandbox.vectorized.optim import Lookahead as NumpyLookahead
from gradclip.sandbox.vectorized.trainer import VTrainer
from gradclip.sinks import JsonlSink, TensorBoardSink, make_sink, read_run
from gradclip.skip import SpikeSkip
from gradclip.step import ClipStep

SRC = str(Path(__file__).resolve().parents[1] / "src")
FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# --- command lines --------------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=8).filter(
    lambda s: s.strip() and not s.lstrip("-").replace(".", "").replace("e", "").isdigit()
)


def bad_ints(lo: int, hi: int) -> st.SearchStrategy[str]:
    """Whole numbers outside [lo, hi], numbers that are not whole, and text."""
    return st.one_of(
        st.integers(max_value=lo - 1).map(str),
        st.integers(min_value=hi + 1).map(str),
        st.sampled_from(["1e20", "2.5", "nan", "inf", "", "2**64"]),
        TEXT.filter(lambda s: not s.strip().lstrip("+-").isdigit()),
    )


def bad_floats(lo: float, hi: float, *, low_open: bool = False) -> st.SearchStrategy[str]:
    """Numbers outside [lo, hi] (``(lo, hi]`` with ``low_open``), non-finite numbers, and text."""
    return st.one_of(
        st.floats(max_value=lo, exclude_max=not low_open, allow_nan=False).map(repr),
        st.floats(min_value=hi, exclude_min=True, allow_nan=False).map(repr),
        st.sampled_from(["nan", "inf", "-inf", "1e39", "1e308", "", "abc"]),
    )


POS = float(np.finfo(np.float32).max)
VEC, CONV = ["train", "vectorized", "--quiet"], ["train", "conv", "small_cnn", "--quiet"]
PAS, CLIFF = ["experiment", "pascanu", "--quiet"], ["experiment", "cliff"]
# (command prefix, flag, bad values): every numeric flag outside the clipping group.
FLAGS = [
    (["demo"], "--epochs", bad_ints(1, 1000)),
    (["demo"], "--seed", bad_ints(0, 2**32 - 1)),
    (["demo"], "--spike", bad_floats(0.0, 1e30, low_open=True)),
    (VEC, "--hidden", bad_ints(1, 65536)),
    (VEC, "--dropout", bad_floats(0.0, 0.99)),
    (VEC, "--lr", bad_floats(1e-300, 1e3)),
    (VEC, "--weight-decay", bad_floats(0.0, 1e3)),
    (VEC, "--lookahead", bad_ints(0, 10_000)),
    (VEC, "--lookahead-alpha", bad_floats(1e-300, 1.0)),
    (VEC, "--epochs", bad_ints(1, 100_000)),
    (VEC, "--batch-size", bad_ints(1, 1_000_000)),
    (VEC, "--seed", bad_ints(0, 2**32 - 1)),
    (CONV, "--image-size", bad_ints(1, 4096)),
    (CONV, "--lr", bad_floats(1e-300, 1e3)),
    (CONV, "--epochs", bad_ints(1, 100_000)),
    (CONV, "--batch-size", bad_ints(1, 1_000_000)),
    (CONV, "--seed", bad_ints(0, 2**32 - 1)),
    (CONV, "--inject-spike", st.sampled_from(["10", "a:2", "-1:2", "3:nan", "3:inf", ":"])),
    (PAS, "--lengths", bad_ints(1, 10**7)),
    (PAS, "--hidden", bad_ints(1, 10**7)),
    (PAS, "--lrs", bad_floats(1e-300, POS)),
    (PAS, "--factor", bad_floats(1e-300, POS)),
    (PAS, "--batch-size", bad_ints(1, 10**7)),
    (PAS, "--seeds", bad_ints(1, 10_000)),
    (PAS, "--steps", bad_ints(1, 10**7)),
    (PAS, "--eval-every", bad_ints(1, 10**7)),
    (PAS, "--eval-size", bad_ints(1, 1_000_000)),
    (PAS, "--workers", bad_ints(1, 1024)),
    (PAS, "--warmup", bad_ints(1, 10**7)),
    (CLIFF, "--lr", bad_floats(0.0, POS, low_open=True)),
    (CLIFF, "--steps", bad_ints(1, 100_000)),
    (["explore", "--no-browser"], "--port", bad_ints(0, 65535)),
]


def _exit_line(capsys, argv: list[str], main=cli.main) -> str:
    """Run ``gradclip argv`` (or another ``main``); assert exit code 2 and one stderr line; return it."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("prefix", "flag", "values"), FLAGS, ids=[f"{'-'.join(p[:2])}{f}" for p, f, _ in FLAGS]
)
@FUZZ
@given(data=st.data())
def test_every_bad_flag_value_exits_2_naming_the_flag(capsys, tmp_path_factory, prefix, flag, values, data):
    value = data.draw(values)
    out = tmp_path_factory.mktemp("flag") / "out"  # one per example: a wrongly accepted value cannot hide
    line = _exit_line(capsys, [*prefix, "--out", str(out), f"{flag}={value}"] if flag != "--port" else
                      [*prefix, f"{flag}={value}"])  # fmt: skip
    assert flag in line
    assert not out.exists()


# --- the clipping flags, shared by both sandbox command lines (gradclip/sandbox/clipflags.py) -----

CLIP_CLIS = {
    "train-vectorized": (cli.main, ["train", "vectorized", "--quiet"]),
    "train-conv": (cli.main, ["train", "conv", "small_cnn", "--quiet"]),
    "python-m-vectorized": (vectorized_cli.main, ["--quiet"]),
    "python-m-convolutional": (conv_cli.main, ["small_cnn", "--quiet"]),
}
SHARED_MODES = ("value", "percentile", "zscore")  # the knob-taking modes both sandboxes have


def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


NOT_NUMBERS = st.one_of(st.sampled_from(["", "abc", "1,5", "0x10", "one", "--"]), TEXT.filter(_not_a_number))
OUT_OF_RANGE = st.sampled_from(["nan", "inf", "-inf", "NaN", "1e39", "-1e39", "3.5e38", "1e308"])
NON_POSITIVE = st.floats(min_value=-3e38, max_value=0.0).map(repr)


@st.composite
def bad_clip_flags(draw: st.DrawFn) -> tuple[list[str], str]:
    """A clipping request both sandboxes must refuse, and the flag the refusal must name."""
    kind = draw(
        st.sampled_from(["grad-clip", "skip-spikes", "mode-choice", "mode-without-knob", "percentile"])
    )
    if kind == "grad-clip":  # not a number, or past float32: refused while parsing
        return [f"--grad-clip={draw(st.one_of(NOT_NUMBERS, OUT_OF_RANGE))}"], "--grad-clip"
    if kind == "skip-spikes":  # K must be a finite number > 0
        value = draw(st.one_of(NOT_NUMBERS, OUT_OF_RANGE, NON_POSITIVE))
        return [f"--skip-spikes={value}"], "--skip-spikes"
    if kind == "mode-choice":
        mode = draw(st.one_of(st.sampled_from(["Norm", "l2", "", "adaptive", "percentile "]), TEXT))
        return [f"--clip-mode={mode}"], "--clip-mode"
    mode = draw(st.sampled_from(SHARED_MODES))
    if kind == "mode-without-knob":  # a mode's knob unset, 0 or negative: nothing to clip with
        knob = draw(st.one_of(st.just([]), NON_POSITIVE.map(lambda v: [f"--grad-clip={v}"])))
        return [f"--clip-mode={mode}", *knob], "--clip-mode"
    p = draw(st.floats(min_value=100.0, max_value=3e38, exclude_min=True))
    return ["--clip-mode=percentile", f"--grad-clip={p!r}"], "--grad-clip"


def _error_text(line: str) -> str:
    """The message after ``prog: error:``; a choice list (which differs by sandbox) cut off."""
    return line.split(": error: ", 1)[1].split("(choose from")[0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=bad_clip_flags())
def test_bad_clip_flags_are_refused_the_same_way_by_every_sandbox_cli(capsys, tmp_path_factory, request):
    flags, flag = request
    out = tmp_path_factory.mktemp("clip") / "out"
    texts = {}
    for name, (main, prefix) in CLIP_CLIS.items():
        line = _exit_line(capsys, [*prefix, *flags, "--out", str(out)], main=main)
        assert flag in line, (name, line)
        assert not any(out.parent.iterdir()), name  # no --out, no TensorBoard file, nothing
        texts[name] = _error_text(line)
    assert len(set(texts.values())) == 1, texts  # validated once, in clipflags: the same words


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--seed", "-1"], "--seed: expected a whole number in [0, 4294967295], got '-1'"),
        (["--seed", str(2**64)], f"--seed: expected a whole number in [0, 4294967295], got '{2**64}'"),
        (["--batch-size", "1e20"], "--batch-size: expected a whole number in [1, 1000000], got '1e20'"),
        (["--epochs", "0"], "--epochs: expected a whole number in [1, 100000], got '0'"),
        (["--lr", "0"], "--lr: expected a finite number in [1e-300, 1000], got '0'"),
        (["--lr", "1e308"], "--lr: expected a finite number in [1e-300, 1000], got '1e308'"),
        (["--grad-clip", "inf"], "--grad-clip: expected a finite number within float32 range, got 'inf'"),
        (["--grad-clip", "1e39"], "--grad-clip: expected a finite number within float32 range, got '1e39'"),
        (["--clip-mode", "zscore", "--grad-clip", "1e308"], "--grad-clip: expected a finite number within"),
        (["--clip-mode", "value"], "--clip-mode value needs --grad-clip > 0"),
        (["--skip-spikes", "-1"], "--skip-spikes must be a number K > 0"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_shared_flags_get_the_same_clear_words_from_both_sandboxes(capsys, tmp_path, flags, words):
    """The issue's misleading messages ("expected non-negative integer", "Overflow when unpacking
    long long") and the values one sandbox took and the other refused, now one rule for both."""
    for name, (main, prefix) in CLIP_CLIS.items():
        line = _exit_line(capsys, [*prefix, *flags, "--out", str(tmp_path / "o")], main=main)
        assert words in line, (name, line)
        assert "Overflow" not in line and "non-negative" not in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        (["--lookahead", "-1"], "--lookahead"),
        (["--lookahead-alpha", "2", "--lookahead", "5"], "--lookahead-alpha"),
    ],
)
def test_vectorized_lookahead_flags_are_bounded(capsys, tmp_path, flags, flag):
    line = _exit_line(capsys, [*VEC, *flags, "--out", str(tmp_path / "o")])
    assert flag in line and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("prefix", "flag"),
    [(VEC, "--grad-clip"), (VEC, "--hidden"), (VEC, "--dataset"), (CONV, "--clip-mode"), (CONV, "--seed"),
     (PAS, "--lrs"), (CLIFF, "--lr")],
)  # fmt: skip
def test_a_double_dash_value_is_checked_as_a_value(capsys, tmp_path, prefix, flag):
    """``--flag=--``: argparse before 3.12 drops the "--" and gave ``[]`` (``--hidden=--`` trained an
    MLP without hidden layers; ``--grad-clip=--`` failed with "'>' not supported ...")."""
    line = _exit_line(capsys, [*prefix, f"{flag}=--", "--out", str(tmp_path / "o")])
    assert f"argument {flag}:" in line and "'--'" in line and not (tmp_path / "o").exists()


def test_agc_is_a_conv_mode_and_refused_by_name_in_vectorized(capsys, tmp_path):
    out = tmp_path / "out"
    for main, prefix in (CLIP_CLIS["train-vectorized"], CLIP_CLIS["python-m-vectorized"]):
        line = _exit_line(
            capsys, [*prefix, "--clip-mode", "agc", "--grad-clip", "0.01", "--out", str(out)], main=main
        )
        assert "--clip-mode" in line and "agc" in line
    for main, prefix in (CLIP_CLIS["train-conv"], CLIP_CLIS["python-m-convolutional"]):
        assert "--clip-mode agc needs --grad-clip" in _exit_line(
            capsys, [*prefix, "--clip-mode", "agc", "--out", str(out)], main=main
        )
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["experiment", "cliff", "--start", "5", "-1e3"],  # -1e3 is a number, read as such
        ["experiment", "cliff", "--start", "5", "1e9"],
        ["experiment", "cliff", "--start", "nan", "1"],
    ],
)
def test_cliff_start_is_read_as_numbers_and_bounded(capsys, tmp_path, argv):
    line = _exit_line(capsys, [*argv, "--out", str(tmp_path / "o"), "--steps", "0"])
    assert "--steps" in line or "--start" in line
    if argv[-1] == "-1e3":
        assert "--start" not in line and "expected 2 arguments" not in line


OUT_COMMANDS = {
    "demo": ["demo", "--epochs", "1"],
    "report": ["report", "RUN"],
    "vectorized": ["train", "vectorized", "--epochs", "1", "--quiet"],
    "conv": ["train", "conv", "small_cnn", "--image-size", "8", "--epochs", "1", "--quiet"],
    "pascanu": ["experiment", "pascanu", "--quick", "--quiet"],
    "cliff": ["experiment", "cliff"],
}


@pytest.fixture(scope="module")
def a_run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("run")
    with GradMonitor(log_dir=path) as monitor:
        for i in range(5):
            monitor.record(1.0 + i, loss=1.0)
    return path


@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
@pytest.mark.parametrize("where", ["empty", "under-a-file", "a-file"])
def test_bad_out_paths_exit_2_and_write_nothing(capsys, tmp_path, a_run, command, where):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"keep me")
    out = {"empty": "", "under-a-file": str(blocker / "sub"), "a-file": str(blocker)}[where]
    argv = [str(a_run) if a == "RUN" else a for a in OUT_COMMANDS[command]]
    before = sorted(p.name for p in tmp_path.iterdir())
    line = _exit_line(capsys, [*argv, "--out", out])
    assert "--out" in line
    assert blocker.read_bytes() == b"keep me" and sorted(p.name for p in tmp_path.iterdir()) == before


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes): what 'kept' is compared against."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- a read-only directory ------------------------------------------------------------------------
# Root writes anywhere: CAP_DAC_OVERRIDE skips the mode bits. As root the commands run in a child
# whose capability bounding set lacks the file-permission overrides (the child stays uid 0, so it
# can still read the interpreter and the sources under /root, but a mode of 0o555 now binds it).

_FILE_CAPS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER (linux/capability.h)
_PR_CAPBSET_DROP = 24  # linux/prctl.h


def _drop_file_capabilities() -> None:
    """preexec_fn: drop the override capabilities before exec, so that the new program cannot regain them."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _FILE_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")


# Runs in the child: each command in-process, one line of JSON per command (exit code, stderr).
_CHILD = """
import contextlib, io, json, sys
from gradclip import cli
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as stop:
            code = stop.code
    print(json.dumps([code, err.getvalue()]))
"""


def _run_read_only(commands: list[list[str]], probe: Path) -> list[tuple[int, str]]:
    """``(exit code, stderr)`` of each command run where mode bits bind; skip (saying why) if nowhere."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    preexec = _drop_file_capabilities if os.geteuid() == 0 else None
    try:
        writable = subprocess.run(
            [sys.executable, "-c", f"import os; print(os.access({str(probe)!r}, os.W_OK))"],
            env=env, capture_output=True, text=True, preexec_fn=preexec, timeout=60, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"cannot run a child bound by file modes (as uid {os.geteuid()}): {err}")
    if writable != "False":
        pytest.skip(f"a directory of mode 0o555 stays writable here (uid {os.geteuid()}, capabilities kept)")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(commands)],
        env=env, capture_output=True, text=True, preexec_fn=preexec, timeout=600, check=True,
    )  # fmt: skip
    return [tuple(json.loads(line)) for line in done.stdout.splitlines()]


def test_a_read_only_out_directory_exits_2_naming_it_and_keeps_what_was_saved(tmp_path, a_run):
    ro = tmp_path / "ro"
    run, report = ro / "run", ro / "report"
    vec = ["train", "vectorized", "--dataset", "moons", "--epochs", "1", "--quiet"]
    assert cli.main([*vec, "--out", str(run)]) == 0  # saved before the directory turned read-only
    assert cli.main(["report", str(a_run), "--out", str(report)]) == 0
    before = _files(ro)
    commands = {
        run: [*vec, "--seed", "1", "--overwrite", "--out", str(run)],  # replace the saved run
        report: ["report", str(a_run), "--overwrite", "--out", str(report)],  # replace the report
        ro / "new": [*vec, "--out", str(ro / "new")],  # a new run directory inside it
        ro / "cliff": ["experiment", "cliff", "--steps", "5", "--out", str(ro / "cliff")],
    }
    for d in (run, report, ro):
        d.chmod(0o555)
    try:
        results = _run_read_only(list(commands.values()), ro)
    finally:
        for d in (ro, run, report):
            d.chmod(0o755)
    for (code, err), (path, argv) in zip(results, commands.items(), strict=True):
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
        assert "--out" in err and str(path) in err and "not writable" in err, err
    assert _files(ro) == before  # byte for byte, and nothing added


def test_vectorized_refuses_to_replace_a_finished_run_unless_overwrite(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "vectorized", "--dataset", "moons", "--epochs", "1", "--quiet", "--out", str(out)]
    assert cli.main(argv) == 0
    saved = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert "--overwrite" in _exit_line(capsys, [*argv, "--seed", "3"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == saved
    assert cli.main([*argv, "--seed", "3", "--overwrite"]) == 0
    assert (out / "checkpoint.npz").read_bytes() != saved["checkpoint.npz"]


def test_report_refuses_to_replace_a_report_and_a_bad_title_keeps_the_old_one(capsys, tmp_path, a_run):
    out = tmp_path / "rep"
    assert cli.main(["report", str(a_run), "--out", str(out)]) == 0
    page = (out / "report.html").read_bytes()
    capsys.readouterr()
    assert "--overwrite" in _exit_line(capsys, ["report", str(a_run), "--out", str(out)])
    bad_title = b"caf\xe9".decode("utf-8", "surrogateescape")  # argv bytes that are not UTF-8
    assert "--title" in _exit_line(
        capsys, ["report", str(a_run), "--out", str(out), "--overwrite", "--title", bad_title]
    )
    assert (out / "report.html").read_bytes() == page


@pytest.mark.parametrize("host", ["no such host", "256.1.1.1", "1.2.3.4"])
def test_a_bad_host_says_host_not_port(capsys, host):
    pytest.importorskip("uvicorn")
    line = _exit_line(capsys, ["explore", "--no-browser", "--port", "0", "--host", host])
    assert "--host" in line and "--port" not in line


def test_lookahead_alpha_without_lookahead_is_refused(capsys, tmp_path):
    line = _exit_line(capsys, [*VEC, "--lookahead-alpha", "0.3", "--out", str(tmp_path / "o")])
    assert "--lookahead-alpha needs --lookahead" in line and not (tmp_path / "o").exists()


# --- public Python entry points -----------------------------------------------------------------


def _model() -> torch.nn.Linear:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    model(torch.randn(4, 3)).sum().backward()
    return model


def _sgd(m: torch.nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(m.parameters(), lr=0.1)


def _vtrainer_for(**kw) -> VTrainer:
    kw = {"model": mlp([2, 4, 2]), "optimizer": Adam(0.01), **kw}
    return VTrainer(**kw)


def _conv_trainer(m: torch.nn.Module, **kw) -> ConvTrainer:
    return ConvTrainer(**{"model": m, "optimizer": _sgd(m), **kw})


def _measured(m: torch.nn.Module):
    """The result of a step that measures and changes nothing (clipping off)."""
    return ClipStep(None)(m.parameters())


X2, Y2 = np.zeros((4, 2), np.float32), np.zeros(4, np.int64)
NP = [np.ones(3)]

# (id, call, exception type, regex the message must match: it names the argument). Every public
# constructor and method audited for issue 19, with the bad values the audit tried.
AUDITED = [
    # the monitor
    ("GradMonitor(model, optimizer='abc')", lambda m: GradMonitor(m, optimizer="abc"), TypeError,
     r"^optimizer"),
    ("GradMonitor(optimizer='abc')", lambda m: GradMonitor(optimizer="abc"), TypeError, r"^optimizer"),
    ("GradMonitor(optimizer=5)", lambda m: GradMonitor(optimizer=5), TypeError, r"^optimizer"),
    ("GradMonitor(model=5)", lambda m: GradMonitor(5), TypeError, r"^model"),
    ("GradMonitor(model='abc')", lambda m: GradMonitor("abc"), TypeError, r"^model"),
    ("GradMonitor(model=[5])", lambda m: GradMonitor([5]), TypeError, r"^model"),
    ("GradMonitor(frozen model)", lambda m: GradMonitor(m.requires_grad_(False)), ValueError, r"model"),
    ("GradMonitor(sinks=[5]).record", lambda m: GradMonitor(sinks=[5]).record(1.0), TypeError,
     r"^sinks\[0\]"),
    ("GradMonitor(sinks='jsonl')", lambda m: GradMonitor(sinks="jsonl"), TypeError, r"^sinks"),
    ("GradMonitor(sinks=['csv']) without log_dir", lambda m: GradMonitor(sinks=["csv"]), ValueError,
     r"log_dir"),
    ("GradMonitor(log_dir=5)", lambda m: GradMonitor(log_dir=5), TypeError, r"^log_dir"),
    ("GradMonitor(log_dir='')", lambda m: GradMonitor(log_dir=""), TypeError, r"^log_dir"),
    ("GradMonitor(max_norm=-1)", lambda m: GradMonitor(max_norm=-1), ValueError, r"^max_norm"),
    ("GradMonitor(config=5)", lambda m: GradMonitor(config=5), TypeError, r"^config"),
    ("GradMonitor(overwrite, resume)", lambda m: GradMonitor(overwrite=True, resume=True), ValueError,
     r"overwrite"),
    ("GradMonitor.observe(None)", lambda m: GradMonitor().observe(None), TypeError, r"^result"),
    ("GradMonitor.observe(3.0)", lambda m: GradMonitor().observe(3.0), TypeError, r"^result"),
    ("GradMonitor.observe(loss='abc')", lambda m: GradMonitor().observe(_measured(m), loss="abc"), TypeError,
     r"^loss"),
    ("GradMonitor.observe(loss=tensor(2))", lambda m: GradMonitor().observe(_measured(m), loss=torch.ones(2)),
     TypeError, r"^loss"),
    ("GradMonitor.clip_(1e39)", lambda m: GradMonitor(m).clip_(1e39), ValueError, r"^clipper"),
    ("GradMonitor.clip_('abc')", lambda m: GradMonitor(m).clip_("abc"), TypeError, r"^clipper"),
    ("GradMonitor.record(layer_norms) mismatch", lambda m: GradMonitor(names=["a"]).record(1.0,
     layer_norms=[1, 2]),
     ValueError, r"^layer_norms"),
    ("MonitorConfig(window=0)", lambda m: MonitorConfig(window=0), ValueError, r"window"),
    ("MonitorConfig(clip_rate=2)", lambda m: MonitorConfig(clip_rate=2.0), ValueError, r"clip_rate"),
    pytest.param("GradMonitor(names=5)", lambda m: GradMonitor(names=5), TypeError, r"^names"),
    pytest.param("GradMonitor.record('abc')", lambda m: GradMonitor().record("abc"), TypeError,
                 r"^total_norm",
                 ),
    pytest.param("GradMonitor.record(loss='abc')", lambda m: GradMonitor().record(1.0, loss="abc"), TypeError,
                 r"^loss"),
    pytest.param("GradMonitor.record(threshold=[1])", lambda m: GradMonitor().record(1.0, threshold=[1]),
                 TypeError, r"^threshold"),
    pytest.param("GradMonitor.record(layer_norms=5)", lambda m: GradMonitor().record(1.0, layer_norms=5),
                 TypeError, r"^layer_norms"),
    ("GradMonitor(name=tensor)", lambda m: GradMonitor(name=torch.ones(1)), TypeError, r"^name"),
    ("GradMonitor(overwrite='yes')", lambda m: GradMonitor(overwrite="yes"), TypeError, r"^overwrite"),
    ("GradMonitor(resume=tensor)", lambda m: GradMonitor(resume=torch.ones(2)), TypeError, r"^resume"),
    ("GradMonitor.record(lr='abc')", lambda m: GradMonitor().record(1.0, lr="abc"), TypeError, r"^lr"),
    ("GradMonitor.record(clipped='abc')", lambda m: GradMonitor().record(1.0, clipped="abc"), TypeError,
     r"^clipped"),
    ("GradMonitor.record(skipped=None)", lambda m: GradMonitor().record(1.0, skipped=None), TypeError,
     r"^skipped"),
    ("GradMonitor.record(post_clip_norm='x')", lambda m: GradMonitor().record(1.0, post_clip_norm="x"),
     TypeError, r"^post_clip_norm"),
    # sinks and reports
    ("write_report([5])", lambda m: write_report([5], "x"), TypeError, r"^run_dirs\[0\]"),
    ("write_report(out_dir=5)", lambda m: write_report(["a"], 5), TypeError, r"^out_dir"),
    ("write_report(results=[1])", lambda m: write_report(["a"], "x", results=[1]), TypeError, r"^results"),
    ("render_report(['a'])", lambda m: render_report(["a"], "x"), TypeError, r"^runs\[0\]"),
    ("make_sink('parquet')", lambda m: make_sink("parquet", "x"), ValueError, r"sink"),
    ("TensorBoardSink(histogram_every=0)", lambda m: TensorBoardSink("x", histogram_every=0), ValueError,
     r"^histogram_every"),
    pytest.param("make_sink([5])", lambda m: make_sink([5], "x"), ValueError, r"^kind"),
    pytest.param("JsonlSink(log_dir=5)", lambda m: JsonlSink(5), TypeError, r"^log_dir"),
    pytest.param("read_run(5)", lambda m: read_run(5), TypeError, r"^path"),
    # the torch functional API
    ("clip_grad_norm_(None)", lambda m: clip_grad_norm_(None, 1.0), TypeError, r"^parameters"),
    ("clip_grad_norm_('ab')", lambda m: clip_grad_norm_("ab", 1.0), TypeError, r"^parameters"),
    ("clip_grad_norm_(5)", lambda m: clip_grad_norm_(5, 1.0), TypeError, r"^parameters"),
    ("clip_grad_norm_([1])", lambda m: clip_grad_norm_([1], 1.0), TypeError, r"^parameters"),
    ("clip_grad_norm_(int tensor)", lambda m: clip_grad_norm_([torch.ones(2, dtype=torch.int64)], 1.0),
     TypeError,
     r"^parameters"),
    ("clip_grad_norm_(max_norm=-1)", lambda m: clip_grad_norm_(m.parameters(), -1.0), ValueError,
     r"^max_norm"),
    ("clip_grad_norm_(max_norm=1e39)", lambda m: clip_grad_norm_(m.parameters(), 1e39), ValueError,
     r"^max_norm"),
    ("clip_grad_norm_(max_norm='1')", lambda m: clip_grad_norm_(m.parameters(), "1"), TypeError,
     r"^max_norm"),
    ("clip_grad_norm_(max_norm=tensor(2))", lambda m: clip_grad_norm_(m.parameters(), torch.ones(2)),
     TypeError,
     r"^max_norm"),
    ("clip_grad_norm_(norm_type=0)", lambda m: clip_grad_norm_(m.parameters(), 1.0, 0), ValueError,
     r"^norm_type"),
    ("clip_grad_norm_(norm_type='l2')", lambda m: clip_grad_norm_(m.parameters(), 1.0, "l2"), TypeError,
     r"^norm_type"),
    ("clip_grad_norm_(error_if_nonfinite='yes')",
     lambda m: clip_grad_norm_(m.parameters(), 1.0, error_if_nonfinite="yes"), TypeError,
      r"^error_if_nonfinite"),
    ("clip_grad_norm_(foreach='no')", lambda m: clip_grad_norm_(m.parameters(), 1.0, foreach="no"), TypeError,
     r"^foreach"),
    ("clip_grad_norm_(foreach=tensor)", lambda m: clip_grad_norm_(m.parameters(), 1.0, foreach=torch.ones(2)),
     TypeError, r"^foreach"),
    ("clip_grad_norm_(return_stats=1)", lambda m: clip_grad_norm_(m.parameters(), 1.0, return_stats=1),
     TypeError,
     r"^return_stats"),
    ("clip_grad_norm_(eps=-1)", lambda m: clip_grad_norm_(m.parameters(), 1.0, eps=-1.0), ValueError,
     r"^eps"),
    ("clip_grad_norm_(nonfinite='drop')", lambda m: clip_grad_norm_(m.parameters(), 1.0, nonfinite="drop"),
     ValueError, r"^nonfinite"),
    ("clip_grad_norm_(nonfinite=array)", lambda m: clip_grad_norm_(m.parameters(), 1.0, nonfinite=np.ones(3)),
     ValueError, r"^nonfinite"),
    ("process_groups=['x']", lambda m: clip_grad_norm_(m.parameters(), 1.0, process_groups=["x"]), TypeError,
     r"^process_groups\[0\]"),
    ("process_groups='x'", lambda m: clip_grad_norm_(m.parameters(), 1.0, process_groups="x"), TypeError,
     r"^process_groups"),
    ("process_groups=5", lambda m: clip_grad_norm_(m.parameters(), 1.0, process_groups=5), TypeError,
     r"^process_groups"),
    ("process_groups=tensor", lambda m: clip_grad_norm_(m.parameters(), 1.0, process_groups=torch.ones(2)),
     TypeError, r"^process_groups"),
    ("clip_grad_value_(None)", lambda m: clip_grad_value_(None, 1.0), TypeError, r"^parameters"),
    ("clip_grad_value_(int)", lambda m: clip_grad_value_(torch.ones(3, dtype=torch.int64), 1.0), TypeError,
     r"^parameters.*floating"),
    ("clip_grad_value_(clip_value=-1)", lambda m: clip_grad_value_(m.parameters(), -1.0), ValueError,
     r"^clip_value"),
    ("clip_grad_value_(foreach='no')", lambda m: clip_grad_value_(m.parameters(), 1.0, foreach="no"),
     TypeError,
     r"^foreach"),
    ("clip_grads_with_norm_(total_norm=2.0)", lambda m: clip_grads_with_norm_(m.parameters(), 1.0, 2.0),
     TypeError,
     r"^total_norm"),
    ("clip_grads_with_norm_(total_norm=[nan])",
     lambda m: clip_grads_with_norm_(m.parameters(), 1.0, torch.tensor([math.nan])), TypeError,
      r"^total_norm"),
    ("clip_grads_with_norm_(None)", lambda m: clip_grads_with_norm_(None, 1.0, torch.tensor(2.0)), TypeError,
     r"^parameters"),
    ("get_total_norm(None)", lambda m: get_total_norm(None), TypeError, r"^parameters"),
    ("get_total_norm(error_if_nonfinite='yes')", lambda m: get_total_norm([torch.ones(2)], 2.0, "yes"),
     TypeError,
     r"^error_if_nonfinite"),
    ("get_total_norm(foreach=tensor)", lambda m: get_total_norm([torch.ones(2)], foreach=torch.ones(2)),
     TypeError,
     r"^foreach"),
    ("tensor_norms('abc')", lambda m: tensor_norms("abc"), TypeError, r"^grads"),
    ("tensor_norms([5])", lambda m: tensor_norms([5]), TypeError, r"^grads\[0\]"),
    ("FlatGrads('abc')", lambda m: FlatGrads("abc"), TypeError, r"^parameters"),
    ("FlatGrads([5])", lambda m: FlatGrads([5]), TypeError, r"^parameters\[0\]"),
    ("FlatGrads(None)", lambda m: FlatGrads(None), TypeError, r"^parameters"),
    ("FlatGrads([])", lambda m: FlatGrads([]), ValueError, r"^parameters"),
    # clippers and the step
    ("NormClipper('abc')", lambda m: NormClipper("abc"), TypeError, r"^policy"),
    ("NormClipper(-1)", lambda m: NormClipper(-1.0), ValueError, r"^policy"),
    ("NormClipper(lambda)", lambda m: NormClipper(lambda norm: 1.0), TypeError, r"^policy"),
    ("NormClipper(norm_type=-1)", lambda m: NormClipper(norm_type=-1), ValueError, r"^norm_type"),
    ("NormClipper(eps=nan)", lambda m: NormClipper(eps=math.nan), ValueError, r"^eps"),
    ("NormClipper(foreach='no')", lambda m: NormClipper(foreach="no"), TypeError, r"^foreach"),
    ("NormClipper(process_groups=5)", lambda m: NormClipper(process_groups=5), TypeError, r"^process_groups"),
    ("NormClipper(process_groups=['x'])", lambda m: NormClipper(process_groups=["x"]), TypeError,
     r"^process_groups\[0\]"),
    ("ValueClipper('abc')", lambda m: ValueClipper("abc"), TypeError, r"^clip_value"),
    ("ValueClipper(-1)", lambda m: ValueClipper(-1), ValueError, r"^clip_value"),
    ("ValueClipper(foreach=1)", lambda m: ValueClipper(1.0, foreach=1), TypeError, r"^foreach"),
    ("AGC(-1)", lambda m: AGC(-1), ValueError, r"^clip_factor"),
    ("AGC(eps=-1)", lambda m: AGC(eps=-1), ValueError, r"^eps"),
    ("AGC(exclude=5)", lambda m: AGC(exclude=5), TypeError, r"^exclude"),
    ("AGC(exclude=None)", lambda m: AGC(exclude=None), TypeError, r"^exclude"),
    ("AGC(exclude=['a'])", lambda m: AGC(exclude=["a"]), TypeError, r"^exclude"),
    ("AGC(...)(['a'])", lambda m: ClipStep(AGC())(["a"]), TypeError, r"^parameters"),
    ("AGC(...)('ab')", lambda m: ClipStep(AGC())("ab"), TypeError, r"^parameters"),
    ("AGC(...)(gradients)", lambda m: ClipStep(AGC())([p.grad for p in m.parameters()]), TypeError,
     r"parameters"),
    ("ClipStep('abc')", lambda m: ClipStep("abc"), TypeError, r"^clipper"),
    ("ClipStep(1e39)", lambda m: ClipStep(1e39), ValueError, r"^clipper"),
    ("ClipStep(nan)", lambda m: ClipStep(math.nan), ValueError, r"^clipper"),
    ("ClipStep(skip_nonfinite='yes')", lambda m: ClipStep(skip_nonfinite="yes"), TypeError,
     r"^skip_nonfinite"),
    ("ClipStep(skip_spikes=3)", lambda m: ClipStep(skip_spikes=3), TypeError, r"^skip_spikes"),
    ("ClipStep(rate_window=0)", lambda m: ClipStep(rate_window=0), ValueError, r"^rate_window"),
    ("ClipStep(rate_window=2**70)", lambda m: ClipStep(rate_window=2**70), ValueError, r"^rate_window"),
    ("ClipStep.clip_(None)", lambda m: ClipStep()(None), TypeError, r"^parameters"),
    ("ClipStep.clip_(5)", lambda m: ClipStep()(5), TypeError, r"^parameters"),
    ("ClipStep.clip_(grad_scale=2.0)", lambda m: ClipStep()(m.parameters(), grad_scale=2.0), TypeError,
     r"^grad_scale"),
    ("ClipStep.clip_(grad_scale=tensor(2))", lambda m: ClipStep()(m.parameters(), grad_scale=torch.ones(2)),
     TypeError, r"^grad_scale"),
    ("ValueClipper step(grad_scale='x')", lambda m: ClipStep(ValueClipper(1.0))(m.parameters(),
     grad_scale="x"),
     TypeError, r"^grad_scale"),
    ("ClipStep.step('abc')", lambda m: ClipStep().step("abc"), TypeError, r"^optimizer"),
    ("ClipStep.step(scaler='abc')", lambda m: ClipStep().step(_sgd(m), scaler="abc"), TypeError, r"^scaler"),
    ("ClipStep.step(closure=5)", lambda m: ClipStep().step(_sgd(m), closure=5), TypeError, r"^closure"),
    ("ClipStep.step(fused='yes')", lambda m: ClipStep().step(_sgd(m), fused="yes"), TypeError, r"^fused"),
    ("ClipStep.attach('abc')", lambda m: ClipStep().attach("abc"), TypeError, r"^optimizer"),
    ("ClipOptimizer('abc')", lambda m: ClipOptimizer("abc"), TypeError, r"^optimizer"),
    ("ClipOptimizer(opt, lambda ps: None)", lambda m: ClipOptimizer(_sgd(m), lambda ps: None).step(),
     TypeError,
     r"^clipper"),
    ("ClipOptimizer(opt, 1e39)", lambda m: ClipOptimizer(_sgd(m), 1e39), ValueError, r"^clipper"),
    ("ClipOptimizer(fused='yes')", lambda m: ClipOptimizer(_sgd(m), fused="yes"), ValueError, r"^fused"),
    ("ClipOptimizer(fused=tensor)", lambda m: ClipOptimizer(_sgd(m), fused=torch.ones(2)), ValueError,
     r"^fused"),
    ("ClipOptimizer(fused=True) unfused", lambda m: ClipOptimizer(_sgd(m), fused=True), ValueError,
     r"^fused"),
    ("Lookahead('abc')", lambda m: Lookahead("abc"), TypeError, r"^optimizer"),
    ("Lookahead(k=0)", lambda m: Lookahead(_sgd(m), k=0), ValueError, r"^k"),
    ("Lookahead(alpha=2)", lambda m: Lookahead(_sgd(m), alpha=2), ValueError, r"^alpha"),
    ("clipping('abc')", lambda m: clipping("abc").__enter__(), TypeError, r"^optimizer"),
    ("clipping(opt, 'abc')", lambda m: clipping(_sgd(m), "abc").__enter__(), TypeError, r"^clipper"),
    # policies and the spike rule
    ("Fixed(None)", lambda m: Fixed(None), TypeError, r"^max_norm"),
    ("Fixed(-1)", lambda m: Fixed(-1), ValueError, r"^max_norm"),
    ("Fixed(1e39)", lambda m: Fixed(1e39), ValueError, r"^max_norm"),
    ("Fixed(1)('abc')", lambda m: Fixed(1.0)("abc"), TypeError, r"^norm"),
    ("Percentile(-1)", lambda m: Percentile(-1), ValueError, r"^p"),
    ("Percentile(101)", lambda m: Percentile(101), ValueError, r"^p"),
    ("Percentile(window=0)", lambda m: Percentile(window=0), ValueError, r"^window"),
    ("Percentile(warmup=-1)", lambda m: Percentile(warmup=-1), ValueError, r"^warmup"),
    ("Percentile(include_current='no')", lambda m: Percentile(include_current="no"), TypeError,
     r"^include_current"),
    ("Percentile(warmup_factor=0)", lambda m: Percentile(warmup_factor=0), ValueError, r"^warmup_factor"),
    ("Percentile()(None)", lambda m: Percentile()(None), TypeError, r"^norm"),
    ("Percentile()(tensor(2))", lambda m: Percentile()(torch.ones(2)), TypeError, r"^norm"),
    ("ZScore(alpha=1)", lambda m: ZScore(alpha=1.0), ValueError, r"^alpha"),
    ("ZScore(z_thresh=1e200)", lambda m: ZScore(z_thresh=1e200), ValueError, r"^z_thresh"),
    ("ZScore(warmup=0)", lambda m: ZScore(warmup=0), ValueError, r"^warmup"),
    ("ZScore(eps=0)", lambda m: ZScore(eps=0.0), ValueError, r"^eps"),
    ("ZScore(max_norm=-1)", lambda m: ZScore(max_norm=-1.0), ValueError, r"^max_norm"),
    ("ZScore()('abc')", lambda m: ZScore()("abc"), TypeError, r"^norm"),
    ("SpikeSkip(0)", lambda m: SpikeSkip(0), ValueError, r"^k"),
    ("SpikeSkip(window=2**70)", lambda m: SpikeSkip(window=2**70), ValueError, r"^window"),
    ("SpikeSkip(warmup=1)", lambda m: SpikeSkip(warmup=1), ValueError, r"^warmup"),
    ("SpikeSkip(max_consecutive=0)", lambda m: SpikeSkip(max_consecutive=0), ValueError, r"^max_consecutive"),
    ("SpikeSkip().check('abc')", lambda m: SpikeSkip().check("abc"), TypeError, r"^norm"),
    ("threshold_advice(5)", lambda m: threshold_advice(5), TypeError, r"^norms"),
    ("threshold_advice(['a'])", lambda m: threshold_advice(["a"]), TypeError, r"^norms\[0\]"),
    ("threshold_advice(min_samples=0)", lambda m: threshold_advice([1.0], min_samples=0), ValueError,
     r"^min_samples"),
    ("threshold_advice(mean='abc')", lambda m: threshold_advice([1.0], mean="abc"), TypeError, r"^mean"),
    # the NumPy API
    ("numpy.clip_grad_norm_(None)", lambda m: gnp.clip_grad_norm_(None, 1.0), TypeError, r"^grads"),
    ("numpy.clip_grad_norm_(5)", lambda m: gnp.clip_grad_norm_(5, 1.0), TypeError, r"^grads"),
    ("numpy.clip_grad_norm_([5])", lambda m: gnp.clip_grad_norm_([5], 1.0), TypeError, r"^grads.*grads\[0\]"),
    ("numpy.clip_grad_norm_(int array)", lambda m: gnp.clip_grad_norm_([np.ones(2, np.int64)], 1.0),
     TypeError,
     r"^grads\[0\]"),
    ("numpy.clip_grad_norm_(max_norm=nan)", lambda m: gnp.clip_grad_norm_(NP, math.nan), ValueError,
     r"^max_norm"),
    ("numpy.clip_grad_norm_(error_if_nonfinite='yes')",
     lambda m: gnp.clip_grad_norm_(NP, 1.0, 2.0, "yes"), TypeError, r"^error_if_nonfinite"),
    ("numpy.clip_grad_norm_(return_stats='yes')", lambda m: gnp.clip_grad_norm_(NP, 1.0, return_stats="yes"),
     TypeError, r"^return_stats"),
    ("numpy.clip_grad_norm_(nonfinite=5)", lambda m: gnp.clip_grad_norm_(NP, 1.0, nonfinite=5), ValueError,
     r"^nonfinite"),
    ("numpy.clip_grad_value_('ab')", lambda m: gnp.clip_grad_value_("ab", 1.0), TypeError, r"^grads"),
    ("numpy.clip_grads_with_norm_(total_norm='abc')", lambda m: gnp.clip_grads_with_norm_(NP, 1.0, "abc"),
     TypeError, r"^total_norm"),
    ("numpy.clip_grads_with_norm_(total_norm=[1])", lambda m: gnp.clip_grads_with_norm_(NP, 1.0, [1.0]),
     TypeError, r"^total_norm"),
    ("numpy.get_total_norm(error_if_nonfinite=1)", lambda m: gnp.get_total_norm(NP, 2.0, 1), TypeError,
     r"^error_if_nonfinite"),
    ("numpy.tensor_norms(None)", lambda m: gnp.tensor_norms(None), TypeError, r"^grads"),
    ("numpy.ClipStep('abc')", lambda m: gnp.ClipStep("abc"), TypeError, r"^clipper"),
    ("numpy.ClipStep(1e39)", lambda m: gnp.ClipStep(1e39), ValueError, r"^clipper"),
    ("numpy.ClipStep(mode='agc')", lambda m: gnp.ClipStep(mode="agc"), ValueError, r"mode"),
    ("numpy.ClipStep(mode=array)", lambda m: gnp.ClipStep(mode=np.ones(2)), ValueError, r"mode"),
    ("numpy.ClipStep(rate_window=2**70)", lambda m: gnp.ClipStep(rate_window=2**70), ValueError,
     r"^rate_window"),
    ("numpy.ClipStep(policy, mode='value')", lambda m: gnp.ClipStep(ZScore(), mode="value"), ValueError,
     r"mode"),
    ("numpy.ClipStep.clip_(None)", lambda m: gnp.ClipStep(1.0)(None), TypeError, r"^grads"),
    # the sandbox trainers and their parts
    ("VTrainer(model='abc')", lambda m: _vtrainer_for(model="abc"), TypeError, r"^model"),
    ("VTrainer(optimizer='abc')", lambda m: _vtrainer_for(optimizer="abc"), TypeError, r"^optimizer"),
    ("VTrainer(clip_mode='agc')", lambda m: _vtrainer_for(clip_mode="agc"), ValueError, r"clip_mode"),
    ("VTrainer(clip_mode=array)", lambda m: _vtrainer_for(clip_mode=np.ones(2)), ValueError, r"clip_mode"),
    ("VTrainer(grad_clip_norm=1e39)", lambda m: _vtrainer_for(grad_clip_norm=1e39), ValueError,
     r"^grad_clip_norm"),
    ("VTrainer(grad_clip_norm='1')", lambda m: _vtrainer_for(grad_clip_norm="1"), TypeError,
     r"^grad_clip_norm"),
    ("VTrainer(clipper=5)", lambda m: _vtrainer_for(clipper=5), TypeError, r"^clipper"),
    ("VTrainer(clipper and grad_clip_norm)", lambda m: _vtrainer_for(clipper=ZScore(), grad_clip_norm=1.0),
     ValueError, r"grad_clip_norm"),
    ("VTrainer(monitor=5)", lambda m: _vtrainer_for(monitor=5), TypeError, r"^monitor"),
    ("VTrainer(loss='abc')", lambda m: _vtrainer_for(loss="abc"), TypeError, r"^loss"),
    ("VTrainer(seed=-1)", lambda m: _vtrainer_for(seed=-1), ValueError, r"^seed"),
    ("VTrainer(seed='abc')", lambda m: _vtrainer_for(seed="abc"), TypeError, r"^seed"),
    ("VTrainer.fit(epochs=0)", lambda m: _vtrainer_for().fit(X2, Y2, 0), ValueError, r"^epochs"),
    ("VTrainer.fit(batch_size=1.5)", lambda m: _vtrainer_for().fit(X2, Y2, 1, 1.5), ValueError,
     r"^batch_size"),
    ("VTrainer.fit(X='abc')", lambda m: _vtrainer_for().fit("abc", Y2), TypeError, r"^X"),
    ("VTrainer.fit(X nan)", lambda m: _vtrainer_for().fit(X2 * math.nan, Y2), ValueError, r"^X"),
    ("VTrainer.fit(y short)", lambda m: _vtrainer_for().fit(X2, Y2[:2]), ValueError, r"^X and y"),
    ("VTrainer.fit(X wrong width)", lambda m: _vtrainer_for().fit(np.zeros((4, 3), np.float32), Y2),
     ValueError,
     r"^X"),
    ("VTrainer.evaluate(X=None)", lambda m: _vtrainer_for().evaluate(None, Y2), TypeError, r"^X"),
    ("VTrainer.fit(validation)", lambda m: _vtrainer_for().fit(X2, Y2, validation=("a", Y2)), TypeError,
     r"^validation\[0\]"),
    ("ConvTrainer(model='abc')", lambda m: ConvTrainer("abc", _sgd(m)), TypeError, r"^model"),
    ("ConvTrainer(optimizer='abc')", lambda m: ConvTrainer(m, "abc"), TypeError, r"^optimizer"),
    ("ConvTrainer(clip_mode='x')", lambda m: _conv_trainer(m, clip_mode="x"), ValueError, r"clip_mode"),
    ("ConvTrainer(grad_clip_norm=1e39)", lambda m: _conv_trainer(m, grad_clip_norm=1e39), ValueError,
     r"^grad_clip_norm"),
    ("ConvTrainer(grad_clip_norm=nan)", lambda m: _conv_trainer(m, grad_clip_norm=math.nan), ValueError,
     r"^grad_clip_norm"),
    ("ConvTrainer(monitor=5)", lambda m: _conv_trainer(m, monitor=5), TypeError, r"^monitor"),
    ("ConvTrainer(seed=-1)", lambda m: _conv_trainer(m, seed=-1), ValueError, r"^seed"),
    ("ConvTrainer(seed=2**64)", lambda m: _conv_trainer(m, seed=2**64), ValueError, r"^seed"),
    ("ConvTrainer.check_data('abc')", lambda m: ConvTrainer.check_data("abc", Y2), ValueError, r"^x"),
    ("ConvTrainer.fit(None)", lambda m: _conv_trainer(m).fit(None, 1, 2), TypeError, r"^data"),
    ("ConvTrainer.fit(epochs=0)", lambda m: _conv_trainer(m).fit(None, 0, 2), ValueError, r"^epochs"),
    ("ConvTrainer.load(5)", lambda m: _conv_trainer(m).load(5), TypeError, r"^path"),
    ("ConvTrainer.save(None)", lambda m: _conv_trainer(m).save(None), TypeError, r"^path"),
    ("VTrainer.load(None)", lambda m: _vtrainer_for().load(None), TypeError, r"^path"),
    ("VTrainer.load('')", lambda m: _vtrainer_for().load(""), TypeError, r"^path"),
    ("VTrainer.save(5)", lambda m: _vtrainer_for().save(5), TypeError, r"^path"),
    ("RunConfig(task=5)", lambda m: RunConfig(task=5), ValueError, r"task"),
    ("RunConfig(dtype=[5])", lambda m: RunConfig(dtype=[5]), ValueError, r"dtype"),
    ("RunConfig(init=None)", lambda m: RunConfig(init=None), ValueError, r"init"),
    ("RunConfig(hidden=0)", lambda m: RunConfig(hidden=0), ValueError, r"^hidden"),
    ("RunConfig(lr=nan)", lambda m: RunConfig(lr=math.nan), ValueError, r"^lr"),
    ("numpy SGD(lr=-1)", lambda m: NumpySGD(lr=-1), ValueError, r"^lr"),
    ("numpy Adam(lr='abc')", lambda m: Adam(lr="abc"), ValueError, r"^lr"),
    ("numpy Lookahead('abc')", lambda m: NumpyLookahead("abc"), TypeError, r"^inner"),
    ("numpy Lookahead(k=0)", lambda m: NumpyLookahead(Adam(0.1), k=0), ValueError, r"^k"),
    ("mlp('ab')", lambda m: mlp("ab"), TypeError, r"^sizes"),
    ("mlp([2])", lambda m: mlp([2]), ValueError, r"^sizes"),
    ("mlp([2, 0, 2])", lambda m: mlp([2, 0, 2]), ValueError, r"^sizes\[1\]"),
]  # fmt: skip


def _params(entry):
    """A table row as a pytest.param whose id is the call's text (rows with marks are params already)."""
    if hasattr(entry, "marks"):
        name, *rest = entry.values
        return pytest.param(*rest, id=name, marks=entry.marks)
    return pytest.param(*entry[1:], id=entry[0])


@pytest.mark.parametrize(("call", "error", "pattern"), [_params(e) for e in AUDITED])
def test_public_entry_points_name_the_bad_argument(call, error, pattern):
    model = _model()
    grads = [p.grad.clone() for p in model.parameters()]
    with pytest.raises(Exception) as caught:
        call(model)
    assert type(caught.value) is error or isinstance(caught.value, error), repr(caught.value)
    assert re.search(pattern, str(caught.value)), str(caught.value)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))


# --- load_state_dict: garbage and other classes' states, all or nothing --------------------------

KEYS = st.sampled_from(
    ["policy", "config", "state", "clipper", "optimizer", "lookahead", "skipped_steps", "k"]
)
LEAVES = st.one_of(st.none(), st.integers(), st.text(max_size=3))
GARBAGE = st.one_of(
    LEAVES,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(
        KEYS, st.one_of(LEAVES, st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)), max_size=4
    ),
)


def _stateful() -> dict[str, object]:
    """One object of each stateful class, each having seen a few steps (state that can be lost)."""
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    opt.step()
    look = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=2)
    look.step()
    clip_opt = ClipOptimizer(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), 1.0)
    clip_opt.step()
    pct, z = Percentile(50.0, window=5), ZScore(warmup=2)
    for norm in (1.0, 2.0, 3.0):
        pct(norm), z(norm)
    return {
        "Fixed": Fixed(1.0), "Percentile": pct, "ZScore": z, "NormClipper": NormClipper(Percentile(50.0)),
        "ValueClipper": ValueClipper(0.5), "AGC": AGC(0.01), "Lookahead": look, "ClipOptimizer": clip_opt,
    }  # fmt: skip


def _snapshot(obj: object) -> str:
    return repr(copy.deepcopy(obj.state_dict()))


@pytest.mark.parametrize("kind", sorted(_stateful()))
@FUZZ
@given(garbage=GARBAGE)
def test_load_state_dict_refuses_garbage_and_changes_nothing(kind, garbage):
    obj = _stateful()[kind]
    before = _snapshot(obj)
    with pytest.raises((TypeError, ValueError)):
        obj.load_state_dict(garbage)
    assert _snapshot(obj) == before


@pytest.mark.parametrize("kind", sorted(_stateful()))
@pytest.mark.parametrize("other", sorted(_stateful()))
def test_load_state_dict_refuses_another_classes_state(kind, other):
    objs = _stateful()
    if kind == other:
        objs[kind].load_state_dict(objs[other].state_dict())  # its own class: round-trips
        return
    before = _snapshot(objs[kind])
    with pytest.raises((TypeError, ValueError)):
        objs[kind].load_state_dict(_stateful()[other].state_dict())
    assert _snapshot(objs[kind]) == before


def test_lookahead_refuses_slow_weights_of_the_wrong_shape_before_changing_anything():
    objs = _stateful()
    look = objs["Lookahead"]
    state = copy.deepcopy(look.state_dict())
    state["lookahead"]["slow"] = [torch.zeros(7) for _ in state["lookahead"]["slow"]]
    state["lookahead"]["steps"] = 99
    before = _snapshot(look)
    with pytest.raises(ValueError, match="slow weight 0 has shape"):
        look.load_state_dict(state)
    assert _snapshot(look) == before and look.steps == 1


def test_clip_optimizer_refuses_sgd_state_under_adam_before_changing_anything():
    model = _model()
    sgd = ClipOptimizer(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), 1.0)
    sgd.step()
    adam = ClipOptimizer(torch.optim.Adam(model.parameters(), lr=0.1), 1.0)
    adam.step()
    before = _snapshot(adam)
    with pytest.raises(ValueError, match="another optimizer"):
        adam.load_state_dict(sgd.state_dict())
    assert _snapshot(adam) == before


def _vtrainer() -> VTrainer:
    trainer = VTrainer(mlp([2, 8, 2], seed=0), Adam(0.01), 1.0, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 2)).astype(np.float32), rng.integers(0, 2, 32)
    trainer.fit(x, y, 1, 16, progress=False)
    return trainer


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["trainer"].update(epoch="abc"), "epoch"),
        (lambda s: s["trainer"].update(step=-5), "step"),
        (lambda s: s["optimizer"].update(t=-5), "'t'"),
        (lambda s: s["model"].update(params=np.zeros(3, np.float32)), "another architecture"),
        (lambda s: s["model"]["params"].fill(np.nan), "NaN"),
        (lambda s: s.pop("history"), "missing ['history']"),
        (lambda s: s["trainer"].update(rng="garbage"), "rng"),
        (lambda s: s.update(optimizer_type="SGD"), "SGD"),
    ],
)
def test_vtrainer_load_state_dict_refuses_bad_states_and_changes_nothing(edit, message):
    trainer, source = _vtrainer(), _vtrainer()
    source.fit(np.ones((8, 2), np.float32), np.zeros(8, np.int64), 2, 4, progress=False)
    state = copy.deepcopy(source.state_dict())
    edit(state)
    before = repr(trainer.state_dict())
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        trainer.load_state_dict(state)
    assert repr(trainer.state_dict()) == before


def test_an_image_pillow_cannot_decode_is_one_line_naming_the_file(capsys, tmp_path):
    pytest.importorskip("PIL")
    for name in ("cat", "dog"):
        (tmp_path / "data" / name).mkdir(parents=True)
    (tmp_path / "data" / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    argv = [*CONV, "--data", "folder", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "o")]
    line = _exit_line(capsys, argv)
    assert "broken.png" in line and "cannot decode" in line and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "garbage", [None, "abc", {"t": 1}, {"t": "x", "m": None, "v": None}, {"t": -1, "m": 3, "v": None}]
)
def test_numpy_optimizers_refuse_garbage_states_and_change_nothing(garbage):
    params = np.ones(4, np.float32)
    for opt in (Adam(0.1), NumpyLookahead(Adam(0.1), k=2)):
        opt.step(params, np.full(4, 0.5, np.float32))
        before = repr(opt.state_dict())
        state = garbage if isinstance(opt, Adam) else {"count": 1, "slow": None, "inner": garbage}
        with pytest.raises((TypeError, ValueError)):
            opt.load_state_dict(state)
        assert repr(opt.state_dict()) == before
