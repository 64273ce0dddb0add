"""The pathological long-term-memory tasks of Pascanu, Mikolov & Bengio (2013), as seeded generators.

Pascanu et al., "On the difficulty of training recurrent neural networks" (ICML 2013,
arXiv:1211.5063), §4.1, train on the synthetic problems of Hochreiter & Schmidhuber (1997, "Long
short-term memory", §5) in the form Martens & Sutskever (2011, "Learning recurrent neural networks
with Hessian-free optimization") gave them; the exact numbers below (marker windows, targets,
error rules) are those of the authors' released generators. Every generator draws a batch of
``batch_size`` sequences of nominal length ``length`` from ``seed`` (an int, or a NumPy
``Generator`` for a stream of batches) and returns a `Batch`: inputs ``(N, T, D)`` float32,
batch first, and the targets. Symbols are one-hot vectors. Positions are 0-based, windows
half-open: "[a, b)" means a <= p < b, with a and b rounded down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "TASKS",
    "Batch",
    "Task",
    "addition",
    "get_task",
    "memorisation",
    "multiplication",
    "permutation",
    "temporal_order",
    "temporal_order_3bit",
]

Seed = int | np.random.Generator

REGRESSION_TOLERANCE = 0.04  # a regression answer counts as wrong when its squared error exceeds this


class Batch(NamedTuple):
    """One batch of a task: ``inputs`` ``(N, T, D)`` float32 and the ``targets``.

    Examples:
        >>> from gradclip.sandbox.recurrent.tasks import addition
        >>> inputs, targets = addition(4, 20, seed=0)
        >>> inputs.dtype, targets.shape
        (dtype('float32'), (4, 1))
    """

    inputs: np.ndarray  # (N, T, D) float32
    targets: np.ndarray  # int64 labels (N,) or (N, T), or float32 values (N, 1)


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _check(batch_size: object, length: object, min_length: int) -> tuple[int, int]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < min_length:
        raise ValueError(f"length must be an integer >= {min_length} for this task, got {length!r}")
    return int(batch_size), int(length)


def _one_hot(symbols: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[symbols]


def _marked_symbols(batch_size: int, length: int, starts: tuple[float, ...], rng: np.random.Generator):
    """Distractors c..f (symbols 2-5) everywhere, one of A/B (0/1) in each window [s L, (s+0.1) L)."""
    width = length // 10
    symbols = rng.integers(2, 6, size=(batch_size, length))
    rows = np.arange(batch_size)
    label = np.zeros(batch_size, dtype=np.int64)
    for bit, start in enumerate(starts):
        pos = int(start * length) + rng.integers(0, width, size=batch_size)
        value = rng.integers(0, 2, size=batch_size)
        symbols[rows, pos] = value
        label += value << bit  # the first marker is the low bit
    return Batch(_one_hot(symbols, 6), label)


def temporal_order(batch_size: int, length: int, *, seed: Seed = 0) -> Batch:
    """Temporal order (Pascanu et al. 2013 §4.1.1; Hochreiter & Schmidhuber 1997, experiment 6a).

    Six symbols: A, B (0, 1) and distractors c, d, e, f (2-5), one-hot (D = 6). Every position holds a
    random distractor except two: one A-or-B in [L/10, 2L/10) and one in [5L/10, 6L/10). The class,
    read after the last step, is the order of the two: label = v_0 + 2 v_1 with A = 0, B = 1, so
    AA = 0, BA = 1, AB = 2, BB = 3. ``length`` >= 10.

    Examples:
        >>> from gradclip.sandbox.recurrent.tasks import temporal_order
        >>> batch = temporal_order(8, 50, seed=0)
        >>> batch.inputs.shape, batch.targets.shape
        ((8, 50, 6), (8,))
        >>> symbols = batch.inputs[0].argmax(-1)  # 0 = A, 1 = B, 2-5 distractors
        >>> first, second = symbols[symbols < 2]
        >>> bool(batch.targets[0] == first + 2 * second)
        True
    """
    n, length = _check(batch_size, length, 10)
    return _marked_symbols(n, length, (0.1, 0.5), _rng(seed))


def temporal_order_3bit(batch_size: int, length: int, *, seed: Seed = 0) -> Batch:
    """3-bit temporal order (§4.1.2; Hochreiter & Schmidhuber 1997, experiment 6b): three markers.

    As [`temporal_order`][gradclip.sandbox.recurrent.tasks.temporal_order] with a third A-or-B; the windows
    are [L/10, 2L/10), [3L/10, 4L/10) and [6L/10, 7L/10), and label = v_0 + 2 v_1 + 4 v_2 (8 classes).
    ``length`` >= 10.

    Examples:
        >>> from gradclip.sandbox.recurrent.tasks import temporal_order_3bit
        >>> batch = temporal_order_3bit(8, 50, seed=0)
        >>> symbols = batch.inputs[0].argmax(-1)
        >>> a, b, c = symbols[symbols < 2]
        >>> bool(batch.targets[0] == a + 2 * b + 4 * c), int(batch.targets.max()) < 8
        (True, True)
    """
    n, length = _check(batch_size, length, 10)
    return _marked_symbols(n, length, (0.1, 0.3, 0.6), _rng(seed))


def _two_marked_values(batch_size: int, length: int, rng: np.random.Generator):
    """Inputs (marker, value) with values U[0, 1); the markers sit in [0, L'/10) and [L'/10, L'/2).

    The batch's length L' is drawn once from [L, L + L/10), as in the authors' code, so the net
    cannot count steps from the end.
    """
    total = length + int(rng.integers(0, max(length // 10, 1)))
    x = np.zeros((batch_size, total, 2), dtype=np.float32)
    x[:, :, 1] = rng.random((batch_size, total), dtype=np.float32)
    rows = np.arange(batch_size)
    p0 = rng.integers(0, total // 10, size=batch_size)
    p1 = total // 10 + rng.integers(0, total // 2 - total // 10, size=batch_size)
    x[rows, p0, 0] = 1.0
    x[rows, p1, 0] = 1.0
    return x, x[rows, p0, 1], x[rows, p1, 1]


def addition(batch_size: int, length: int, *, seed: Seed = 0) -> Batch:
    """Addition (§4.1.2; Hochreiter & Schmidhuber 1997, experiment 4), the version of Pascanu et al.

    Each step carries two inputs: a marker (channel 0, 1 at exactly two steps, else 0) and a value
    drawn uniformly from [0, 1) (channel 1). One marker sits in the first tenth [0, L'/10), the
    other in [L'/10, L'/2); L' is drawn per batch from [L, L + L/10). The target, read after the
    last step, is the mean of the two marked values, y = (x_{p0} + x_{p1}) / 2, in [0, 1).
    (Hochreiter & Schmidhuber draw values from [-1, 1] and ask for 0.5 + (x_{p0} + x_{p1}) / 4.)
    An answer is wrong when its squared error exceeds 0.04. ``length`` >= 10.

    Examples:
        >>> from gradclip.sandbox.recurrent.tasks import addition
        >>> inputs, targets = addition(4, 100, seed=0)
        >>> marked = inputs[0, inputs[0, :, 0] == 1.0, 1]  # the two values whose marker is set
        >>> bool(abs(targets[0, 0] - marked.mean()) < 1e-6)
        True
    """
    n, length = _check(batch_size, length, 10)
    x, a, b = _two_marked_values(n, length, _rng(seed))
    return Batch(x, ((a + b) / 2).reshape(-1, 1))


def multiplication(batch_size: int, length: int, *, seed: Seed = 0) -> Batch:
    """Multiplication (§4.1.2; Hochreiter & Schmidhuber 1997, experiment 5).

    The inputs of [`addition`][gradclip.sandbox.recurrent.tasks.addition]; the target is the product of the
    two marked values, y = x_{p0} · x_{p1}, in [0, 1). Wrong when the squared error exceeds 0.04.
    ``length`` >= 10.

    Examples:
        >>> from gradclip.sandbox.recurrent.tasks import multiplication
        >>> inputs, targets = multiplication(4, 100, seed=0)
        >>> marked = inputs[0, inputs[0, :, 0] == 1.0, 1]
        >>> bool(abs(targets[0, 0] - marked.prod()) < 1e-6)
        True
    """
    n, length = _check(batch_size, length, 10)
    x, a, b = _two_marked_values(n, length, _rng(seed))
    return Batch(x, (a * b).reshape(-1, 1))


def permutation(batch_size: int, length: int, *, seed: Seed = 0) -> Batch:
    """Random permutation (§4.1.2; Hochreiter & Schmidhuber 1997, experiment 2).

    An alphabet of 100 symbols, one-hot (D = 100). The first symbol is 0 or 1 (equally likely); the
    other L - 1 are drawn uniformly from the 98 symbols 2-99. After the last step the net must name
    the first symbol: label in {0, 1}, over 100 output classes (the net is not told which two can
    occur). ``length`` >= 2.

    Examples:
        >>> from gradclip.sandbox.recurrent.tasks import permutation
        >>> batch = permutation(4, 30, seed=0)
        >>> batch.inputs.shape
        (4, 30, 100)
        >>> bool((batch.inputs[:, 0].argmax(-1) == batch.targets).all())  # the first symbol is the answer
        True
    """
    n, length = _check(batch_size, length, 2)
    rng = _rng(seed)
    symbols = rng.integers(2, 100, size=(n, length))
    label = rng.integers(0, 2, size=n)
    symbols[:, 0] = label
    return Batch(_one_hot(symbols, 100), label.astype(np.int64))


def memorisation(
    batch_size: int, length: int, *, seed: Seed = 0, n_values: int = 5, n_positions: int = 10
) -> Batch:
    """Noiseless memorisation (§4.1.2, in the form of Martens & Sutskever 2011).

    A pattern of ``n_positions`` symbols, each one of ``n_values``, is shown in the first
    ``n_positions`` steps; then a blank symbol for ``length`` steps; then a "go" symbol, then blanks
    again for ``n_positions - 1`` steps: T = length + 2 n_positions, D = n_values + 2 (blank is
    channel n_values, go is channel n_values + 1). An output is due at every step: the blank label
    (class n_values) for the first length + n_positions steps, then the pattern, one symbol a step,
    starting at the go step. A sequence is wrong if any of its T outputs is. The defaults (5 values,
    10 positions: 10 log2 5 ≈ 23 bits) are the paper's "over 20 bits" variant; n_values=2,
    n_positions=5 is the 5-bit one. ``length`` >= 1.

    Examples:
        >>> from gradclip.sandbox.recurrent.tasks import memorisation
        >>> batch = memorisation(2, 30, n_values=2, n_positions=5, seed=0)  # the 5-bit variant
        >>> batch.inputs.shape, batch.targets.shape  # T = 30 + 2 * 5, D = 2 + 2
        ((2, 40, 4), (2, 40))
        >>> bool((batch.targets[:, -5:] == batch.inputs[:, :5].argmax(-1)).all())  # recalled at the end
        True
    """
    n, length = _check(batch_size, length, 1)
    for name, value in (("n_values", n_values), ("n_positions", n_positions)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    rng = _rng(seed)
    k, total = n_positions, length + 2 * n_positions
    blank, go = n_values, n_values + 1
    pattern = rng.integers(0, n_values, size=(n, k))
    symbols = np.full((n, total), blank, dtype=np.int64)
    symbols[:, :k] = pattern
    symbols[:, length + k] = go
    labels = np.full((n, total), blank, dtype=np.int64)
    labels[:, length + k :] = pattern
    return Batch(_one_hot(symbols, n_values + 2), labels)


@dataclass(frozen=True)
class Task:
    """A task's generator and shape: ``output`` is where the net answers and how it is scored.

    ``output``: ``"last-class"`` (softmax on the last hidden state, cross-entropy, wrong when the
    arg-max differs), ``"last-value"`` (linear read-out of the last state, squared error, wrong above
    `REGRESSION_TOLERANCE`) or ``"every-class"`` (softmax at every step; a sequence is wrong if
    any step is).

    Examples:
        >>> import numpy as np
        >>> from gradclip.sandbox.recurrent.tasks import get_task
        >>> task = get_task("addition")
        >>> task.n_in, task.n_out, task.output
        (2, 1, 'last-value')
        >>> task.errors(np.array([[0.5], [0.9]]), np.array([[0.5], [0.5]]))  # squared error above 0.04
        array([False,  True])
    """

    name: str
    generate: Callable[..., Batch]
    n_in: int
    n_out: int
    output: str

    def errors(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Per-sequence wrong (True) / right from the net's outputs ``(N, O)`` or ``(N, T, O)``."""
        if self.output == "last-value":
            return ((outputs - targets) ** 2).sum(axis=-1) > REGRESSION_TOLERANCE
        wrong = outputs.argmax(axis=-1) != targets
        return wrong.any(axis=1) if self.output == "every-class" else wrong


TASKS: dict[str, Task] = {
    "temporal-order": Task("temporal-order", temporal_order, 6, 4, "last-class"),
    "temporal-order-3bit": Task("temporal-order-3bit", temporal_order_3bit, 6, 8, "last-class"),
    "addition": Task("addition", addition, 2, 1, "last-value"),
    "multiplication": Task("multiplication", multiplication, 2, 1, "last-value"),
    "permutation": Task("permutation", permutation, 100, 100, "last-class"),
    "memorisation": Task("memorisation", memorisation, 7, 6, "every-class"),
}


def get_task(name: str) -> Task:
    """The [`Task`][gradclip.sandbox.recurrent.tasks.Task] called ``name``; a ValueError lists the names when
    it is unknown.

    Examples:
        >>> from gradclip.sandbox.recurrent.tasks import get_task
        >>> batch = get_task("temporal-order").generate(4, 20, seed=1)
        >>> batch.inputs.shape
        (4, 20, 6)
        >>> get_task("copying")
        Traceback (most recent call last):
            ...
        ValueError: unknown task 'copying'...
    """
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}") from None
