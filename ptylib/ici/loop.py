"""Planning one ICI iteration from the ledger: which events run next, at which shift (mm)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ptylib.ici.backends.base import EventJob
from ptylib.ici.model import EventHistory, EventKey


@dataclass(frozen=True)
class RunPlan:
    """The jobs of run ``run_n`` (events not yet DONE) and how many events are already DONE."""

    run_n: int
    jobs: tuple[EventJob, ...]
    n_done: int


def plan_next_run(
    histories: Mapping[EventKey, EventHistory],
    events: Sequence[EventKey],
    last_global_run: int,
    initial_shift_mm: tuple[float, float] = (0.0, 0.0),
) -> RunPlan:
    """Jobs for run ``last_global_run + 1``: new events at the initial shift, others at their proposal.

    ``events`` fixes each event's directory index (its position), so it must be the same list on every
    iteration. Raises ValueError when an event's last row still lacks a proposal (propose first).
    """
    run_n = last_global_run + 1
    jobs: list[EventJob] = []
    n_done = 0
    for index, key in enumerate(events):
        history = histories.get(key)
        if history is None or not history.rows:
            jobs.append(EventJob(key, index, run_n, *initial_shift_mm))
            continue
        if history.is_done:
            n_done += 1
            continue
        proposal = history.rows[-1].proposal
        if proposal is None or proposal.dx_mm is None or proposal.dy_mm is None:
            raise ValueError(f"event {key.label()} has no proposal after run {history.rows[-1].run_n}; propose first")
        jobs.append(EventJob(key, index, run_n, proposal.dx_mm, proposal.dy_mm))
    return RunPlan(run_n, tuple(jobs), n_done)
