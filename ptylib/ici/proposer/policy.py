"""The proposer: dispatch on ``options.policy``, and the seed's hillmap policy (Option A) (mm).

``policy="model"`` runs :mod:`ptylib.ici.proposer.centre_model` (which falls back to the hillmap policy
below); ``policy="hillmap"`` runs the seed's switching logic; ``spiral`` and ``random`` are the
convergence study's baselines (:mod:`ptylib.ici.proposer.baselines`). Per event, on its runs in run order:

1. An event already DONE stays DONE (its proposal is returned unchanged).
2. A DONE rule (:mod:`ptylib.ici.proposer.done`) that holds ends the search: ``done_*``.
3. The last run succeeded (finite wRMSD) and ``step2_algorithm == "dxdy"``: read the dx/dy of that
   run (the event's latest success); ``next = last - damping_factor * (dx, dy)`` with reason
   ``dxdy_damped``. Without a usable dx/dy: Step-1 ``step1_hillmap_wrmsd_sample_fallback_nodxdy``;
   when the damped point lies closer than ``min_spacing_mm`` to a tried centre:
   ``step1_hillmap_wrmsd_sample_fallback_dxdy_spacing``.
4. Otherwise Step-1: ``step1_hillmap_explore`` while the event never succeeded (no hills yet),
   ``step1_hillmap_wrmsd_sample`` once it has.

Step-1 reasons get ``_relaxed`` when the spacing had to be relaxed; ``done_step1_exhausted`` when no
candidate respects the spacing and relaxing is off. Step-1 draws of many events run as one batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from ptylib.ici.model import EventHistory, EventKey, Proposal
from ptylib.ici.proposer.baselines import propose_baseline
from ptylib.ici.proposer.centre_model import propose_model
from ptylib.ici.proposer.done import DONE_STEP1_EXHAUSTED, done_reason
from ptylib.ici.proposer.dxdy import DxdyLookup, run_root_dxdy_lookup
from ptylib.ici.proposer.hillmap import (
    STATUS_EXHAUSTED,
    STATUS_RELAXED,
    Step1Batch,
    sample_step1,
)
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.rng import EventStream, event_stream
from ptylib.ici.runroot.ledger import gc_paused

REASON_EXPLORE = "step1_hillmap_explore"
REASON_WEIGHTED = "step1_hillmap_wrmsd_sample"
REASON_DXDY = "dxdy_damped"
FALLBACK_NODXDY = "_fallback_nodxdy"
FALLBACK_DXDY_SPACING = "_fallback_dxdy_spacing"
RELAXED = "_relaxed"


def respects_spacing(x_mm: float, y_mm: float, history: EventHistory, spacing_mm: float) -> bool:
    """True when ``(x_mm, y_mm)`` lies at least ``spacing_mm`` from every centre the event has tried."""
    limit = spacing_mm * spacing_mm
    return all((x_mm - row.det_shift_x_mm) ** 2 + (y_mm - row.det_shift_y_mm) ** 2 >= limit for row in history.rows)


def _decide(history: EventHistory, options: ProposerOptions, dxdy_lookup: DxdyLookup) -> Proposal | str:
    """A final proposal (DONE or Step-2), or the reason code of the Step-1 draw still to make."""
    rows = history.rows
    if rows[-1].proposal is not None and rows[-1].proposal.is_done:
        return rows[-1].proposal
    reason = done_reason(rows, options)
    if reason is not None:
        return Proposal(None, None, reason)
    last = rows[-1]
    if last.succeeded and options.step2_algorithm == "dxdy":
        dx_mm, dy_mm, _ = dxdy_lookup(history.key, last.run_n)
        if dx_mm is None or dy_mm is None:
            return REASON_WEIGHTED + FALLBACK_NODXDY
        x_mm = last.det_shift_x_mm - options.damping_factor * dx_mm
        y_mm = last.det_shift_y_mm - options.damping_factor * dy_mm
        if not respects_spacing(x_mm, y_mm, history, options.min_spacing_mm):
            return REASON_WEIGHTED + FALLBACK_DXDY_SPACING
        return Proposal(x_mm, y_mm, REASON_DXDY)
    return REASON_WEIGHTED if any(row.succeeded for row in rows) else REASON_EXPLORE


def _step1_batch(histories: list[EventHistory], streams: list[EventStream]) -> Step1Batch:
    """Flatten the trials of events that need a Step-1 draw."""
    rows = [row for history in histories for row in history.rows]
    xy = np.array([(row.det_shift_x_mm, row.det_shift_y_mm) for row in rows], dtype=np.float64).reshape(-1, 2)
    wrmsd = np.array([row.wrmsd if row.succeeded else math.nan for row in rows], dtype=np.float64)
    counts = np.array([len(history.rows) for history in histories], dtype=np.int64)
    keys = np.array([(s.candidate_key, s.select_key) for s in streams], dtype=np.uint64).reshape(-1, 2)
    return Step1Batch(xy, wrmsd, counts, keys)


def _draw_step1(pending: list[tuple[EventHistory, str, EventStream]], options: ProposerOptions) -> list[Proposal]:
    """Run the Step-1 draws of ``pending`` (event, reason, stream) as one batch."""
    if not pending:
        return []
    histories, reasons, streams = zip(*pending)
    shifts, status = sample_step1(_step1_batch(list(histories), list(streams)), options)
    proposals = []
    for (x_mm, y_mm), code, reason in zip(shifts.tolist(), status.tolist(), reasons):
        if code == STATUS_EXHAUSTED:
            proposals.append(Proposal(None, None, DONE_STEP1_EXHAUSTED))
        else:
            proposals.append(Proposal(x_mm, y_mm, reason + RELAXED if code == STATUS_RELAXED else reason))
    return proposals


def _hillmap_many(histories: Iterable[EventHistory], options: ProposerOptions,
                  dxdy_lookup: DxdyLookup) -> dict[EventKey, Proposal]:
    """The hillmap policy's proposals for every event with at least one run; Step-1 draws batched across events."""
    digest = options.digest()
    events = [history for history in histories if history.rows]
    proposals: dict[EventKey, Proposal] = {}
    pending: list[tuple[EventHistory, str, EventStream]] = []
    with gc_paused():  # millions of small objects: the cyclic collector would rescan them repeatedly
        for history in events:
            decision = _decide(history, options, dxdy_lookup)
            if isinstance(decision, Proposal):
                proposals[history.key] = decision
            else:
                stream = event_stream(history.key, history.rows[-1].run_n + 1, options.seed, digest)
                pending.append((history, decision, stream))
        for (history, _, _), proposal in zip(pending, _draw_step1(pending, options)):
            proposals[history.key] = proposal
        return {history.key: proposals[history.key] for history in events}


def _model_many(histories: Iterable[EventHistory], options: ProposerOptions,
                dxdy_lookup: DxdyLookup) -> dict[EventKey, Proposal]:
    """The model policy's proposals for every event with at least one run; fallbacks go to the hillmap in one batch."""
    events = [history for history in histories if history.rows]
    with gc_paused():
        proposals = propose_model(events, options, dxdy_lookup,
                                  lambda pending: list(_hillmap_many(pending, options, dxdy_lookup).values()))
    return {history.key: proposal for history, proposal in zip(events, proposals)}


def _baseline_many(histories: Iterable[EventHistory], options: ProposerOptions,
                   dxdy_lookup: DxdyLookup) -> dict[EventKey, Proposal]:
    """A baseline policy's proposals for every event with at least one run."""
    return propose_baseline(histories, options)


ManyPolicy = Callable[[Iterable[EventHistory], ProposerOptions, DxdyLookup], dict[EventKey, Proposal]]
MANY_POLICIES: dict[str, ManyPolicy] = {"hillmap": _hillmap_many, "model": _model_many,
                                        "spiral": _baseline_many, "random": _baseline_many}


def propose_many(histories: Iterable[EventHistory], options: ProposerOptions,
                 dxdy_lookup: DxdyLookup) -> dict[EventKey, Proposal]:
    """Proposals for every event with at least one run, in input order, by the policy ``options.policy``."""
    return MANY_POLICIES[options.policy](histories, options, dxdy_lookup)


def propose_events(histories: Mapping[EventKey, EventHistory], options: ProposerOptions, run_root: Path, *,
                   event_indices: Mapping[EventKey, int] | None = None) -> dict[EventKey, Proposal]:
    """Proposals (mm) for every event of ``histories``; Step-2 reads ``run_root/run_###/event_######``.

    ``event_indices`` maps each event to its directory index; by default its position in ``histories``
    (the ledger's first-seen section order).
    """
    indices = event_indices if event_indices is not None else {key: i for i, key in enumerate(histories)}
    lookup = run_root_dxdy_lookup(Path(run_root), indices, options.dxdy_unit_to_mm)
    return propose_many(histories.values(), options, lookup)
