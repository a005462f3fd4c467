"""Tests of chunk metrics, idempotent ingest and the JSON sidecar (ptylib.ici.runroot.ingest, ptylib.ici.runroot.sidecar)."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from ici_reference import format_state, state_from_ledger, write_ledger, write_state

from ptylib.ici.model import (
    CHUNK_METRICS_HEADER,
    ChunkMetric,
    EventHistory,
    EventKey,
    IciInputError,
    LedgerRow,
    Proposal,
)
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.propose import propose_run_root
from ptylib.ici.runroot import commit
from ptylib.ici.runroot.ingest import (
    ingest_chunk_metrics,
    ingest_run,
    read_chunk_metrics,
    write_chunk_metrics,
)
from ptylib.ici.runroot.layout import (
    LEDGER_NAME,
    STATE_NAME,
    chunk_metrics_path,
    run_directory,
)
from ptylib.ici.runroot.ledger import format_ledger, read_ledger
from ptylib.ici.runroot.sidecar import (
    EventState,
    ProposalEntry,
    RunState,
    TrialRecord,
    format_ledger_and_state,
    read_state,
)
from ptylib.io.lock import LOCK_NAME

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ici"
A, B, C = EventKey("/data/a.h5", 0), EventKey("/data/a.h5", 1), EventKey("/data/b c.h5", 5)
HEADER = ",".join(CHUNK_METRICS_HEADER)


def metric(key: EventKey, x: float, y: float, indexed: bool, wrmsd: float | None, reason: str = "") -> ChunkMetric:
    return ChunkMetric(key, x, y, indexed, wrmsd, n_peaks=40, n_reflections=12 if indexed else 0, reason=reason)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes but the run root's lock file (ingest takes the lock, which creates it)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != LOCK_NAME}


# ----------------------------------------------------------------------------- chunk metrics files


def test_chunk_metrics_path() -> None:
    assert chunk_metrics_path(Path("/r/run_007"), 7) == Path("/r/run_007/chunk_metrics_007.csv")
    assert run_directory(Path("/r"), 12) == Path("/r/run_012")


def test_chunk_metrics_write_exact_text_and_round_trip(tmp_path: Path) -> None:
    metrics = [
        metric(A, 0.0, -0.0045, True, 0.8731),
        metric(B, 1e-05, 0.1 + 0.2, False, None, reason='no lattice, "12" peaks'),
        metric(C, -0.03, 0.02, True, math.inf, reason="refinement diverged"),
    ]
    path = tmp_path / "chunk_metrics_000.csv"
    write_chunk_metrics(path, metrics)
    assert path.read_text() == (
        f"{HEADER}\n"
        "/data/a.h5,0,0.0,-0.0045,1,0.8731,40,12,\n"
        '/data/a.h5,1,1e-05,0.30000000000000004,0,,40,0,"no lattice, ""12"" peaks"\n'
        "/data/b c.h5,5,-0.03,0.02,1,inf,40,12,refinement diverged\n"
    )
    assert read_chunk_metrics(path) == metrics


def test_chunk_metrics_odd_but_valid_fixture() -> None:
    metrics = read_chunk_metrics(FIXTURES / "chunk_metrics_odd.csv")
    assert metrics == [
        ChunkMetric(EventKey("/data/lyso/lyso_001.h5", 0), 0.0118, -0.004, True, 0.75),
        ChunkMetric(EventKey("/data/lyso/lyso_001.h5", 7), 1e-05, -0.0375, False, None, reason="no lattice, 12 peaks"),
        ChunkMetric(EventKey("/data/beam time/lyso_002.h5", 12), 0.0031, 0.0412, True, math.inf,
                    reason="refinement diverged"),
    ]


def test_chunk_metrics_bom_crlf_nan(tmp_path: Path) -> None:
    path = tmp_path / "chunk_metrics_001.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\r\n/data/a.h5,0,0.1,0.2,0,nan,3,0,\r\n".encode())
    assert read_chunk_metrics(path) == [ChunkMetric(A, 0.1, 0.2, False, None, 3, 0, "")]


ROW = "/data/a.h5,0,0.1,0.2,1,0.5,3,2,ok"


@pytest.mark.parametrize(
    ("content", "line", "field"),
    [
        (b"", 1, "header"),
        (b"h5_path,event,det_shift_x_mm,det_shift_y_mm,indexed,n_peaks\n", 1, "wrmsd"),
        (f"{HEADER},event\n".encode(), 1, "event"),
        (f"{HEADER}\n{ROW}\n/data/a.h5,zero,0.1,0.2,1,0.5,3,2,ok\n".encode(), 3, "event"),
        (f"{HEADER}\n/data/a.h5,0,left,0.2,1,0.5,3,2,ok\n".encode(), 2, "det_shift_x_mm"),
        (f"{HEADER}\n/data/a.h5,0,0.1,inf,1,0.5,3,2,ok\n".encode(), 2, "det_shift_y_mm"),
        (f"{HEADER}\n/data/a.h5,0,0.1,0.2,y,0.5,3,2,ok\n".encode(), 2, "indexed"),
        (f"{HEADER}\n/data/a.h5,0,0.1,0.2,1,-1,3,2,ok\n".encode(), 2, "wrmsd"),
        (f"{HEADER}\n/data/a.h5,0,0.1,0.2,1,0.5,many,2,ok\n".encode(), 2, "n_peaks"),
        (f"{HEADER}\n,0,0.1,0.2,1,0.5,3,2,ok\n".encode(), 2, "h5_path"),
        (f"{HEADER}\n{ROW}\n{ROW}\n".encode(), 3, "event"),
        (f"{HEADER}\n{ROW}\n/data/a.h5,1,0.1,0.2\n".encode(), 3, "indexed"),
        (f"{HEADER}\n{ROW}\n/data/a.h5,1,0.1,0.2,1,0.5,3,2,ok,more\n".encode(), 3, "row"),
        (f"{HEADER}\n/data/a.h5,0,0.1,\x00\x01,1,0.5,3,2,ok\n".encode(), 2, "det_shift_y_mm"),
        (f"{HEADER}\n/data/a.h5,0,0.1,0.2,".encode() + b"\xff\xfe,0.5,3,2,ok\n", 2, "indexed"),
    ],
)
def test_bad_chunk_metrics(tmp_path: Path, content: bytes, line: int, field: str) -> None:
    path = tmp_path / "chunk_metrics_003.csv"
    path.write_bytes(content)
    with pytest.raises(IciInputError) as info:
        read_chunk_metrics(path)
    message = str(info.value)
    assert str(path) in message and f"line {line}" in message and f"'{field}'" in message, message


def test_missing_chunk_metrics(tmp_path: Path) -> None:
    with pytest.raises(IciInputError, match="missing chunk metrics") as info:
        read_chunk_metrics(tmp_path / "run_004" / "chunk_metrics_004.csv")
    assert "chunk_metrics_004.csv" in str(info.value)


# ----------------------------------------------------------------------------- in-memory ingest


def test_ingest_creates_sections_in_metrics_order_with_sticky_indexed() -> None:
    histories: dict[EventKey, EventHistory] = {}
    run0 = [metric(C, 0.0, 0.0, False, None), metric(A, 0.0, 0.0, True, 0.9), metric(B, 0.0, 0.0, True, math.inf)]
    assert ingest_chunk_metrics(histories, run0, 0) == 3
    assert list(histories) == [C, A, B]
    assert histories[C].rows == [LedgerRow(0, 0.0, 0.0, False, None)]
    assert histories[A].rows == [LedgerRow(0, 0.0, 0.0, True, 0.9)]
    assert histories[B].rows == [LedgerRow(0, 0.0, 0.0, False, math.inf)]  # inf is a failure: not indexed
    run1 = [metric(A, 0.01, -0.02, False, 0.4), metric(B, 0.02, 0.01, True, 1.5), metric(C, 0.03, 0.0, True, None)]
    assert ingest_chunk_metrics(histories, run1, 1) == 3
    assert histories[A].rows[1] == LedgerRow(1, 0.01, -0.02, True, None)  # sticky; wrmsd dropped (not indexed)
    assert histories[B].rows[1] == LedgerRow(1, 0.02, 0.01, True, 1.5)
    assert histories[C].rows[1] == LedgerRow(1, 0.03, 0.0, False, None)  # indexed without wRMSD: no success


def test_ingest_is_idempotent() -> None:
    histories: dict[EventKey, EventHistory] = {}
    run0 = [metric(A, 0.0, 0.0, True, 0.9), metric(B, 0.0, 0.0, False, None)]
    assert ingest_chunk_metrics(histories, run0, 0) == 2
    histories[A].rows[0].proposal = Proposal(0.01, 0.0, "dxdy_damped")
    before = copy.deepcopy(histories)
    assert ingest_chunk_metrics(histories, run0, 0) == 0
    assert ingest_chunk_metrics(histories, [metric(A, 5.0, 5.0, False, None)], 0) == 0
    assert histories == before
    assert ingest_chunk_metrics(histories, run0 + run0, 1) == 2  # a repeated metric is added once
    assert [len(h.rows) for h in histories.values()] == [2, 2]


def test_ingest_records_rows_of_done_events() -> None:
    histories = {A: EventHistory(A, [LedgerRow(0, 0.0, 0.0, True, 0.5, Proposal(None, None, "done_stability"))])}
    assert ingest_chunk_metrics(histories, [metric(A, 0.0, 0.0, True, 0.6)], 1) == 1
    assert histories[A].rows[1] == LedgerRow(1, 0.0, 0.0, True, 0.6)


def test_ingest_of_an_earlier_run_keeps_run_order_and_stickiness() -> None:
    histories = {A: EventHistory(A, [LedgerRow(0, 0.0, 0.0, False, None), LedgerRow(2, 0.2, 0.0, False, None)])}
    assert ingest_chunk_metrics(histories, [metric(A, 0.1, 0.0, True, 0.7)], 1) == 1
    assert [(row.run_n, row.indexed) for row in histories[A].rows] == [(0, False), (1, True), (2, True)]


# ----------------------------------------------------------------------------- ingest_run on disk


def make_run(root: Path, run_n: int, metrics: list[ChunkMetric]) -> None:
    write_chunk_metrics(chunk_metrics_path(run_directory(root, run_n), run_n), metrics)


def test_ingest_run_writes_ledger_and_state(tmp_path: Path) -> None:
    make_run(tmp_path, 0, [metric(A, 0.0, 0.0, False, None), metric(B, 0.0, 0.0, True, 0.8)])
    assert ingest_run(tmp_path, 0) == 2
    assert (tmp_path / LEDGER_NAME).read_text() == (
        "run_n,det_shift_x_mm,det_shift_y_mm,indexed,wrmsd,next_dx_mm,next_dy_mm,next_reason\n"
        "#/data/a.h5 event 0\n0,0.0,0.0,0,,,,\n"
        "#/data/a.h5 event 1\n0,0.0,0.0,1,0.8,,,\n"
    )
    state = read_state(tmp_path / STATE_NAME)
    assert state.last_global_run == 0
    assert state.events[B] == EventState([TrialRecord(0, 0.0, 0.0, 0.8, True)], [], True)

    # The proposer patches the last rows and appends to the proposal history.
    histories = read_ledger(tmp_path / LEDGER_NAME)
    for key, proposal in ((A, Proposal(0.01, 0.02, "step1_hillmap_pure_exploration")),
                          (B, Proposal(None, None, "done_stability"))):
        histories[key].rows[-1].proposal, histories[key].rows[-1].text = proposal, None  # text: as read
    write_ledger(tmp_path / LEDGER_NAME, histories)
    state.events[A].proposal_history.append(ProposalEntry(1, Proposal(0.01, 0.02, "step1_hillmap_pure_exploration")))
    write_state(tmp_path / STATE_NAME, state)

    make_run(tmp_path, 1, [metric(A, 0.01, 0.02, True, math.inf), metric(C, 0.0, 0.0, True, 1.1)])
    assert ingest_run(tmp_path, 1) == 2
    text = (tmp_path / LEDGER_NAME).read_text()
    assert text.endswith(
        "#/data/a.h5 event 0\n0,0.0,0.0,0,,0.01,0.02,step1_hillmap_pure_exploration\n1,0.01,0.02,0,inf,,,\n"
        "#/data/a.h5 event 1\n0,0.0,0.0,1,0.8,done,done,done_stability\n"
        "#/data/b c.h5 event 5\n1,0.0,0.0,1,1.1,,,\n"
    )
    state = read_state(tmp_path / STATE_NAME)
    assert state.last_global_run == 1
    assert state.events[A].trials[1] == TrialRecord(1, 0.01, 0.02, math.inf, False)
    assert state.events[A].proposal_history == [ProposalEntry(1, Proposal(0.01, 0.02, "step1_hillmap_pure_exploration"))]
    assert list(state.events) == [A, B, C]


def test_ingest_run_twice_changes_nothing(tmp_path: Path) -> None:
    make_run(tmp_path, 0, [metric(A, 0.0, 0.0, True, 0.8), metric(B, 0.0, 0.0, False, None)])
    assert ingest_run(tmp_path, 0) == 2
    before = snapshot(tmp_path)
    mtimes = {name: (tmp_path / name).stat().st_mtime_ns for name in (LEDGER_NAME, STATE_NAME)}
    assert ingest_run(tmp_path, 0) == 0
    assert snapshot(tmp_path) == before
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in mtimes} == mtimes  # not rewritten


def _seeded_root(root: Path) -> None:
    shutil.copy(FIXTURES / "ledger_seed_form.csv", root / LEDGER_NAME)
    write_state(root / STATE_NAME, state_from_ledger(read_ledger(root / LEDGER_NAME), None))
    make_run(root, 3, [metric(A, 0.0, 0.0, True, 0.8)])
    make_run(root, 4, [metric(A, 0.0, 0.0, True, 0.8)])


def _metrics_4(root: Path) -> Path:
    return root / "run_004" / "chunk_metrics_004.csv"


def _edit(path: Path, old: bytes, new: bytes) -> None:
    path.write_bytes(path.read_bytes().replace(old, new))


@pytest.mark.parametrize(
    ("damage", "file_name", "line", "field"),
    [
        (lambda r: _metrics_4(r).unlink(), "chunk_metrics_004.csv", None, None),
        (lambda r: _edit(_metrics_4(r), b"0.0,1,0.8", b"oops,1,0.8"), "chunk_metrics_004.csv", 2, "det_shift_y_mm"),
        (lambda r: _edit(r / LEDGER_NAME, b"0,0.0,0.0,1,1.204", b"0,0.0,0.0,7,1.204"), LEDGER_NAME, 8, "indexed"),
        (lambda r: _edit(r / LEDGER_NAME, b"event 13\n", b"event 13\n#/data/lyso/lyso_001.h5 event 7\n"),
         LEDGER_NAME, 18, "section"),
        (lambda r: (r / STATE_NAME).write_bytes((r / STATE_NAME).read_bytes()[:-40]), STATE_NAME, None, "json"),
        (lambda r: (r / STATE_NAME).write_text('{"last_global_run": "three", "events": {}}'), STATE_NAME, None,
         "last_global_run"),
    ],
)
def test_failed_ingest_leaves_every_file_byte_identical(tmp_path: Path, damage, file_name: str, line, field) -> None:
    _seeded_root(tmp_path)
    damage(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(IciInputError) as info:
        ingest_run(tmp_path, 4)
    message = str(info.value)
    assert file_name in message, message
    if line is not None:
        assert f"line {line}" in message, message
    if field is not None:
        assert f"'{field}'" in message, message
    assert snapshot(tmp_path) == before


def test_failed_state_write_restores_the_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seeded_root(tmp_path)
    before = snapshot(tmp_path)
    real_write = commit.atomic_write_text

    def failing_write(path, text):
        if Path(path).name == STATE_NAME:
            raise OSError("disk full")
        real_write(path, text)

    monkeypatch.setattr(commit, "atomic_write_text", failing_write)
    with pytest.raises(OSError, match="disk full"):
        ingest_run(tmp_path, 4)
    assert snapshot(tmp_path) == before
    # Same on a fresh run root: the new ledger is removed again.
    fresh = tmp_path / "fresh"
    make_run(fresh, 0, [metric(A, 0.0, 0.0, True, 0.8)])
    with pytest.raises(OSError, match="disk full"):
        ingest_run(fresh, 0)
    assert not (fresh / LEDGER_NAME).exists() and not (fresh / STATE_NAME).exists()


# ----------------------------------------------------------------------------- the sidecar


def _state() -> RunState:
    return RunState(
        {
            A: EventState([TrialRecord(0, 0.0, -0.0, None, False), TrialRecord(1, 0.01, 1e-300, math.inf, False),
                           TrialRecord(2, 0.1 + 0.2, -0.02, 0.5, True)],
                          [ProposalEntry(1, Proposal(0.01, 1e-300, "step1_x")), ProposalEntry(3, Proposal(None, None, "done_noimprove"))],
                          True),
            EventKey("/odd//path.h5", 3): EventState([], [ProposalEntry(0, Proposal(0.0, 0.0, 'quote " back\\slash'))], False),
        },
        last_global_run=2,
    )


def test_state_round_trip_and_valid_json(tmp_path: Path) -> None:
    path = tmp_path / STATE_NAME
    state = _state()
    write_state(path, state)
    assert read_state(path) == state

    def no_special_constants(token: str) -> float:
        raise AssertionError(f"non-standard JSON constant {token}")

    document = json.loads(path.read_text(), parse_constant=no_special_constants)
    event = document["events"]["/data/a.h5::0"]
    assert document["last_global_run"] == 2
    assert [t["wrmsd"] for t in event["trials"]] == [None, "inf", 0.5]
    assert event["proposal_history"][1] == {"next_run_n": 3, "dx_mm": None, "dy_mm": None, "reason": "done_noimprove"}
    assert read_state(path).events[A].proposal_history[1].proposal.is_done


def test_missing_state_is_empty(tmp_path: Path) -> None:
    assert read_state(tmp_path / STATE_NAME) == RunState({}, -1)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("events"), "events"),
        (lambda d: d["events"]["/data/a.h5::0"].__setitem__("ever_indexed", 1), "events['/data/a.h5::0'].ever_indexed"),
        (lambda d: d["events"]["/data/a.h5::0"]["trials"][2].__setitem__("wrmsd", "bad"),
         "events['/data/a.h5::0'].trials[2].wrmsd"),
        (lambda d: d["events"]["/data/a.h5::0"]["trials"][0].__setitem__("det_shift_x_mm", None),
         "events['/data/a.h5::0'].trials[0].det_shift_x_mm"),
        (lambda d: d["events"]["/data/a.h5::0"]["trials"][0].__setitem__("run_n", 1.5),
         "events['/data/a.h5::0'].trials[0].run_n"),
        (lambda d: d["events"]["/data/a.h5::0"]["proposal_history"][1].__setitem__("dx_mm", 0.1),
         "events['/data/a.h5::0'].proposal_history[1].dy_mm"),
        (lambda d: d["events"].__setitem__("no-separator", d["events"].pop("/data/a.h5::0")), "events['no-separator']"),
    ],
)
def test_state_with_wrong_types(tmp_path: Path, mutate, field: str) -> None:
    path = tmp_path / STATE_NAME
    write_state(path, _state())
    document = json.loads(path.read_text())
    mutate(document)
    path.write_text(json.dumps(document))
    with pytest.raises(IciInputError) as info:
        read_state(path)
    assert str(path) in str(info.value) and f"'{field}'" in str(info.value), str(info.value)


def test_corrupt_state_names_line(tmp_path: Path) -> None:
    path = tmp_path / STATE_NAME
    path.write_text('{\n"last_global_run": 2,\n"events": {\n"a//1": {"trials": [}\n}}\n')
    with pytest.raises(IciInputError) as info:
        read_state(path)
    assert str(path) in str(info.value) and "line 4" in str(info.value) and "'json'" in str(info.value)


def test_state_from_ledger_keeps_proposal_history() -> None:
    histories = read_ledger(FIXTURES / "ledger_seed_form.csv")
    ev0, ev12 = EventKey("/data/lyso/lyso_001.h5", 0), EventKey("/data/beam time/lyso_002.h5", 12)
    record = ProposalEntry(1, Proposal(0.0123, -0.0045, "step1_hillmap_pure_exploration"))
    previous = RunState({ev0: EventState([], [record], False), EventKey("/gone.h5", 1): EventState([], [], True)},
                        last_global_run=5)
    state = state_from_ledger(histories, previous)
    assert list(state.events) == list(histories) and state.last_global_run == 5
    assert state.events[ev0].proposal_history == previous.events[ev0].proposal_history
    assert state.events[ev0].proposal_history is not previous.events[ev0].proposal_history
    assert state.events[ev0].ever_indexed and not state.events[ev12].ever_indexed
    assert state.events[ev0].trials[1] == TrialRecord(1, 0.0123, -0.0045, 0.8731, True)
    assert state.events[EventKey("/data/lyso/lyso_001.h5", 7)].trials[1].success is False  # inf
    assert state_from_ledger(histories, None).last_global_run == 3
    assert state_from_ledger({}, None) == RunState({}, -1)


def test_state_writer_rejects_values_json_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / STATE_NAME
    for event in (EventState([TrialRecord(0, math.nan, 0.0, None, False)]),
                  EventState([TrialRecord(0, 0.0, 0.0, -math.inf, False)]),
                  EventState([], [ProposalEntry(1, Proposal(math.inf, 0.0, "step1_x"))])):
        with pytest.raises(ValueError):
            write_state(path, RunState({A: event}, 0))
    assert not path.exists()


def test_state_lines_are_compact_json_as_the_json_module_writes_it() -> None:
    state = _state()
    lines = format_state(state).split("\n")
    assert lines[:3] == ["{", '"last_global_run": 2,', '"events": {'] and lines[-2:] == ["}}", ""]
    for (key, event), line in zip(state.events.items(), lines[3:-2], strict=True):
        trials = [{"run_n": t.run_n, "det_shift_x_mm": t.det_shift_x_mm, "det_shift_y_mm": t.det_shift_y_mm,
                   "wrmsd": "inf" if t.wrmsd == math.inf else t.wrmsd, "success": t.success} for t in event.trials]
        history = [{"next_run_n": r.next_run_n, "dx_mm": r.proposal.dx_mm, "dy_mm": r.proposal.dy_mm,
                    "reason": r.proposal.reason}
                   for r in event.proposal_history]
        document = {"trials": trials, "proposal_history": history, "ever_indexed": event.ever_indexed}
        assert line.removesuffix(",") == f"{json.dumps(key.sidecar_key())}: {json.dumps(document, separators=(',', ':'))}"


def test_ledger_and_state_formatted_together_match_the_separate_writers() -> None:
    histories = read_ledger(FIXTURES / "ledger_seed_form.csv")  # quoted reasons, inf, DONE, blank proposals
    ev0 = EventKey("/data/lyso/lyso_001.h5", 0)
    histories[ev0].rows.append(LedgerRow(4, np.float64(-0.0), 1e-300, True, math.nan, Proposal(None, None, "a, b")))
    histories[C] = EventHistory(C)
    previous = RunState({ev0: EventState([], [ProposalEntry(1, Proposal(0.0123, -0.0045, 'q "x"')),
                                              ProposalEntry(4, Proposal(None, None, "done_stability"))], False),
                         EventKey("/gone.h5", 1): EventState([], [ProposalEntry(0, Proposal(0.0, 0.0, "x"))], True)},
                        last_global_run=9)
    for before in (None, RunState(), previous):
        expected = format_ledger(histories), format_state(state_from_ledger(histories, before))
        assert format_ledger_and_state(histories, before) == expected
    bad = {A: EventHistory(A, [LedgerRow(0, 0.0, 0.0, True, -math.inf)])}
    for write in (lambda: format_ledger_and_state(bad, None), lambda: format_state(state_from_ledger(bad, None))):
        with pytest.raises(ValueError, match="wRMSD -inf cannot be stored"):
            write()


def test_original_sidecar_is_migrated_not_refused(tmp_path: Path) -> None:
    # The original tools key events '<h5>::<event>' and write NaN (Python's json) for a run that did not index.
    (tmp_path / LEDGER_NAME).write_text(
        "run_n,det_shift_x_mm,det_shift_y_mm,indexed,wrmsd,next_dx_mm,next_dy_mm,next_reason\n"
        "#/data/a.h5 event 0\n0,0.0,0.0,0,,0.01,0.02,step1_hillmap_explore\n1,0.01,0.02,1,0.5,,,\n")
    (tmp_path / STATE_NAME).write_text(
        '{"last_global_run": 1, "events": {"/data/a.h5::0": {"trials": ['
        '{"run_n": 0, "det_shift_x_mm": 0.0, "det_shift_y_mm": 0.0, "wrmsd": NaN, "success": false},'
        '{"run_n": 1, "det_shift_x_mm": 0.01, "det_shift_y_mm": 0.02, "wrmsd": 0.5, "success": true}],'
        '"proposal_history": [{"next_run_n": 1, "dx_mm": 0.01, "dy_mm": 0.02, "reason": "step1_hillmap_explore"}],'
        '"ever_indexed": true}}}')
    assert read_state(tmp_path / STATE_NAME).events[A].trials[0].wrmsd is None
    assert propose_run_root(tmp_path, ProposerOptions(policy="hillmap")).n_changed == 1
    document = json.loads((tmp_path / STATE_NAME).read_text())
    assert list(document["events"]) == ["/data/a.h5::0"]  # the original key form, read by its summary tools
    history = document["events"]["/data/a.h5::0"]["proposal_history"]
    assert [h["next_run_n"] for h in history] == [1, 2] and history[0]["reason"] == "step1_hillmap_explore"
