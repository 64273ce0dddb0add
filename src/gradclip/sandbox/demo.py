"""The main job: the same run on embedded digits, with and without clipping, side by side.

A small MLP is trained on scikit-learn's digits with SGD + momentum. At one step a "bad batch"
arrives (its loss multiplied by ``spike``, as a corrupted or mislabelled batch would), which gives
one gradient thousands of times larger than usual. Without clipping that single step throws the
weights off a cliff; with global-norm clipping the step is capped at ``max_norm`` and training goes on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gradclip.clip import clip_grad_norm_
from gradclip.monitor import GradMonitor, GradMonitorWarning
from gradclip.sandbox.data import load_digits


@dataclass
class RunSummary:
    name: str
    final_loss: float  # test cross-entropy after the last epoch (nan if it diverged)
    accuracy: float  # test accuracy in [0, 1]
    max_grad_norm: float  # largest pre-clip gradient norm seen
    clip_count: int  # steps whose norm exceeded the threshold (and was clipped)
    steps: int
    nonfinite: bool  # whether the loss or a gradient ever became NaN/Inf


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 10))


def train_digits(
    *,
    max_norm: float | None,
    epochs: int = 8,
    batch_size: int = 32,
    lr: float = 0.1,
    spike: float = 1e4,
    spike_step: int = 100,
    seed: int = 0,
    log_dir: str | Path | None = None,
) -> RunSummary:
    """Train the MLP once; ``max_norm=None`` trains without clipping.

    With ``log_dir`` every step is recorded by a :class:`~gradclip.monitor.GradMonitor` (JSONL in
    ``log_dir``; ``gradclip report`` reads it). Its warnings are not shown: the report lists them.
    """
    data = load_digits(seed=seed)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    model = _mlp(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    name = "no clipping" if max_norm is None else f"clip norm {max_norm:g}"
    monitor = None if log_dir is None else GradMonitor(model, optimizer=opt, log_dir=log_dir, name=name)
    step, clips, max_norm_seen, nonfinite = 0, 0, 0.0, False
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            if step == spike_step:
                loss = loss * spike  # the bad batch
            opt.zero_grad()
            loss.backward()
            # An infinite threshold measures the same norms without clipping (scale exactly 1).
            c = math.inf if max_norm is None else max_norm
            stats = clip_grad_norm_(model.parameters(), c, return_stats=True)
            norm = float(stats.total_norm)
            clips += norm > c
            if monitor is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", GradMonitorWarning)
                    monitor.observe(stats, threshold=max_norm, loss=loss)
            nonfinite |= not (math.isfinite(norm) and math.isfinite(float(loss.detach())))
            max_norm_seen = max(max_norm_seen, norm) if math.isfinite(norm) else math.inf
            opt.step()
            step += 1
    with torch.no_grad():
        logits = model(x_test)
        test_loss = float(nn.functional.cross_entropy(logits, y_test))
        accuracy = float((logits.argmax(1) == y_test).float().mean())
    if monitor is not None:
        monitor.close()
    return RunSummary(name, test_loss, accuracy, max_norm_seen, clips, step, nonfinite)


def format_table(runs: list[RunSummary]) -> str:
    """A plain-text table, one column per run."""
    rows = [
        ("", [r.name for r in runs]),
        ("final test loss", [f"{r.final_loss:.4g}" for r in runs]),
        ("test accuracy", [f"{100 * r.accuracy:.1f}%" for r in runs]),
        ("largest grad norm", [f"{r.max_grad_norm:.4g}" for r in runs]),
        ("clipped steps", [f"{r.clip_count} / {r.steps}" for r in runs]),
        ("NaN/Inf seen", ["yes" if r.nonfinite else "no" for r in runs]),
    ]
    width = max(len(label) for label, _ in rows)
    cols = [max(len(vals[i]) for _, vals in rows) for i in range(len(runs))]
    lines = [
        f"{label:<{width}}  " + "  ".join(f"{v:>{c}}" for v, c in zip(vals, cols, strict=True))
        for label, vals in rows
    ]
    return "\n".join(lines)


def run_demo(
    *,
    max_norm: float = 1.0,
    epochs: int = 8,
    spike: float = 1e4,
    seed: int = 0,
    out_dir: str | Path | None = None,
) -> list[RunSummary]:
    """Train without and with clipping on the same data, same seed, same bad batch.

    With ``out_dir`` both runs are logged under it (``no-clipping/``, ``clipped/``) and a report
    comparing them is written to ``out_dir/report/report.html``.
    """
    dirs = [None, None] if out_dir is None else [Path(out_dir) / "no-clipping", Path(out_dir) / "clipped"]
    runs = [
        train_digits(max_norm=None, epochs=epochs, spike=spike, seed=seed, log_dir=dirs[0]),
        train_digits(max_norm=max_norm, epochs=epochs, spike=spike, seed=seed, log_dir=dirs[1]),
    ]
    if out_dir is not None:
        from gradclip.report import write_report

        write_report(
            dirs, Path(out_dir) / "report", title="gradclip demo: one bad batch, with and without clipping"
        )
    return runs
