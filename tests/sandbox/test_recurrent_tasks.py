"""The task generators against their definitions (Pascanu et al. 2013, §4.1): markers, labels, targets."""

from __future__ import annotations

import numpy as np
import pytest

from gradclip.sandbox.recurrent.tasks import (
    REGRESSION_TOLERANCE,
    TASKS,
    addition,
    get_task,
    memorisation,
    multiplication,
    permutation,
    temporal_order,
    temporal_order_3bit,
)

N = 4000


def _symbols(inputs: np.ndarray) -> np.ndarray:
    assert np.all(inputs.sum(axis=-1) == 1), "every step must be exactly one symbol"
    return inputs.argmax(axis=-1)


@pytest.mark.parametrize(
    ("generate", "windows"),  # each window is [start L, start L + L // 10)
    [(temporal_order, [0.1, 0.5]), (temporal_order_3bit, [0.1, 0.3, 0.6])],
)
@pytest.mark.parametrize("length", [10, 37, 100])
def test_temporal_order_markers_sit_in_their_windows_and_encode_the_label(generate, windows, length) -> None:
    batch = generate(N, length, seed=1)
    assert batch.inputs.shape == (N, length, 6) and batch.inputs.dtype == np.float32
    symbols = _symbols(batch.inputs)
    is_marker = symbols < 2
    assert np.all(is_marker.sum(axis=1) == len(windows)), "exactly one A/B per window, none elsewhere"
    label = np.zeros(N, dtype=np.int64)
    for bit, start in enumerate(windows):
        a, b = int(start * length), int(start * length) + length // 10
        inside = is_marker[:, a:b]
        assert np.all(inside.sum(axis=1) == 1), f"window {bit} [{a}, {b}) must hold one marker"
        value = symbols[:, a:b][inside]
        label += value << bit
        # every position of the window is used, not only the first
        assert len(np.unique(inside.argmax(axis=1))) == b - a
    np.testing.assert_array_equal(batch.targets, label)
    counts = np.bincount(batch.targets, minlength=2 ** len(windows))
    expected = N / 2 ** len(windows)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), f"classes must be balanced: {counts}"
    distractors = symbols[~is_marker]
    assert set(np.unique(distractors)) == {2, 3, 4, 5}


@pytest.mark.parametrize(
    ("generate", "combine"), [(addition, lambda a, b: (a + b) / 2), (multiplication, np.multiply)]
)
def test_two_marker_tasks_mark_two_steps_and_target_their_values(generate, combine) -> None:
    length = 50
    batch = generate(N, length, seed=2)
    total = batch.inputs.shape[1]
    assert length <= total < length + length // 10, "the batch length is drawn from [L, L + L/10)"
    marker, value = batch.inputs[..., 0], batch.inputs[..., 1]
    assert set(np.unique(marker)) == {0.0, 1.0}
    assert np.all(marker.sum(axis=1) == 2)
    assert value.min() >= 0.0 and value.max() < 1.0
    first = marker.argmax(axis=1)
    second = total - 1 - marker[:, ::-1].argmax(axis=1)
    assert first.max() < total // 10 and second.min() >= total // 10 and second.max() < total // 2
    rows = np.arange(N)
    expected = combine(value[rows, first], value[rows, second]).reshape(-1, 1)
    np.testing.assert_allclose(batch.targets, expected, rtol=1e-6)
    assert batch.targets.shape == (N, 1) and batch.targets.dtype == np.float32


def test_permutation_asks_for_the_first_symbol_among_two() -> None:
    batch = permutation(N, 30, seed=3)
    symbols = _symbols(batch.inputs)
    assert batch.inputs.shape == (N, 30, 100)
    np.testing.assert_array_equal(batch.targets, symbols[:, 0])
    assert set(np.unique(batch.targets)) == {0, 1}
    assert abs(batch.targets.mean() - 0.5) < 0.05
    assert symbols[:, 1:].min() >= 2, "0 and 1 appear only at the first step"


@pytest.mark.parametrize(("n_values", "n_positions"), [(5, 10), (2, 5)])
def test_memorisation_layout_and_targets(n_values: int, n_positions: int) -> None:
    length, k = 25, n_positions
    batch = memorisation(300, length, seed=4, n_values=n_values, n_positions=n_positions)
    total = length + 2 * k
    blank, go = n_values, n_values + 1
    assert batch.inputs.shape == (300, total, n_values + 2) and batch.targets.shape == (300, total)
    symbols = _symbols(batch.inputs)
    pattern = symbols[:, :k]
    assert pattern.max() < n_values
    assert np.all(symbols[:, k : length + k] == blank)
    assert np.all(symbols[:, length + k] == go)
    assert np.all(symbols[:, length + k + 1 :] == blank)
    assert np.all(batch.targets[:, : length + k] == blank)
    np.testing.assert_array_equal(batch.targets[:, length + k :], pattern)


def test_same_seed_same_batch_and_a_generator_streams() -> None:
    a, b = temporal_order(8, 20, seed=5), temporal_order(8, 20, seed=5)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    rng = np.random.default_rng(5)
    first, second = temporal_order(8, 20, seed=rng), temporal_order(8, 20, seed=rng)
    assert not np.array_equal(first.inputs, second.inputs)


def test_error_rules() -> None:
    order, value, every = get_task("temporal-order"), get_task("addition"), get_task("memorisation")
    logits = np.array([[3.0, 0, 0, 0], [0, 0, 3.0, 0]])
    np.testing.assert_array_equal(order.errors(logits, np.array([0, 1])), [False, True])
    y = np.array([[0.5], [0.5]])
    off = np.sqrt(REGRESSION_TOLERANCE)
    out = np.array([[0.5 + 0.9 * off], [0.5 + 1.1 * off]])
    np.testing.assert_array_equal(value.errors(out, y), [False, True])
    per_step = np.zeros((2, 3, 6))
    per_step[:, :, 5] = 1.0
    per_step[1, 2, 5], per_step[1, 2, 0] = 0.0, 1.0  # one wrong step makes the whole sequence wrong
    np.testing.assert_array_equal(every.errors(per_step, np.full((2, 3), 5)), [False, True])


def test_shapes_match_the_registry() -> None:
    for task in TASKS.values():
        batch = task.generate(3, 20, seed=0)
        assert batch.inputs.shape[-1] == task.n_in
        if task.output != "last-value":
            assert batch.targets.max() < task.n_out


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: temporal_order(4, 9), "length must be an integer >= 10"),
        (lambda: addition(0, 50), "batch_size must be an integer >= 1, got 0"),
        (lambda: permutation(4, 10, seed=-1), "seed must be an integer >= 0"),
        (lambda: memorisation(4, 10, n_values=0), "n_values must be an integer >= 1, got 0"),
        (lambda: get_task("adding"), "unknown task 'adding'; choose from"),
    ],
)
def test_bad_arguments_are_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
