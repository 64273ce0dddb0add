"""The transformer experiment: data, the causal GPT, schedule, spike counting, runs, the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from gradclip.sandbox.transformer import cli
from gradclip.sandbox.transformer.config import RunConfig
from gradclip.sandbox.transformer.data import batches, corpus, split, validation_batches
from gradclip.sandbox.transformer.experiment import summarise
from gradclip.sandbox.transformer.model import GPT, GPTConfig
from gradclip.sandbox.transformer.train import loss_spikes, lr_factor, train_run
from gradclip.sinks import read_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = RunConfig(steps=12, warmup=2, batch_size=4, block=16, d_model=16, n_head=2, n_layer=1, eval_batches=2)


def test_corpus_is_the_shipped_documentation_split_without_overlap() -> None:
    data = corpus()
    assert data.dtype.name == "uint8" and 400_000 < len(data) < 600_000
    assert b'The "try" statement specifies' in data.tobytes()  # help("try"), from pydoc_data.topics
    train, val = split(data)
    assert len(train) + len(val) == len(data) and len(val) == pytest.approx(0.1 * len(data), abs=1)
    x, y = next(batches(train, batch_size=3, block=8, seed=5))
    assert x.shape == y.shape == (3, 8) and torch.equal(x[:, 1:], y[:, :-1])  # targets: the next byte
    x2, _ = next(batches(train, batch_size=3, block=8, seed=5))
    assert torch.equal(x, x2)
    assert len(validation_batches(val, batch_size=2, block=8, count=3)) == 3


def test_gpt_is_causal_and_its_loss_is_the_mean_cross_entropy() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(block=12, d_model=16, n_head=2, n_layer=2))
    tokens = torch.randint(0, 256, (2, 12))
    changed = tokens.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 256
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])  # the future does not reach the past
    assert not torch.allclose(a[:, 7:], b[:, 7:])
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(a.reshape(-1, 256), changed.reshape(-1))
        assert float(model.loss(tokens, changed)) == pytest.approx(float(want), rel=1e-6)
    with pytest.raises(ValueError, match="at most block=12 positions, got 13"):
        model(torch.zeros(1, 13, dtype=torch.long))


def test_lr_warms_up_linearly_then_follows_a_cosine_to_the_floor() -> None:
    assert [lr_factor(s, warmup=4, steps=20) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, warmup=4, steps=20) == pytest.approx(1.0)
    assert lr_factor(12, warmup=4, steps=20) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(20, warmup=4, steps=20) == pytest.approx(0.1)


def test_loss_spikes_count_episodes_and_the_steps_until_recovery() -> None:
    calm = [3.0] * 50
    assert loss_spikes(calm) == (0, 0)
    one = [3.0] * 30 + [5.0, 4.0, 3.5, 2.9] + [2.9] * 16
    assert loss_spikes(one) == (1, 3)  # back at the median (3.0) three steps after the spike
    never = [3.0] * 30 + [5.0] * 20
    assert loss_spikes(never) == (1, 20)
    assert loss_spikes([3.0] * 25 + [math.nan] + [2.0] * 5) == (1, 1)


def test_runs_share_init_and_data_and_the_monitor_logs_every_step(tmp_path) -> None:
    free = train_run(TINY, log_dir=tmp_path / "none")
    clipped = train_run(replace(TINY, arm="fixed"), log_dir=tmp_path / "fixed")
    assert free.losses[0] == clipped.losses[0]  # same seed: same weights and first batch
    log = read_run(tmp_path / "fixed" / "grads.jsonl")
    assert log.steps == TINY.steps
    assert list(log.columns["gradclip/clipped"] == 1) == [n > 1.0 for n in clipped.grad_norms]
    assert clipped.clipped_steps == sum(n > 1.0 for n in clipped.grad_norms) and free.clipped_steps == 0
    rows = summarise([free, clipped])
    assert [r.arm for r in rows] == ["none", "fixed"]
    assert rows[1].vs_none.estimate == pytest.approx(clipped.val_loss - free.val_loss)


BAD = [
    ({"arm": "clip"}, "unknown arm 'clip'"),
    ({"warmup": 12}, "warmup must be an integer in"),
    ({"d_model": 15}, "d_model must be a multiple of n_head"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_settings_are_named(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TINY, **change)


@pytest.mark.slow
def test_quick_preset_runs_writes_its_table_and_report_reads_the_runs(tmp_path, capsys) -> None:
    from gradclip.cli import main as gradclip_main

    assert gradclip_main(["experiment", "transformer", "--quick", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "vs none (paired)" in out and "percentile" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["arm"] for r in summary["rows"]] == ["none", "fixed", "zscore", "percentile", "agc", "skip"]
    assert all(r["runs"] == 2 for r in summary["rows"])
    assert (tmp_path / "transformer.png").stat().st_size > 10_000
    assert "| 1 | agc | 2 |" in (tmp_path / "summary.md").read_text()
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 12
    assert gradclip_main(["report", *map(str, runs[:2]), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.html").exists()


def test_cli_rejects_an_unknown_arm_in_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--arms", "clip"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice: 'clip'" in err


def test_skip_arm_drops_the_update_of_a_spiking_step_and_counts_it(tmp_path) -> None:
    # After a warm-up of calm steps, a step whose norm is far above the rolling mean is skipped:
    # the spike rule sees norms 100x the usual once the loss is scaled up at one step.
    from gradclip.skip import SpikeSkip
    from gradclip.step import ClipStep

    torch.manual_seed(0)
    model = GPT(GPTConfig(block=8, d_model=16, n_head=2, n_layer=1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = ClipStep(None, skip_spikes=SpikeSkip(k=6.0, warmup=5))
    x = torch.randint(0, 256, (4, 8))
    for i in range(12):
        opt.zero_grad()
        (model.loss(x, x) * (1e4 if i == 10 else 1.0)).backward()
        before = [p.detach().clone() for p in model.parameters()]
        result = step.step(opt)
        unchanged = all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
        assert bool(result.skipped) == (i == 10) == unchanged
    run = train_run(replace(TINY, arm="skip"), log_dir=tmp_path)
    assert read_run(tmp_path / "grads.jsonl").steps == TINY.steps and run.clipped_steps == 0
