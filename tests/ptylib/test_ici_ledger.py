"""Tests of the grouped ledger reader/writer (ptylib.ici.runroot.ledger)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from ici_reference import write_ledger

from ptylib.ici.model import EventHistory, EventKey, IciInputError, LedgerRow, Proposal
from ptylib.ici.runroot import ledger
from ptylib.ici.runroot.ledger import (
    HEADER_LINE,
    format_ledger,
    parse_ledger,
    read_ledger,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ici"
SEED_FORM = FIXTURES / "ledger_seed_form.csv"
ODD_VALID = FIXTURES / "ledger_odd_valid.csv"
OLD_TOOLS = FIXTURES / "ledger_old_tools.csv"
ORIGINAL_LAYOUT = FIXTURES / "ledger_original_layout.csv"
LYSO1 = "/data/lyso/lyso_001.h5"
LYSO2 = "/data/beam time/lyso_002.h5"


def test_seed_form_round_trips_byte_for_byte(tmp_path: Path) -> None:
    histories = read_ledger(SEED_FORM)
    assert format_ledger(histories) == SEED_FORM.read_text(encoding="utf-8")
    out = tmp_path / "image_run_log.csv"
    write_ledger(out, histories)
    assert out.read_bytes() == SEED_FORM.read_bytes()
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_seed_form_values() -> None:
    histories = read_ledger(SEED_FORM)
    assert list(histories) == [EventKey(LYSO1, 0), EventKey(LYSO1, 7), EventKey(LYSO2, 12), EventKey(LYSO2, 13)]
    ev0 = histories[EventKey(LYSO1, 0)].rows
    assert [row.run_n for row in ev0] == [0, 1, 2, 3]
    assert ev0[0] == LedgerRow(0, 0.0, 0.0, False, None, Proposal(0.0123, -0.0045, "step1_hillmap_pure_exploration"))
    assert ev0[1] == LedgerRow(1, 0.0123, -0.0045, True, 0.8731, Proposal(0.01184, -0.00412, "dxdy_damped"))
    assert ev0[3].proposal == Proposal(None, None, "done_stability") and ev0[3].proposal.is_done
    assert histories[EventKey(LYSO1, 0)].is_done
    ev7 = histories[EventKey(LYSO1, 7)].rows
    assert ev7[1].wrmsd == math.inf and not ev7[1].succeeded and ev7[1].indexed
    assert ev7[2].wrmsd is None
    assert ev7[2].proposal == Proposal(1e-05, -0.0375, "step1_hillmap_wrmsd_sample, spacing relaxed")
    assert ev7[3].proposal is None and not histories[EventKey(LYSO1, 7)].is_done
    ev12 = histories[EventKey(LYSO2, 12)].rows
    assert ev12[0].proposal.reason == 'step1 "pure" exploration'
    assert not any(row.indexed for row in ev12)
    ev13 = histories[EventKey(LYSO2, 13)].rows
    assert ev13 == [LedgerRow(2, 0.0, 0.0, True, 0.4321, Proposal(None, None, "done_noimprove"))]


def test_odd_but_valid_file_reads_like_the_seed_form() -> None:
    raw = ODD_VALID.read_bytes()
    # The fixture really has the oddities: BOM, CRLF, blank lines, headers per section, no top header.
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n\r\n" in raw and b"\n   \r\n" in raw
    assert raw.count(HEADER_LINE.encode()) == 3 and b"DONE,DONE" in raw and b",NaN," in raw
    assert b"sample, spacing relaxed\r\n" in raw  # old-style unquoted comma in a reason
    assert read_ledger(ODD_VALID) == read_ledger(SEED_FORM)


def test_old_tools_ledger() -> None:
    histories = read_ledger(OLD_TOOLS)
    rows = histories[EventKey(LYSO1, 3)].rows
    assert rows[0].wrmsd == 0.912345 and rows[0].proposal == Proposal(0.001, -0.002, "dxdy_damped")
    assert rows[1].proposal == Proposal(0.01, 0.02, "step1_hillmap_wrmsd_sample, relaxed spacing, 2 tries")
    assert rows[2].proposal == Proposal(None, None, "done")  # `done,done,` with a blank reason
    assert histories[EventKey(LYSO1, 3)].is_done
    assert histories[EventKey(LYSO1, 4)].rows == [LedgerRow(0, 0.0, 0.0, False, None, None)]
    # Unchanged rows are written back as they were read; a changed row is written in our form.
    assert format_ledger(histories) == OLD_TOOLS.read_text()
    for row in rows:
        row.text = None
    text = format_ledger(histories)
    assert '"step1_hillmap_wrmsd_sample, relaxed spacing, 2 tries"' in text and "done,done,done\n" in text
    assert read_ledger_text(text) == histories


def test_original_layout_round_trips_byte_for_byte(tmp_path: Path) -> None:
    raw = ORIGINAL_LAYOUT.read_bytes()
    assert raw.count(HEADER_LINE.encode()) == 2 and not raw.startswith(HEADER_LINE.encode()) and b"0.001000" in raw
    histories = read_ledger(ORIGINAL_LAYOUT)
    assert histories[EventKey(LYSO1, 3)].rows[1] == LedgerRow(1, 0.001, -0.002, True, 0.912345,
                                                             Proposal(0.00084, -0.00176, "dxdy_damped"))
    assert format_ledger(histories).encode() == raw
    # Proposing with a proposer that agrees changes nothing; a new proposal rewrites only its own row.
    histories[EventKey(LYSO1, 4)].rows[-1].proposal = Proposal(0.0105, 0.0195, "dxdy_damped")
    histories[EventKey(LYSO1, 4)].rows[-1].text = None
    lines = format_ledger(histories).split("\n")
    assert lines[:-2] == raw.decode().split("\n")[:-2] and lines[-2] == "1,0.0011,0.0002,1,,0.0105,0.0195,dxdy_damped"


def read_ledger_text(text: str) -> dict:
    return ledger.parse_ledger(text.encode(), "<text>")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    assert read_ledger(tmp_path / "absent.csv") == {}
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(IciInputError, match=r"empty.csv, line 1, field 'header': empty file \(0 bytes\)"):
        read_ledger(empty)
    header_only = tmp_path / "header.csv"
    write_ledger(header_only, {})
    assert header_only.read_text() == HEADER_LINE + "\n"
    assert read_ledger(header_only) == {}


def test_rows_out_of_order_are_sorted(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(f"{HEADER_LINE}\n#/a.h5 event 1\n2,0.2,0.0,1,0.5,,,\n0,0.0,0.0,0,,,,\n1,0.1,0.0,1,0.7,,,\n")
    assert [row.run_n for row in read_ledger(path)[EventKey("/a.h5", 1)].rows] == [0, 1, 2]


def _history(key: EventKey, rows: list[LedgerRow]) -> EventHistory:
    return EventHistory(key, rows)


def test_in_memory_round_trip_of_edge_values(tmp_path: Path) -> None:
    a, b, c = EventKey("/abs/a b,c.h5", 0), EventKey("/abs/x event 9.h5", 12), EventKey("/empty.h5", 3)
    histories = {
        a: _history(a, [
            LedgerRow(0, -0.0, 0.1 + 0.2, False, None, Proposal(1e-300, -2.5e-17, 'quote " and, comma')),
            LedgerRow(1, np.float64(1e-300), np.float64(-2.5e-17), True, np.float64(0.123456789012345678),
                      Proposal(np.float64(3.0), -3.0, "")),
            LedgerRow(2, 3.0, -3.0, True, math.inf, Proposal(None, None, "step2 file missing, falling back")),
            LedgerRow(5, 0.01, 0.02, True, 0.5, Proposal(None, None, "done_streak")),
        ]),
        b: _history(b, [LedgerRow(7, 123456.789, -0.000123, False, None, None)]),
        c: _history(c, []),
    }
    path = tmp_path / "log.csv"
    write_ledger(path, histories)
    assert read_ledger(path) == histories
    text = path.read_text()
    assert "\r" not in text and "\n\n" not in text and text.count(HEADER_LINE) == 1
    assert "#/abs/x event 9.h5 event 12\n" in text and "#/empty.h5 event 3\n" in text
    assert "\n0,-0.0,0.30000000000000004,0,,1e-300,-2.5e-17,\"quote \"\" and, comma\"\n" in text
    assert "\n2,3.0,-3.0,1,inf,,,\"step2 file missing, falling back\"\n" in text
    assert "\n5,0.01,0.02,1,0.5,done,done,done_streak\n" in text


def test_random_ledgers_round_trip(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    histories: dict[EventKey, EventHistory] = {}
    for event in range(300):
        key = EventKey(f"/data/file_{event % 7}.h5", event)
        rows, ever = [], False
        for run_n in range(rng.randint(0, 5)):
            x, y = rng.uniform(-1, 1) * 10 ** rng.randint(-8, 2), rng.gauss(0, 0.03)
            wrmsd = rng.choice([None, math.inf, rng.expovariate(1.0)])
            ever = ever or (wrmsd is not None and math.isfinite(wrmsd))
            proposal = rng.choice([None, Proposal(rng.gauss(0, 0.05), rng.gauss(0, 0.05), "step1_x"),
                                   Proposal(None, None, "done_noimprove")])
            rows.append(LedgerRow(run_n, x, y, ever, wrmsd, proposal))
        histories[key] = EventHistory(key, rows)
    path = tmp_path / "log.csv"
    write_ledger(path, histories)
    assert read_ledger(path) == histories
    assert format_ledger(read_ledger(path)) == path.read_text()


def test_a_proposal_equal_to_the_next_shift_is_written_as_itself() -> None:
    key = EventKey("/a.h5", 1)
    rows = [LedgerRow(0, 0.0, 0.0, False, None, Proposal(0.1 + 0.2, -0.0, "step1_x")),
            LedgerRow(1, 0.30000000000000004, 0.0, False, None, Proposal(np.float64(0.5), 1e-300, "step1_x")),
            LedgerRow(2, 0.5, 1e-300, False, None, Proposal(-0.5, 1e-300, "step1_x"))]
    text = format_ledger({key: EventHistory(key, rows)})
    assert text.endswith("\n0,0.0,0.0,0,,0.30000000000000004,-0.0,step1_x\n1,0.30000000000000004,0.0,0,,0.5,1e-300,"
                         "step1_x\n2,0.5,1e-300,0,,-0.5,1e-300,step1_x\n")


def _row_wise(data: bytes, monkeypatch: pytest.MonkeyPatch) -> dict[EventKey, EventHistory]:
    """Parse with the column-wise row parser switched off (the reference for odd files)."""
    with monkeypatch.context() as patch:
        patch.setattr(ledger, "_parse_rows_fast", lambda lines: None)
        return parse_ledger(data, "log.csv")


def test_column_wise_parse_agrees_with_the_row_wise_one(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    histories: dict[EventKey, EventHistory] = {}
    for event in range(200):
        key = EventKey(f"/data/file_{event % 3}.h5", event)
        proposals = [Proposal(rng.gauss(0, 0.05), -0.0, "step1_x"), Proposal(None, None, "done_streak")]
        rows = [LedgerRow(run_n, rng.choice([0.0, -0.0, 5e-324, rng.gauss(0, 0.03)]), rng.uniform(-1, 1) * 1e-5,
                          rng.random() < 0.5, rng.choice([None, math.inf, 0.0, rng.expovariate(1.0)]),
                          rng.choice(proposals))
                for run_n in range(rng.randint(0, 6))]
        if rows:
            rows[-1].proposal = None
        histories[key] = EventHistory(key, rows)
    data = format_ledger(histories).encode()
    column_wise: list[bool] = []
    real = ledger._parse_rows_fast

    def spy(lines: list[str]) -> list[LedgerRow] | None:
        rows = real(lines)
        column_wise.append(rows is not None)
        return rows

    monkeypatch.setattr(ledger, "_parse_rows_fast", spy)
    assert parse_ledger(data, "log.csv") == histories and column_wise == [True]
    assert _row_wise(data, monkeypatch) == histories


@pytest.mark.parametrize(
    "row",
    [
        "0,0.0,0.0,0,nan,,,",
        "0,0.0,0.0,0,NaN,0.01,0.02,step1_x",
        "0,0.1,0.2,1,  ,,,",
        "0,0.1,0.2,1,-0.0,,,",
        "0,0.0,0.0,1,0.5,DONE,Done,done_x",
        "0,0.0,0.0,1,0.5,done,done,",
        "0,0.0,0.0,1,0.5,,,step2 file missing",
        "0, 0.1,0.2 ,1,0.5, 0.01,0.02,step1_x",
        " 0,0.1,0.2,1,0.5,,,",
        "00,0.1,0.2, 1,0.5,,,",
        "0,1e-300,-0.0,1,inf,0.01,0.02,step1_x",
        "0,0.1,0.2,1,0.5,0.01,0.02,old, unquoted, reason",
        '0,0.1,0.2,1,0.5,0.01,0.02,"quoted, ""reason"""',
    ],
)
def test_odd_rows_read_as_the_row_wise_parser_reads_them(row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = f"{H}\n{S}\n{row}\n#/data/b.h5 event 1\n{GOOD}\n".encode()
    assert parse_ledger(data, "log.csv") == _row_wise(data, monkeypatch)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (LedgerRow(0, 0.0, 0.0, False, None, Proposal(0.1, None, "x")), "only one of dx/dy"),
        (LedgerRow(0, math.nan, 0.0, False, None, None), "shift"),
        (LedgerRow(0, 0.0, 0.0, False, None, Proposal(math.inf, 0.0, "x")), "not finite"),
        (LedgerRow(0, 0.0, 0.0, False, None, Proposal(0.0, 0.0, "two\nlines")), "line break"),
    ],
)
def test_writer_rejects_rows_that_would_not_read_back(bad: LedgerRow, message: str) -> None:
    key = EventKey("/a.h5", 0)
    with pytest.raises(ValueError, match=message):
        format_ledger({key: EventHistory(key, [bad])})


@pytest.mark.parametrize("key", [EventKey("", 0), EventKey(" /a.h5", 0), EventKey("/a\n.h5", 0), EventKey("/a.h5", -1)])
def test_writer_rejects_unwritable_keys(key: EventKey) -> None:
    with pytest.raises(ValueError, match="section line"):
        format_ledger({key: EventHistory(key)})


def test_writer_rejects_a_history_under_another_key() -> None:
    with pytest.raises(ValueError, match="stored under"):
        format_ledger({EventKey("/a.h5", 0): EventHistory(EventKey("/a.h5", 1))})


H = HEADER_LINE
S = "#/data/a.h5 event 4"
GOOD = "0,0.0,0.0,1,0.5,0.01,0.02,step1_x"


@pytest.mark.parametrize(
    ("content", "line", "field"),
    [
        (f"{H}\n#/data/a.h5 evnt 4\n{GOOD}\n", 2, "section"),
        (f"{H}\n#/data/a.h5 event four\n{GOOD}\n", 2, "section"),
        (f"{H}\n# a comment\n", 2, "section"),
        (f"{H}\n{GOOD}\n{S}\n", 2, "section"),
        (f"{H}\n{S}\nx,0.0,0.0,1,0.5,,,\n", 3, "run_n"),
        (f"{H}\n{S}\n-1,0.0,0.0,1,0.5,,,\n", 3, "run_n"),
        (f"{H}\n{S}\n0,abc,0.0,1,0.5,,,\n", 3, "det_shift_x_mm"),
        (f"{H}\n{S}\n0,0.0,nan,1,0.5,,,\n", 3, "det_shift_y_mm"),
        (f"{H}\n{S}\n0,0.0,0.0,2,0.5,,,\n", 3, "indexed"),
        (f"{H}\n{S}\n0,0.0,0.0,yes,0.5,,,\n", 3, "indexed"),
        (f"{H}\n{S}\n0,0.0,0.0,1,fast,,,\n", 3, "wrmsd"),
        (f"{H}\n{S}\n0,0.0,0.0,1,-0.5,,,\n", 3, "wrmsd"),
        (f"{H}\n{S}\n{GOOD}\n1,0.0,0.0,1,0.5,,,\n{GOOD}\n", 5, "run_n"),
        (f"{H}\n{S}\n{GOOD}\n{GOOD}\n", 4, "run_n"),
        (f"{H}\n{S}\n{GOOD}\n0,0.0,0.0,1\n", 4, "wrmsd"),
        (f"{H}\n{S}\n{GOOD}\n1,0.0,0.0,1,0.5,0.01\n", 4, "next_dy_mm"),
        (f"{H}\n{S}\n{GOOD}\n1,0.0,0.0,1,0.5,0.01,0.02", 4, "next_reason"),
        (f"{H}\n{S}\n0,0.0,0.0,1,0.5,done,0.02,done_x\n", 3, "next_dy_mm"),
        (f"{H}\n{S}\n0,0.0,0.0,1,0.5,0.01,done,done_x\n", 3, "next_dx_mm"),
        (f"{H}\n{S}\n0,0.0,0.0,1,0.5,done,done,step1_x\n", 3, "next_reason"),
        (f"{H}\n{S}\n0,0.0,0.0,1,0.5,0.01,,step1_x\n", 3, "next_dy_mm"),
        (f"{H}\n{S}\n0,0.0,0.0,1,0.5,east,0.02,step1_x\n", 3, "next_dx_mm"),
        ("run_n,det_shift_x_mm,det_shift_y,indexed,wrmsd,next_dx_mm,next_dy_mm,next_reason\n", 1, "det_shift_y_mm"),
        ("run_n,det_shift_x_mm,det_shift_y_mm,indexed,wrmsd,next_dx_mm,next_dy_mm\n", 1, "next_reason"),
        (f"{H},extra\n{S}\n", 1, "header"),
        (f"{S}\n{H}\n{GOOD}\n#/data/a.h5 event 5\n{GOOD}\n", 4, "header"),
        (f"{S}\n{GOOD}\n", 1, "header"),
        (f"{H}\n{S}\n{GOOD}\n#/data/b.h5 event 4\n#/data/a.h5 event 4\n", 5, "section"),
        (f"{H}\n{S}\n0,0.0,\x00\x01\x02,1,0.5,,,\n", 3, "det_shift_y_mm"),
        (f"{H}\n{S}\n0,0.0,0.0,1,0.5,,,step1\x1b[0m\n", 3, "next_reason"),
        (f"{H}\n{S}\r0,0.0,0.0,1,0.5,,,\n", 2, "section"),
    ],
)
def test_bad_ledgers_raise_with_file_line_and_field(tmp_path: Path, content: str, line: int, field: str) -> None:
    path = tmp_path / "image_run_log.csv"
    path.write_bytes(content.encode("utf-8"))
    with pytest.raises(IciInputError) as info:
        read_ledger(path)
    message = str(info.value)
    assert str(path) in message and f"line {line}" in message and f"'{field}'" in message, message
    assert (info.value.line, info.value.field_name) == (line, field)


def test_undecodable_bytes_name_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "image_run_log.csv"
    path.write_bytes(f"{H}\n{S}\n{GOOD}\n1,0.0,0.0,".encode() + b"\xff\xfe\x00binary" + b",0.5,,,\n")
    with pytest.raises(IciInputError) as info:
        read_ledger(path)
    assert (info.value.line, info.value.field_name) == (4, "indexed")
    assert str(path) in str(info.value) and "line 4" in str(info.value) and "not UTF-8" in str(info.value)
