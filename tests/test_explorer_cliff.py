"""The explorer's maths: surfaces against finite differences, clipped steps bounded, the catapult."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradclip.explorer import cliff
from strategies import cliff_starts, thresholds, vectors_2d

# Points away from the cliff's wall, where a finite difference of step 1e-6 is accurate.
SMOOTH_POINTS = {
    "cliff": [(3.0, -1.0), (5.0, -3.5), (6.0, -2.0), (8.0, -5.0), (4.5, -2.2), (9.5, -0.5), (2.5, -6.0)],
    "valley": [(-8.0, 2.6), (0.5, -0.3), (9.0, -2.9)],
    "bowl": [(-4.0, 4.0), (1.0, -2.0), (0.0, 0.0)],
}


def _central_difference(name: str, point: tuple[float, float], h: float = 1e-6) -> np.ndarray:
    def f(u: float, v: float) -> float:
        return cliff.loss_and_grad(name, (u, v))[0]

    u, v = point
    return np.array([(f(u + h, v) - f(u - h, v)) / (2 * h), (f(u, v + h) - f(u, v - h)) / (2 * h)])


@pytest.mark.parametrize(("name", "point"), [(n, p) for n, ps in SMOOTH_POINTS.items() for p in ps])
def test_gradient_matches_finite_differences(name, point):
    _, grad = cliff.loss_and_grad(name, point)
    fd = _central_difference(name, point)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-9)


def test_cliff_loss_is_the_papers_recurrence_written_out():
    # Independent reference: iterate eq. 8 of Pascanu et al. (2013) with the textbook sigmoid.
    w, b = 6.3, -2.9
    x = 0.5
    for _ in range(50):
        x = w / (1 + math.exp(-x)) + b
    expected = (1 / (1 + math.exp(-x)) - 0.7) ** 2
    assert cliff.loss_and_grad("cliff", (w, b))[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", sorted(cliff.LANDSCAPES))
def test_surface_grid_agrees_with_pointwise_loss(name):
    s = cliff.surface(name, grid=9)
    (u0, u1), (v0, v1) = cliff.LANDSCAPES[name].bounds
    assert s.loss.shape == (9, 9) and s.u[0] == u0 and s.u[-1] == u1 and s.v[0] == v0 and s.v[-1] == v1
    for i in (0, 3, 8):
        for j in (0, 5, 8):
            assert s.loss[i, j] == pytest.approx(cliff.loss_and_grad(name, (s.u[j], s.v[i]))[0], rel=1e-12)


def test_cliff_has_a_wall_with_gradients_far_larger_than_beside_it():
    # Along w = 5 the loss drops from ~0.35 to ~0.01 at b ≈ -2.61, where the gradient peaks.
    bs = np.linspace(-3.5, -1.5, 4001)
    norms = np.array([np.linalg.norm(cliff.loss_and_grad("cliff", (5.0, b))[1]) for b in bs])
    losses = np.array([cliff.loss_and_grad("cliff", (5.0, b))[0] for b in bs])
    peak = norms.argmax()
    assert norms[peak] > 100 * np.median(norms)
    # A drop of more than half the loss range within 0.1 in b: the wall.
    assert losses[peak - 100] - losses[peak + 100] > 0.25


starts = cliff_starts


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(cliff.LANDSCAPES)), start=starts, lr=st.floats(1e-3, 3.0), c=thresholds)
def test_norm_clipped_step_never_exceeds_lr_times_threshold(name, start, lr, c):
    t = cliff.simulate(name, start, lr=lr, threshold=c, steps=60, method="norm")
    assert np.all(t.step_length <= lr * c * (1 + 1e-9))
    # Below the threshold the clip is a no-op: the step is the plain gradient step.
    below = ~t.clipped
    # (atol: θ - lr·g rounds at the scale of θ, which can dwarf a small step)
    atol = 1e-12 * (1 + np.abs(t.points).max())
    np.testing.assert_allclose(t.step_length[below], lr * t.grad_norm[below], rtol=1e-9, atol=atol)
    assert np.all(t.grad_norm[t.clipped] > c)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(cliff.LANDSCAPES)), start=starts, lr=st.floats(1e-3, 3.0), c=thresholds)
def test_value_clipped_step_moves_each_coordinate_at_most_lr_times_threshold(name, start, lr, c):
    t = cliff.simulate(name, start, lr=lr, threshold=c, steps=60, method="value")
    moves = np.abs(np.diff(t.points, axis=0))
    assert np.all(moves <= lr * c * (1 + 1e-9) + 1e-12 * np.abs(t.points[:-1]))


def _default_runs(steps: int | None = None) -> dict[str, cliff.Trajectory]:
    land = cliff.LANDSCAPES["cliff"]
    steps = land.steps if steps is None else steps
    return cliff.simulate_all("cliff", land.start, lr=land.lr, threshold=land.threshold, steps=steps)


def test_default_scene_unclipped_run_hits_the_cliff_and_ends_far_worse():
    runs = _default_runs()
    none, norm = runs["none"], runs["norm"]
    low_so_far = np.minimum.accumulate(none.loss)
    assert (none.loss[1:] / low_so_far[:-1]).max() > 1e3  # the loss jumps by orders of magnitude
    assert none.diverged or none.loss[-1] >= 10 * norm.loss[-1]
    assert none.step_length.max() > 4 * cliff.LANDSCAPES["cliff"].lr * cliff.LANDSCAPES["cliff"].threshold
    u, v = none.points[-1]
    (u0, u1), (v0, v1) = cliff.LANDSCAPES["cliff"].bounds
    assert not (u0 <= u <= u1 and v0 <= v <= v1)  # thrown off the map


@pytest.mark.parametrize("steps", [100, 150, 193, 200, 257, 300, 411, 600])
def test_default_scene_story_holds_for_any_step_count(steps):
    # Not a lucky step count: after the wall, the norm-clipped run stays >= 10x below its start
    # at every step, and the unclipped one stays >= 10x above it.
    runs = _default_runs(steps)
    none, norm = runs["none"], runs["norm"]
    assert norm.loss[60:].max() <= norm.loss[0] / 10 and not norm.diverged
    assert none.loss[-1] >= 10 * norm.loss[-1]
    assert np.all(norm.step_length <= 1.0 * (1 + 1e-9))


def test_default_scene_value_clipping_takes_a_visibly_different_path():
    runs = _default_runs()
    gap = np.hypot(*(runs["norm"].points - runs["value"].points).T)
    assert gap.max() > 1.0  # an eighth of the map's width
    assert runs["value"].loss[-1] < runs["none"].loss[-1] / 10


def test_experiment_cliff_keeps_its_own_small_step_setting():
    from gradclip.sandbox.recurrent import cliff as experiment

    result = experiment.run_cliff()
    assert result.trajectories["norm"].step_length.max() <= experiment.LR * experiment.THRESHOLD * (1 + 1e-9)
    assert result.trajectories["none"].step_length.max() > 10


def test_first_step_norm_clipping_keeps_direction_value_clipping_bends_it():
    start = (-4.0, 4.0)  # bowl: gradient (-4, 16), both components above c = 1
    _, g = cliff.loss_and_grad("bowl", start)
    for method, expected_deg in (("norm", 0.0), ("value", math.degrees(math.atan2(16, 4)) - 45.0)):
        t = cliff.simulate("bowl", start, lr=0.1, threshold=1.0, steps=1, method=method)
        step = t.points[1] - t.points[0]
        cos = float(np.dot(step, -g) / (np.linalg.norm(step) * np.linalg.norm(g)))
        assert math.degrees(math.acos(min(1.0, cos))) == pytest.approx(expected_deg, abs=1e-6)


def test_divergence_stops_the_run_and_keeps_shapes_consistent():
    land = cliff.LANDSCAPES["valley"]
    t = cliff.simulate("valley", land.start, lr=land.lr, threshold=land.threshold, steps=300, method="none")
    assert t.diverged and len(t.points) < 301
    n = len(t.points) - 1
    assert t.loss.shape == (n + 1,) and t.grad_norm.shape == t.clipped.shape == t.step_length.shape == (n,)
    assert np.isfinite(t.points).all()
    clipped = cliff.simulate(
        "valley", land.start, lr=land.lr, threshold=land.threshold, steps=300, method="norm"
    )
    assert not clipped.diverged and clipped.loss[-1] < 0.05


def test_clipping_cannot_fix_a_learning_rate_that_is_too_high():
    # Bowl curvature 4 in v: lr 0.6 > 2/4. Norm clipping stops the blow-up, not the bouncing.
    t = cliff.simulate("bowl", (-4.0, 4.0), lr=0.6, threshold=1.0, steps=400, method="norm")
    assert not t.diverged
    assert t.loss[-1] > 0.01 and t.step_length[-50:].min() > 0.1


@settings(max_examples=60, deadline=None)
@given(g=vectors_2d, c=thresholds)
def test_compare_clipping_invariants(g, c):
    r = cliff.compare_clipping(g, c)
    gv = np.array(g)
    assert r.norm_clipped_norm <= c * (1 + 1e-9) or r.norm_clipped_norm == pytest.approx(r.norm)
    assert np.all(np.abs(r.value_clipped) <= c)
    if r.norm > 0:
        # Norm clipping keeps the direction exactly: the scale is the same on both components.
        assert abs(r.norm_clipped[0] * gv[1] - r.norm_clipped[1] * gv[0]) <= 1e-9 * r.norm**2 + 1e-300
    assert 0.0 <= r.angle_deg <= 45.0 + 1e-9
    if np.all(np.abs(gv) <= c):
        assert r.angle_deg == pytest.approx(0.0, abs=1e-6) and np.array_equal(r.value_clipped, gv)


def test_compare_clipping_known_angle():
    r = cliff.compare_clipping([3.0, 1.0], 1.0)
    np.testing.assert_allclose(r.value_clipped, [1.0, 1.0])
    np.testing.assert_allclose(r.norm_clipped, np.array([3.0, 1.0]) / math.sqrt(10), rtol=1e-5)
    assert r.angle_deg == pytest.approx(45.0 - math.degrees(math.atan(1 / 3)))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cliff.surface("cliffs"), "unknown surface 'cliffs'; choose from"),
        (lambda: cliff.surface("cliff", grid=1), "grid must be a whole number >= 2, got 1"),
        (lambda: cliff.simulate("cliff", (5, -3), lr=0, threshold=1, steps=5, method="norm"), "lr must be"),
        (lambda: cliff.simulate("cliff", (5, -3), lr=0.1, threshold=-1, steps=5, method="norm"), "threshold"),
        (lambda: cliff.simulate("cliff", (5, -3), lr=0.1, threshold=1, steps=-1, method="norm"), "steps"),
        (
            lambda: cliff.simulate("cliff", (5, -3), lr=0.1, threshold=1, steps=5, method="agc"),
            "unknown method",
        ),
        (
            lambda: cliff.simulate("cliff", (5,), lr=0.1, threshold=1, steps=5, method="norm"),
            "start must be two",
        ),
        (
            lambda: cliff.simulate("cliff", (math.nan, 1), lr=0.1, threshold=1, steps=5, method="norm"),
            "finite",
        ),
        (lambda: cliff.compare_clipping([], 1.0), "non-empty vector"),
        (lambda: cliff.compare_clipping([1.0, math.inf], 1.0), "finite numbers"),
    ],
)
def test_bad_arguments_say_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()
