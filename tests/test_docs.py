"""The documentation: every Python example (README and docs pages) runs; the site builds with no warning."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
BLOCK_FINDER = re.compile(r"^```python\n", re.M)
EXAMPLES = [p for p in [ROOT / "README.md", *PAGES] if BLOCK_FINDER.search(p.read_text())]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert str(page.relative_to(ROOT / "docs")) in nav, page


@pytest.mark.parametrize("page", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(page, tmp_path, monkeypatch):
    # A block that needs several processes says so on its first line; tests/test_distributed.py
    # runs the same calls under torchrun.
    blocks = [b for b in BLOCK.findall(page.read_text()) if not b.startswith("# needs torchrun")]
    monkeypatch.chdir(tmp_path)  # examples that write runs write them here
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page.name}[{i}]", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"{page.name}, example {i + 1}:\n{code}") from err


@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run(
        [mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "index.html").exists() and (
        tmp_path / "site" / "api.html"
    ).stat().st_size > 50_000
