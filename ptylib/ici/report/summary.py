"""Summary of an ICI run root as the seed's ``summarize`` describes it (wRMSD in px, rates in %).

- First run: per event, its first run; index rate = events whose first run succeeded (finite
  wRMSD) / events with a run; wRMSD mean/median/min/max over those successes.
- Cumulative best per event, as of the previous and the current (latest) run: events with a
  run up to then, events with a success up to then (index rate), mean/median of each indexed
  event's best (lowest) wRMSD.
- Proposals: each event's current proposal (its last ledger row's, else the sidecar's latest
  one for a later run) counted by category (``step1*``, ``dxdy*``, ``model*``, ``done*``, other,
  pending = none yet) and by exact reason.
- DONE events (ledger ``done,done`` or a DONE current proposal in the sidecar): count, fraction
  of all events and the mean/median/min/max of their best wRMSD.
- Events, rows and runs per event (mean/min/max).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import numpy as np

from ptylib.ici.model import EventHistory, EventKey, IciInputError
from ptylib.ici.runroot.layout import LEDGER_NAME, STATE_NAME
from ptylib.ici.runroot.ledger import gc_paused, read_ledger
from ptylib.ici.runroot.sidecar import EventState, RunState, read_state

CATEGORIES = ("step1", "dxdy", "model", "done", "other", "pending")


@dataclass(frozen=True)
class ValueStats:
    """Count, mean, median, min and max of a set of values (wRMSD in px, or runs); None when empty."""

    count: int
    mean: float | None
    median: float | None
    min: float | None
    max: float | None

    @classmethod
    def of(cls, values: np.ndarray) -> ValueStats:
        """Statistics of a 1-D array of finite values."""
        if values.size == 0:
            return cls(0, None, None, None, None)
        return cls(int(values.size), float(values.mean()), float(np.median(values)), float(values.min()),
                   float(values.max()))


@dataclass(frozen=True)
class CumulativeStats:
    """Best-per-event statistics using the runs up to and including ``run_n``."""

    run_n: int
    n_events: int
    n_indexed: int
    best_wrmsd: ValueStats

    @property
    def index_rate(self) -> float | None:
        """Fraction (0..1) of the events present that indexed at least once."""
        return self.n_indexed / self.n_events if self.n_events else None


@dataclass(frozen=True)
class RunSummary:
    """The run-root summary; see the module docstring for each figure."""

    n_events: int
    n_rows: int
    first_run: int | None
    previous_run: int | None
    current_run: int | None
    first_run_n_events: int
    first_run_wrmsd: ValueStats
    previous: CumulativeStats | None
    current: CumulativeStats | None
    proposals_by_category: dict[str, int]
    proposals_by_reason: dict[str, int]
    n_done: int
    done_best_wrmsd: ValueStats
    runs_per_event: ValueStats

    @property
    def first_run_index_rate(self) -> float | None:
        """Fraction (0..1) of events whose first run succeeded."""
        return self.first_run_wrmsd.count / self.first_run_n_events if self.first_run_n_events else None

    @property
    def done_fraction(self) -> float | None:
        """Fraction (0..1) of events that are DONE."""
        return self.n_done / self.n_events if self.n_events else None

    def metrics(self) -> list[tuple[str, float | int | None]]:
        """All figures as (label, value) pairs in display order; rates in %, wRMSD in px."""
        prev, curr = self.previous, self.current
        pairs: list[tuple[str, float | int | None]] = [
            ("events", self.n_events),
            ("ledger rows", self.n_rows),
            ("first run", self.first_run),
            ("previous run", self.previous_run),
            ("current run", self.current_run),
            ("first-run index rate (%)", _percent(self.first_run_index_rate)),
            ("first-run indexed events", self.first_run_wrmsd.count),
            *_stat_pairs("first-run wRMSD", self.first_run_wrmsd),
            ("index rate, previous run (%)", _percent(prev.index_rate) if prev else None),
            ("index rate, current run (%)", _percent(curr.index_rate) if curr else None),
            ("index rate change (points)", _change(_percent(prev.index_rate) if prev else None,
                                                   _percent(curr.index_rate) if curr else None)),
            ("indexed events, previous run", prev.n_indexed if prev else None),
            ("indexed events, current run", curr.n_indexed if curr else None),
        ]
        for stat in ("mean", "median"):
            before = getattr(prev.best_wrmsd, stat) if prev else None
            now = getattr(curr.best_wrmsd, stat) if curr else None
            pairs += [(f"best wRMSD {stat}, previous run (px)", before),
                      (f"best wRMSD {stat}, current run (px)", now),
                      (f"best wRMSD {stat} change (px)", _change(before, now))]
        pairs += [(f"proposals {category}", count) for category, count in self.proposals_by_category.items()]
        pairs += [(f"proposals reason {reason}", count) for reason, count in self.proposals_by_reason.items()]
        pairs += [("done events", self.n_done), ("done fraction (%)", _percent(self.done_fraction)),
                  *_stat_pairs("done best wRMSD", self.done_best_wrmsd),
                  ("runs per event mean", self.runs_per_event.mean),
                  ("runs per event min", _as_int(self.runs_per_event.min)),
                  ("runs per event max", _as_int(self.runs_per_event.max))]
        return pairs

    def to_text(self) -> str:
        """Plain text, one line per figure: the label padded to a column, then the value."""
        pairs = self.metrics()
        width = max(len(label) for label, _ in pairs)
        return "\n".join(f"{label:<{width}}  {_fmt(value)}" for label, value in pairs) + "\n"

    def to_markdown(self) -> str:
        """A Markdown table of all figures."""
        lines = ["| Metric | Value |", "|---|---|"]
        lines += [f"| {_escape_cell(label)} | {_fmt(value)} |" for label, value in self.metrics()]
        return "\n".join(lines) + "\n"

    def table_rows(self) -> list[dict[str, object]]:
        """Rows ``{"metric": label, "value": value}`` for a table artifact (numbers unformatted)."""
        return [{"metric": label, "value": value} for label, value in self.metrics()]


def summarize(histories: Mapping[EventKey, EventHistory], state: RunState | None = None) -> RunSummary:
    """Summarise a ledger (and its sidecar, which refines DONE detection)."""
    counts = np.fromiter((len(history.rows) for history in histories.values()), dtype=np.int64,
                         count=len(histories))
    rows = [row for history in histories.values() for row in history.rows]
    runs = np.fromiter(map(attrgetter("run_n"), rows), dtype=np.int64, count=len(rows))
    wrmsd = np.array([row.wrmsd for row in rows], dtype=float)  # None -> NaN, inf = failure
    success = np.isfinite(wrmsd)
    event_of = np.repeat(np.arange(len(histories)), counts)
    starts = (np.cumsum(counts) - counts)[counts > 0]  # first row of each event with rows
    first_run, previous_run, current_run = _run_numbers(runs)
    best_all = _best_per_event(event_of, wrmsd, success, len(histories))
    done, by_category, by_reason = _proposals(histories, state)
    return RunSummary(
        n_events=len(histories),
        n_rows=len(rows),
        first_run=first_run,
        previous_run=previous_run,
        current_run=current_run,
        first_run_n_events=int(starts.size),
        first_run_wrmsd=ValueStats.of(wrmsd[starts][success[starts]]),
        previous=_cumulative(event_of, runs, wrmsd, success, len(histories), previous_run),
        current=_cumulative(event_of, runs, wrmsd, success, len(histories), current_run),
        proposals_by_category=by_category,
        proposals_by_reason=by_reason,
        n_done=int(done.sum()),
        done_best_wrmsd=ValueStats.of(best_all[done & np.isfinite(best_all)]),
        runs_per_event=ValueStats.of(counts.astype(float)),
    )


def summarize_run_root(run_root: Path) -> RunSummary:
    """Summarise ``run_root/image_run_log.csv`` with its ``image_run_state.json`` sidecar."""
    ledger_path = Path(run_root) / LEDGER_NAME
    if not ledger_path.is_file():
        raise IciInputError(str(ledger_path), "no ledger to summarise (no run has been ingested yet)")
    with gc_paused():
        return summarize(read_ledger(ledger_path), read_state(Path(run_root) / STATE_NAME))


def _run_numbers(runs: np.ndarray) -> tuple[int | None, int | None, int | None]:
    """First, previous (largest below the current) and current (latest) run present."""
    if runs.size == 0:
        return None, None, None
    current = int(runs.max())
    earlier = runs[runs < current]
    return int(runs.min()), (int(earlier.max()) if earlier.size else None), current


def _best_per_event(event_of: np.ndarray, wrmsd: np.ndarray, mask: np.ndarray, n_events: int) -> np.ndarray:
    """Lowest wRMSD (px) per event among the rows in ``mask`` (inf where none)."""
    best = np.full(n_events, np.inf)
    np.minimum.at(best, event_of[mask], wrmsd[mask])
    return best


def _cumulative(event_of: np.ndarray, runs: np.ndarray, wrmsd: np.ndarray, success: np.ndarray,
                n_events: int, run_n: int | None) -> CumulativeStats | None:
    """Best-per-event statistics using rows with ``run_n`` or earlier."""
    if run_n is None:
        return None
    upto = runs <= run_n
    present = np.bincount(event_of[upto], minlength=n_events) > 0
    best = _best_per_event(event_of, wrmsd, upto & success, n_events)[present]
    indexed = np.isfinite(best)
    return CumulativeStats(run_n, int(present.sum()), int(indexed.sum()), ValueStats.of(best[indexed]))


def _proposals(histories: Mapping[EventKey, EventHistory], state: RunState | None
               ) -> tuple[np.ndarray, dict[str, int], dict[str, int]]:
    """DONE flag per event and the current proposals counted by category and by reason."""
    events = state.events if state is not None else {}
    done = np.zeros(len(histories), dtype=bool)
    by_category = dict.fromkeys(CATEGORIES, 0)
    by_reason: Counter[str] = Counter()
    for index, (key, history) in enumerate(histories.items()):
        current = _current_proposal(history, events.get(key))
        if current is None:
            by_category["pending"] += 1
            continue
        reason, is_done = current
        done[index] = is_done
        by_category[_category(reason, is_done)] += 1
        by_reason[reason] += 1
    return done, by_category, dict(sorted(by_reason.items(), key=lambda item: (-item[1], item[0])))


def _current_proposal(history: EventHistory, event_state: EventState | None) -> tuple[str, bool] | None:
    """(reason, is DONE) of the event's current proposal, or None when it has none yet."""
    last = history.rows[-1] if history.rows else None
    if last is not None and last.proposal is not None:
        return last.proposal.reason, last.proposal.is_done
    if event_state is not None and event_state.proposal_history:
        entry = event_state.proposal_history[-1]
        if last is None or entry.next_run_n > last.run_n:
            return entry.proposal.reason, entry.proposal.is_done
    return None


def _category(reason: str, is_done: bool) -> str:
    """Category of a reason code by its prefix."""
    if is_done:
        return "done"
    return next((prefix for prefix in ("step1", "dxdy", "model", "done") if reason.startswith(prefix)), "other")


def _stat_pairs(label: str, stats: ValueStats) -> list[tuple[str, float | None]]:
    """(label, value) pairs of mean/median/min/max in px."""
    return [(f"{label} {name} (px)", getattr(stats, name)) for name in ("mean", "median", "min", "max")]


def _percent(fraction: float | None) -> float | None:
    """A fraction as a percentage."""
    return None if fraction is None else 100.0 * fraction


def _change(before: float | None, after: float | None) -> float | None:
    """after - before, None when either is missing."""
    return None if before is None or after is None else after - before


def _as_int(value: float | None) -> int | None:
    """A whole float as int (None stays None)."""
    return None if value is None else int(value)


def _escape_cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", r"\|")


def _fmt(value: float | None) -> str:
    """Display form: ``-`` for missing, integers as is, floats with 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"
