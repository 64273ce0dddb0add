"""The API reference's examples: every public class and function has one, and every one of them runs.

The public names are the ``__all__`` of ``gradclip`` and of every module the API page renders
(``docs/api.md``); data constants are left out (they carry no docstring of their own). Each example is a
doctest (``>>>``) under an ``Examples:`` heading, run here as the reader would paste it.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; the integration needs torch

ROOT = Path(__file__).resolve().parents[1]
RENDERED = re.findall(r"^::: (\S+)", (ROOT / "docs" / "api.md").read_text(), re.M)
MODULES = sorted({"gradclip", "gradclip.integrations", *RENDERED})
# Google style's examples section (griffe renders its ``>>>`` lines as code; a singular "Example:" would be an
# admonition whose prompts Markdown turns into nested quotes), then a doctest prompt.
EXAMPLE = re.compile(r"^\s*Examples:\n(?:\s*\n)*\s+>>> ", re.M)


def _own_doc(obj: object) -> str:
    """The object's own docstring (a class's, not one inherited or generated for a NamedTuple)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return doc or ""


def public_objects() -> dict[str, object]:
    """Every public class and function, under the name of the module that defines it (re-exports once)."""
    found: dict[str, object] = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                found.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return found


def test_every_public_class_and_function_has_an_example():
    objects = public_objects()
    assert len(objects) > 100  # the walk finds the API, not an empty list
    missing = sorted(name for name, obj in objects.items() if not EXAMPLE.search(_own_doc(obj)))
    assert not missing, f"{len(missing)} public names have no `Examples:` doctest: {missing}"


def test_the_example_check_catches_what_it_must():
    def bare():
        """No example."""

    def literal():
        """Examples::

        x = 1
        """

    def admonition():
        """Summary.

        Example:
            >>> 1 + 1
            2
        """

    def good():
        """Summary.

        Examples:
            >>> 1 + 1
            2
        """

    found = [bool(EXAMPLE.search(_own_doc(f))) for f in (bare, literal, admonition, good)]
    assert found == [False, False, False, True]


# Lightning's own warnings, not the examples' (the filters of tests/test_docs.py).
LIGHTNING_NOISE = [
    "ignore:The '.*dataloader' does not have many workers:UserWarning",
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning",
]


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.filterwarnings(LIGHTNING_NOISE[0])
@pytest.mark.filterwarnings(LIGHTNING_NOISE[1])
def test_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write a run write it here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may reach the Hub
    module = importlib.import_module(name)
    # The finder walks only what the module defines: a re-exported object runs once, where it lives.
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    own = {key for key, obj in public_objects().items() if obj.__module__ == name}
    assert own <= {t.name for t in tests}, (
        f"examples the finder did not reach: {own - {t.name for t in tests}}"
    )
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
