"""The batched population trains each member exactly as the single-run trainer trains that run."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from gradclip.sandbox.recurrent.population import Member, train_population, warmup_norms
from gradclip.sandbox.recurrent.train import RunConfig, average_norm_threshold, train_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny matrices: see tests/conftest.py

MEMBERS = [Member(0, 0.05), Member(1, 0.05, 0.02), Member(0, 0.1, 0.05), Member(2, 0.05)]


def _single(config: RunConfig, member: Member):
    return train_run(replace(config, seed=member.seed, lr=member.lr, threshold=member.threshold))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["temporal-order", "addition", "memorisation"])
def test_every_member_follows_its_single_run_trajectory(task: str) -> None:
    # addition draws a length per batch and seed: the population pads, and must still agree.
    config = RunConfig(
        task=task, length=12, steps=40, hidden=8, eval_every=20, eval_size=100, dtype="float64"
    )
    population = train_population(config, MEMBERS, dtype=torch.float64)
    for member, got in zip(MEMBERS, population, strict=True):
        want = _single(config, member)
        np.testing.assert_allclose(got.grad_norms, want.grad_norms, rtol=1e-6)
        np.testing.assert_allclose(got.losses, want.losses, rtol=1e-6, atol=1e-12)
        assert got.evals == want.evals and got.clipped_steps == want.clipped_steps
        assert got.config == want.config
    assert population[1].clipped_steps > 0 and population[0].clipped_steps == 0


def test_float32_population_stays_within_float32_rounding_of_the_single_runs() -> None:
    config = RunConfig(task="memorisation", length=12, steps=30, hidden=8, eval_every=0)
    for member, got in zip(MEMBERS, train_population(config, MEMBERS), strict=True):
        np.testing.assert_allclose(got.grad_norms, _single(config, member).grad_norms, rtol=1e-5)


def test_solved_and_diverged_members_stop_like_single_runs() -> None:
    # A 100% target is met at the first evaluation; lr 1e6 blows the regression up within steps.
    solved = RunConfig(task="temporal-order", length=10, steps=50, hidden=8, eval_every=10, eval_size=50,
                       target_error=1.01, dtype="float64")  # fmt: skip
    got = train_population(solved, [Member(0, 0.05), Member(1, 0.05, 0.1)], dtype=torch.float64)
    assert all(r.solved and r.steps_to_success == 10 and len(r.losses) == 10 for r in got)
    wild = RunConfig(task="addition", length=10, steps=200, hidden=8, eval_every=0, dtype="float64")
    members = [Member(0, 1e6), Member(0, 0.01)]
    got = train_population(wild, members, dtype=torch.float64)
    want = _single(wild, members[0])
    assert got[0].diverged and want.diverged and len(got[0].losses) == len(want.losses) < 200
    assert not got[1].diverged and len(got[1].losses) == 200  # its neighbour's NaNs never reach it
    assert math.isfinite(got[1].losses[-1])


def test_warmup_norms_give_the_average_norm_rule() -> None:
    config = RunConfig(task="addition", length=10, steps=40, hidden=8, eval_every=0, dtype="float64")
    norms = warmup_norms(config, [Member(3, 0.05, 0.5)], warmup=25, dtype=torch.float64)[0]
    assert len(norms) == 25
    rule = average_norm_threshold(replace(config, seed=3, lr=0.05), warmup=25, factor=2.0)
    assert 2.0 * np.mean(norms) == pytest.approx(rule, rel=1e-9)


def test_bad_members_are_named() -> None:
    config = RunConfig(task="addition", length=10, steps=5, hidden=4, eval_every=0)
    with pytest.raises(ValueError, match="members must hold at least one Member"):
        train_population(config, [])
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got -1"):
        train_population(config, [Member(0, -1)])
