import sys
from pathlib import Path

import pytest

# tests/strategies.py is imported as `strategies` by the test modules.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (restored after).

    For tiny matrices extra threads only contend on shared cores: runs get 10-40x slower.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
