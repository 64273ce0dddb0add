"""GradClipCallback in a real transformers Trainer (CPU, offline, a tiny random GPT-2)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

# Nothing may reach the Hub: the model is built from a config and the data are random tokens.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

transformers = pytest.importorskip("transformers")

from gradclip.integrations import METRICS  # noqa: E402 (after the importorskip)
from gradclip.integrations.huggingface import GradClipCallback  # noqa: E402
from gradclip.sinks import read_run  # noqa: E402

pytestmark = [
    pytest.mark.slow,  # every test builds a Trainer (or a Python that imports torch)
    # The monitor warns about the NaN steps and spikes these tests inject on purpose; the tests read
    # those warnings back from the run log (and pytest.warns still sees them where a test asks).
    pytest.mark.filterwarnings("ignore::gradclip.diagnosis.GradMonitorWarning"),
]

STEPS = 6


class Tokens(torch.utils.data.Dataset):
    """Random token sequences; the labels are the inputs (GPT-2 shifts them itself)."""

    def __init__(self, n: int = 4 * STEPS, length: int = 16) -> None:
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 64, (n, length), generator=gen)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        vocab_size=64,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,  # no dropout: two forwards give equal gradients
    )
    return transformers.GPT2LMHeadModel(config)


def make_trainer(tmp_path, model, callbacks=(), **overrides) -> transformers.Trainer:
    options = {
        "output_dir": str(tmp_path),
        "max_steps": STEPS,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        "max_grad_norm": 0.0,
        **overrides,
    }
    args = transformers.TrainingArguments(**options)
    return transformers.Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=list(callbacks))


def step_logs(trainer: transformers.Trainer) -> list[dict[str, float]]:
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def test_clips_like_max_grad_norm_and_logs_the_fields(tmp_path):
    model, ref = gpt2(), gpt2()
    cb = GradClipCallback(0.05)  # far below the norms of a fresh model: every step is clipped
    ours = make_trainer(tmp_path / "ours", model, [cb])
    ours.train()
    make_trainer(tmp_path / "ref", ref, max_grad_norm=0.05).train()  # the Trainer's own clipping

    logs = step_logs(ours)
    assert len(logs) == STEPS
    for entry in logs:
        assert set(METRICS) <= set(entry)
        # The Trainer measured the unclipped norm (max_grad_norm=0) just before our hook.
        assert entry["gradclip/pre_clip_norm"] == pytest.approx(entry["grad_norm"], rel=1e-5)
        assert entry["gradclip/post_clip_norm"] == pytest.approx(0.05, rel=1e-4)
        assert entry["gradclip/clip_rate"] == 1.0 and entry["gradclip/skipped_steps"] == 0.0
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_nonfinite_step_is_skipped(tmp_path):
    model = gpt2()
    backwards = []

    def poison(grad: torch.Tensor) -> torch.Tensor:
        backwards.append(None)
        return grad * math.nan if len(backwards) == 3 else grad  # the third step's gradient is NaN

    model.transformer.wte.weight.register_hook(poison)
    trainer = make_trainer(tmp_path, model, [GradClipCallback(1.0)])
    trainer.train()

    skipped = [entry["gradclip/skipped_steps"] for entry in step_logs(trainer)]
    assert skipped == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(float(s["step"]) == STEPS - 1 for s in trainer.optimizer.state.values())


@pytest.mark.parametrize("unscaled_by_trainer", [True, False])
def test_fp16_gradients_are_clipped_unscaled(tmp_path, unscaled_by_trainer):
    # A real accelerate optimizer with a real GradScaler on the CPU (the Trainer builds no scaler
    # there). transformers 5 unscales in _get_grad_norm before the event; older versions did not.
    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer

    Accelerator(cpu=True)  # the optimizer wrapper reads accelerate's (process-wide) state
    model, ref = gpt2(), gpt2()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    opt = AcceleratedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), scaler=scaler)
    ids = Tokens()[0]["input_ids"][None]
    scaler.scale(model(input_ids=ids, labels=ids).loss).backward()
    if unscaled_by_trainer:
        scaler.unscale_(opt.optimizer)
    cb = GradClipCallback(1e-3)
    args = transformers.TrainingArguments(str(tmp_path), max_grad_norm=0.0, use_cpu=True, report_to="none")
    state, control = transformers.TrainerState(), transformers.TrainerControl()
    cb.on_pre_optimizer_step(args, state, control, model=model, optimizer=opt)

    ref(input_ids=ids, labels=ids).loss.backward()
    true_norm = float(torch.nn.utils.get_total_norm([p.grad for p in ref.parameters()]))
    assert float(cb.step.last.total_norm) == pytest.approx(true_norm, rel=1e-5)
    assert float(cb.step.last.post_clip_norm) == pytest.approx(1e-3, rel=1e-3)


def test_max_grad_norm_conflict_is_reported_when_the_trainer_is_built(tmp_path):
    with pytest.raises(ValueError, match=r"TrainingArguments\(max_grad_norm=1.0\).*pass max_grad_norm=0"):
        make_trainer(tmp_path, gpt2(), [GradClipCallback(1.0)], max_grad_norm=1.0)


def test_max_grad_norm_conflict_is_reported_for_a_callback_added_later(tmp_path):
    trainer = make_trainer(tmp_path, gpt2(), max_grad_norm=1.0)
    trainer.add_callback(GradClipCallback(1.0))
    with pytest.raises(ValueError, match=r"max_grad_norm=1.0"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_missing_transformers_names_the_extra():
    code = textwrap.dedent(
        """
        import importlib.abc, sys
        class NoTransformers(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "transformers" or name.startswith("transformers."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, NoTransformers())
        try:
            import gradclip.integrations.huggingface
        except ImportError as err:
            assert "gradclip[hf]" in str(err), err
            print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok", out.stderr


def poison_at(model: torch.nn.Module, steps: dict[int, float]) -> None:
    """Multiply the gradient of the embedding by ``steps[k]`` at the k-th backward (k from 0)."""
    seen = []

    def hook(grad: torch.Tensor) -> torch.Tensor:
        seen.append(None)
        return grad * steps.get(len(seen) - 1, 1.0)

    model.transformer.wte.weight.register_hook(hook)


def test_a_run_with_a_spike_and_a_nan_reaches_tensorboard_and_leaves_a_run_log(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gradclip import NormClipper, ZScore
    from gradclip.monitor import MonitorConfig

    model = gpt2()
    spike, nan = 8, 10
    poison_at(model, {spike: 1e4, nan: math.nan})
    config = MonitorConfig(min_history=5, warmup=4)
    cb = GradClipCallback(NormClipper(ZScore(warmup=4)), monitor_config=config)
    # Added the ordinary way, after the reporters the Trainer registers itself; the TensorBoard
    # reporter writes under <output_dir>/runs.
    trainer = make_trainer(tmp_path, model, [cb], max_steps=12, report_to="tensorboard")
    trainer.train()

    run_dir = tmp_path / "gradclip"
    log = read_run(run_dir)
    # Layers in the optimizer's order (the Trainer groups decayed and not-decayed parameters).
    assert log.steps == 12 and sorted(log.layers) == sorted(n for n, _ in model.named_parameters())
    assert log.layer_norms.shape == (12, len(log.layers))
    assert log.columns["gradclip/skipped"].tolist() == [float(i == nan) for i in range(12)]
    assert log.columns["gradclip/clipped"][spike] == 1
    assert [w["step"] for w in log.warnings if w["kind"] == "spike"] == [spike, nan]
    out = subprocess.run([sys.executable, "-m", "gradclip", "report", str(run_dir)], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert re.search(r"skipped steps\s*│\s*1 ", out.stdout) and (run_dir / "report" / "report.html").is_file()
    # Every step's training loss, as the Trainer logged it (logging_steps=1), and the last one in the report.
    logged = [entry["loss"] for entry in step_logs(trainer)]
    np.testing.assert_allclose(log.columns["gradclip/loss"], logged, rtol=1e-5)
    assert re.search(rf"last loss\s*│\s*{logged[-1]:.4g} ", out.stdout), out.stdout
    from gradclip.explorer.runs import load_run  # the explorer's runs view reads the same log

    assert load_run(tmp_path, "gradclip")["timeline"]["gradclip/loss"] == pytest.approx(logged, rel=1e-5)

    events = [p.parent for p in (tmp_path / "runs").rglob("events.out.tfevents.*")]
    acc = EventAccumulator(str(events[0]), size_guidance={"scalars": 0})
    acc.Reload()
    norms = acc.Scalars("train/gradclip/pre_clip_norm")  # the Trainer's reporter prefixes train/
    assert [e.step for e in norms] == list(range(1, 13))
    assert norms[spike].value == pytest.approx(log.columns["gradclip/pre_clip_norm"][spike], rel=1e-5)
    assert "train/gradclip/skipped_steps" in acc.Tags()["scalars"]


@pytest.mark.parametrize("sums", [True, False], ids=["num_items_in_batch", "per-batch-mean"])
def test_the_logged_loss_of_an_accumulated_step_is_the_trainers(tmp_path, sums):
    cb = GradClipCallback(1.0)
    trainer = make_trainer(tmp_path, gpt2(), [cb], max_steps=3, gradient_accumulation_steps=2)
    # GPT-2 takes num_items_in_batch (each micro-batch's loss is its share of the step's sum); without
    # it the Trainer averages per-batch means. The Trainer's own logged loss is right in both cases.
    trainer.model_accepts_loss_kwargs = sums
    trainer.train()
    logged = [entry["loss"] for entry in step_logs(trainer)]
    assert len(logged) == 3
    np.testing.assert_allclose(read_run(tmp_path / "gradclip").columns["gradclip/loss"], logged, rtol=1e-5)


def test_resume_from_checkpoint_continues_the_statistics_and_the_run_log(tmp_path):
    from gradclip import NormClipper, ZScore

    def run(out, resume=None):
        model = gpt2()
        cb = GradClipCallback(NormClipper(ZScore(warmup=3)))
        trainer = make_trainer(out, model, [cb], max_steps=12, save_strategy="steps", save_steps=4)
        trainer.train(resume_from_checkpoint=resume)
        return cb

    straight = run(tmp_path / "a")
    run(tmp_path / "b")  # runs on past checkpoint-8: those four steps are the tail a crash leaves
    saved = torch.load(tmp_path / "b" / "checkpoint-8" / "gradclip.pt", weights_only=True)
    assert saved["step"]["steps"] == 8 and saved["monitor"]["state"]["counters"]["step"] == 8
    # The checkpoint copied elsewhere, and none left in output_dir at that step: any path resumes.
    moved = tmp_path / "elsewhere" / "my-checkpoint"
    shutil.copytree(tmp_path / "b" / "checkpoint-8", moved)
    for folder in (tmp_path / "b").glob("checkpoint-*"):
        shutil.rmtree(folder)
    resumed = run(tmp_path / "b", resume=str(moved))

    a, b = straight.step.state_dict(), resumed.step.state_dict()
    assert b["steps"] == a["steps"] == 12
    assert b["clipper"]["policy"]["state"] == pytest.approx(a["clipper"]["policy"]["state"], rel=1e-5)
    log, ref = read_run(tmp_path / "b" / "gradclip"), read_run(tmp_path / "a" / "gradclip")
    assert log.columns["step"].tolist() == list(range(12))  # one run, no step twice
    np.testing.assert_allclose(
        log.columns["gradclip/pre_clip_norm"], ref.columns["gradclip/pre_clip_norm"], rtol=1e-5
    )
    lines = (tmp_path / "b" / "gradclip" / "grads.jsonl").read_text().splitlines()
    resumes = [json.loads(line) for line in lines if '"resume"' in line]
    assert resumes == [{"type": "resume", "step": 8, "dropped": 5}]  # 4 steps and the first summary


def test_resume_from_checkpoint_true_continues_from_the_last_checkpoint(tmp_path):
    from gradclip import NormClipper, ZScore

    def run(resume=None):
        cb = GradClipCallback(NormClipper(ZScore(warmup=2)))
        trainer = make_trainer(tmp_path, gpt2(), [cb], max_steps=6, save_strategy="steps", save_steps=3)
        trainer.train(resume_from_checkpoint=resume)
        return cb

    first = run()
    shutil.rmtree(tmp_path / "checkpoint-6")  # as if killed before its last save: checkpoint-3 is the last
    resumed = run(resume=True)
    assert resumed.step.state_dict()["steps"] == first.step.state_dict()["steps"] == 6
    policy = resumed.step.state_dict()["clipper"]["policy"]["state"]
    assert policy == pytest.approx(first.step.state_dict()["clipper"]["policy"]["state"], rel=1e-5)
    log = read_run(tmp_path / "gradclip")
    assert log.columns["step"].tolist() == list(range(6))
    resumes = [json.loads(line) for line in (tmp_path / "gradclip" / "grads.jsonl").read_text().splitlines()]
    assert [r for r in resumes if r["type"] == "resume"] == [{"type": "resume", "step": 3, "dropped": 4}]
