"""Bad input everywhere: every CLI flag and public constructor or method, fed values it must refuse.

A command line must exit with code 2 and one stderr line naming the flag, before writing anything;
a Python entry point must raise TypeError/ValueError naming the argument (never AttributeError,
KeyError or IndexError from inside gradclip); a ``load_state_dict`` given garbage or another class's
state must raise and leave the object exactly as it was. Values come from hypothesis where a family
of bad values fits (numbers out of range, non-numbers, garbage states), from lists otherwise.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradclip import cli
from gradclip.clip import clip_grad_norm_, clip_grad_value_
from gradclip.clippers import AGC, NormClipper, ValueClipper
from gradclip.monitor import GradMonitor
from gradclip.norms import FlatGrads
from gradclip.optim import ClipOptimizer, Lookahead
from gradclip.policies import Fixed, Percentile, ZScore
from gradclip.sandbox.vectorized.model import mlp
from gradclip.sandbox.vectorized.optim import Adam
from gradclip.sandbox.vectorized.trainer import VTrainer

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


def bad_floats(lo: float, hi: float) -> st.SearchStrategy[str]:
    """Numbers outside [lo, hi], non-finite numbers, and text."""
    return st.one_of(
        st.floats(max_value=lo, exclude_max=True, allow_nan=False).map(repr),
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
    (["demo"], "--spike", bad_floats(1e-300, 1e30)),
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
    (PAS, "--length", bad_ints(1, 10**7)),
    (PAS, "--hidden", bad_ints(1, 10**7)),
    (PAS, "--lr", bad_floats(1e-300, POS)),
    (PAS, "--batch-size", bad_ints(1, 10**7)),
    (PAS, "--seeds", bad_ints(1, 10_000)),
    (PAS, "--steps", bad_ints(1, 10**7)),
    (PAS, "--eval-every", bad_ints(1, 10**7)),
    (PAS, "--eval-size", bad_ints(1, 1_000_000)),
    (PAS, "--workers", bad_ints(1, 1024)),
    (PAS, "--warmup", bad_ints(1, 10**7)),
    (CLIFF, "--lr", bad_floats(1e-300, POS)),
    (CLIFF, "--steps", bad_ints(1, 100_000)),
    (["explore", "--no-browser"], "--port", bad_ints(0, 65535)),
]


def _exit_line(capsys, argv: list[str]) -> str:
    """Run ``gradclip argv``; assert exit code 2 and one stderr line; return it."""
    try:
        code = cli.main(argv)
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
def test_every_bad_flag_value_exits_2_naming_the_flag(capsys, tmp_path, prefix, flag, values, data):
    value = data.draw(values)
    out = tmp_path / "out"
    line = _exit_line(capsys, [*prefix, "--out", str(out), f"{flag}={value}"] if flag != "--port" else
                      [*prefix, f"{flag}={value}"])  # fmt: skip
    assert flag in line
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


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
@pytest.mark.parametrize("command", ["vectorized", "cliff", "report"])
def test_a_read_only_out_directory_exits_2(capsys, tmp_path, a_run, command):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    argv = [str(a_run) if a == "RUN" else a for a in OUT_COMMANDS[command]]
    assert "not writable" in _exit_line(capsys, [*argv, "--out", str(ro / "x")])


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


ENTRY_POINTS = [
    ("GradMonitor(optimizer='abc')", lambda m: GradMonitor(m, optimizer="abc"), TypeError, "optimizer"),
    ("GradMonitor(sinks=[5])", lambda m: GradMonitor(sinks=[5]).record(1.0), TypeError, "sinks[0]"),
    ("GradMonitor(sinks='jsonl')", lambda m: GradMonitor(sinks="jsonl"), TypeError, "sinks"),
    ("GradMonitor(log_dir=5)", lambda m: GradMonitor(log_dir=5), TypeError, "log_dir"),
    ("observe(None)", lambda m: GradMonitor().observe(None), TypeError, "stats"),
    ("observe(3.0)", lambda m: GradMonitor().observe(3.0), TypeError, "stats"),
    ("FlatGrads('abc')", lambda m: FlatGrads("abc"), TypeError, "parameters"),
    ("FlatGrads([5])", lambda m: FlatGrads([5]), TypeError, "parameters[0]"),
    ("FlatGrads(None)", lambda m: FlatGrads(None), TypeError, "parameters"),
    ("clip_grad_norm_(None)", lambda m: clip_grad_norm_(None, 1.0), TypeError, "parameters"),
    ("clip_grad_norm_('ab')", lambda m: clip_grad_norm_("ab", 1.0), TypeError, "parameters"),
    ("clip_grad_norm_([1])", lambda m: clip_grad_norm_([1], 1.0), TypeError, "parameters"),
    ("clip_grad_value_(None)", lambda m: clip_grad_value_(None, 1.0), TypeError, "parameters"),
    ("clip_grad_value_(int)", lambda m: clip_grad_value_(torch.ones(3, dtype=torch.int64), 1.0), TypeError,
     "floating"),
    ("process_groups=['x']", lambda m: clip_grad_norm_(m.parameters(), 1.0, process_groups=["x"]), TypeError,
     "process_groups[0]"),
    ("process_groups='x'", lambda m: clip_grad_norm_(m.parameters(), 1.0, process_groups="x"), TypeError,
     "process_groups"),
    ("ZScore(z_thresh=1e200)", lambda m: ZScore(z_thresh=1e200), ValueError, "z_thresh"),
    ("Lookahead(k=0)", lambda m: Lookahead(torch.optim.SGD(m.parameters(), lr=0.1), k=0), ValueError, "k"),
    ("Lookahead(alpha=2)", lambda m: Lookahead(torch.optim.SGD(m.parameters(), lr=0.1), alpha=2), ValueError,
     "alpha"),
    ("ClipOptimizer('abc')", lambda m: ClipOptimizer("abc"), TypeError, "optimizer"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "name"), [e[1:] for e in ENTRY_POINTS], ids=[e[0] for e in ENTRY_POINTS]
)
def test_public_entry_points_name_the_bad_argument(call, error, name):
    model = _model()
    grads = [p.grad.clone() for p in model.parameters()]
    with pytest.raises(error) as caught:
        call(model)
    assert name in str(caught.value)
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
    from gradclip.sandbox.vectorized.optim import Lookahead as NumpyLookahead

    params = np.ones(4, np.float32)
    for opt in (Adam(0.1), NumpyLookahead(Adam(0.1), k=2)):
        opt.step(params, np.full(4, 0.5, np.float32))
        before = repr(opt.state_dict())
        state = garbage if isinstance(opt, Adam) else {"count": 1, "slow": None, "inner": garbage}
        with pytest.raises((TypeError, ValueError)):
            opt.load_state_dict(state)
        assert repr(opt.state_dict()) == before
