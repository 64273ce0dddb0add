"""gradclip under torch.compile: whole graphs (fullgraph=True), eager-equal results, no recompiles.

The backend is ``aot_eager`` (traces through AOTAutograd like inductor, without generating code) so
the module stays fast; one inductor case is marked slow. A counting backend records every graph
dynamo hands over, so recompiles show up as a growing count.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

import gradclip
from gradclip.monitor import GradMonitor
from gradclip.policies import Percentile, ZScore

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")


class CountingBackend:
    """A dynamo backend that counts the graphs it compiles and hands them to a real backend."""

    def __init__(self, backend: str = "aot_eager") -> None:
        self.backend = backend
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        from torch._dynamo.backends.registry import lookup_backend

        self.graphs += 1
        return lookup_backend(self.backend)(gm, example_inputs)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _grads(seed: int, scale: float = 1.0, device: str = "cpu") -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(8, 4), (4,), (3, 3, 2), (5,)]
    return [(scale * torch.randn(s, generator=gen)).to(device) for s in shapes]


def _compiled(fn: Callable, backend: CountingBackend) -> Callable:
    return torch.compile(fn, backend=backend, fullgraph=True)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])  # far below, near and far above max_norm
def test_clip_grad_norm_compiles_whole_and_matches_eager(scale):
    def step(grads: list[torch.Tensor]) -> torch.Tensor:
        return gradclip.clip_grad_norm_(grads, 1.0)

    backend = CountingBackend()
    eager, compiled = _grads(0, scale), _grads(0, scale)
    _close(_compiled(step, backend)(compiled), step(eager))
    for a, b in zip(compiled, eager, strict=True):
        _close(a, b)
    assert backend.graphs == 1


def test_return_stats_and_keep_compile_whole_and_match_eager():
    def step(grads: list[torch.Tensor]):
        return gradclip.clip_grad_norm_(grads, 1.0, nonfinite="keep", return_stats=True)

    backend = CountingBackend()
    compiled_step = _compiled(step, backend)
    for scale in (0.01, 10.0, float("inf")):
        eager, compiled = _grads(1, scale), _grads(1, scale)
        if scale == float("inf"):
            eager[1][0] = compiled[1][0] = float("nan")
        ours, ref = compiled_step(compiled), step(eager)
        for field in ("total_norm", "scale", "clipped", "finite"):
            torch.testing.assert_close(
                getattr(ours, field), getattr(ref, field), rtol=1e-6, atol=1e-7, equal_nan=True
            )
        for a, b in zip(ours.tensor_norms, ref.tensor_norms, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, equal_nan=True)
        for a, b in zip(compiled, eager, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert backend.graphs == 1  # clipping, not clipping and a NaN step share one graph


def test_clip_grad_value_compiles_whole_and_matches_eager():
    def step(grads: list[torch.Tensor]) -> None:
        gradclip.clip_grad_value_(grads, 0.5)

    backend = CountingBackend()
    eager, compiled = _grads(2), _grads(2)
    _compiled(step, backend)(compiled)
    step(eager)
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert backend.graphs == 1


def test_the_graph_count_stays_constant_whatever_the_norms_do():
    params = [nn.Parameter(torch.zeros(s)) for s in [(8, 4), (4,), (6,)]]

    def step() -> torch.Tensor:
        return gradclip.clip_grad_norm_(params, 1.0, nonfinite="keep")

    backend = CountingBackend()
    compiled_step = _compiled(step, backend)
    gen = torch.Generator().manual_seed(3)
    for i in range(200):
        scale = [1e-3, 0.5, 1.0, 30.0, 1e6][i % 5]
        for p in params:
            p.grad = scale * torch.randn(p.shape, generator=gen)
        if i % 37 == 0:
            params[1].grad[0] = float("nan")
        expected = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params]))
        torch.testing.assert_close(compiled_step(), expected, rtol=1e-6, atol=0, equal_nan=True)
        if i == 9:
            warm = backend.graphs
    assert backend.graphs == warm == 1


def test_compiled_calls_do_not_fail_when_warnings_are_errors():
    # pytest here already turns warnings into errors; this says so explicitly for `python -W error`
    # (dynamo warned about functools.cache in distributed.py and raised InternalTorchDynamoError).
    def step(grads: list[torch.Tensor]) -> torch.Tensor:
        gradclip.clip_grad_value_(grads, 10.0)
        return gradclip.clip_grad_norm_(grads, 1.0)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grads = _grads(4)
        total = torch.compile(step, backend="aot_eager", fullgraph=True)(grads)
    expected = torch.linalg.vector_norm(torch.cat([g.flatten() for g in _grads(4)]))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def _train(clip: Callable, steps: int, backend: CountingBackend):
    """A compiled model and a compiled clip-then-AdamW step; returns (model, totals)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    compiled_model = torch.compile(model, backend="aot_eager")
    gen = torch.Generator().manual_seed(1)

    # torch's Optimizer.step breaks the graph on purpose (its no_grad must reach AOTAutograd), so
    # this cannot be fullgraph=True; the test compares the graph count with torch's own clip.
    @torch.compile(backend=backend)
    def clip_and_step() -> torch.Tensor:
        total = clip(model.parameters(), 0.1)
        opt.step()
        return total

    totals = []
    for i in range(steps):
        x, y = torch.randn(32, 6, generator=gen), torch.randn(32, 3, generator=gen) * (1 + 50 * (i % 3 == 0))
        opt.zero_grad()
        nn.functional.mse_loss(compiled_model(x), y).backward()
        totals.append(clip_and_step())
    return model, totals


# torch's own optimizer code warns under dynamo (torch 2.13); the warning is torch's, not gradclip's.
TORCH_OPTIM_WARNING = "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"


@pytest.mark.slow
@pytest.mark.filterwarnings(TORCH_OPTIM_WARNING)
def test_a_compiled_training_step_clips_like_eager_in_torchs_graph_count():
    ours, theirs = CountingBackend(), CountingBackend()
    model, totals = _train(gradclip.clip_grad_norm_, 12, ours)
    ref_model, ref_totals = _train(torch.nn.utils.clip_grad_norm_, 12, theirs)
    torch.testing.assert_close(torch.stack(totals), torch.stack(ref_totals), rtol=1e-5, atol=1e-6)
    for a, b in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert ours.graphs == theirs.graphs  # no graph (break) of ours beyond the optimizer's own


def test_the_monitor_names_layers_of_a_compiled_model_as_the_model_does():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model[2] = torch.compile(model[2], backend="aot_eager")  # a compiled submodule, inside
    compiled = torch.compile(model, backend="aot_eager")  # and the whole model, outside
    assert "_orig_mod" in " ".join(n for n, _ in compiled.named_parameters())
    monitor = GradMonitor(compiled)
    try:
        assert monitor.names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    finally:
        monitor.close()


@pytest.mark.slow
def test_inductor_compiles_clip_grad_norm_whole_and_matches_eager():
    def step(grads: list[torch.Tensor]):
        return gradclip.clip_grad_norm_(grads, 1.0, return_stats=True)

    backend = CountingBackend("inductor")
    compiled_step = _compiled(step, backend)
    for scale in (0.01, 10.0):
        eager, compiled = _grads(5, scale), _grads(5, scale)
        ours, ref = compiled_step(compiled), step(eager)
        _close(ours.total_norm, ref.total_norm)
        _close(ours.scale, ref.scale)
        assert bool(ours.clipped) == bool(ref.clipped)
        for a, b in zip(compiled, eager, strict=True):
            _close(a, b)
    assert backend.graphs == 1


@needs_cuda
def test_cuda_compiled_clip_matches_eager_in_one_graph():
    def step(grads: list[torch.Tensor]) -> torch.Tensor:
        return gradclip.clip_grad_norm_(grads, 1.0, nonfinite="keep")

    backend = CountingBackend()
    compiled_step = _compiled(step, backend)
    for scale in (0.01, 10.0):
        eager, compiled = _grads(6, scale, "cuda"), _grads(6, scale, "cuda")
        _close(compiled_step(compiled), step(eager))
        for a, b in zip(compiled, eager, strict=True):
            _close(a, b)
    assert backend.graphs == 1


def _norm_sequence(n: int) -> list[float]:
    gen = torch.Generator().manual_seed(7)
    values = (torch.rand(n, generator=gen, dtype=torch.float64) * 5).tolist()
    for i in range(5, n, 23):  # spikes and non-finite norms, at fixed places
        values[i] = [300.0, float("nan"), float("inf")][i % 3]
    return values


@pytest.mark.parametrize(
    "cfg", [{"p": 10, "window": 16, "warmup": 3}, {"p": 50, "window": 5, "include_current": False}]
)
def test_percentile_on_tensors_matches_the_float_path_and_compiles_without_recompiles(cfg):
    host, device, compiled_policy = Percentile(**cfg), Percentile(**cfg), Percentile(**cfg)
    backend = CountingBackend()
    compiled = torch.compile(lambda norm: compiled_policy(norm), backend=backend, fullgraph=True)
    for i, x in enumerate(_norm_sequence(200)):
        expected = host(x)
        for got in (device(torch.tensor(x)), compiled(torch.tensor(x))):
            assert got.shape == () and float(got) == pytest.approx(expected, rel=1e-6)
        if i == 1:
            warm = backend.graphs  # the first call lifts the fresh (host) state to tensors
    assert backend.graphs == warm <= 2


def test_percentile_tensor_state_round_trips_and_goes_back_to_floats():
    policy = Percentile(25, window=6)
    for x in (1.0, 4.0, float("nan"), 2.0):
        policy(torch.tensor(x))
    saved = policy.state_dict()
    restored = Percentile(25, window=6)
    restored.load_state_dict(saved)
    assert float(restored(torch.tensor(3.0))) == pytest.approx(float(policy(torch.tensor(3.0))))
    # A float norm after tensor state: the host path picks the history up (NaN padding dropped).
    reference = Percentile(25, window=6)
    for x in (1.0, 4.0, 2.0, 3.0):
        reference(x)
    assert restored(5.0) == pytest.approx(reference(5.0))


def test_zscore_on_tensors_compiles_without_recompiles_whatever_the_norms_do():
    host, compiled_policy = ZScore(warmup=5, max_norm=10.0), ZScore(warmup=5, max_norm=10.0)
    backend = CountingBackend()
    compiled = torch.compile(lambda norm: compiled_policy(norm), backend=backend, fullgraph=True)
    for i, x in enumerate(_norm_sequence(200)):
        expected, got = host(x), compiled(torch.tensor(x))
        assert float(got) == pytest.approx(expected, rel=1e-5)
        if i == 1:
            warm = backend.graphs  # the first call lifts the fresh (float) state to tensors
    assert backend.graphs == warm <= 2
