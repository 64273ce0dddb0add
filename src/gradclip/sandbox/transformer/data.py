"""Byte-level text from ``pydoc_data.topics``, the documentation every CPython installation ships.

``pydoc_data.topics.topics`` maps about 80 help topics to their text (about 465 KB in all): enough
to train a small character-level language model with no download. `corpus` joins the topics
in sorted order and encodes them as UTF-8 bytes (vocabulary 256); `split` keeps the last 10%
for validation; `batches` draws random windows of ``block + 1`` bytes from a seeded stream
(inputs are the first ``block``, targets the next byte of each).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)
from torch import Tensor

__all__ = ["VOCAB", "batches", "corpus", "split", "validation_batches"]

VOCAB = 256  # bytes


def corpus() -> np.ndarray:
    """Every topic of ``pydoc_data.topics``, sorted by name and joined by blank lines, as uint8 bytes."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name] for name in sorted(topics))
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def split(data: np.ndarray, *, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): the first 1 - ``val_fraction`` of the bytes and the rest."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    cut = int(len(data) * (1 - val_fraction))
    return data[:cut], data[cut:]


def _windows(data: np.ndarray, starts: np.ndarray, block: int) -> tuple[Tensor, Tensor]:
    rows = np.stack([data[s : s + block + 1] for s in starts]).astype(np.int64)
    return torch.from_numpy(rows[:, :-1]), torch.from_numpy(rows[:, 1:])


def batches(data: np.ndarray, *, batch_size: int, block: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless (inputs, targets) pairs of shape (batch_size, block), windows drawn from ``seed``."""
    if len(data) <= block + 1:
        raise ValueError(f"block must be shorter than the data ({len(data)} bytes), got {block}")
    rng = np.random.default_rng([seed, 7])
    while True:
        yield _windows(data, rng.integers(0, len(data) - block - 1, size=batch_size), block)


def validation_batches(
    data: np.ndarray, *, batch_size: int, block: int, count: int
) -> list[tuple[Tensor, Tensor]]:
    """``count`` fixed batches of evenly spaced windows: every run is scored on the same bytes."""
    starts = np.linspace(0, len(data) - block - 2, num=count * batch_size).astype(np.int64)
    return [_windows(data, starts[i * batch_size : (i + 1) * batch_size], block) for i in range(count)]
