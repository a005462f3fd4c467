"""Tests of the run-root summary (ptylib.ici.report.summary)."""

from __future__ import annotations

import math
import random
import shutil
import statistics
from pathlib import Path

import pytest
from ici_reference import state_from_ledger, write_state

from ptylib.ici.model import EventHistory, EventKey, IciInputError, LedgerRow, Proposal
from ptylib.ici.report.summary import ValueStats, summarize, summarize_run_root
from ptylib.ici.runroot.layout import LEDGER_NAME, STATE_NAME
from ptylib.ici.runroot.ledger import read_ledger
from ptylib.ici.runroot.sidecar import ProposalEntry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ici"
EV7 = EventKey("/data/lyso/lyso_001.h5", 7)
EV12 = EventKey("/data/beam time/lyso_002.h5", 12)


def test_summary_of_the_seed_form_ledger() -> None:
    summary = summarize(read_ledger(FIXTURES / "ledger_seed_form.csv"), None)
    assert (summary.n_events, summary.n_rows) == (4, 13)
    assert (summary.first_run, summary.previous_run, summary.current_run) == (0, 2, 3)
    # First runs: event 0 not indexed, event 7 at 1.204, event 12 not indexed, event 13 (first run 2) at 0.4321.
    assert summary.first_run_index_rate == 0.5
    assert summary.first_run_wrmsd == ValueStats(2, pytest.approx(0.81805), pytest.approx(0.81805), 0.4321, 1.204)
    prev, curr = summary.previous, summary.current
    assert (prev.run_n, prev.n_events, prev.n_indexed, prev.index_rate) == (2, 4, 3, 0.75)
    assert prev.best_wrmsd == ValueStats(3, pytest.approx((0.6512 + 1.204 + 0.4321) / 3), 0.6512, 0.4321, 1.204)
    assert (curr.run_n, curr.n_events, curr.n_indexed) == (3, 4, 3)
    assert curr.best_wrmsd == ValueStats(3, pytest.approx((0.6498 + 0.9877 + 0.4321) / 3), 0.6498, 0.4321, 0.9877)
    assert summary.proposals_by_category == {"step1": 0, "dxdy": 0, "model": 0, "done": 2, "other": 0, "pending": 2}
    assert summary.proposals_by_reason == {"done_noimprove": 1, "done_stability": 1}
    assert (summary.n_done, summary.done_fraction) == (2, 0.5)
    assert summary.done_best_wrmsd == ValueStats(2, pytest.approx(0.54095), pytest.approx(0.54095), 0.4321, 0.6498)
    assert summary.runs_per_event == ValueStats(4, 3.25, 4.0, 1.0, 4.0)


def test_sidecar_supplies_current_proposals_and_done() -> None:
    histories = read_ledger(FIXTURES / "ledger_seed_form.csv")
    state = state_from_ledger(histories, None)
    state.events[EV7].proposal_history.append(ProposalEntry(4, Proposal(0.01, 0.0, "dxdy_damped")))
    state.events[EV12].proposal_history.append(ProposalEntry(4, Proposal(None, None, "done_streak")))
    stale = EventKey("/data/lyso/lyso_001.h5", 0)
    state.events[stale].proposal_history.append(ProposalEntry(2, Proposal(0.3, 0.3, "model_gp")))  # older than the ledger
    summary = summarize(histories, state)
    assert summary.proposals_by_category == {"step1": 0, "dxdy": 1, "model": 0, "done": 3, "other": 0, "pending": 0}
    assert summary.proposals_by_reason == {"done_noimprove": 1, "done_stability": 1, "done_streak": 1, "dxdy_damped": 1}
    assert summary.n_done == 3 and summary.done_fraction == 0.75
    assert summary.done_best_wrmsd.count == 2  # event 12 never indexed


def test_outputs_text_markdown_table() -> None:
    summary = summarize(read_ledger(FIXTURES / "ledger_seed_form.csv"), None)
    rows = summary.table_rows()
    assert {"metric": "done events", "value": 2} in rows
    assert {"metric": "index rate, current run (%)", "value": 75.0} in rows
    assert {"metric": "proposals reason done_stability", "value": 1} in rows
    assert [row["metric"] for row in rows] == [label for label, _ in summary.metrics()]
    markdown = summary.to_markdown()
    assert markdown.startswith("| Metric | Value |\n|---|---|\n")
    assert "| done fraction (%) | 50 |" in markdown and "| first-run wRMSD max (px) | 1.204 |" in markdown
    assert markdown.count("\n") == len(rows) + 2
    text = summary.to_text()
    assert "best wRMSD median change (px)" in text and "-0.0014" in text and len(text.splitlines()) == len(rows)


def test_empty_ledger() -> None:
    summary = summarize({}, None)
    assert summary.n_events == 0 and summary.current is None and summary.first_run_index_rate is None
    assert summary.done_fraction is None and summary.runs_per_event == ValueStats(0, None, None, None, None)
    assert "| current run | - |" in summary.to_markdown()
    key = EventKey("/a.h5", 0)
    one = summarize({key: EventHistory(key, [LedgerRow(0, 0.0, 0.0, False, math.inf)])}, None)
    assert one.previous is None and one.current.n_indexed == 0 and one.current.index_rate == 0.0


def test_matches_a_plain_python_computation() -> None:
    rng = random.Random(7)
    histories: dict[EventKey, EventHistory] = {}
    for event in range(200):
        key = EventKey("/r.h5", event)
        start = rng.randint(0, 3)
        rows = [LedgerRow(run, 0.0, 0.0, False, rng.choice([None, math.inf, rng.uniform(0.2, 2.0)]),
                          Proposal(0.0, 0.0, rng.choice(["step1_a", "dxdy_b", "other"])))
                for run in range(start, start + rng.randint(1, 5))]
        histories[key] = EventHistory(key, rows)
    summary = summarize(histories, None)
    current, previous = summary.current_run, summary.previous_run
    for stats, cutoff in ((summary.current, current), (summary.previous, previous)):
        bests = [min((r.wrmsd for r in h.rows if r.run_n <= cutoff and r.succeeded), default=None)
                 for h in histories.values() if any(r.run_n <= cutoff for r in h.rows)]
        found = [b for b in bests if b is not None]
        assert stats.n_events == len(bests) and stats.n_indexed == len(found)
        assert stats.best_wrmsd.mean == pytest.approx(statistics.mean(found))
        assert stats.best_wrmsd.median == pytest.approx(statistics.median(found))
    firsts = [h.rows[0].wrmsd for h in histories.values() if h.rows[0].succeeded]
    assert summary.first_run_wrmsd.count == len(firsts)
    assert summary.first_run_wrmsd.median == pytest.approx(statistics.median(firsts))
    assert sum(summary.proposals_by_category.values()) == 200


def test_summarize_run_root(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "ledger_seed_form.csv", tmp_path / LEDGER_NAME)
    state = state_from_ledger(read_ledger(tmp_path / LEDGER_NAME), None)
    state.events[EV12].proposal_history.append(ProposalEntry(4, Proposal(None, None, "done_streak")))
    write_state(tmp_path / STATE_NAME, state)
    assert summarize_run_root(tmp_path).n_done == 3
    with pytest.raises(IciInputError, match="no ledger") as info:
        summarize_run_root(tmp_path / "empty")
    assert LEDGER_NAME in str(info.value)
