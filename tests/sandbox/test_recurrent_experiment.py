"""Training runs, the threshold rule, spike bookkeeping, the table, the CLI and the cliff experiment."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from gradclip.sandbox.recurrent import cli
from gradclip.sandbox.recurrent.cliff import run_cliff
from gradclip.sandbox.recurrent.experiment import compare, run_grid
from gradclip.sandbox.recurrent.grid import Grid
from gradclip.sandbox.recurrent.results import format_table, write_outputs
from gradclip.sandbox.recurrent.train import RunConfig, average_norm_threshold, spike_outcomes, train_run
from gradclip.sandbox.stats import mann_whitney_u
from gradclip.sinks import read_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny matrices: see tests/conftest.py


TINY = RunConfig(task="temporal-order", length=10, steps=30, hidden=8, eval_every=10, eval_size=50)


def test_clipped_and_unclipped_runs_share_init_and_data_until_the_first_clip() -> None:
    free = train_run(TINY)
    c = sorted(free.grad_norms)[len(free.grad_norms) // 2]  # the median: roughly half the steps clip
    clipped = train_run(RunConfig(**{**free.config, "threshold": c}))
    first = next(i for i, n in enumerate(free.grad_norms) if n > c)
    np.testing.assert_allclose(clipped.grad_norms[: first + 1], free.grad_norms[: first + 1], rtol=1e-6)
    assert clipped.grad_norms[first + 1] != pytest.approx(free.grad_norms[first + 1], rel=1e-9)
    assert clipped.clipped_steps == sum(n > c for n in clipped.grad_norms)
    assert free.clipped_steps == 0


def test_a_run_logs_every_step_through_the_monitor(tmp_path) -> None:
    result = train_run(replace(TINY, threshold=0.05), log_dir=tmp_path)
    log = read_run(tmp_path / "grads.jsonl")
    assert log.steps == len(result.grad_norms)
    np.testing.assert_allclose(log.columns["gradclip/pre_clip_norm"], result.grad_norms, rtol=1e-6)
    assert list(log.columns["gradclip/clipped"] == 1) == [n > 0.05 for n in result.grad_norms]
    assert log.layers == ["W_uh", "W_hh", "b_h", "W_hy", "b_y"]


def test_success_stops_the_run_at_the_first_evaluation_under_target() -> None:
    # A target error of 100% is met by any network: the run must stop at the first evaluation.
    result = train_run(replace(TINY, target_error=1.01))
    assert result.solved and result.steps_to_success == 10 and len(result.losses) == 10


def test_divergence_is_detected_and_stops_the_run() -> None:
    result = train_run(RunConfig(task="addition", length=10, steps=200, hidden=8, lr=1e6, eval_every=0))
    assert result.diverged and not result.solved
    assert not math.isfinite(result.losses[-1]) or not math.isfinite(result.grad_norms[-1])
    assert len(result.losses) < 200


def test_average_norm_rule_is_the_mean_of_the_unclipped_warmup() -> None:
    warm = train_run(replace(TINY, steps=25, eval_every=0))
    assert average_norm_threshold(TINY, warmup=25, factor=3.0) == pytest.approx(3 * np.mean(warm.grad_norms))


def test_spike_outcomes_count_spikes_and_the_jumps_after_them() -> None:
    norms = [1.0] * 40 + [50.0] + [1.0] * 39 + [50.0] + [1.0] * 39
    calm = [1.0] * 120  # the loss ignores the first spike ...
    assert spike_outcomes(norms, calm) == (2, 0)
    thrown = [1.0] * 81 + [5.0] * 39  # ... this one is thrown up after the second
    assert spike_outcomes(norms, thrown) == (2, 1)
    assert spike_outcomes([1.0] * 30 + [math.nan], [1.0] * 30 + [math.nan]) == (1, 1)


TINY_GRID = Grid(tasks=("addition",), lengths=(10,), lrs=(0.05,), seeds=3, steps=30, warmup=10, hidden=8,
                 eval_every=10, eval_size=50)  # fmt: skip


def test_grid_cell_pairs_every_seed_with_a_clipped_twin_at_the_warmup_rule() -> None:
    results = run_grid(TINY_GRID, workers=1)
    assert len(results) == 6
    free, clipped = results[:3], results[3:]
    assert all(r.config["threshold"] is None for r in free)
    for f, c in zip(free, clipped, strict=True):
        assert c.config["seed"] == f.config["seed"]
        assert c.config["threshold"] == pytest.approx(2.0 * np.mean(f.grad_norms[:10]), rel=1e-5)
        assert c.clipped_steps == sum(n > c.config["threshold"] for n in c.grad_norms)


def test_compare_counts_successes_with_wilson_intervals_and_fisher_p() -> None:
    results = run_grid(replace(TINY_GRID, seeds=2), workers=1)
    # Mark the clipped runs solved by hand to check the bookkeeping, not the training.
    forged = [r._replace(solved=True, steps_to_success=10) if r.config["threshold"] else r for r in results]
    [row] = compare(forged)
    assert (row.sgd.solved, row.clipped.solved) == (sum(r.solved for r in results[:2]), 2)
    assert row.clipped.rate.estimate == 1.0 and row.clipped.rate.low == pytest.approx(0.3424, abs=1e-4)
    assert 0 < row.p_value <= 1
    clipped_runs = results[2:]  # (lr, clipped, seed) order: the unclipped pair first
    assert row.sgd.clip_rate == 0
    assert row.clipped.clip_rate == sum(r.clipped_steps for r in clipped_runs) / sum(
        len(r.grad_norms) for r in clipped_runs
    )
    table = format_table([row])
    assert "2/2 [0.34, 1.00]" in table and "addition" in table


def test_compare_tests_the_final_errors_and_the_summary_carries_the_test(tmp_path) -> None:
    results = run_grid(replace(TINY_GRID, seeds=6), workers=1)
    # Forged final errors check the bookkeeping, not the training; SGD seed 2 diverged (error 1).
    sgd_errors, clip_errors = [0.7, 0.72, 0.05, 0.71, 0.74, 0.73], [0.1, 0.2, 0.6, 0.3, 0.4, 0.5]
    forged = [
        r._replace(solved=False, diverged=r.config["threshold"] is None and r.config["seed"] == 2,
                   final_error=(clip_errors if r.config["threshold"] else sgd_errors)[r.config["seed"]])
        for r in results
    ]  # fmt: skip
    [row] = compare(forged)
    sgd_as_scored = [0.7, 0.72, 1.0, 0.71, 0.74, 0.73]
    assert row.sgd.errors == tuple(sgd_as_scored) and row.clipped.errors == tuple(clip_errors)
    assert row.error_test.u == 36  # every SGD error is above every clipped one
    assert row.error_test == mann_whitney_u(sgd_as_scored, clip_errors)
    assert 0 < row.error_test.p_value < 0.01
    assert row.clipped.error == (0.35, 0.1, 0.6)  # n = 6: the 95% interval runs from the min to the max
    assert "0.35 [0.10, 0.60]" in format_table([row]) and "p err" in format_table([row])
    write_outputs([row], tmp_path, command="gradclip experiment pascanu", settings={}, seconds=1.0)
    [saved] = json.loads((tmp_path / "summary.json").read_text())["comparisons"]
    assert saved["error_test"] == {"u": 36.0, "p_value": row.error_test.p_value}
    assert saved["sgd"]["error"] == {"estimate": 0.725, "low": 0.7, "high": 1.0}
    assert saved["sgd"]["errors"] == sgd_as_scored
    markdown = (tmp_path / "summary.md").read_text()
    assert "| p err |" in markdown and f"| {row.error_test.p_value:.2g} |" in markdown
    assert "significantly lower with clipping in 1 of 1 settings" in markdown


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: RunConfig(task="adding"), "unknown task 'adding'"),
        (lambda: RunConfig(lr=0), "lr must be a finite number > 0, got 0"),
        (lambda: RunConfig(threshold=-1.0), "threshold must be a finite number > 0, got -1.0"),
        (lambda: RunConfig(init="xavier"), "unknown init 'xavier'; choose from"),
        (lambda: Grid(seeds=0), "seeds must be an integer >= 1, got 0"),
        (lambda: Grid(tasks=("adding",)), "unknown task 'adding'"),
        (lambda: run_grid(TINY_GRID, workers=0), "workers must be an integer >= 1, got 0"),
        (lambda: average_norm_threshold(TINY, warmup=0), "warmup must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_are_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_cli_rejects_a_bad_task_in_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["pascanu", "--tasks", "adding"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice: 'adding'" in err


def test_quick_preset_fills_only_the_unset_options() -> None:
    grid = cli._grid(cli.build_parser().parse_args(["pascanu", "--quick", "--seeds", "3"]))
    assert grid.seeds == 3 and grid.lengths == (20,) and grid.lrs == (0.05,) and grid.hidden == 50
    standard = cli._grid(cli.build_parser().parse_args(["pascanu", "--lengths", "60"]))
    assert standard.lengths == (60,) and standard.tasks == ("temporal-order", "addition", "multiplication")


def test_cliff_clipping_keeps_every_step_short_and_unclipped_descent_is_thrown_off(tmp_path) -> None:
    result = run_cliff(out=tmp_path, grid=41)
    free, clipped = result.trajectories["none"], result.trajectories["norm"]
    assert clipped.step_length.max() <= 0.1 * 1.0 + 1e-9  # lr · c
    assert free.step_length.max() > 10.0  # a step off the wall: the cliff of Fig. 6
    assert clipped.loss[-1] < free.loss[-1]
    assert result.path == tmp_path / "cliff.png" and result.path.stat().st_size > 10_000


@pytest.mark.slow
def test_pascanu_experiment_end_to_end_in_worker_processes(tmp_path, capsys) -> None:
    grid = "--tasks addition --lengths 10 12 --seeds 2 --steps 40 --hidden 8 --eval-every 20 --eval-size 50"
    options = "--warmup 10 --lrs 0.05 --workers 2 --quiet --log-runs"
    code = cli.main(["pascanu", *grid.split(), *options.split(), "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 seeds" in out and "SGD-C solved" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(c["sgd"]["length"], c["sgd"]["runs"], c["clipped"]["runs"]) for c in summary["comparisons"]] == [
        (10, 2, 2), (12, 2, 2)]  # fmt: skip
    assert summary["command"].startswith("gradclip experiment pascanu --tasks addition --lengths 10 12")
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 8 and "addition-L12-lr0.05-clip-s1" in runs
    for name in runs:
        log = read_run(tmp_path / "runs" / name / "grads.jsonl")
        assert 0 < log.steps <= 40
        assert (log.columns["gradclip/threshold"] > 0).all() == ("-clip-" in name)
    assert (tmp_path / "pascanu.png").stat().st_size > 10_000
    assert "| addition | 12 | 0.05 |" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_quick_preset_runs_and_writes_its_table(tmp_path, capsys) -> None:
    assert cli.main(["pascanu", "--quick", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "temporal-order  20  0.05" in out and "/20 [" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    [row] = summary["comparisons"]
    assert row["sgd"]["runs"] == row["clipped"]["runs"] == 20 and 0 <= row["p_value"] <= 1
    assert 0 <= row["error_test"]["p_value"] <= 1 and len(row["clipped"]["errors"]) == 20
    assert "p err" in out and "Mann-Whitney" in (tmp_path / "summary.md").read_text()
