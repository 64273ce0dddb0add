"""The package as an index and a user see it: metadata, sdist contents, the wheel in a clean venv, types."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import numpy as np
import pytest

import gradclip

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    # --no-isolation: the build backend comes from this environment, so the build needs no network.
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("gradclip-*.whl")
    return wheel


@pytest.mark.slow
def test_twine_check_strict(dist):
    files = sorted(str(p) for p in dist.iterdir())
    assert len(files) == 2, files  # one sdist, one wheel
    out = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASSED") == 2, out.stdout


@pytest.mark.slow
def test_metadata_an_index_shows(dist):
    with zipfile.ZipFile(_wheel(dist)) as whl:
        names = whl.namelist()
        meta = Parser().parsestr(
            next(whl.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        )
    assert meta["Version"] == gradclip.__version__
    assert meta["License-Expression"] == "MIT" and meta["Author"]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3.10" in classifiers
    assert meta.get_all("Project-URL")
    assert set(meta.get_all("Provides-Extra")) >= {"torch", "lightning", "hf", "monitor", "explorer", "demo"}
    assert "gradclip/py.typed" in names


@pytest.mark.slow
def test_sdist_has_no_ci_files_or_dotfiles(dist):
    (sdist,) = dist.glob("gradclip-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = [m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name]
    assert members, "empty sdist"
    dotted = [m for m in members if any(part.startswith(".") for part in m.split("/"))]
    assert not dotted, dotted  # .ci/run, .gitignore, caches
    assert {"pyproject.toml", "README.md", "LICENSE", "src/gradclip/__init__.py"} <= set(members)


def _numpy_only_site(target: Path) -> Path:
    """A folder holding this environment's NumPy and nothing else (links: nothing is downloaded)."""
    site = Path(np.__file__).resolve().parents[1]
    target.mkdir()
    for entry in site.iterdir():
        if entry.name == "numpy" or entry.name.startswith(("numpy-", "numpy.libs")):
            (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return target


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_with_only_numpy(dist, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    numpy_dir = _numpy_only_site(tmp_path / "numpy-only")
    Path(purelib, "numpy-only.pth").write_text(f"{numpy_dir}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # --no-index: the wheel's one dependency, numpy, must be satisfied by what is there already.
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--no-cache-dir", "-q", str(_wheel(dist))],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    code = (
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('torch') is None, 'torch must not be in this venv'\n"
        "import numpy as np, gradclip, gradclip.numpy as gn\n"
        "assert gradclip.__file__.startswith(sys.prefix), gradclip.__file__\n"
        "g = [np.array([3.0, 4.0]), np.zeros(2)]\n"
        "stats = gn.clip_grad_norm_(g, 1.0, return_stats=True)\n"
        "assert stats.total_norm == 5.0 and stats.clipped, stats\n"
        "assert abs(float(np.linalg.norm(g[0])) - 1.0) < 1e-6\n"
        "p = gradclip.ZScore()\n"
        "print('ok', float(p(1.0)) > 0)\n"
        "try:\n"
        "    import gradclip.clip\n"
        "except ModuleNotFoundError as err:\n"
        '    assert "gradclip[torch]" in str(err), err\n'
        "    print('torch extra named')\n"
    )
    run = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split("\n")[:2] == ["ok True", "torch extra named"], run.stdout
    script = env_dir / "bin" / "gradclip"
    version = subprocess.run([script, "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and version.stdout.strip() == f"gradclip {gradclip.__version__}", version
    helped = subprocess.run([script, "--help"], capture_output=True, text=True, env=env)
    assert helped.returncode == 0 and "report" in helped.stdout, helped.stderr
    conv = subprocess.run([script, "train", "conv", "small_cnn"], capture_output=True, text=True, env=env)
    assert conv.returncode == 2 and "gradclip[torch]" in conv.stderr, conv.stderr


def test_lazy_names_have_their_real_types_for_type_checkers():
    # Each lazily imported name is also imported under TYPE_CHECKING from the module __getattr__ uses.
    tree = ast.parse((ROOT / "src" / "gradclip" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    typed = {
        a.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for a in node.names
    }
    lazy = {**gradclip._TORCH_API, **gradclip._LAZY_API}
    assert typed == lazy
    assert set(gradclip.__all__) == {
        *lazy,
        "ClipResult",
        "Fixed",
        "Percentile",
        "Policy",
        "SpikeSkip",
        "ZScore",
        "__version__",
    }
