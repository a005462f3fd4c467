"""Read and write the grouped ICI ledger ``image_run_log.csv`` (shifts in mm, wRMSD in px).

Our form (what :func:`format_ledger` writes, as the original tools do)::

    run_n,det_shift_x_mm,det_shift_y_mm,indexed,wrmsd,next_dx_mm,next_dy_mm,next_reason
    #/abs/path/file.h5 event 12
    0,0.0,0.0,0,,0.0123,-0.0045,step1_hillmap_wrmsd_sample
    1,0.0123,-0.0045,1,0.8731,done,done,done_stability
    #/abs/path/file.h5 event 13
    0,0.0,0.0,0,,,,

- The header appears once, at the top; each event is a section line ``#<h5 path> event <N>``
  followed by its rows in run order. No blank line separates sections; lines end in LF. The
  path is kept as written (the writer of the key makes it absolute).
- ``run_n`` is an integer; shifts and wRMSD are ``repr(float)`` (shortest round trip); ``indexed``
  is the sticky "ever indexed" flag ``1``/``0``; ``wrmsd`` is blank when the run did not index
  and ``inf`` for an explicit failure; ``next_dx_mm,next_dy_mm`` are floats, ``done,done`` for DONE
  or blank while no proposal exists (a reason on a row with blank next columns is kept as
  ``Proposal(None, None, reason)``); ``next_reason`` is quoted (csv rules) when it holds ``,``
  or ``"``.

For files in this form ``format_ledger(read_ledger(f)) == f`` byte for byte, and reading a written
ledger gives back the in-memory ledger (a NaN wRMSD is written blank, i.e. read back as None).
Files of the original tools round-trip too while nothing changes: a header after every section line
is kept, and every row keeps the text it was read with (fixed-precision numbers such as
``0.001000``) until a field of it changes (a proposal patched, the sticky flag set); changed and new
rows are written in our form. LF line ends, no BOM.

The reader also accepts: a header after each section line (the top header may then be missing),
a UTF-8 BOM, CRLF line endings, blank lines, blank or ``nan`` wRMSD (not indexed), ``DONE`` in any
case, ``done,done`` with a blank reason (older tools; read as reason ``done``), rows out of run
order within a section (sorted on reading) and old ledgers whose unquoted reason contains commas
(the extra columns are joined back with ``,``). Anything else that is malformed raises
:class:`~ptylib.ici.model.IciInputError` naming the file, line and field.

Simple rows are parsed column-wise (one ``float`` map per column); a file with any odd row is
parsed row by row, which also finds the first bad line for the error message. Writing is
column-wise too (:func:`format_rows`), and the sidecar writer reuses the formatted numbers.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import gc
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, count, repeat
from operator import attrgetter, le
from pathlib import Path
from typing import NoReturn

from ptylib.ici.model import (
    DONE_TOKEN,
    LEDGER_HEADER,
    RUN_N_OF,
    SHIFT_X_OF,
    SHIFT_Y_OF,
    WRMSD_OF,
    EventHistory,
    EventKey,
    IciInputError,
    LedgerRow,
    Proposal,
)

HEADER_LINE = ",".join(LEDGER_HEADER)
_N_COLUMNS = len(LEDGER_HEADER)
_SECTION = "section"
_HEADER = "header"
# Control characters other than tab and LF (a CR left after CRLF -> LF is one) mark a binary line.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_INDEXED = {"1": True, "0": False}
_NOT_A_NUMBER = frozenset(("", DONE_TOKEN))  # next_dx_mm of a row without a proposal, or of a DONE row
# First characters of lines that are not plain data rows (sections, headers, blank lines).
_SPECIAL_FIRST = frozenset("#rR \t")
# Every byte except the control characters; what is left after deleting these marks a binary file.
_TEXT_BYTES = bytes(byte for byte in range(256) if byte in (9, 10, 13) or 32 <= byte != 127)
_INDEXED_OF = attrgetter("indexed")
_PROPOSAL_OF = attrgetter("proposal")
_TEXT_OF = attrgetter("text")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building 10^5+ small objects (it rescans them all repeatedly)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ----------------------------------------------------------------------------- reading


def read_ledger(path: Path) -> dict[EventKey, EventHistory]:
    """Read a grouped ledger into event histories in section order; a missing file gives ``{}``."""
    path = Path(path)
    if not path.exists():
        return {}
    return parse_ledger(path.read_bytes(), str(path))


def parse_ledger(data: bytes, name: str) -> dict[EventKey, EventHistory]:
    """Parse ledger bytes; ``name`` (the file) is used in error messages.

    An empty file (0 bytes) is an error, as the original tools treat it: it is what a crash while
    writing leaves, not a ledger without events (that one holds the header).
    """
    if not data:
        raise IciInputError(name, "empty file (0 bytes): a ledger holds at least its header line; remove the file "
                            "to start the run root afresh", line=1, field_name=_HEADER)
    text = _decode(data, name)
    with gc_paused():
        sections, row_lines, row_line_nos, starts = _scan(text, name)
        rows = _parse_rows_fast(row_lines)
        if rows is None:
            rows = [_parse_row(line, name, line_no) for line, line_no in zip(row_lines, row_line_nos, strict=True)]
    _check_run_order(sections, rows, starts, row_line_nos, name)
    for index, history in enumerate(sections):
        history.rows = rows[starts[index]:starts[index + 1]]
    return {history.key: history for history in sections}


def _decode(data: bytes, name: str) -> str:
    """Decode UTF-8 (BOM allowed), turn CRLF into LF and reject binary content with its line and field."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        prefix = data[:exc.start].decode("utf-8-sig")  # valid up to the first bad byte
        line_no, field_name = _locate(prefix, len(prefix))
        raise IciInputError(name, "bytes that are not UTF-8 text (binary or corrupted line)",
                            line=line_no, field_name=field_name) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    bad = _CONTROL_RE.search(text) if data.translate(None, _TEXT_BYTES) or "\r" in text else None
    if bad is not None:
        line_no, field_name = _locate(text, bad.start())
        raise IciInputError(name, f"control character {bad.group()!r} (binary or corrupted line)",
                            line=line_no, field_name=field_name)
    return text


def _locate(text: str, offset: int) -> tuple[int, str]:
    """Line number (1-based) and field name of a character offset in ledger text."""
    line_start = text.rfind("\n", 0, offset) + 1
    line_no = text.count("\n", 0, offset) + 1
    if text.startswith("#", line_start):
        return line_no, _SECTION
    column = text.count(",", line_start, offset)
    return line_no, LEDGER_HEADER[min(column, _N_COLUMNS - 1)]


def _scan(text: str, name: str) -> tuple[list[EventHistory], list[str], list[int], list[int]]:
    """Split text into sections and data rows.

    Returns the sections, the row lines with their line numbers, and ``starts`` such that the
    rows of section ``i`` are ``rows[starts[i]:starts[i + 1]]``. Only the lines that may not be
    data rows (section, header, blank, starting with whitespace) are visited one by one; the runs
    of data rows between them are taken as slices.
    """
    lines = text.split("\n")
    special = [index for index, line in enumerate(lines) if not line or line[0] in _SPECIAL_FIRST]
    special.append(len(lines))
    sections: list[EventHistory] = []
    first_line: dict[EventKey, int] = {}
    row_lines: list[str] = []
    row_line_nos: list[int] = []
    starts: list[int] = []
    has_top_header = False
    pending_header: int | None = None  # line of a section that still needs its own header
    previous = 0
    for index in special:
        if index > previous:  # lines[previous:index] are data rows
            if not sections or pending_header is not None:
                _check_rows_allowed(sections, pending_header, name, previous + 1)
            row_lines += lines[previous:index]
            row_line_nos += range(previous + 1, index + 1)
        previous = index + 1
        if index == len(lines):
            break
        line, line_no = lines[index], index + 1
        if line[:1] == "#":
            if pending_header is not None:
                _check_pending_header(pending_header, name)
            key = _parse_section(line, name, line_no)
            first = first_line.setdefault(key, line_no)
            if first != line_no:
                raise IciInputError(name, f"section {key.h5_path} event {key.event} appears twice "
                                    f"(first at line {first})", line=line_no, field_name=_SECTION)
            sections.append(EventHistory(key, header_above=has_top_header and not sections))
            starts.append(len(row_lines))
            pending_header = None if has_top_header else line_no
        elif not line or line.isspace():
            continue
        elif line[:5].lower() == "run_n":
            _check_header(line, name, line_no)
            has_top_header = has_top_header or not sections
            if sections:
                sections[-1].own_header = True
            pending_header = None
        else:  # a data row starting with whitespace or 'r'
            _check_rows_allowed(sections, pending_header, name, line_no)
            row_lines.append(line)
            row_line_nos.append(line_no)
    _check_pending_header(pending_header, name)
    starts.append(len(row_lines))
    return sections, row_lines, row_line_nos, starts


def _check_rows_allowed(sections: list[EventHistory], pending_header: int | None, name: str, line_no: int) -> None:
    """Raise when data rows come before any section or in a section still lacking its header."""
    if not sections:
        raise IciInputError(name, "a data row before any section line '#<h5 path> event <N>'",
                            line=line_no, field_name=_SECTION)
    _check_pending_header(pending_header, name)


def _check_pending_header(pending_header: int | None, name: str) -> None:
    """Raise when a section had no header line and the file has none at the top."""
    if pending_header is not None:
        raise IciInputError(name, f"missing header: the file has none at the top, so each section needs "
                            f"'{HEADER_LINE}' right after its section line", line=pending_header, field_name=_HEADER)


def _check_header(line: str, name: str, line_no: int) -> None:
    """Validate a header line against the expected column names."""
    columns = [column.strip() for column in line.split(",")]
    for index, expected in enumerate(LEDGER_HEADER):
        found = columns[index] if index < len(columns) else "<missing>"
        if found != expected:
            raise IciInputError(name, f"wrong header: column {index + 1} is '{found}', expected '{expected}' "
                                f"(header '{HEADER_LINE}')", line=line_no, field_name=expected)
    if len(columns) > _N_COLUMNS:
        raise IciInputError(name, f"wrong header: unexpected extra column '{columns[_N_COLUMNS]}'",
                            line=line_no, field_name=_HEADER)


def _parse_section(line: str, name: str, line_no: int) -> EventKey:
    """Parse ``#<h5 path> event <N>``."""
    parts = line[1:].rsplit(None, 2)
    if len(parts) != 3 or parts[1] != "event" or not parts[0].strip():
        raise IciInputError(name, f"malformed section line {line!r}: expected '#<h5 path> event <N>'",
                            line=line_no, field_name=_SECTION)
    event = parts[2]
    if not (event.isascii() and event.isdigit()):
        raise IciInputError(name, f"event '{event}' in section line is not a non-negative integer",
                            line=line_no, field_name=_SECTION)
    return EventKey(parts[0].strip(), int(event))


def _parse_rows_fast(lines: Sequence[str]) -> list[LedgerRow] | None:
    """Parse rows column-wise when every row is in our simple form; None when any row is not."""
    if not lines:
        return []
    joined = ",".join(lines)
    if set(map(str.count, lines, repeat(","))) != {_N_COLUMNS - 1} or '"' in joined:
        return None
    flat = joined.split(",")
    runs_t, xs_t, ys_t, indexed_t, wrmsd_t, dx_t, dy_t, reason_t = (
        flat[column::_N_COLUMNS] for column in range(_N_COLUMNS))
    run_text = "".join(runs_t)
    if not (all(runs_t) and run_text.isascii() and run_text.isdigit()) or not set(indexed_t) <= _INDEXED.keys():
        return None
    try:
        xs = list(map(float, xs_t))
        ys = list(map(float, ys_t))
        wrmsd = [float(text) if text else None for text in wrmsd_t]
        proposals = _simple_proposals(dx_t, dy_t, reason_t)
    except ValueError:
        return None
    measured = [value for value in wrmsd if value is not None]
    # A sum is finite only when every term is (an overflow merely sends the file to the row-wise parser).
    if not math.isfinite(sum(xs) + sum(ys)) or math.isnan(sum(measured)) or min(measured, default=0.0) < 0:
        return None
    indexed = list(map(_INDEXED.__getitem__, indexed_t))
    return list(map(LedgerRow, map(int, runs_t), xs, ys, indexed, wrmsd, proposals, lines))


def _simple_proposals(dx_t: list[str], dy_t: list[str], reason_t: list[str]) -> list[Proposal | None]:
    """Proposal columns in our form (finite floats, ``done,done`` or all blank); ValueError for anything else.

    ``dx_t`` and ``dy_t`` are overwritten. Blank and DONE rows get a placeholder number so that every
    column converts in one ``map``; their proposals are put in afterwards.
    """
    others: dict[int, Proposal | None] = {}
    for index in list(compress(count(), map(_NOT_A_NUMBER.__contains__, dx_t))):
        dx, dy, reason = dx_t[index], dy_t[index], reason_t[index]
        if dx == dy == reason == "":
            others[index] = None
        elif dx == dy == DONE_TOKEN and reason.startswith(DONE_TOKEN):
            others[index] = Proposal(None, None, reason)
        else:
            raise ValueError("not in our form")
        dx_t[index] = dy_t[index] = "0"
    dxs, dys = list(map(float, dx_t)), list(map(float, dy_t))
    if not math.isfinite(sum(dxs) + sum(dys)):
        raise ValueError("not finite")
    proposals: list[Proposal | None] = list(map(Proposal, dxs, dys, reason_t))
    for index, proposal in others.items():
        proposals[index] = proposal
    return proposals


def _parse_row(line: str, name: str, line_no: int) -> LedgerRow:
    """Parse one data row (8 columns; extra columns belong to an unquoted old reason)."""
    fields = next(csv.reader([line])) if '"' in line else line.split(",")
    if len(fields) < _N_COLUMNS:
        missing = LEDGER_HEADER[len(fields)]
        raise IciInputError(name, f"truncated line: {len(fields)} of {_N_COLUMNS} columns, '{missing}' is missing",
                            line=line_no, field_name=missing)
    run = fields[0].strip()
    if not (run.isascii() and run.isdigit()):
        raise IciInputError(name, f"'{fields[0]}' is not a non-negative integer", line=line_no, field_name="run_n")
    indexed = _INDEXED.get(fields[3].strip())
    if indexed is None:
        raise IciInputError(name, f"'{fields[3]}' is not 0 or 1", line=line_no, field_name="indexed")
    reason = fields[7] if len(fields) == _N_COLUMNS else ",".join(fields[7:])
    return LedgerRow(
        int(run),
        parse_finite_mm(fields[1], name, line_no, "det_shift_x_mm"),
        parse_finite_mm(fields[2], name, line_no, "det_shift_y_mm"),
        indexed,
        parse_wrmsd_px(fields[4], name, line_no),
        _proposal(fields[5], fields[6], reason, name, line_no),
        line,
    )


def parse_finite_mm(text: str, name: str, line_no: int, field_name: str) -> float:
    """A finite number (mm) from a CSV field; IciInputError naming file, line and field otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise IciInputError(name, f"'{text}' is not a finite number (mm)", line=line_no, field_name=field_name)
    return value


def parse_wrmsd_px(text: str, name: str, line_no: int) -> float | None:
    """wRMSD (px) from a CSV field: blank or ``nan`` -> None, ``inf`` kept (a failure), else a number >= 0."""
    if not text or text.isspace():
        return None
    try:
        value = float(text)
    except ValueError:
        raise IciInputError(name, f"'{text}' is not a number, blank, nan or inf", line=line_no,
                            field_name="wrmsd") from None
    if math.isnan(value):
        return None
    if value < 0:
        raise IciInputError(name, f"'{text}' is negative", line=line_no, field_name="wrmsd")
    return value


def _proposal(dx: str, dy: str, reason: str, name: str, line_no: int) -> Proposal | None:
    """The proposal columns: two floats, ``done,done``, or blank (None unless a reason is given)."""
    dx, dy = dx.strip(), dy.strip()
    done_x, done_y = dx.lower() == DONE_TOKEN, dy.lower() == DONE_TOKEN
    if done_x or done_y:
        if not (done_x and done_y):
            field_name = "next_dy_mm" if done_x else "next_dx_mm"
            raise IciInputError(name, f"DONE needs '{DONE_TOKEN}' in both next columns, got '{dx}','{dy}'",
                                line=line_no, field_name=field_name)
        if not reason.strip():
            return Proposal(None, None, DONE_TOKEN)
        if not reason.startswith(DONE_TOKEN):
            raise IciInputError(name, f"DONE row with reason '{reason}' (expected a reason starting with "
                                f"'{DONE_TOKEN}')", line=line_no, field_name="next_reason")
        return Proposal(None, None, reason)
    if not dx and not dy:
        return Proposal(None, None, reason) if reason.strip() else None
    for text, field_name in ((dx, "next_dx_mm"), (dy, "next_dy_mm")):
        if not text:
            raise IciInputError(name, "one next column is blank and the other is not", line=line_no,
                                field_name=field_name)
    return Proposal(parse_finite_mm(dx, name, line_no, "next_dx_mm"), parse_finite_mm(dy, name, line_no, "next_dy_mm"),
                    reason)


def _check_run_order(sections: list[EventHistory], rows: list[LedgerRow], starts: list[int],
                     row_line_nos: list[int], name: str) -> None:
    """Reject a run_n repeated within a section; sort the rows of sections given out of run order."""
    runs = list(map(RUN_N_OF, rows))
    # Rows whose run_n does not exceed the previous row's; expected only at the first row of a section.
    drops = compress(range(1, len(runs)), map(le, runs[1:], runs))
    first_rows = set(starts)
    unordered = {bisect.bisect_right(starts, position) - 1 for position in drops if position not in first_rows}
    for index in sorted(unordered):
        lo, hi = starts[index], starts[index + 1]
        seen: set[int] = set()
        for position in range(lo, hi):
            run_n = rows[position].run_n
            if run_n in seen:
                key = sections[index].key
                raise IciInputError(name, f"duplicate run_n {run_n} in section {key.h5_path} event {key.event}",
                                    line=row_line_nos[position], field_name="run_n")
            seen.add(run_n)
        rows[lo:hi] = sorted(rows[lo:hi], key=RUN_N_OF)


# ----------------------------------------------------------------------------- writing


@dataclass
class FormattedRows:
    """Every row of a ledger as text, column by column (all sections in order), for the ledger and sidecar writers.

    Section ``i`` has the line ``sections[i]`` and ``counts[i]`` rows. ``run_n`` is the integer, the
    shifts and ``wrmsd`` are ``repr(float)`` (``wrmsd`` blank when the run did not index), ``indexed``
    is ``1``/``0`` and ``lines`` are the whole data rows.
    """

    sections: list[str]
    counts: list[int]
    run_n: list[str]
    x: list[str]
    y: list[str]
    indexed: list[str]
    wrmsd: list[str]
    lines: list[str]
    top_header: bool = True
    section_headers: bool = False

    def ledger_text(self) -> str:
        """The ledger file: header once (or after every section line), each section line and its rows, LF."""
        parts = [HEADER_LINE] if self.top_header else []
        start = 0
        for section, n_rows in zip(self.sections, self.counts, strict=True):
            parts.append(section)
            if self.section_headers:
                parts.append(HEADER_LINE)
            parts += self.lines[start:start + n_rows]
            start += n_rows
        return "\n".join(parts) + "\n"


def format_ledger(histories: Mapping[EventKey, EventHistory]) -> str:
    """Format event histories as ledger text in our form (header once, LF, no blank lines)."""
    return format_rows(histories).ledger_text()


def format_rows(histories: Mapping[EventKey, EventHistory]) -> FormattedRows:
    """Validate and format every section and row; ValueError names the first one that would not read back.

    Each column is converted with one ``map`` over all rows (the per-row work of a large ledger).
    """
    sections: list[str] = []
    counts: list[int] = []
    rows: list[LedgerRow] = []
    row_keys: list[EventKey] = []  # for the error messages of the proposal columns
    for key, history in histories.items():
        if history.key is not key and history.key != key:
            raise ValueError(f"history for {history.key.label()} is stored under {key.label()}")
        sections.append(_format_section(key))
        counts.append(len(history.rows))
        rows += history.rows
        row_keys += repeat(key, len(history.rows))
    with gc_paused():
        runs = list(map(RUN_N_OF, rows))
        xs = list(map(float, map(SHIFT_X_OF, rows)))
        ys = list(map(float, map(SHIFT_Y_OF, rows)))
        if not (all(map(math.isfinite, xs)) and all(map(math.isfinite, ys))) or min(runs, default=0) < 0:
            _raise_for_bad_row(histories)
        x, y = list(map(repr, xs)), list(map(repr, ys))
        next_shifts: list[tuple[float, float, str, str] | None] = list(zip(xs[1:], ys[1:], x[1:], y[1:]))
        next_shifts.append(None)
        reasons: dict[str, str] = {}
        tails = [",," if proposal is None else _format_tail(proposal, key, run_n, reasons, next_shift)
                 for proposal, key, run_n, next_shift in zip(map(_PROPOSAL_OF, rows), row_keys, runs, next_shifts)]
        run_n = list(map(str, map(int, runs)))
        indexed = ["1" if flag else "0" for flag in map(_INDEXED_OF, rows)]
        wrmsd = ["" if value is None or math.isnan(value) else repr(float(value)) for value in map(WRMSD_OF, rows)]
        lines = [text if text is not None else f"{run},{sx},{sy},{flag},{value},{tail}"
                 for text, run, sx, sy, flag, value, tail in zip(map(_TEXT_OF, rows), run_n, x, y, indexed, wrmsd, tails)]
    # A file read with a header after every section line (the original tools' layout) keeps it.
    section_headers = any(history.own_header for history in histories.values())
    first = next(iter(histories.values()), None)
    top_header = not section_headers or (first is not None and first.header_above)
    return FormattedRows(sections, counts, run_n, x, y, indexed, wrmsd, lines, top_header, section_headers)


def _raise_for_bad_row(histories: Mapping[EventKey, EventHistory]) -> NoReturn:
    """Raise the error of the first row (in file order) with a bad shift, run_n or proposal."""
    reasons: dict[str, str] = {}
    for key, history in histories.items():
        for row in history.rows:
            x, y = float(row.det_shift_x_mm), float(row.det_shift_y_mm)
            if not (math.isfinite(x) and math.isfinite(y)) or row.run_n < 0:
                raise ValueError(f"{key.label()} run {row.run_n}: shift ({x}, {y}) mm or run_n is invalid")
            if row.proposal is not None:
                _format_tail(row.proposal, key, row.run_n, reasons, None)
    raise AssertionError("called without a bad row")


def _format_section(key: EventKey) -> str:
    """Section line ``#<h5 path> event <N>``; rejects keys that would not read back."""
    path = key.h5_path
    if not path or path != path.strip() or "\n" in path or _CONTROL_RE.search(path) or key.event < 0:
        raise ValueError(f"event key {key!r} cannot be written as a ledger section line")
    return f"#{path} event {int(key.event)}"


def _format_tail(proposal: Proposal, key: EventKey, run_n: int, reasons: dict[str, str],
                 next_shift: tuple[float, float, str, str] | None) -> str:
    """The columns ``next_dx_mm,next_dy_mm,next_reason``: floats, ``done,done`` or blank, and the reason.

    ``reasons`` caches quoted reasons. ``next_shift`` is the next row's shift and its text: a proposal
    usually is that shift, and equal non-zero floats have the same ``repr`` (``0.0 == -0.0`` do not).
    """
    reason = reasons.get(proposal.reason)
    if reason is None:
        reason = reasons[proposal.reason] = _quote(proposal.reason, key)
    dx, dy = proposal.dx_mm, proposal.dy_mm
    if dx is None and dy is None:
        return f"{DONE_TOKEN},{DONE_TOKEN},{reason}" if proposal.is_done else f",,{reason}"
    if dx is None or dy is None:
        raise ValueError(f"{key.label()} run {run_n}: proposal has only one of dx/dy: {proposal}")
    dx, dy = float(dx), float(dy)
    if not (math.isfinite(dx) and math.isfinite(dy)):
        raise ValueError(f"{key.label()} run {run_n}: proposal ({dx}, {dy}) mm is not finite")
    if next_shift is not None and dx == next_shift[0] and dy == next_shift[1] and dx and dy:
        return f"{next_shift[2]},{next_shift[3]},{reason}"
    return f"{dx!r},{dy!r},{reason}"


def _quote(reason: str, key: EventKey) -> str:
    """Quote a reason the way the csv module does (only when it holds ``,`` or ``"``)."""
    if "\n" in reason or _CONTROL_RE.search(reason):
        raise ValueError(f"{key.label()}: reason {reason!r} holds a line break or control character")
    if "," in reason or '"' in reason:
        return '"' + reason.replace('"', '""') + '"'
    return reason
