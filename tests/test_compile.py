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


# --- the step object under torch.compile ---------------------------------------------------------

from gradclip.clippers import AGC, NormClipper, ValueClipper  # noqa: E402
from gradclip.policies import Fixed  # noqa: E402
from gradclip.skip import SpikeSkip  # noqa: E402

STEP_CASES = {
    "fixed": lambda: gradclip.ClipStep(NormClipper(Fixed(1.0))),
    "zscore": lambda: gradclip.ClipStep(NormClipper(ZScore(warmup=5))),
    "percentile": lambda: gradclip.ClipStep(NormClipper(Percentile(25, window=16, warmup=3))),
    "agc": lambda: gradclip.ClipStep(AGC(0.05)),
    "value": lambda: gradclip.ClipStep(ValueClipper(0.1)),
    "off": lambda: gradclip.ClipStep(None),
    "spikes": lambda: gradclip.ClipStep(
        NormClipper(ZScore(warmup=5)), skip_spikes=SpikeSkip(4.0, window=8, warmup=4)
    ),
}


def _grad_scale(i: int) -> float:
    """Norms that wander over six decades, with NaN/Inf steps and spikes at fixed places."""
    if i % 31 == 7:
        return float("nan")
    if i % 43 == 11:
        return float("inf")
    if i % 17 == 13:
        return 1e4  # a spike
    return [0.02, 0.3, 1.0, 3.0, 0.5][i % 5]


def _set_grads(params: list[nn.Parameter], i: int) -> None:
    gen = torch.Generator().manual_seed(100 + i)
    for p in params:
        p.grad = _grad_scale(i) * torch.randn(p.shape, generator=gen)


def _layers() -> list[nn.Parameter]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    return list(model.parameters())


RESULT_FIELDS = (
    "total_norm",
    "threshold",
    "scale",
    "post_clip_norm",
    "clipped",
    "finite",
    "skipped",
    "spike",
)


def _same_result(ours, ref) -> None:
    for field in RESULT_FIELDS:
        a, b = getattr(ours, field), getattr(ref, field)
        if b is None or a is None:
            assert a is None and b is None, field
            continue
        a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0, equal_nan=True, msg=field)


@pytest.mark.parametrize("case", list(STEP_CASES))
def test_clip_step_compiles_whole_matches_eager_and_keeps_its_graph_count(case):
    eager, compiled = STEP_CASES[case](), STEP_CASES[case]()
    eager_params, params = _layers(), _layers()
    backend = CountingBackend()
    compiled_clip = _compiled(lambda: compiled.clip_(params), backend)
    skips = 0
    for i in range(200):
        _set_grads(eager_params, i)
        _set_grads(params, i)
        ref, ours = eager.clip_(eager_params), compiled_clip()
        _same_result(ours, ref)
        if bool(ref.skipped):  # eager drops the gradients; compiled, they are zeroed (no branch)
            skips += 1
            assert all(p.grad is None for p in eager_params)
            assert all(bool((p.grad == 0).all()) for p in params)
        else:
            for a, b in zip(params, eager_params, strict=True):
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)
        if i == 9:
            warm = backend.graphs
    assert skips > 0 if case != "value" else True
    # Two compiles: the first call lifts the host state and counters to tensors; dynamo may hand the
    # second frame over twice (it restarts its analysis to turn Python scalars into tensors).
    assert backend.graphs == warm <= 3
    assert compiled.steps == eager.steps == 200
    assert compiled.skipped_steps == eager.skipped_steps and compiled.spike_skips == eager.spike_skips
    assert float(compiled.clip_rate) == pytest.approx(float(eager.clip_rate))
    # The compiled step's state saves as the eager one's, and loads back into an eager step.
    saved, ref_saved = compiled.state_dict(), eager.state_dict()
    assert saved["recent"] == ref_saved["recent"] and saved["steps"] == ref_saved["steps"]
    if case == "spikes":
        ours_spikes, ref_spikes = saved["spikes"], ref_saved["spikes"]
        assert ours_spikes["state"]["consecutive"] == ref_spikes["state"]["consecutive"]
        assert ours_spikes["state"]["history"] == pytest.approx(ref_spikes["state"]["history"], rel=1e-12)
    restored = STEP_CASES[case]()
    restored.load_state_dict(saved)
    _set_grads(params, 200)
    _set_grads(eager_params, 200)
    _same_result(restored.clip_(params), eager.clip_(eager_params))


def test_a_skipped_compiled_step_leaves_the_policy_state_as_eager_does():
    policy_eager, policy_compiled = ZScore(warmup=3), ZScore(warmup=3)
    eager, compiled = gradclip.ClipStep(policy_eager), gradclip.ClipStep(policy_compiled)
    params, eager_params = _layers(), _layers()
    compiled_clip = _compiled(lambda: compiled.clip_(params), CountingBackend())
    for i in (0, 1, 2, 3, 7, 4, 43 + 11):  # steps 7 and 54 are NaN and Inf: skipped
        _set_grads(params, i)
        _set_grads(eager_params, i)
        compiled_clip()
        eager.clip_(eager_params)
        for a, b in zip(policy_compiled.state, policy_eager.state, strict=True):
            assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_percentile_with_the_full_history_is_refused_under_compile_with_a_clear_error():
    step = gradclip.ClipStep(NormClipper(Percentile(10, window=None)))
    params = _layers()
    _set_grads(params, 0)
    with pytest.raises(Exception, match="window=None"):
        _compiled(lambda: step.clip_(params), CountingBackend())()


def _optimizer(kind: str, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-2)
    if kind == "adam":
        return torch.optim.Adam(params, lr=1e-2)
    return torch.optim.AdamW(params, lr=1e-2, fused=kind == "adamw-fused")


def _run_steps(kind: str, make_step: Callable[[torch.optim.Optimizer], Callable[[], object]], backend):
    params = _layers()
    opt = _optimizer(kind, params)
    run = make_step(opt)
    if backend is not None:
        run = torch.compile(run, backend=backend)
    snapshots, warm = [], None
    for i in range(40):
        _set_grads(params, i)
        run()
        snapshots.append([p.detach().clone() for p in params])
        if i == 12 and backend is not None:
            warm = backend.graphs
    if backend is not None:
        assert backend.graphs == warm  # skipped steps (NaN at 38) and clipped ones compile nothing new
    state = [{k: v.clone() for k, v in opt.state[p].items()} for p in params]
    return snapshots, state


@pytest.mark.slow
@pytest.mark.filterwarnings(TORCH_OPTIM_WARNING)
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw", "adamw-fused"])
@pytest.mark.parametrize("entry", ["ClipStep.step", "ClipOptimizer.step"])
def test_compiled_clip_and_step_equals_eager_and_adds_no_graph_to_torchs(kind, entry):
    def ours(opt):
        if entry == "ClipStep.step":
            step = gradclip.ClipStep(NormClipper(ZScore(warmup=5)))
            return lambda: step.step(opt)
        wrapped = gradclip.ClipOptimizer(opt, NormClipper(ZScore(warmup=5)))
        return wrapped.step

    def torchs(opt):
        params = [p for g in opt.param_groups for p in g["params"]]

        def run():
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

        return run

    eager_snaps, eager_state = _run_steps(kind, ours, None)
    backend, reference = CountingBackend(), CountingBackend()
    snaps, state = _run_steps(kind, ours, backend)
    for step_params, ref_params in zip(snaps, eager_snaps, strict=True):
        for a, b in zip(step_params, ref_params, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for ours_state, ref_state in zip(state, eager_state, strict=True):
        for key in ref_state:
            torch.testing.assert_close(ours_state[key], ref_state[key], rtol=1e-5, atol=1e-6)
    # Skipped steps (NaN at step 7, Inf at 11) leave the parameters bitwise as they were.
    for i in (7, 11):
        for a, b in zip(snaps[i], snaps[i - 1], strict=True):
            assert torch.equal(a, b)
    _run_steps(kind, torchs, reference)
    # torch's Optimizer.step breaks the graph on purpose, for torch's clip too. Beyond torch's count: one
    # compile when the first step lifts the counters and the policy state to tensors, and one more
    # hand-over when dynamo restarts its analysis of that frame (Python scalars to tensors).
    assert backend.graphs <= reference.graphs + 2, (backend.graphs, reference.graphs)


@pytest.mark.filterwarnings(TORCH_OPTIM_WARNING)
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_torchs_own_optimizer_step_is_not_one_graph_which_bounds_ours(kind):
    # Why ClipStep.step / ClipOptimizer.step are compiled without fullgraph=True: torch's Optimizer.step
    # calls torch._dynamo.graph_break() on purpose. If a torch release lifts that, this fails, and the
    # optimizer-step tests above should then ask for fullgraph=True too.
    params = _layers()
    opt = _optimizer(kind, params)
    _set_grads(params, 0)
    with pytest.raises(torch._dynamo.exc.Unsupported, match="graph_break"):
        torch.compile(lambda: opt.step(), backend="aot_eager", fullgraph=True)()
