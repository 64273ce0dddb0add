"""The explorer's "your runs" view: find the monitor's JSONL logs under one directory and summarise them.

Only files named ``grads.jsonl`` found by walking the runs directory (symbolic links not followed,
at most `MAX_DEPTH` levels, `MAX_RUNS` runs) can be read, and a run is asked for by its id
(its directory relative to the runs directory) which must be one of those found: a path the listing
did not produce is refused, so ``..``, absolute paths and links out of the directory cannot reach a file.
Reading goes through [`gradclip.sinks.read_run`][gradclip.sinks.read_run], which skips an unfinished last line
(a run still being written, or one that crashed). Long runs are reduced to at most `MAX_POINTS` buckets;
each keeps the largest norm in it, so a one-step spike stays visible.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from gradclip.explorer.params import BadRequest
from gradclip.monitor import Advice, threshold_advice
from gradclip.sinks import JSONL_NAME, read_run

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_POINTS", "MAX_RUNS", "TIMELINE", "list_runs", "load_run"]

MAX_DEPTH = 4  # runs/<experiment>/<seed>/<variant>/grads.jsonl is as deep as the sandboxes write
MAX_RUNS = 500
MAX_BYTES = 256 * 2**20  # a run read whole into memory; 256 MiB is about two million steps
MAX_POINTS = 2000  # more than a plot can show side by side
MAX_WARNINGS = 200
# The timeline's series, named as the log's fields (gradclip.sinks.TAGS).
TIMELINE = ("step", "gradclip/pre_clip_norm", "gradclip/threshold", "gradclip/clipped", "gradclip/loss")


def list_runs(root: Path) -> list[dict[str, Any]]:
    """The runs under ``root``, newest first: ``id`` (relative directory), ``bytes``, ``modified``."""
    root = Path(root)
    if not root.is_dir():
        return []
    base = root.resolve()
    found: list[dict[str, Any]] = []
    for here, dirs, files in os.walk(base, followlinks=False):
        depth = len(Path(here).relative_to(base).parts)
        if depth >= MAX_DEPTH:
            dirs.clear()  # prune: do not descend further
        dirs.sort()
        if JSONL_NAME not in files:
            continue
        path = Path(here) / JSONL_NAME
        if path.is_symlink() or not path.is_file():
            continue  # a link could point anywhere; only real files inside the directory count
        stat = path.stat()
        run_id = Path(here).relative_to(base).as_posix()
        found.append({"id": run_id, "bytes": stat.st_size, "modified": stat.st_mtime})
        if len(found) >= MAX_RUNS:
            break
    found.sort(key=lambda r: (-r["modified"], r["id"]))
    return found


def _finite(values: np.ndarray) -> list[float | None]:
    """JSON has no NaN or infinity: those become null."""
    return [x if math.isfinite(x) else None for x in values.tolist()]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _timeline(columns: dict[str, np.ndarray]) -> tuple[dict[str, list[Any]], int]:
    """Per bucket of ``size`` steps, under the log's own field names: the first step, the largest
    pre-clip norm, the last threshold, the fraction of steps clipped, the mean loss."""
    n = len(columns["step"])
    size = max(1, math.ceil(n / MAX_POINTS))
    starts = np.arange(0, n, size)
    ends = np.minimum(starts + size, n) - 1
    if n == 0:
        return {k: [] for k in TIMELINE}, size
    counts = np.diff(np.append(starts, n))
    loss = columns["gradclip/loss"]
    ok = np.isfinite(loss)
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-NaN bucket is a NaN (null) mean
        mean_loss = np.add.reduceat(np.where(ok, loss, 0.0), starts) / np.add.reduceat(ok, starts)
    clipped = np.add.reduceat(np.nan_to_num(columns["gradclip/clipped"]), starts) / counts
    values = (
        columns["step"][starts],
        np.fmax.reduceat(columns["gradclip/pre_clip_norm"], starts),
        columns["gradclip/threshold"][ends],
        clipped,
        mean_loss,
    )
    return {k: _finite(v) for k, v in zip(TIMELINE, values, strict=True)}, size


def _advice(summary: dict[str, Any] | None, norms: np.ndarray, warmup: int) -> dict[str, Any] | None:
    advice = None
    if summary and isinstance(summary.get("advice"), dict):
        try:
            a = summary["advice"]
            advice = Advice(float(a["low"]), float(a["high"]), float(a["mean"]), int(a["samples"]))
        except (KeyError, TypeError, ValueError):
            advice = None  # a summary from another version: recompute below
    if advice is None:
        advice = threshold_advice(norms[warmup:].tolist())
    return None if advice is None else {**_clean(advice._asdict()), "text": advice.text()}


def _divergence(columns: dict[str, np.ndarray]) -> str | None:
    """Why the run counts as diverged (its advice is then unreliable), or None.

    Diverged: a non-finite gradient norm or an infinite loss was logged, or the mean loss over the last
    tenth of the steps is more than 10x the mean over the first tenth (the run got worse, not better).
    A NaN loss counts as not logged: that is how a step without a loss is read back.
    """
    loss, norm = columns["gradclip/loss"], columns["gradclip/pre_clip_norm"]
    n = len(loss)
    bad = np.flatnonzero(~np.isfinite(norm))
    if len(bad):
        return f"its gradient norm stopped being a finite number at step {int(columns['step'][bad[0]])}"
    if np.isinf(loss).any():
        return f"its loss overflowed at step {int(columns['step'][np.flatnonzero(np.isinf(loss))[0]])}"
    k = max(1, n // 10)
    first, last = loss[:k][np.isfinite(loss[:k])], loss[-k:][np.isfinite(loss[-k:])]
    if n >= 10 and len(first) and len(last) and first.mean() > 0:
        if last.mean() > 10 * first.mean():
            return f"its loss rose from {first.mean():.3g} (first {k} steps) to {last.mean():.3g} (last {k})"
    return None


def load_run(root: Path, run_id: object) -> dict[str, Any]:
    """One run as JSON-ready data: timeline, clip rate, warnings, summary and threshold advice."""
    if not isinstance(run_id, str):
        raise BadRequest(f"run must be a run id (text), got {run_id!r}")
    known = {r["id"]: r for r in list_runs(root)}
    if run_id not in known:
        listed = sorted(known)[:10]
        raise BadRequest(f"unknown run {run_id!r}; runs under the runs directory include {listed}")
    if known[run_id]["bytes"] > MAX_BYTES:
        raise BadRequest(f"run {run_id!r} is {known[run_id]['bytes']} bytes; at most {MAX_BYTES} are read")
    try:
        run = read_run(Path(root).resolve() / run_id / JSONL_NAME)
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as err:
        # Valid JSON with the wrong shapes (a hand-edited or foreign file) lands here too.
        raise BadRequest(f"run {run_id!r} cannot be read: {err}") from None
    cols = run.columns
    steps = run.steps
    clip_rate = float(np.nansum(cols["gradclip/clipped"]) / steps) if steps else 0.0
    timeline, bucket = _timeline(cols)
    config = run.header.get("config")
    warmup = config.get("warmup") if isinstance(config, dict) else None
    warmup = warmup if isinstance(warmup, int) and warmup >= 0 else 100  # the monitor's default
    diverged = _divergence(cols)
    return {
        "id": run_id,
        "name": run.name,
        "modified": known[run_id]["modified"],
        "finished": run.summary is not None,
        "diverged": diverged,
        "layers": run.layers,
        "steps": steps,
        "truncated": run.truncated,
        "bucket": bucket,
        "timeline": timeline,
        "clip_rate": clip_rate,
        "warnings": _clean(run.warnings[:MAX_WARNINGS]),
        "warning_count": len(run.warnings),
        "summary": _clean(run.summary),
        "advice": _advice(run.summary, cols["gradclip/pre_clip_norm"], warmup),
    }
