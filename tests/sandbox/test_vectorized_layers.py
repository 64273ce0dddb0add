"""Every layer and loss against central finite differences in float64 (relative error < 1e-6).

Each check builds a float64 model, takes L = Σ out ⊙ R for a fixed random R (so every output
element matters), and compares the hand-written backward pass with (L(θ+h) - L(θ-h)) / 2h for
every parameter and every input element.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradclip.sandbox.vectorized import (
    LSTM,
    MSE,
    RNN,
    Dense,
    Dropout,
    Layer,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)

H = 1e-6


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def numeric_grad(f, x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of x (modified in place)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + H
        plus = f()
        flat[i] = old - H
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * H)
    return grad


def check_layers(layers: list[Layer], x: np.ndarray, *, seed: int = 0) -> tuple[float, float]:
    """(relative error of dL/dθ, of dL/dx) for L = Σ model(x) ⊙ R; dropout masks fixed by re-seeding."""
    model = Sequential(layers, dtype=np.float64, seed=seed)
    rng_state = model.rng.bit_generator.state

    def loss() -> float:
        model.rng.bit_generator.state = rng_state  # the same dropout mask at every evaluation
        return float(np.sum(model.forward(x, training=True) * R))

    R = np.random.default_rng(1).standard_normal(model.forward(x).shape)
    loss()
    dx = model.backward(R)
    analytic = model.grads.copy()
    e_params = rel_error(analytic, numeric_grad(loss, model.params)) if model.params.size else 0.0
    return e_params, rel_error(dx, numeric_grad(loss, x))


def away_from_zero(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Inputs with |x| >= 0.1, so ReLU's kink is never within h of a sample."""
    x = np.random.default_rng(seed).uniform(0.1, 1.5, size=shape)
    return x * np.random.default_rng(seed + 1).choice([-1.0, 1.0], size=shape)


X = np.random.default_rng(0).standard_normal((4, 5))
SEQ = np.random.default_rng(0).standard_normal((3, 4, 2))

CASES = {
    "dense": ([Dense(5, 3)], X),
    "dense-glorot": ([Dense(5, 3, init="glorot")], X),
    "relu": ([ReLU()], away_from_zero((4, 5))),
    "tanh": ([Tanh()], X),
    "sigmoid": ([Sigmoid()], X),
    "dropout": ([Dropout(0.4)], X),
    "mlp": ([Dense(5, 6), Tanh(), Dense(6, 4), Sigmoid(), Dense(4, 2)], X),
    "dense-over-time": ([Dense(2, 3)], SEQ),
    "rnn-sequences": ([RNN(2, 3)], SEQ),
    "rnn-last": ([RNN(2, 3, return_sequences=False)], SEQ),
    "lstm-sequences": ([LSTM(2, 3)], SEQ),
    "lstm-last": ([LSTM(2, 3, return_sequences=False), Dense(3, 2)], SEQ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_backward_matches_finite_differences(name: str) -> None:
    layers, x = CASES[name]
    e_params, e_input = check_layers(layers, x.copy())
    assert e_params < 1e-6, f"parameter gradient of {name}: relative error {e_params:.2e}"
    assert e_input < 1e-6, f"input gradient of {name}: relative error {e_input:.2e}"


def test_gradient_check_catches_a_wrong_backward() -> None:
    class BrokenTanh(Tanh):
        def backward(self, dout: np.ndarray) -> np.ndarray:
            return dout * (1 - self.y)  # forgot the square

    _, e_input = check_layers([BrokenTanh()], X.copy())
    assert e_input > 1e-2


def test_dropout_is_identity_at_eval_and_keeps_the_mean_in_training() -> None:
    model = Sequential([Dropout(0.25)], seed=3)
    x = np.ones((200, 50), np.float32)
    np.testing.assert_array_equal(model.forward(x), x)
    y = model.forward(x, training=True)
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs(y.mean() - 1.0) < 0.03


@pytest.mark.parametrize("loss_name", ["cross-entropy", "mse"])
def test_loss_backward_matches_finite_differences(loss_name: str) -> None:
    rng = np.random.default_rng(2)
    pred = rng.standard_normal((6, 4)) * 3
    if loss_name == "cross-entropy":
        loss, target = SoftmaxCrossEntropy(), rng.integers(0, 4, size=6)
    else:
        loss, target = MSE(), rng.standard_normal((6, 4))
    loss.forward(pred, target)
    analytic = loss.backward()
    assert rel_error(analytic, numeric_grad(lambda: loss.forward(pred, target), pred)) < 1e-6


def test_cross_entropy_matches_torch_and_survives_huge_logits() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    logits, y = rng.standard_normal((8, 5)) * 4, rng.integers(0, 5, size=8)
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    assert SoftmaxCrossEntropy().forward(logits, y) == pytest.approx(expected, rel=1e-12)
    big = np.array([[1e4, 0.0], [0.0, -1e4]], dtype=np.float32)
    assert np.isfinite(SoftmaxCrossEntropy().forward(big, np.array([1, 0])))


def test_lstm_forward_matches_torch() -> None:
    """Same maths as torch.nn.LSTM once the gate blocks are mapped (torch: i f g o, weights (4H, in))."""
    torch = pytest.importorskip("torch")
    model = Sequential([LSTM(2, 3)], dtype=np.float64, seed=5)
    lstm = model.layers[0]
    ref = torch.nn.LSTM(2, 3, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(torch.from_numpy(lstm.params["W"].T))
        ref.weight_hh_l0.copy_(torch.from_numpy(lstm.params["U"].T))
        ref.bias_ih_l0.copy_(torch.from_numpy(lstm.params["b"]))
        ref.bias_hh_l0.zero_()
    expected = ref(torch.from_numpy(SEQ))[0].detach().numpy()
    np.testing.assert_allclose(model.forward(SEQ), expected, rtol=1e-12, atol=1e-12)


def test_rnn_forward_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    model = Sequential([RNN(2, 3)], dtype=np.float64, seed=6)
    rnn = model.layers[0]
    ref = torch.nn.RNN(2, 3, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(torch.from_numpy(rnn.params["Wx"].T))
        ref.weight_hh_l0.copy_(torch.from_numpy(rnn.params["Wh"].T))
        ref.bias_ih_l0.copy_(torch.from_numpy(rnn.params["b"]))
        ref.bias_hh_l0.zero_()
    expected = ref(torch.from_numpy(SEQ))[0].detach().numpy()
    np.testing.assert_allclose(model.forward(SEQ), expected, rtol=1e-12, atol=1e-12)


def test_parameters_are_views_of_one_flat_buffer() -> None:
    model = Sequential([Dense(3, 4), ReLU(), Dense(4, 2)])
    assert model.params.dtype == np.float32 and model.params.size == 3 * 4 + 4 + 4 * 2 + 2
    model.params[:] = 0.0
    model.layers[2].params["b"][...] = 7.0
    np.testing.assert_array_equal(model.params[-2:], [7.0, 7.0])
    model.forward(np.ones((5, 3), np.float32))
    model.backward(np.ones((5, 2), np.float32))
    np.testing.assert_array_equal(model.grads[-2:], [5.0, 5.0])  # db = Σ over the batch, in the buffer


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Dense(0, 3), "in_features"),
        (lambda: Dense(2, 3, init="lecun"), "unknown init"),
        (lambda: Dropout(1.0), "dropout probability"),
        (lambda: RNN(2, -1), "hidden_size"),
        (lambda: Sequential([]), "non-empty"),
        (lambda: (lambda d: Sequential([d, ReLU(), d]))(Dense(2, 2)), "appears twice"),
        (lambda: Sequential([Dense(2, 2)], dtype=np.float16), "float32 or float64"),
    ],
)
def test_bad_layer_arguments_raise_clear_errors(build, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_shape_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="expects inputs with 3 features"):
        Sequential([Dense(3, 2)]).forward(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"\(batch, time, 2\)"):
        Sequential([RNN(2, 2)]).forward(np.ones((2, 2)))


def test_public_names_exist_and_import_no_torch() -> None:
    import subprocess
    import sys

    import gradclip.sandbox.vectorized as v

    assert all(hasattr(v, name) for name in v.__all__)
    code = "import sys, gradclip.sandbox.vectorized.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
