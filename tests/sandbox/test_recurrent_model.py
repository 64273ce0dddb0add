"""The tanh RNN: the paper's initialisations, NumPy gradients by finite differences, torch = NumPy.

The NumPy network (the sandbox's RNN + Dense) is checked against central finite differences in
float64, and the torch network's autograd gradients against the NumPy ones on the same weights and
batch, for each kind of output (last class, last value, a class at every step). One clipped SGD
step is then taken in both and must land on the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradclip.sandbox.recurrent.model import PARAM_NAMES, TanhRNN, init_weights, sparse_recurrent
from gradclip.sandbox.recurrent.numpy_model import (
    loss_and_grads,
    named_grads,
    named_params,
    numpy_rnn,
    numpy_step,
)
from gradclip.sandbox.recurrent.tasks import get_task
from gradclip.sandbox.recurrent.train import task_loss
from gradclip.sandbox.vectorized import SGD

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny matrices: see tests/conftest.py


TASK_KINDS = ["temporal-order", "addition", "memorisation"]  # last-class, last-value, every-class


def _setup(name: str, *, hidden: int = 5, length: int = 12, batch: int = 3, init: str = "gaussian"):
    task = get_task(name)
    weights = init_weights(task.n_in, hidden, task.n_out, init=init, seed=7)
    # Larger weights than the init's: the tanh units leave their linear range, so the check bites.
    weights = {k: v * 4.0 + (0.1 if k.startswith("b") else 0.0) for k, v in weights.items()}
    data = task.generate(batch, length, seed=8)
    return task, weights, data


def _torch_loss(task, model, data):
    targets = torch.from_numpy(data.targets)
    if task.output == "last-value":
        targets = targets.double()
    return task_loss(task, model(torch.from_numpy(data.inputs).double()), targets)


def test_smart_init_is_sparse_at_spectral_radius_095() -> None:
    w = init_weights(6, 50, 4, init="smart", seed=0)
    assert np.max(np.abs(np.linalg.eigvals(w["W_hh"]))) == pytest.approx(0.95, rel=1e-12)
    assert np.all(np.count_nonzero(w["W_hh"], axis=1) == 15)
    assert w["W_uh"].std() == pytest.approx(0.01, rel=0.15)
    assert np.all(w["b_h"] == 0) and np.all(w["b_y"] == 0)
    gaussian = init_weights(6, 50, 4, init="gaussian", seed=0)
    assert gaussian["W_hh"].std() == pytest.approx(0.1, rel=0.05)
    assert np.count_nonzero(gaussian["W_hh"]) == 50 * 50
    assert np.max(np.abs(np.linalg.eigvals(sparse_recurrent(8, np.random.default_rng(1), radius=2.0)))) == (
        pytest.approx(2.0)
    )


def test_torch_model_starts_from_the_same_weights_and_reports_its_radius() -> None:
    model = TanhRNN(6, 50, 4, seed=3)
    w = init_weights(6, 50, 4, seed=3)
    for name in PARAM_NAMES:
        np.testing.assert_allclose(model.weights()[name], w[name], rtol=1e-6, atol=1e-9)
    assert model.spectral_radius() == pytest.approx(0.95, rel=1e-5)


@pytest.mark.parametrize("name", TASK_KINDS)
def test_numpy_rnn_gradient_matches_finite_differences(name: str) -> None:
    task, weights, data = _setup(name)
    model = numpy_rnn(weights, every_step=task.output == "every-class")
    loss_and_grads(model, task, data)
    analytic = model.grads.copy()
    numeric = np.zeros_like(analytic)
    h = 1e-6
    for i in range(model.params.size):
        old = model.params[i]
        model.params[i] = old + h
        plus = loss_and_grads(model, task, data)
        model.params[i] = old - h
        minus = loss_and_grads(model, task, data)
        model.params[i] = old
        numeric[i] = (plus - minus) / (2 * h)
    rel = np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric))
    assert rel < 1e-7, f"{name}: relative error {rel:.2e}"
    assert np.linalg.norm(analytic) > 1e-3, "a vanishing gradient would pass any check"


@pytest.mark.parametrize("name", TASK_KINDS)
def test_torch_autograd_matches_the_numpy_backward(name: str) -> None:
    task, weights, data = _setup(name, hidden=7, length=15)
    every = task.output == "every-class"
    np_model = numpy_rnn(weights, every_step=every)
    np_loss = loss_and_grads(np_model, task, data)
    t_model = TanhRNN.from_weights(weights, every_step=every, dtype=torch.float64)
    t_loss = _torch_loss(task, t_model, data)
    t_loss.backward()
    assert float(t_loss.detach()) == pytest.approx(np_loss, rel=1e-12)
    for pname, grad in named_grads(np_model).items():
        np.testing.assert_allclose(getattr(t_model, pname).grad.numpy(), grad, rtol=1e-9, atol=1e-12,
                                   err_msg=pname)  # fmt: skip


def test_one_clipped_sgd_step_is_the_same_in_numpy_and_torch() -> None:
    task, weights, data = _setup("temporal-order", hidden=6, init="smart")
    lr, c = 0.5, 1e-3  # c far below the norm: this step is clipped
    np_model = numpy_rnn(weights)
    before = np_model.params.copy()
    step = numpy_step(np_model, task, data, optimizer=SGD(lr), threshold=c)
    assert step.clipped and step.grad_norm > c
    assert np.linalg.norm(np_model.params - before) == pytest.approx(lr * c, rel=1e-5)
    t_model = TanhRNN.from_weights(weights, dtype=torch.float64)
    _torch_loss(task, t_model, data).backward()
    torch.nn.utils.clip_grad_norm_(t_model.parameters(), c)
    torch.optim.SGD(t_model.parameters(), lr=lr).step()
    after = t_model.weights()
    for name, value in named_params(np_model).items():
        np.testing.assert_allclose(value, after[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_unclipped_numpy_step_moves_by_lr_times_the_gradient() -> None:
    task, weights, data = _setup("addition")
    model = numpy_rnn(weights)
    loss_and_grads(model, task, data)
    grads = model.grads.copy()
    before = model.params.copy()
    step = numpy_step(model, task, data, optimizer=SGD(0.1))
    assert not step.clipped and step.grad_norm == pytest.approx(np.linalg.norm(grads))
    np.testing.assert_allclose(model.params, before - 0.1 * grads, rtol=1e-12)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="unknown init 'xavier'; choose from"):
        init_weights(2, 3, 1, init="xavier")
    with pytest.raises(ValueError, match=r"weights lack \['b_y'\]"):
        TanhRNN.from_weights({k: v for k, v in init_weights(2, 3, 1).items() if k != "b_y"})
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, time, 2\)"):
        TanhRNN(2, 3, 1)(torch.zeros(1, 4, 3))
