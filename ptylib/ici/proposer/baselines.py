"""Baseline search policies of the ICI convergence study: a fixed spiral and uniform random search (mm).

Both search the same disk as Step-1 (radius ``radius_mm`` around the event's first centre) with a
fixed budget of ``baseline_runs`` indexing runs per event, the first centre included, and learn
nothing from the results: they are what the hillmap and the centre model must beat.

``spiral`` (reason ``spiral_point``)
    run ``j`` (1 <= j < B, B = ``baseline_runs``) goes to the ``j``-th point of a Vogel (golden-angle)
    spiral, ``r_j = R sqrt(j / (B - 1))``, ``theta_j = j * 137.508 deg``: the same B points for every
    event, spread evenly over the disk, the last on its rim.
``random`` (reason ``random_point``)
    run ``j`` goes to a point uniform in the disk, ``r = R sqrt(u0)``, ``theta = 2 pi u1``, with
    ``u0, u1`` from the event's proposal stream (:mod:`ptylib.ici.proposer.rng`), so draws do not depend on
    event order.

After B runs the event is DONE with ``done_budget``; its answer is its best-wRMSD centre.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ptylib.ici.model import EventHistory, EventKey, Proposal
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.rng import event_stream, uniforms

REASON_SPIRAL = "spiral_point"
REASON_RANDOM = "random_point"
DONE_BUDGET = "done_budget"
GOLDEN_ANGLE_RAD = math.pi * (3.0 - math.sqrt(5.0))


def spiral_offsets_mm(radius_mm: float, budget: int) -> np.ndarray:
    """Offsets (budget, 2) in mm from the first centre of the spiral's points; row 0 is the first centre."""
    j = np.arange(budget, dtype=np.float64)
    r = radius_mm * np.sqrt(j / max(budget - 1, 1))
    return np.stack([r * np.cos(j * GOLDEN_ANGLE_RAD), r * np.sin(j * GOLDEN_ANGLE_RAD)], axis=1)


def random_offsets_mm(histories: list[EventHistory], options: ProposerOptions) -> np.ndarray:
    """Offsets (E, 2) in mm from each event's first centre, uniform in the disk, one per event."""
    if not histories:
        return np.zeros((0, 2))
    digest = options.digest()
    streams = [event_stream(h.key, h.rows[-1].run_n + 1, options.seed, digest) for h in histories]
    keys = np.array([s.candidate_key for s in streams], dtype=np.uint64)
    u = uniforms(keys, np.array([0, 1]))
    r = options.radius_mm * np.sqrt(u[:, 0])
    return np.stack([r * np.cos(2 * math.pi * u[:, 1]), r * np.sin(2 * math.pi * u[:, 1])], axis=1)


def propose_baseline(histories: Iterable[EventHistory], options: ProposerOptions) -> dict[EventKey, Proposal]:
    """Proposals of the ``spiral`` or ``random`` policy for every event with at least one run, in input order."""
    events = [h for h in histories if h.rows]
    proposals: dict[EventKey, Proposal] = {}
    searching: list[EventHistory] = []
    for history in events:
        last = history.rows[-1].proposal
        if last is not None and last.is_done:
            proposals[history.key] = last
        elif len(history.rows) >= options.baseline_runs:
            proposals[history.key] = Proposal(None, None, DONE_BUDGET)
        else:
            searching.append(history)
    if options.policy == "spiral":
        table = spiral_offsets_mm(options.radius_mm, options.baseline_runs)
        offsets = table[[len(h.rows) for h in searching]] if searching else np.zeros((0, 2))
        reason = REASON_SPIRAL
    else:
        offsets = random_offsets_mm(searching, options)
        reason = REASON_RANDOM
    for history, (dx, dy) in zip(searching, offsets.tolist()):
        first = history.rows[0]
        proposals[history.key] = Proposal(first.det_shift_x_mm + dx, first.det_shift_y_mm + dy, reason)
    return {h.key: proposals[h.key] for h in events}
