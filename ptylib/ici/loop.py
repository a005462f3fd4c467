"""Planning one ICI iteration from the ledger (which events run next, at which shift, mm) and judging its outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ptylib.ici.backends.base import (
    EVENT_MARKER,
    STDERR_NAME,
    EventJob,
    read_event_outcome,
)
from ptylib.ici.model import EventHistory, EventKey
from ptylib.ici.runroot.layout import event_dir


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


class IndexerFailedError(RuntimeError):
    """The indexer failed on every event of a run (missing program, crash): the loop cannot make progress."""


def dead_indexer_message(run_root: Path, plan: RunPlan) -> str | None:
    """Why the indexer failed on every job of ``plan``, or None when any job exited 0 or indexed.

    A run where every job's indexer exited non-zero and nothing indexed (``indexamajig: command not
    found``, a DIALS crash on every still) says the indexer itself is broken: more iterations would
    only repeat it. The message quotes the last line of the first job's ``idx.stderr``. The jobs'
    completion records are removed, so that running the loop again (after fixing the indexer)
    reruns them instead of skipping them as completed.
    """
    dirs = [event_dir(run_root, plan.run_n, job.event_index) for job in plan.jobs]
    outcomes = [read_event_outcome(d) for d in dirs]
    if not dirs or any(o is None or o.exit_code == 0 for o in outcomes):
        return None
    first = dirs[0] / STDERR_NAME
    try:
        lines = first.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    last = next((line.strip() for line in reversed(lines) if line.strip()), "no message on stderr")
    for directory in dirs:
        (directory / EVENT_MARKER).unlink(missing_ok=True)
    codes = sorted({o.exit_code for o in outcomes if o is not None})
    return (f"the indexer failed on all {len(dirs)} events of run {plan.run_n:03d} (exit code "
            f"{', '.join(map(str, codes))}): {last} (see {first})")
