"""Propose the next shift of every event of a run root: patch the ledger, extend the sidecar (mm).

Proposals are pure functions of an event's runs, the knobs and its Step-2 file, so this step
recomputes the proposal of every event that is not DONE and patches the last ledger row where the
result differs from what is there (no proposal yet, or one made with other knobs or by another
tool). Same ledger + same knobs therefore changes nothing (no file is written); new knobs give new
proposals; DONE events stay DONE. Every changed proposal is appended to the event's
``proposal_history`` in ``image_run_state.json``. Both files are validated and formatted before
anything is written; a failure while writing the sidecar puts the old ledger back.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ptylib.ici.model import IciInputError
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.policy import propose_events
from ptylib.ici.runroot.commit import commit_files
from ptylib.ici.runroot.layout import LEDGER_NAME, STATE_NAME
from ptylib.ici.runroot.ledger import gc_paused, parse_ledger
from ptylib.ici.runroot.sidecar import (
    EventState,
    ProposalEntry,
    RunState,
    format_ledger_and_state,
    parse_state_histories,
)
from ptylib.io.lock import holds_run_root_lock


@dataclass(frozen=True)
class ProposeOutcome:
    """What one proposing pass did: every event's current proposal counted by reason, and how many changed."""

    counts_by_reason: dict[str, int]
    n_events: int
    n_changed: int
    n_done: int
    ledger_path: Path

    def to_text(self) -> str:
        """A short plain-text report (one line per reason)."""
        head = f"{self.ledger_path}: {self.n_events} events, {self.n_changed} proposals written, {self.n_done} DONE"
        lines = [head]
        lines += [f"  {count:>8d}  {reason}" for reason, count in sorted(self.counts_by_reason.items())]
        return "\n".join(lines)


@holds_run_root_lock("ici propose")
def propose_run_root(run_root: Path, options: ProposerOptions) -> ProposeOutcome:
    """Propose for every event of ``run_root/image_run_log.csv`` not yet DONE; see the module docstring.

    Raises :class:`~ptylib.ici.model.IciInputError` for a missing or malformed ledger or sidecar;
    then no file in the run root changes. Holds the run root's lock (RunRootLockedError while another
    process holds it).
    """
    run_root = Path(run_root)
    ledger_path, state_path = run_root / LEDGER_NAME, run_root / STATE_NAME
    try:
        old_ledger = ledger_path.read_bytes()
    except FileNotFoundError:
        raise IciInputError(str(ledger_path), "no ledger here: ingest a run before proposing") from None
    old_state = state_path.read_bytes() if state_path.exists() else None
    with gc_paused():
        histories = parse_ledger(old_ledger, str(ledger_path))
        previous = parse_state_histories(old_state, str(state_path)) if old_state is not None else RunState()
        event_indices = {key: index for index, key in enumerate(histories)}
        open_events = {key: h for key, h in histories.items() if h.rows and not h.is_done}
        proposals = propose_events(open_events, options, run_root, event_indices=event_indices)
        changed = {key: p for key, p in proposals.items() if histories[key].rows[-1].proposal != p}
        if changed:  # otherwise both files stay as they are
            for key, proposal in changed.items():
                last = histories[key].rows[-1]
                last.proposal, last.text = proposal, None
                previous.events.setdefault(key, EventState()).proposal_history.append(
                    ProposalEntry(last.run_n + 1, proposal))
            ledger_text, state_text = format_ledger_and_state(histories, previous)
            commit_files([(ledger_path, old_ledger, ledger_text), (state_path, old_state, state_text)])
    current = [h.rows[-1].proposal for h in histories.values() if h.rows]
    counts = Counter(p.reason for p in current if p is not None)
    return ProposeOutcome(dict(sorted(counts.items())), len(histories), len(changed),
                          sum(p is not None and p.is_done for p in current), ledger_path)
