"""Per-run chunk metrics (``run_###/chunk_metrics_###.csv``) and their idempotent ingest into the ledger.

The metrics file is a plain CSV with the header :data:`~ptylib.ici.model.CHUNK_METRICS_HEADER`
(shifts in mm as ``repr(float)``, ``indexed`` 1/0, ``wrmsd`` in px, blank when not indexed and
``inf`` for an explicit failure). Columns may come in any order; ``n_peaks``, ``n_reflections``
and ``reason`` may be missing (0, 0, ""); unknown extra columns are ignored.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import re
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

from ptylib.ici.model import (
    CHUNK_METRICS_HEADER,
    ChunkMetric,
    EventHistory,
    EventKey,
    IciInputError,
    LedgerRow,
)
from ptylib.ici.runroot.commit import commit_files
from ptylib.ici.runroot.layout import (
    LEDGER_NAME,
    STATE_NAME,
    chunk_metrics_path,
    run_directory,
)
from ptylib.ici.runroot.ledger import (
    gc_paused,
    parse_finite_mm,
    parse_ledger,
    parse_wrmsd_px,
)
from ptylib.ici.runroot.sidecar import (
    RunState,
    format_ledger_and_state,
    parse_state_histories,
)
from ptylib.io.atomic import atomic_write_text
from ptylib.io.lock import holds_run_root_lock

REQUIRED_COLUMNS = CHUNK_METRICS_HEADER[:6]
_INDEXED = {"1": True, "0": False}
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


# ----------------------------------------------------------------------------- writing


def format_chunk_metrics(metrics: Sequence[ChunkMetric]) -> str:
    """Chunk metrics as CSV text (LF line endings, reasons quoted by the csv module)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CHUNK_METRICS_HEADER)
    with gc_paused():
        writer.writerows(_metric_fields(metric) for metric in metrics)
    return buffer.getvalue()


def write_chunk_metrics(path: Path, metrics: Sequence[ChunkMetric]) -> None:
    """Write chunk metrics to ``path`` atomically."""
    atomic_write_text(path, format_chunk_metrics(metrics))


def _metric_fields(metric: ChunkMetric) -> list[str]:
    """One CSV row; NaN wRMSD is written blank, unreadable paths are rejected."""
    path = metric.key.h5_path
    if not path or path != path.strip() or _CONTROL_RE.search(path):
        raise ValueError(f"h5 path {path!r} cannot be written to chunk metrics")
    wrmsd = metric.wrmsd
    return [
        metric.key.h5_path,
        str(int(metric.key.event)),
        repr(float(metric.det_shift_x_mm)),
        repr(float(metric.det_shift_y_mm)),
        "1" if metric.indexed else "0",
        "" if wrmsd is None or math.isnan(wrmsd) else repr(float(wrmsd)),
        str(int(metric.n_peaks)),
        str(int(metric.n_reflections)),
        metric.reason,
    ]


# ----------------------------------------------------------------------------- reading


def read_chunk_metrics(path: Path) -> list[ChunkMetric]:
    """Read and validate a chunk metrics file; errors name the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise IciInputError(str(path), "missing chunk metrics file (the indexing step of this run did not finish)")
    return parse_chunk_metrics(path.read_bytes(), str(path))


def parse_chunk_metrics(data: bytes, name: str) -> list[ChunkMetric]:
    """Parse chunk metrics bytes; ``name`` (the file) is used in error messages."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        prefix = data[:exc.start].decode("utf-8-sig").split("\n")  # valid up to the first bad byte
        raise IciInputError(name, "bytes that are not UTF-8 text (binary or corrupted line)", line=len(prefix),
                            field_name=_column_at(prefix)) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        with gc_paused():
            columns, n_header = _read_header(reader, name)
            return _read_rows(reader, columns, n_header, name)
    except csv.Error as exc:
        raise IciInputError(name, f"unreadable CSV ({exc})", line=reader.line_num, field_name="row") from None


def _column_at(prefix_lines: list[str]) -> str:
    """Name of the column where the text ``prefix_lines`` ends (by counting commas on its last line)."""
    if len(prefix_lines) == 1:
        return "header"
    header = [column.strip() for column in next(csv.reader([prefix_lines[0]]))]
    column = prefix_lines[-1].count(",")
    return header[column] if column < len(header) else "row"


def _read_header(reader: Any, name: str) -> tuple[dict[str, int], int]:
    """Positions of the known columns (required ones must be present) and the header's length."""
    header = next(reader, None)
    if header is None:
        raise IciInputError(name, "empty file: expected the header " + ",".join(CHUNK_METRICS_HEADER),
                            line=1, field_name="header")
    names = [column.strip() for column in header]
    for column in CHUNK_METRICS_HEADER:
        if names.count(column) > 1:
            raise IciInputError(name, f"column '{column}' appears twice in the header", line=reader.line_num,
                                field_name=column)
    for column in REQUIRED_COLUMNS:
        if column not in names:
            raise IciInputError(name, f"header lacks column '{column}' (expected {','.join(CHUNK_METRICS_HEADER)})",
                                line=reader.line_num, field_name=column)
    return {column: names.index(column) for column in CHUNK_METRICS_HEADER if column in names}, len(names)


def _read_rows(reader: Any, columns: dict[str, int], n_header: int, name: str) -> list[ChunkMetric]:
    """All data rows; duplicate events and rows longer than the header are rejected."""
    n_columns = max(columns.values()) + 1
    by_position = sorted(columns, key=columns.__getitem__)
    metrics: list[ChunkMetric] = []
    seen: dict[EventKey, int] = {}
    for fields in reader:
        line = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) < n_columns:
            missing = next(column for column in by_position if columns[column] >= len(fields))
            raise IciInputError(name, f"truncated line: {len(fields)} values, '{missing}' is missing",
                                line=line, field_name=missing)
        if len(fields) > n_header:
            raise IciInputError(name, f"{len(fields)} values but the header has {n_header} columns "
                                "(an unquoted comma?)", line=line, field_name="row")
        metric = _parse_metric(fields, columns, name, line)
        if metric.key in seen:
            raise IciInputError(name, f"event {metric.key.label()} appears twice (first at line {seen[metric.key]})",
                                line=line, field_name="event")
        seen[metric.key] = line
        metrics.append(metric)
    return metrics


def _parse_metric(fields: list[str], columns: dict[str, int], name: str, line: int) -> ChunkMetric:
    """One validated row."""
    def value(column: str) -> str:
        return fields[columns[column]].strip() if column in columns else ""

    h5_path = value("h5_path")
    if not h5_path or _CONTROL_RE.search(h5_path):
        raise IciInputError(name, f"'{h5_path}' is not a usable HDF5 path", line=line, field_name="h5_path")
    indexed = _INDEXED.get(value("indexed"))
    if indexed is None:
        raise IciInputError(name, f"'{value('indexed')}' is not 0 or 1", line=line, field_name="indexed")
    return ChunkMetric(
        EventKey(h5_path, _count(value("event"), name, line, "event", required=True)),
        parse_finite_mm(value("det_shift_x_mm"), name, line, "det_shift_x_mm"),
        parse_finite_mm(value("det_shift_y_mm"), name, line, "det_shift_y_mm"),
        indexed,
        parse_wrmsd_px(value("wrmsd"), name, line),
        _count(value("n_peaks"), name, line, "n_peaks"),
        _count(value("n_reflections"), name, line, "n_reflections"),
        fields[columns["reason"]] if "reason" in columns else "",
    )


def _count(text: str, name: str, line: int, field_name: str, *, required: bool = False) -> int:
    """A non-negative integer; blank means 0 unless ``required``."""
    if not text and not required:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise IciInputError(name, f"'{text}' is not a non-negative integer", line=line, field_name=field_name)
    return int(text)


# ----------------------------------------------------------------------------- ingest


def ingest_chunk_metrics(histories: dict[EventKey, EventHistory], metrics: Sequence[ChunkMetric], run_n: int) -> int:
    """Add one ledger row per metric for run ``run_n``; returns how many rows were added.

    New events get a section at the end, in metrics order. A row whose (event, run_n) already
    exists is skipped, so ingesting the same metrics twice adds nothing. ``indexed`` is sticky
    (ever indexed up to this run); ``wrmsd`` is kept only when the run indexed (finite = success,
    inf = failure). Rows of DONE events are recorded too.
    """
    added = 0
    by_run = attrgetter("run_n")
    for metric in metrics:
        history = histories.get(metric.key)
        if history is None:
            history = histories[metric.key] = EventHistory(metric.key)
        rows = history.rows
        position = bisect.bisect_left(rows, run_n, key=by_run)
        if position < len(rows) and rows[position].run_n == run_n:
            continue
        row = _ledger_row(metric, run_n, any(old.indexed for old in rows[:position]))
        rows.insert(position, row)
        if row.succeeded:
            for later in rows[position + 1:]:
                later.indexed, later.text = True, None
        added += 1
    return added


def _ledger_row(metric: ChunkMetric, run_n: int, indexed_before: bool) -> LedgerRow:
    """The ledger row of one metric (no proposal yet)."""
    wrmsd = metric.wrmsd if metric.indexed else None
    if wrmsd is not None and math.isnan(wrmsd):
        wrmsd = None
    success = wrmsd is not None and math.isfinite(wrmsd)
    return LedgerRow(run_n, metric.det_shift_x_mm, metric.det_shift_y_mm, indexed_before or success, wrmsd)


@holds_run_root_lock("ici ingest")
def ingest_run(run_root: Path, run_n: int) -> int:
    """Ingest ``run_###/chunk_metrics_###.csv`` into the run root's ledger and sidecar; returns rows added.

    Everything is read and validated before anything is written; files whose content does not
    change are not rewritten, and if writing the sidecar fails the old ledger is put back. Holds the
    run root's lock.
    """
    run_root = Path(run_root)
    ledger_path, state_path = run_root / LEDGER_NAME, run_root / STATE_NAME
    old_ledger, old_state = _read_optional(ledger_path), _read_optional(state_path)
    with gc_paused():
        histories = parse_ledger(old_ledger, str(ledger_path)) if old_ledger is not None else {}
        previous = RunState() if old_state is None else parse_state_histories(old_state, str(state_path))
        metrics = read_chunk_metrics(chunk_metrics_path(run_directory(run_root, run_n), run_n))
        added = ingest_chunk_metrics(histories, metrics, run_n)
        previous.last_global_run = max(previous.last_global_run, run_n)
        ledger_text, state_text = format_ledger_and_state(histories, previous)
    commit_files([(ledger_path, old_ledger, ledger_text), (state_path, old_state, state_text)])
    return added


def _read_optional(path: Path) -> bytes | None:
    """File bytes, or None when it does not exist."""
    return path.read_bytes() if path.exists() else None
