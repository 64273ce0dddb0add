"""Where the gradient monitor's records go: JSONL (the run's history), CSV, TensorBoard; and the reader.

A run directory holds ``grads.jsonl``: one JSON object per line, each with a ``"type"``:

* ``header`` (first line): ``schema`` (``"gradclip.monitor"``), ``version`` (`SCHEMA_VERSION`),
  ``name`` (run name), ``layers`` (per-layer names, in the order of ``gradclip/layer_norm``), ``created``
  (ISO 8601 time), ``config`` (the monitor's warning levels);
* ``step``: ``step`` (int, from 0), ``time`` (seconds since the monitor started), and the step's
  quantities under their `TAGS` names: ``gradclip/pre_clip_norm``, ``gradclip/post_clip_norm`` (null
  when the clipper does not say), ``gradclip/threshold`` (null without clipping), ``gradclip/clipped``,
  ``gradclip/finite``, ``gradclip/skipped`` (bools), ``gradclip/loss``, ``gradclip/lr`` (null when not
  given), ``gradclip/layer_norm`` (`LAYER_TAG`: the per-layer norms in the header's order, or null);
* ``warning``: ``step``, ``kind`` (``clip_rate``, ``spike``, ``vanishing``, ``misuse``), ``message``;
* ``resume``: ``step`` (where a resumed run continues), ``dropped`` (records the killed run had
  written past its checkpoint, removed from the file);
* ``summary`` (last line, written by ``close()``): the monitor's summary and threshold advice.

One tag scheme: each quantity has one name, ``gradclip/<quantity>``, used as the JSONL field, the
CSV column, the TensorBoard tag and the key in the framework integrations' and Keras's logs
(`gradclip.step.METRICS` names the step's counters the same way), so gradclip never writes a bare
``loss`` or ``lr`` that would collide with the user's own. Logs of schema version 1 named the
step fields bare (``total_norm``, ``layer_norms``, ...); [`read_run`][gradclip.sinks.read_run] reads
them under the current names, and a resumed version 1 log is rewritten in the current schema.

JSON has no NaN or infinity, so non-finite floats are written as the strings ``"nan"``, ``"inf"``
and ``"-inf"`` ([`read_run`][gradclip.sinks.read_run] turns them back into floats). Each record is written
with a single ``write`` of the whole line and flushed at once, so a crash loses at most the record being
written, and [`read_run`][gradclip.sinks.read_run] skips a last line that has no newline or does not parse.
Flushing hands the line to the operating system (it survives the process dying, not a power cut: no ``fsync``,
which would cost milliseconds per step).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from gradclip._io import atomic_write, check_path

__all__ = [
    "COLUMNS",
    "JSONL_NAME",
    "LAYER_TAG",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TAGS",
    "CsvSink",
    "JsonlSink",
    "RunLog",
    "Sink",
    "TensorBoardSink",
    "make_sink",
    "read_run",
]

SCHEMA = "gradclip.monitor"
SCHEMA_VERSION = 2  # 2: the step fields are named by TAGS (version 1: bare names, see _V1_NAMES)
JSONL_NAME = "grads.jsonl"
CSV_NAME = "grads.csv"
# The one tag scheme: the name of each scalar quantity of a step, in file order (JSONL fields, CSV
# columns, RunLog columns, TensorBoard tags, the integrations' log keys).
TAGS = (
    "gradclip/pre_clip_norm",
    "gradclip/post_clip_norm",
    "gradclip/threshold",
    "gradclip/clipped",
    "gradclip/finite",
    "gradclip/skipped",
    "gradclip/loss",
    "gradclip/lr",
)
LAYER_TAG = "gradclip/layer_norm"  # JSONL: the list of per-layer norms; CSV, TensorBoard: LAYER_TAG/<layer>
COLUMNS = ("step", *TAGS)  # the scalar fields of a step record (CSV columns, RunLog arrays)
HISTOGRAM_TAG = "gradclip/log10_layer_norms"
WARNING_TAG = "gradclip/warnings/"  # + the warning's kind
# Version 1 wrote the same fields, in the same order, under bare names.
_V1_FIELDS = ("total_norm", "post_clip_norm", "threshold", "clipped", "finite", "skipped", "loss", "lr")
_V1_NAMES = {**dict(zip(_V1_FIELDS, TAGS, strict=True)), "layer_norms": LAYER_TAG}

_NONFINITE_TOKEN = re.compile(r"-?Infinity|NaN")
_TOKEN_TEXT = {"NaN": '"nan"', "Infinity": '"inf"', "-Infinity": '"-inf"'}
_TEXT_FLOAT = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class Sink(Protocol):
    """Receives a run's header once, then step and warning records, then the summary.

    Examples:
        >>> from gradclip.monitor import GradMonitor
        >>> class PrintSink:  # any object with these four methods is a sink
        ...     def open(self, header):
        ...         print("open")
        ...     def write_step(self, record):
        ...         print("step", record["step"])
        ...     def write_event(self, event):
        ...         pass
        ...     def close(self, summary):
        ...         print("close")
        >>> monitor = GradMonitor(sinks=[PrintSink()])
        >>> monitor.record(1.0)
        open
        step 0
        >>> monitor.record(2.0)
        step 1
        >>> _ = monitor.close()
        close
    """

    def open(self, header: Mapping[str, Any]) -> None: ...
    def write_step(self, record: Mapping[str, Any]) -> None: ...
    def write_event(self, event: Mapping[str, Any]) -> None: ...
    def close(self, summary: Mapping[str, Any] | None) -> None: ...


def _write_bytes(f: IO[bytes], text: str) -> None:
    f.write(text.encode("utf-8"))


def _finite_json(value: Any) -> Any:
    """``value`` with non-finite floats replaced by their text form (for rare, free-text records)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Mapping):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value


def _step_line(record: Mapping[str, Any]) -> str:
    """One step record as a JSON line; the fast path of the per-step cost.

    Step records hold only fixed lower-case keys, numbers, bools and null, so the tokens ``NaN`` and
    ``Infinity`` that ``json.dumps`` emits can only be values: replacing them by their string forms
    is exact, and costs nothing on the (usual) finite step.
    """
    text = json.dumps(record, separators=(",", ":"))
    if "N" in text or "I" in text:
        text = _NONFINITE_TOKEN.sub(lambda m: _TOKEN_TEXT[m.group()], text)
    return text + "\n"


class JsonlSink:
    """Appends records to ``RUN_DIR/grads.jsonl``, one flushed ``write`` per record.

    Examples:
        >>> from gradclip.monitor import GradMonitor
        >>> from gradclip.sinks import JsonlSink, read_run
        >>> sink = JsonlSink("runs/jsonl-example")
        >>> monitor = GradMonitor(sinks=[sink])  # GradMonitor(log_dir=...) adds one itself
        >>> for norm in (1.0, 2.0):
        ...     monitor.record(norm, threshold=1.5)
        >>> _ = monitor.close()
        >>> read_run(sink.path).steps
        2
    """

    def __init__(self, log_dir: str | Path) -> None:
        self.path = check_path(log_dir, "log_dir") / JSONL_NAME
        self._file: io.TextIOWrapper | None = None

    def open(self, header: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")
        self._write(json.dumps(_finite_json(header)) + "\n")

    def resume(self, header: Mapping[str, Any], step: int) -> None:
        """Continue the log at ``step``: keep what came before, drop the rest, mark the resumption.

        The kept part is rewritten atomically (a crash during the resume leaves the old file), so
        the log reads as one run whose records past the checkpoint were never written twice.
        """
        dropped = 0
        if not self.path.is_file():
            self.open(header)
        else:
            kept, dropped = _records_before(self.path, step)
            atomic_write(self.path, lambda f: _write_bytes(f, "".join(kept)))
            self._file = self.path.open("a", encoding="utf-8")
        self.write_event({"type": "resume", "step": step, "dropped": dropped})

    def _write(self, line: str) -> None:
        if self._file is None:
            raise RuntimeError(f"{self.path}: the sink is not open (open() first, and not after close())")
        self._file.write(line)
        self._file.flush()

    def write_step(self, record: Mapping[str, Any]) -> None:
        self._write(_step_line(record))

    def write_event(self, event: Mapping[str, Any]) -> None:
        self._write(json.dumps(_finite_json(event)) + "\n")

    def close(self, summary: Mapping[str, Any] | None) -> None:
        if self._file is None:
            return
        if summary is not None:
            self.write_event(summary)
        self._file.close()
        self._file = None


def _current_names(record: dict[str, Any]) -> dict[str, Any]:
    """A version 1 step record with its fields renamed to the current `TAGS` (values untouched)."""
    return {_V1_NAMES.get(key, key): value for key, value in record.items()}


def _records_before(path: Path, step: int) -> tuple[list[str], int]:
    """The lines of a JSONL log written before ``step`` (header included) and how many came after.

    A version 1 log comes back in the current schema (its header's version raised, its step
    fields renamed), so that the records appended after it read as one run.
    """
    lines = path.read_text(encoding="utf-8").split("\n")
    lines = lines[:-1]  # "" after the last newline, or an interrupted write: dropped either way
    header = json.loads(lines[0]) if lines else None
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        raise ValueError(f"{path}: the first line is not a {SCHEMA} header; cannot continue this run")
    _check_header(header, path)  # a version this gradclip does not know is not continued either
    old = header.get("version", 0) < SCHEMA_VERSION
    kept, dropped = [json.dumps({**header, "version": SCHEMA_VERSION}) + "\n" if old else lines[0] + "\n"], 0
    for line in lines[1:]:
        record = json.loads(line)
        if record.get("type") == "summary" or record.get("step", step) >= step:
            dropped += 1
        elif old and record.get("type") == "step":
            kept.append(json.dumps(_current_names(record), separators=(",", ":")) + "\n")
        else:
            kept.append(line + "\n")
    return kept, dropped


def _csv_header(header: Mapping[str, Any]) -> list[str]:
    return [*COLUMNS, *(f"{LAYER_TAG}/{name}" for name in header["layers"])]


class CsvSink:
    """Writes ``RUN_DIR/grads.csv``: the `COLUMNS`, then one ``gradclip/layer_norm/<layer>`` column per layer.

    Examples:
        >>> from gradclip.monitor import GradMonitor
        >>> from gradclip.sinks import CsvSink
        >>> sink = CsvSink("runs/csv-example")
        >>> monitor = GradMonitor(sinks=[sink])  # or GradMonitor(log_dir=..., sinks=["jsonl", "csv"])
        >>> for norm in (1.0, 2.0):
        ...     monitor.record(norm, threshold=1.5)
        >>> _ = monitor.close()
        >>> len(sink.path.read_text().splitlines())  # the column names, then one row per step
        3
    """

    def __init__(self, log_dir: str | Path) -> None:
        self.path = check_path(log_dir, "log_dir") / CSV_NAME
        self._file: io.TextIOWrapper | None = None
        self._writer: Any = None

    def open(self, header: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(_csv_header(header))
        self._file.flush()

    def resume(self, header: Mapping[str, Any], step: int) -> None:
        """Keep the rows before ``step`` (rewritten atomically, under the current names), then append."""
        if not self.path.is_file():
            self.open(header)
            return
        with self.path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        # The columns keep their order across schema versions: only the header row may need renaming.
        kept = [_csv_header(header)] + [r for r in rows[1:] if r and int(r[0]) < step]
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerows(kept)
        atomic_write(self.path, lambda f: _write_bytes(f, buffer.getvalue()))
        self._file = self.path.open("a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)

    def write_step(self, record: Mapping[str, Any]) -> None:
        if self._file is None:
            raise RuntimeError(f"{self.path}: the sink is not open (open() first, and not after close())")
        row = ["" if record[c] is None else record[c] for c in COLUMNS]
        self._writer.writerow(row + list(record[LAYER_TAG] or ()))
        self._file.flush()

    def write_event(self, event: Mapping[str, Any]) -> None:
        pass  # warnings live in the JSONL; a CSV row is one step

    def close(self, summary: Mapping[str, Any] | None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class TensorBoardSink:
    """Scalars under `TAGS` and ``gradclip/layer_norm/<layer>``, a histogram of layer norms.

    Uses ``torch.utils.tensorboard.SummaryWriter`` (torch and tensorboard are imported on open).
    One scalar per layer per step; the histogram of log10 layer norms every ``histogram_every`` steps.
    On resume the writer starts with ``purge_step``: TensorBoard then discards the events a killed
    run wrote past the checkpoint, as the JSONL sink drops its records.

    Examples:
        >>> from pathlib import Path
        >>> from gradclip.monitor import GradMonitor
        >>> from gradclip.sinks import TensorBoardSink
        >>> monitor = GradMonitor(sinks=[TensorBoardSink("runs/tb-example")])
        >>> monitor.record(1.0, threshold=1.5, layer_norms=[0.6, 0.8])
        >>> _ = monitor.close()
        >>> any(p.name.startswith("events.out.tfevents") for p in Path("runs/tb-example").iterdir())
        True
    """

    def __init__(self, log_dir: str | Path, *, histogram_every: int = 100) -> None:
        if isinstance(histogram_every, bool) or not isinstance(histogram_every, int) or histogram_every < 1:
            raise ValueError(f"histogram_every must be a whole number >= 1, got {histogram_every!r}")
        self.log_dir = check_path(log_dir, "log_dir")
        self.histogram_every = histogram_every
        self._writer: Any = None
        self._layers: list[str] = []

    def open(self, header: Mapping[str, Any], *, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ModuleNotFoundError as err:
            raise ImportError(
                "the TensorBoard sink needs torch and tensorboard; install them with "
                "`pip install 'gradclip[torch,monitor]'` or leave 'tensorboard' out of sinks"
            ) from err
        self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)
        self._layers = list(header["layers"])

    def resume(self, header: Mapping[str, Any], step: int) -> None:
        self.open(header, purge_step=step)

    def write_step(self, record: Mapping[str, Any]) -> None:
        w, step = self._writer, record["step"]
        for tag in TAGS:
            if record.get(tag) is not None:
                w.add_scalar(tag, float(record[tag]), step)
        norms = record[LAYER_TAG]
        if norms:
            for name, value in zip(self._layers, norms, strict=True):
                w.add_scalar(f"{LAYER_TAG}/{name}", value, step)
            if step % self.histogram_every == 0:
                with np.errstate(divide="ignore"):  # a zero norm is -inf, dropped below
                    logs = np.log10(np.asarray(norms, dtype=np.float64))
                if np.isfinite(logs).any():
                    w.add_histogram(HISTOGRAM_TAG, logs[np.isfinite(logs)], step)

    def write_event(self, event: Mapping[str, Any]) -> None:
        if event.get("type") == "warning":
            self._writer.add_text(WARNING_TAG + event["kind"], event["message"], event["step"])

    def close(self, summary: Mapping[str, Any] | None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


_SINKS: dict[str, Callable[[str | Path], Sink]] = {
    "jsonl": JsonlSink,
    "csv": CsvSink,
    "tensorboard": TensorBoardSink,
}


def make_sink(kind: str, log_dir: str | Path) -> Sink:
    """The sink called ``kind`` (``'jsonl'``, ``'csv'`` or ``'tensorboard'``) writing into ``log_dir``.

    Examples:
        >>> from gradclip.sinks import make_sink
        >>> type(make_sink("csv", "runs/example")).__name__
        'CsvSink'
        >>> make_sink("parquet", "runs/example")
        Traceback (most recent call last):
            ...
        ValueError: kind must be a sink name: unknown sink 'parquet'...
    """
    if not isinstance(kind, str) or kind not in _SINKS:
        raise ValueError(f"kind must be a sink name: unknown sink {kind!r:.60}; choose from {sorted(_SINKS)}")
    return _SINKS[kind](log_dir)


@dataclass
class RunLog:
    """One run read back from its JSONL: columns as arrays, missing values as NaN.

    ``columns`` maps each name in `COLUMNS` to a float64 array of length ``steps`` (bools as
    0/1); ``layer_norms`` is ``(steps, layers)`` or None when no step recorded them; ``truncated``
    says whether an unfinished last line was skipped (the run crashed or is still being written).

    Examples:
        >>> from gradclip.monitor import GradMonitor
        >>> from gradclip.sinks import read_run
        >>> with GradMonitor(log_dir="runs/runlog-example", names=["w", "b"], overwrite=True) as monitor:
        ...     for norm in (1.0, 2.0, 3.0):
        ...         monitor.record(norm, threshold=2.5, layer_norms=[norm, 0.1])
        >>> run = read_run("runs/runlog-example")
        >>> run.name, run.steps, run.layers, run.truncated
        ('runlog-example', 3, ['w', 'b'], False)
        >>> run.columns["step"], run.layer_norms.shape
        (array([0., 1., 2.]), (3, 2))
    """

    header: dict[str, Any]
    columns: dict[str, np.ndarray]
    layer_norms: np.ndarray | None
    warnings: list[dict[str, Any]]
    summary: dict[str, Any] | None
    truncated: bool

    @property
    def name(self) -> str:
        return str(self.header.get("name") or "run")

    @property
    def layers(self) -> list[str]:
        return list(self.header.get("layers", []))

    @property
    def steps(self) -> int:
        return len(self.columns["step"])


def _number(value: Any, where: str) -> float:
    """A step field as a float: a number, null (NaN) or one of the texts "nan", "inf", "-inf"."""
    if value is None:
        return math.nan
    if isinstance(value, str) and value in _TEXT_FLOAT:
        return _TEXT_FLOAT[value]
    if isinstance(value, (int, float)):  # bools are ints: clipped/finite/skipped are 0/1
        return float(value)
    raise ValueError(f"{where} must be a number, null, 'nan', 'inf' or '-inf', got {value!r:.60}")


def _parse_lines(path: Path) -> tuple[list[dict[str, Any]], bool]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text at byte {err.start}; the file is damaged") from None
    lines = text.split("\n")
    # A complete file ends with "\n", leaving "" last; anything else is an interrupted write.
    tail, lines = lines[-1], lines[:-1]
    records, truncated = [], tail != ""
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a JSON record ({err.msg}); the file is damaged") from None
        except RecursionError:
            raise ValueError(f"{path}:{number}: JSON nested too deeply; the file is damaged") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: a record must be a JSON object, got {type(record).__name__}")
        records.append(record)
    return records, truncated


def _step_row(record: dict[str, Any], where: str, n_layers: int) -> tuple[list[float], list[float] | None]:
    row = [_number(record.get(c), f"{where}: {c!r}") for c in COLUMNS]
    norms = record.get(LAYER_TAG)
    if norms is None:
        return row, None
    if not isinstance(norms, list) or len(norms) != n_layers:
        raise ValueError(f"{where}: {LAYER_TAG!r} must be a list of {n_layers} numbers (one per layer)")
    return row, [_number(v, f"{where}: {LAYER_TAG!r}") for v in norms]


MAX_DEPTH = 32  # nesting of a header, warning or summary record; the monitor writes at most 4


def _check_depth(record: Any, where: str) -> None:
    """Refuse records nested deeper than `MAX_DEPTH` (readers recurse into them)."""
    level, depth = [record], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise ValueError(
                f"{where}: a record nested more than {MAX_DEPTH} levels deep; the file is damaged"
            )
        level = [
            v
            for x in level
            if isinstance(x, (dict, list))
            for v in (x.values() if isinstance(x, dict) else x)
        ]


def _check_header(header: dict[str, Any], path: Path) -> None:
    if header.get("schema") != SCHEMA:
        raise ValueError(f"{path}: the first line is not a {SCHEMA} header")
    version, layers = header.get("version", 0), header.get("layers", [])
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{path}:1: the header's 'version' must be a whole number, got {version!r:.40}")
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema version {version} is newer than this gradclip reads "
            f"({SCHEMA_VERSION}); upgrade gradclip"
        )
    if not isinstance(layers, list) or not all(isinstance(name, str) for name in layers):
        raise ValueError(f"{path}:1: the header's 'layers' must be a list of names")
    if not isinstance(header.get("config", {}), dict):
        raise ValueError(f"{path}:1: the header's 'config' must be an object")


def _check_warning(record: dict[str, Any], where: str) -> None:
    for key, kind in (("message", str), ("kind", str)):
        if not isinstance(record.get(key), kind):
            raise ValueError(f"{where}: a warning needs a text {key!r}, got {record.get(key)!r:.40}")


def read_run(path: str | Path) -> RunLog:
    """Read a run directory (or its ``grads.jsonl``) written by [`JsonlSink`][gradclip.sinks.JsonlSink].

    The columns are named by `COLUMNS` whichever schema version wrote the log (version 1's bare
    field names are read as their `TAGS`).

    Raises:
        FileNotFoundError: no log at ``path``.
        ValueError: a damaged log (a line that is not a JSON object, a field of the wrong type, a
            header from elsewhere); the message gives the file, the line and what is wrong.

    Examples:
        >>> from gradclip.monitor import GradMonitor
        >>> from gradclip.sinks import read_run
        >>> with GradMonitor(log_dir="runs/read-example", overwrite=True) as monitor:
        ...     monitor.record(1.0, threshold=0.5)
        >>> read_run("runs/read-example").summary is not None  # closed: the summary record is there
        True
        >>> read_run("runs/no-such-run")
        Traceback (most recent call last):
            ...
        FileNotFoundError: no gradient log at runs/no-such-run...
    """
    path = check_path(path)
    if path.is_dir():
        path = path / JSONL_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no gradient log at {path} (a run directory holds {JSONL_NAME})")
    records, truncated = _parse_lines(path)
    if not records:
        raise ValueError(f"{path}: the first line is not a {SCHEMA} header")
    header = records[0]
    _check_depth(header, f"{path}:1")
    _check_header(header, path)
    n_layers = len(header.get("layers", []))
    old = header.get("version", 0) < SCHEMA_VERSION
    rows, layer_rows, warns, summaries = [], [], [], []
    for number, record in enumerate(records[1:], start=2):
        kind, where = record.get("type"), f"{path}:{number}"
        if kind != "step":
            _check_depth(record, where)
        if kind == "step":
            row, norms = _step_row(_current_names(record) if old else record, where, n_layers)
            rows.append(row)
            layer_rows.append(norms)
        elif kind == "warning":
            _check_warning(record, where)
            warns.append(record)
        elif kind == "summary":
            summaries.append(record)
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(COLUMNS))
    columns = {c: table[:, i].copy() for i, c in enumerate(COLUMNS)}
    layer_norms = None
    if n_layers and any(layer_rows):
        nan_row = [math.nan] * n_layers
        layer_norms = np.array([r or nan_row for r in layer_rows], dtype=np.float64).reshape(
            len(rows), n_layers
        )
    return RunLog(header, columns, layer_norms, warns, summaries[-1] if summaries else None, truncated)
