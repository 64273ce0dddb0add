"""The integration extras sit in the environment without replacing the pinned torch."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest
import torch

PINNED_TORCH = "2.13.0"  # the set-up path installs torch==2.13.0 (Makefile, constraints.txt)


def test_pip_check_passes():
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_torch_is_still_the_pinned_version():
    # The installed distribution and the imported module must agree (a wheel's local tag such as
    # "+cpu" is not part of the pin).
    assert torch.__version__.split("+")[0] == PINNED_TORCH
    assert version("torch").split("+")[0] == PINNED_TORCH


@pytest.mark.parametrize("package", ["lightning", "transformers", "accelerate", "keras"])
def test_integration_frameworks_are_installed(package):
    assert version(package)
