"""The main job: the same CNN run on embedded digits, with and without clipping, side by side.

A small CNN (`small_cnn`) is trained by
[`ConvTrainer`][gradclip.sandbox.convolutional.trainer.ConvTrainer] on scikit-learn's digits with SGD +
Nesterov momentum. At one step a "bad batch" arrives (its loss multiplied by ``spike``, as a
corrupted or mislabelled batch would), which gives one gradient thousands of times larger than
usual. Without clipping that single step throws the weights off a cliff; with global-norm clipping
the step is capped at ``max_norm`` and training goes on. Both runs are recorded by a
[`GradMonitor`][gradclip.monitor.GradMonitor], and a report compares them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from gradclip.monitor import GradMonitor, GradMonitorWarning
from gradclip.sandbox.convolutional import ConvTrainer, build_model, load_digits


@dataclass
class RunSummary:
    name: str
    final_loss: float  # test cross-entropy after the last epoch (nan if it diverged)
    accuracy: float  # test accuracy in [0, 1]
    max_grad_norm: float  # largest pre-clip gradient norm seen (inf if one was not finite)
    clip_count: int  # steps whose norm exceeded the threshold (and was clipped)
    steps: int
    nonfinite: bool  # whether the loss or a gradient ever became NaN/Inf


def train_digits(
    *,
    max_norm: float | None,
    epochs: int = 5,
    batch_size: int = 32,
    lr: float = 0.05,
    spike: float = 1e4,
    spike_step: int = 60,
    seed: int = 0,
    log_dir: str | Path | None = None,
) -> RunSummary:
    """Train the small CNN once on 8x8 digits; ``max_norm=None`` trains without clipping.

    With ``log_dir`` every step is recorded by a [`GradMonitor`][gradclip.monitor.GradMonitor] (JSONL in
    ``log_dir``; ``gradclip report`` reads it). Its warnings are not shown: the report lists them.
    """
    data = load_digits(size=8, seed=seed)
    torch.manual_seed(seed)
    net = build_model("small_cnn", in_channels=1, num_classes=10)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True)
    name = "no clipping" if max_norm is None else f"clip norm {max_norm:g}"
    monitor = None
    if log_dir is not None:
        # The demo owns its output directory: running it again replaces its previous runs.
        monitor = GradMonitor(
            net, optimizer=opt, log_dir=log_dir, max_norm=max_norm, name=name, overwrite=True
        )
    trainer = ConvTrainer(
        net, opt, max_norm, monitor=monitor, spike=(spike_step, spike), seed=seed, progress=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradMonitorWarning)  # the report lists them
        history = trainer.fit(data, epochs, batch_size)
        if monitor is not None:
            monitor.close()
    norms = history["grad_norm"]
    finite = [n for n in norms if math.isfinite(n)]
    nonfinite = len(finite) < len(norms) or not all(map(math.isfinite, history["step_loss"]))
    return RunSummary(
        name,
        history["val_loss"][-1],
        history["val_accuracy"][-1],
        max(finite) if not nonfinite else math.inf,
        int(sum(history["clipped"])),
        trainer.step_count,
        nonfinite,
    )


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
    max_norm: float = 5.0,  # just above the clean run's largest norm (about 4.9): clips the spike only
    epochs: int = 5,
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

        title = "gradclip demo: one bad batch, with and without clipping"
        results = {r.name: {"test loss": r.final_loss, "test accuracy": r.accuracy} for r in runs}
        logged = [d for d in dirs if d is not None]  # both runs: out_dir is set
        write_report(logged, Path(out_dir) / "report", title=title, results=results)
    return runs
