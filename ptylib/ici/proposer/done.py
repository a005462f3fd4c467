"""DONE rules of the proposer: when an event's centre search stops (wRMSD in px, lengths in mm).

Rules are checked in this order and the first that holds gives the reason code:

``done_streak``
    at least ``done_on_streak_successes`` successful runs ever, and the last
    ``done_on_streak_length`` (or more) runs in a row all failed.
``done_converged_dxdy``
    the last ``N_conv`` runs were all Step-2 (dx/dy) steps (the row before each carries a ``dxdy_*``
    proposal) and all succeeded, and BOTH: (recurring) every pair of their centres lies within
    ``recurring_tol * radius_mm`` of each other; (median) the median of their wRMSDs is at most
    ``(1 + median_rel_tol)`` times the event's best wRMSD.
``done_stable``
    the last ``stability_N`` successful wRMSDs have ``std / mean <= stability_std`` (population std).
``done_noimprove``
    there are more than ``noimprove_N`` successes and the best of the last ``noimprove_N`` successful
    wRMSDs improves on the best before them by at most ``noimprove_eps`` (relative):
    ``(best_before - best_last) / best_before <= noimprove_eps``.

A run succeeds when its wRMSD is finite; blank, ``nan`` and ``inf`` are failures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from ptylib.ici.model import LedgerRow
from ptylib.ici.proposer.options import ProposerOptions

DONE_STREAK = "done_streak"
DONE_CONVERGED_DXDY = "done_converged_dxdy"
DONE_STABLE = "done_stable"
DONE_NOIMPROVE = "done_noimprove"
DONE_STEP1_EXHAUSTED = "done_step1_exhausted"
DXDY_PREFIX = "dxdy"


def success_wrmsds(rows: Sequence[LedgerRow]) -> list[float]:
    """The finite wRMSDs (px) of an event's successful runs, in run order."""
    return [row.wrmsd for row in rows if row.wrmsd is not None and math.isfinite(row.wrmsd)]


def done_reason(rows: Sequence[LedgerRow], options: ProposerOptions) -> str | None:
    """The first DONE rule that holds for an event's runs (in run order), or None to keep searching."""
    successes = success_wrmsds(rows)
    if streak_done(rows, len(successes), options):
        return DONE_STREAK
    if _converged_dxdy_done(rows, successes, options):
        return DONE_CONVERGED_DXDY
    if _stable_done(successes, options):
        return DONE_STABLE
    if _noimprove_done(successes, options):
        return DONE_NOIMPROVE
    return None


def streak_done(rows: Sequence[LedgerRow], n_success: int, options: ProposerOptions) -> bool:
    """Enough successes ever and a trailing run of failures at least the streak length."""
    if n_success < options.done_on_streak_successes or len(rows) < options.done_on_streak_length:
        return False
    return not any(row.succeeded for row in rows[-options.done_on_streak_length :])


def _converged_dxdy_done(rows: Sequence[LedgerRow], successes: list[float], options: ProposerOptions) -> bool:
    """The last ``N_conv`` dx/dy steps recur in place AND their median wRMSD is near the best."""
    n = options.N_conv
    if len(rows) < n + 1 or len(successes) < n:
        return False
    recent = rows[-n:]
    for previous, row in zip(rows[-n - 1 : -1], recent):
        proposal = previous.proposal
        if proposal is None or not proposal.reason.startswith(DXDY_PREFIX) or not row.succeeded:
            return False
    reach = options.recurring_tol * options.radius_mm
    recurring = all(
        math.hypot(a.det_shift_x_mm - b.det_shift_x_mm, a.det_shift_y_mm - b.det_shift_y_mm) <= reach
        for i, a in enumerate(recent)
        for b in recent[i + 1 :]
    )
    return recurring and statistics.median(successes[-n:]) <= (1.0 + options.median_rel_tol) * min(successes)


def _stable_done(successes: list[float], options: ProposerOptions) -> bool:
    """Relative population std of the last ``stability_N`` successful wRMSDs within tolerance."""
    n = options.stability_N
    if len(successes) < n:
        return False
    last = successes[-n:]
    mean = math.fsum(last) / n
    spread = math.sqrt(math.fsum((value - mean) ** 2 for value in last) / n)
    return spread == 0.0 or (mean > 0 and spread / mean <= options.stability_std)


def _noimprove_done(successes: list[float], options: ProposerOptions) -> bool:
    """The last ``noimprove_N`` successes improve the earlier best by at most ``noimprove_eps`` (relative)."""
    n = options.noimprove_N
    if len(successes) <= n:
        return False
    best_before = min(successes[:-n])
    best_last = min(successes[-n:])
    if best_before <= 0:  # a perfect earlier fit cannot be improved on
        return True
    return (best_before - best_last) / best_before <= options.noimprove_eps
