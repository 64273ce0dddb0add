"""Embedded datasets for the sandboxes: no download, ever.

``load_digits`` wraps scikit-learn's 8x8 handwritten digits (1,797 images shipped inside the
package), scaled to [0, 1] and split with a fixed seed into train and test sets. ``two_moons`` and
``circles`` generate the classic 2-D toy problems from a seed (NumPy only), split the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Split(NamedTuple):
    x_train: np.ndarray  # (n_train, 64) float32 in [0, 1]
    y_train: np.ndarray  # (n_train,) int64 in [0, 10)
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's digits as float32 features in [0, 1], split by a seeded permutation."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ModuleNotFoundError as err:
        raise ImportError("the digits dataset needs scikit-learn: pip install 'gradclip[demo]'") from err
    bunch = _sk_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return Split(x[train], y[train], x[test], y[test])


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, rng: np.random.Generator) -> Split:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    order = rng.permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return Split(x[train], y[train], x[test], y[test])


def _check_generator_args(n_samples: object, noise: object) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 4:
        raise ValueError(f"n_samples must be an integer >= 4, got {n_samples!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= noise < float("inf"):
        raise ValueError(f"noise must be a finite real number >= 0, got {noise!r}")


def two_moons(
    n_samples: int = 1000, *, noise: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> Split:
    """Two interleaving half circles (as scikit-learn's make_moons), labels 0/1, Gaussian noise."""
    _check_generator_args(n_samples, noise)
    rng = np.random.default_rng(seed)
    n0 = n_samples // 2
    t0 = np.linspace(0.0, np.pi, n0)
    t1 = np.linspace(0.0, np.pi, n_samples - n0)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)  # centre (0, 0), radius 1
    lower = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)  # shifted, upside down
    x = np.concatenate([upper, lower]) + rng.normal(scale=noise, size=(n_samples, 2))
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n_samples - n0, np.int64)])
    return _split(x.astype(np.float32), y, test_fraction, rng)


def circles(
    n_samples: int = 1000,
    *,
    noise: float = 0.05,
    factor: float = 0.5,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """A small circle (label 1, radius ``factor``) inside a unit circle (label 0), as make_circles."""
    _check_generator_args(n_samples, noise)
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must be in (0, 1), got {factor!r}")
    rng = np.random.default_rng(seed)
    n0 = n_samples // 2
    t0 = np.linspace(0.0, 2 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0.0, 2 * np.pi, n_samples - n0, endpoint=False)
    outer = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    inner = factor * np.stack([np.cos(t1), np.sin(t1)], axis=1)
    x = np.concatenate([outer, inner]) + rng.normal(scale=noise, size=(n_samples, 2))
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n_samples - n0, np.int64)])
    return _split(x.astype(np.float32), y, test_fraction, rng)
