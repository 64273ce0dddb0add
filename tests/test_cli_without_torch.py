"""The command line where importing torch fails: the NumPy commands run, a torch command says what to install.

Each test runs ``gradclip`` in a subprocess whose import system refuses torch (a meta-path finder
that raises ``ModuleNotFoundError`` for ``torch`` and its submodules, as a machine without torch does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import gradclip

NO_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
"""

RUN_CLI = (
    NO_TORCH
    + """
from gradclip.cli import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules, "the command imported torch"
sys.exit(code)
"""
)


def gradclip_without_torch(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    argv = [sys.executable, "-c", RUN_CLI, *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def test_help_and_version_without_torch(tmp_path):
    out = gradclip_without_torch("--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for command in ("demo", "report", "train", "experiment", "explore"):
        assert command in out.stdout
    out = gradclip_without_torch("--version", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"gradclip {gradclip.__version__}"
    out = gradclip_without_torch("train", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "vectorized" in out.stdout and "conv" in out.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "conv", "small_cnn", "--epochs", "1"],
        ["train", "conv", "--help"],
        ["demo", "--epochs", "1"],
        ["experiment", "pascanu", "--quick"],
    ],
    ids=["train-conv", "train-conv-help", "demo", "experiment-pascanu"],
)
def test_torch_command_names_the_extra_and_exits_2(tmp_path, argv):
    out = gradclip_without_torch(*argv, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr  # one line, no traceback
    assert lines[0].startswith("gradclip: error: ") and "pip install 'gradclip[" in lines[0], lines[0]
    assert "PyTorch" in lines[0]
    assert not any(tmp_path.iterdir()), "nothing is written by a command that cannot run"


@pytest.mark.slow
def test_train_vectorized_and_report_without_torch(tmp_path):
    out = gradclip_without_torch(
        "train", "vectorized", "--dataset", "moons", "--hidden", "8", "--epochs", "2",
        "--grad-clip", "1", "--out", "run", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history, "the NumPy sandbox trained and wrote its history"

    # A monitored NumPy run, logged without torch, then reported without torch.
    log = NO_TORCH + (
        "import numpy as np\n"
        "import gradclip.numpy as gn\n"
        "from gradclip.monitor import GradMonitor\n"
        "rng = np.random.default_rng(0)\n"
        "mon = GradMonitor(log_dir='mon', names=['w'], max_norm=1.0)\n"
        "for step in range(40):\n"
        "    g = [rng.normal(size=16) * (1 + step % 7)]\n"
        "    mon.observe(gn.clip_grad_norm_(g, 1.0, return_stats=True), loss=1.0 / (step + 1))\n"
        "mon.close()\n"
        "assert 'torch' not in sys.modules\n"
    )
    made = subprocess.run([sys.executable, "-c", log], capture_output=True, text=True, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    out = gradclip_without_torch("report", "mon", "--out", "rep", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "rep" / "report.html").stat().st_size > 1000


@pytest.mark.slow
def test_explore_serves_without_torch(tmp_path):
    explore = ["explore", "--port", "0", "--no-browser", "--runs-dir", str(tmp_path)]
    argv = [sys.executable, "-c", RUN_CLI, *explore]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = proc.stdout.readline()  # "gradclip explorer at http://127.0.0.1:PORT/ ..."
        assert line.startswith("gradclip explorer at http://"), line + proc.stderr.read()
        url = line.split()[3]
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "api/vector?gx=3&gy=4&threshold=1", timeout=5) as resp:
                    body = json.loads(resp.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert body, "the explorer answered its API"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_every_module_without_torch_imports_or_names_its_extra(tmp_path):
    code = NO_TORCH + (
        "import importlib, pathlib, gradclip\n"
        "root = pathlib.Path(gradclip.__file__).parent\n"
        "bad = []\n"
        "for file in sorted(root.rglob('*.py')):\n"
        "    name = '.'.join(('gradclip', *file.relative_to(root).with_suffix('').parts))\n"
        "    name = name.removesuffix('.__init__')\n"
        "    if name.endswith('__main__'):\n"
        "        continue\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as err:\n"
        "        if \"pip install 'gradclip[\" not in str(err) or err.name != 'torch':\n"
        "            bad.append(f'{name}: {err!r}')\n"
        "        else:\n"
        "            print('needs torch:', name)\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    needs_torch = {line.split()[-1] for line in out.stdout.splitlines() if line.startswith("needs torch:")}
    assert {"gradclip.clip", "gradclip.integrations.loop", "gradclip.sandbox.convolutional"} <= needs_torch
