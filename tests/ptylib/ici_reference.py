"""Plain per-event reference versions of ICI code paths that production runs batched (tests only).

``state_from_ledger`` + ``format_state`` build the sidecar from objects, which
:func:`ptylib.ici.runroot.sidecar.format_ledger_and_state` does column-wise; ``propose_event``
proposes for one event with an explicit random stream, which
:func:`ptylib.ici.proposer.policy.propose_many` does for many events at once; ``make_dxdy_lookup``
reads Step-2 files from any folders, which :func:`ptylib.ici.proposer.dxdy.run_root_dxdy_lookup`
does for a run root's folders.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

from ptylib.ici.model import EventHistory, EventKey, Proposal
from ptylib.ici.proposer import policy
from ptylib.ici.proposer.baselines import propose_baseline
from ptylib.ici.proposer.centre_model import propose_model
from ptylib.ici.proposer.dxdy import (
    DXDY_NO_EVENT_DIR,
    DxdyLookup,
    DxdyResult,
    read_dxdy,
)
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.rng import EventStream
from ptylib.ici.runroot import sidecar
from ptylib.ici.runroot.layout import DXDY_NAME
from ptylib.ici.runroot.ledger import format_ledger
from ptylib.ici.runroot.sidecar import EventState, RunState, TrialRecord
from ptylib.io.atomic import atomic_write_text


def state_from_ledger(histories: Mapping[EventKey, EventHistory], previous: RunState | None) -> RunState:
    """Trials and ever-indexed flags from the ledger, proposal histories from ``previous``."""
    old_events = previous.events if previous is not None else {}
    last_run = previous.last_global_run if previous is not None else -1
    events: dict[EventKey, EventState] = {}
    for key, history in histories.items():
        trials = [TrialRecord(row.run_n, row.det_shift_x_mm, row.det_shift_y_mm, row.wrmsd, row.succeeded)
                  for row in history.rows]
        ever = any(row.indexed for row in history.rows) or any(trial.success for trial in trials)
        old = old_events.get(key)
        events[key] = EventState(trials, list(old.proposal_history) if old else [], ever)
        if trials:
            last_run = max(last_run, trials[-1].run_n)
    return RunState(events, last_run)


def format_state(state: RunState) -> str:
    """The sidecar text of ``state``, one trial at a time."""
    lines = []
    for key, event in state.events.items():
        texts = []
        for trial in event.trials:
            x, y = float(trial.det_shift_x_mm), float(trial.det_shift_y_mm)
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"trial of run {trial.run_n} has a non-finite shift ({x}, {y}) mm")
            wrmsd = "null" if trial.wrmsd is None else sidecar._wrmsd_json(trial.wrmsd)
            texts += sidecar._trial_texts([str(int(trial.run_n))], [repr(x)], [repr(y)], [wrmsd],
                                          [sidecar._json_bool(trial.success)])
        lines.append(sidecar._event_line(key, texts, event.proposal_history, event.ever_indexed))
    return sidecar._state_text(lines, state.last_global_run)


def write_state(path: Path, state: RunState) -> None:
    """Write ``format_state(state)`` to ``path``."""
    atomic_write_text(path, format_state(state))


def propose_event(history: EventHistory, options: ProposerOptions, *, dxdy_lookup: DxdyLookup,
                  rng: EventStream) -> Proposal:
    """The proposal of ``options.policy`` for one event whose Step-1 draws come from ``rng``."""
    if not history.rows:
        raise ValueError(f"event {history.key.label()} has no runs to propose from")

    def hillmap(h: EventHistory) -> Proposal:
        decision = policy._decide(h, options, dxdy_lookup)
        return decision if isinstance(decision, Proposal) else policy._draw_step1([(h, decision, rng)], options)[0]

    if options.policy == "hillmap":
        return hillmap(history)
    if options.policy == "model":
        return propose_model([history], options, dxdy_lookup, lambda pending: [hillmap(h) for h in pending])[0]
    return propose_baseline([history], options)[history.key]


def write_ledger(path: Path, histories: Mapping[EventKey, EventHistory]) -> None:
    """Write ``format_ledger(histories)`` to ``path``."""
    atomic_write_text(path, format_ledger(histories))


def make_dxdy_lookup(event_dirs: Callable[[EventKey, int], Path] | Mapping[tuple[EventKey, int], Path],
                     unit_to_mm: float) -> DxdyLookup:
    """A Step-2 lookup reading ``per_frame_dx_dy.csv`` in the folder ``event_dirs`` gives ``(event, run_n)``."""

    def lookup(key: EventKey, run_n: int) -> DxdyResult:
        try:
            directory = event_dirs[key, run_n] if isinstance(event_dirs, Mapping) else event_dirs(key, run_n)
        except KeyError:
            return None, None, DXDY_NO_EVENT_DIR
        return read_dxdy(Path(directory) / DXDY_NAME, unit_to_mm)

    return lookup
