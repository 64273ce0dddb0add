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


def test_readme_shows_the_repo_commands_then_the_pip_install():
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)
    (_, first), (lang1, second) = blocks[:2]
    assert [line.split()[:2] for line in first.splitlines()] == [["make", "demo"], ["make", "test"]]
    assert lang1 == "sh" and second.startswith("pip install gradclip ")
    assert "pip install 'gradclip[torch]'" in second and "gradclip --version" in second


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert str(page.relative_to(ROOT / "docs")) in nav, page


# Lightning's own warnings, not the examples' (the same filters as tests/test_integrations_lightning.py).
LIGHTNING_NOISE = [
    "ignore:The '.*dataloader' does not have many workers:UserWarning",
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning",
]


@pytest.mark.parametrize("page", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
@pytest.mark.filterwarnings(LIGHTNING_NOISE[0])
@pytest.mark.filterwarnings(LIGHTNING_NOISE[1])
def test_examples_run(page, tmp_path, monkeypatch):
    # A block that needs several processes says so on its first line; tests/test_distributed.py
    # runs the same calls under torchrun.
    blocks = [b for b in BLOCK.findall(page.read_text()) if not b.startswith("# needs torchrun")]
    monkeypatch.chdir(tmp_path)  # examples that write runs write them here (a page's later ones read them)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may reach the Hub
    for i, code in enumerate(blocks):
        namespace: dict = {"__name__": "__docs__"}  # each example is complete on its own: copy it alone
        try:
            exec(compile(code, f"{page.name}[{i}]", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"{page.name}, example {i + 1}:\n{code}") from err


# What reST or an unresolved mkdocstrings/autorefs reference leaves in the HTML as text.
RAW_MARKUP = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const|ref|doc|math):`"  # reST roles
    r"|\b[A-Z][a-z]+::(?:\s|<|$)"  # literal-block headers such as "Example::"
    r"|\]\[[\w.]*\]"  # [`X`][path] that autorefs did not turn into a link
)


# A doctest line under a heading griffe does not read as examples ("Example:" is an admonition).
QUOTED_PROMPT = re.compile(r"<blockquote>\s*<blockquote>\s*<blockquote>")


def _text_of(html: str) -> str:
    """The page's prose: scripts and code blocks left out, inline code as a `x` placeholder."""
    html = re.sub(r"<(script|style|pre)\b.*?</\1>", " ", html, flags=re.S)
    html = re.sub(r"<code\b[^>]*>.*?</code>", "`x`", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def build_site(site: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run(
        [mkdocs, "build", "--strict", "-q", "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    build_site(site)
    return site


@pytest.mark.slow
def test_site_builds_strictly_with_no_raw_markup(site):
    assert (site / "index.html").exists() and (site / "api.html").stat().st_size > 50_000
    found = {}
    for page in sorted(site.rglob("*.html")):
        html = page.read_text()
        hits = sorted({m.group(0) for m in RAW_MARKUP.finditer(_text_of(html))})
        hits += ["<autoref>"] if "<autoref " in html else []  # a reference autorefs left unresolved
        if QUOTED_PROMPT.search(html):  # a docstring's ">>>" read as Markdown, not as a doctest
            hits.append(">>> as nested quotes")
        if hits:
            found[str(page.relative_to(site))] = hits
    assert not found, found
    api_html = (site / "api.html").read_text()
    # Every public class and function has a doctest (tests/test_examples.py), rendered as code.
    assert api_html.count('doc-section-title">Examples:') > 100
    api = _text_of(api_html)
    for name in ("clip_grad_norm_", "ZScore", "GradMonitor", "ClipOptimizer", "GradClipCallback"):
        assert name in api, name


def test_raw_markup_check_catches_what_it_must():
    # The check above would pass vacuously if its pattern matched nothing: try it on known bad text.
    bad = ["see :class:<code>X</code>", "Example:: <pre>x</pre>", "a [<code>Y</code>][gradclip.nowhere]"]
    bad.append(":func:`f`")
    assert all(RAW_MARKUP.search(_text_of(f"<p>{b}</p>")) for b in bad)
    good = "<p>a <code>x::y</code>, 12:30, <a>Fixed</a></p><pre>x[1][30] and Example::</pre>"
    assert not RAW_MARKUP.search(_text_of(good))
    assert QUOTED_PROMPT.search("<blockquote>\n<blockquote>\n<blockquote>\n<p>import torch")
