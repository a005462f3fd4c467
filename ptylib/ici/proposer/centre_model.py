"""The model policy (``--policy model``): estimate each event's centre from a model of its runs (mm, px).

Per event, on its runs in run order (the first run's shift is the first centre ``c0``; R =
``radius_mm``; every proposal keeps ``min_spacing_mm`` from every centre already tried):

1. An event already DONE stays DONE; the seed's streak rule (:mod:`ptylib.ici.proposer.done`,
   ``done_streak``) still ends events that stopped indexing.
2. **REFINE** (``step2_algorithm == "dxdy"`` and at least one successful run has a usable
   ``per_frame_dx_dy.csv``): every such run gives a centre estimate ``applied - (dx, dy)``; their
   Huber-weighted mean and its standard error come from
   :func:`ptylib.ici.proposer.centre_fit.combine_estimates` (prior error ``model_refine_sigma_mm`` per
   axis). Standard error below ``model_refine_tol_mm``: DONE ``done_model_refined``; a run made at
   the previous refined centre that refines to it again (within ``model_repeat_tol_mm``, a
   deterministic indexer): DONE ``done_model_refined_repeat``; a latest success without dx/dy
   after one with it: DONE ``done_model_refined_no_dxdy``; otherwise propose the mean,
   ``model_refine_mean``. Like the seed's Step-2, this step is not bound to the disk.
3. **Probes** while the event has fewer than ``model_min_successes`` successes: the next point of
   the probe pattern not yet tried, ``model_probe``. The pattern is a triangle of radius
   ``rho = model_probe_frac * R`` around ``c0`` (angles 90, 210, 330 deg), then a triangle of
   radius ``0.4 rho`` (angles 0, 120, 240 deg) for events whose runs failed or whose fit is not yet
   usable (step 4). Together with ``c0`` the first triangle makes the four-parameter fit exactly
   determined and spread over the disk. Centres on one line or one circle cannot determine the
   cone; the inner triangle's radius and angles are chosen so that no four of the seven points
   (``c0`` and both triangles) lie on one circle or line, whichever runs failed (an inner triangle
   at 30, 150, 270 deg would form isosceles trapezoids with the outer one: always concyclic).
4. **FIXED**: the cone fit of :func:`ptylib.ici.proposer.centre_fit.fit_cone` over the successful runs.
   It is *well conditioned* when (a) the trial centres determine all four parameters (not all on
   one line or one circle), (b) the curvature ``k^2`` is significant
   (t-statistic >= ``model_min_curvature_t``: the surface is a bowl, not a plane or a dome) and
   (c) the standard error of ``c_next`` along its worst direction is at most
   ``model_max_centre_se_frac * R``; the fit is *bad* when its RMS standardised residual exceeds
   ``model_max_chi`` (the cone does not describe the runs). ``c_next`` is the fitted minimum
   ``c*`` projected onto the disk of radius R around ``c0`` (the minimum of the model over the
   disk); when ``c*`` lies outside, only its error across the direction from ``c0`` moves
   ``c_next``, scaled by ``R / |c* - c0|``. The predicted improvement
   ``min_i r_hat(c_i) - r_hat(c_next)`` over the successful centres ``c_i`` is compared with the
   wRMSD noise ``model_noise_frac * min_i r_i``: below it, DONE ``done_model_converged``;
   otherwise propose ``c_next``, ``model_fit_minimum`` (``model_fit_minimum_disk`` when the
   projection moved it). An ill-conditioned or bad fit takes the next untried probe first.
5. **Fallback** once the probes are exhausted (or no free point lies near the model's proposal):
   the hillmap policy decides (its own DONE rules included) and its reason gets
   ``_model_fallback_<why>``: ``few_successes``, ``illconditioned``, ``badfit``, ``spacing``.

A proposal closer than ``min_spacing_mm`` to a tried centre (a failed run there, or a refined
mean that happens to land on one) is moved to the nearest free point on rings of radius ``1.01 * min_spacing_mm`` around it (reason suffix
``_nudged``). Events are processed in batches (fits grouped by number of successes); no random
numbers are used outside the hillmap fallback, so results do not depend on event order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from ptylib.ici.model import EventHistory, Proposal
from ptylib.ici.proposer.centre_fit import ConeFit, combine_estimates, fit_cone
from ptylib.ici.proposer.done import DONE_STREAK, streak_done, success_wrmsds
from ptylib.ici.proposer.dxdy import DxdyLookup
from ptylib.ici.proposer.options import ProposerOptions

REASON_PROBE = "model_probe"
REASON_FIT = "model_fit_minimum"
REASON_FIT_DISK = "model_fit_minimum_disk"
REASON_REFINE = "model_refine_mean"
DONE_CONVERGED = "done_model_converged"
DONE_REFINED = "done_model_refined"
DONE_REPEATED = "done_model_refined_repeat"
DONE_NO_DXDY = "done_model_refined_no_dxdy"
NUDGED = "_nudged"
FALLBACK = "_model_fallback_"
WHY_FEW = "few_successes"
WHY_ILLCONDITIONED = "illconditioned"
WHY_BADFIT = "badfit"
WHY_SPACING = "spacing"

# (angle in deg, radius as a fraction of the probe radius) of the probes, in the order they are tried.
PROBES = ((90.0, 1.0), (210.0, 1.0), (330.0, 1.0), (0.0, 0.4), (120.0, 0.4), (240.0, 0.4))
_NUDGE_RINGS = 3
_NUDGE_ANGLES = 12

Fallback = Callable[[list[EventHistory]], list[Proposal]]


@dataclass(frozen=True)
class _Target:
    """A point (mm) the model wants to try next for event number ``event``, before the spacing check."""

    event: int
    x_mm: float
    y_mm: float
    reason: str
    in_disk: bool


def estimate_refined_centres(histories: Sequence[EventHistory], options: ProposerOptions,
                             dxdy_lookup: DxdyLookup) -> list[tuple[tuple[float, float] | None, float]]:
    """Each event's combined refined centre (mm) and its standard error (mm); ``(None, inf)`` without estimates."""
    estimates = [refined_estimates(h, options, dxdy_lookup) for h in histories]
    result: list[tuple[tuple[float, float] | None, float]] = [(None, math.inf)] * len(histories)
    for rows, mean, se in _combine_grouped(estimates, options):
        for row, centre, error in zip(rows.tolist(), mean.tolist(), se.tolist()):
            result[row] = ((centre[0], centre[1]), error)
    return result


def propose_model(histories: Sequence[EventHistory], options: ProposerOptions, dxdy_lookup: DxdyLookup,
                  fallback: Fallback) -> list[Proposal]:
    """Proposals (mm) of the model policy for ``histories`` (each with at least one run), in input order.

    ``fallback`` proposes with the hillmap policy for the events the model cannot handle.
    """
    n_events = len(histories)
    proposals: list[Proposal | None] = [None] * n_events
    why: dict[int, str] = {}
    refine: list[int] = []
    estimates: list[list[tuple[float, float]]] = []
    fixed: list[int] = []
    probe: list[int] = []
    for index, history in enumerate(histories):
        rows = history.rows
        if rows[-1].proposal is not None and rows[-1].proposal.is_done:
            proposals[index] = rows[-1].proposal
            continue
        n_success = len(success_wrmsds(rows))
        if streak_done(rows, n_success, options):
            proposals[index] = Proposal(None, None, DONE_STREAK)
            continue
        event_estimates = refined_estimates(history, options, dxdy_lookup) if n_success else []
        stop = _refined_stop(history, event_estimates, options, dxdy_lookup) if event_estimates else None
        if stop is not None:
            proposals[index] = Proposal(None, None, stop)
            continue
        if event_estimates:
            refine.append(index)
            estimates.append(event_estimates)
        elif n_success >= options.model_min_successes:
            fixed.append(index)
        else:
            probe.append(index)
    tried = _TriedCentres(histories)
    unusable: dict[int, str] = {event: WHY_FEW for event in probe}
    targets = _fit_targets(histories, fixed, tried, options, proposals, unusable)
    targets += _probe_targets(unusable, tried, options, why)
    targets += _refine_targets(refine, estimates, options, proposals)
    _place(targets, tried, options, proposals, why)
    if why:
        pending = sorted(why)
        for index, proposal in zip(pending, fallback([histories[i] for i in pending])):
            proposals[index] = Proposal(proposal.dx_mm, proposal.dy_mm, proposal.reason + FALLBACK + why[index])
    return cast(list[Proposal], proposals)  # every event got a proposal above


def refined_estimates(history: EventHistory, options: ProposerOptions,
                       dxdy_lookup: DxdyLookup) -> list[tuple[float, float]]:
    """Centre estimates ``applied - (dx, dy)`` (mm) of the event's successful runs with a usable dx/dy."""
    if options.step2_algorithm != "dxdy":
        return []
    out = []
    for row in history.rows:
        if row.succeeded:
            dx_mm, dy_mm, _ = dxdy_lookup(history.key, row.run_n)
            if dx_mm is not None and dy_mm is not None:
                out.append((row.det_shift_x_mm - dx_mm, row.det_shift_y_mm - dy_mm))
    return out


def _refined_stop(history: EventHistory, estimates: list[tuple[float, float]], options: ProposerOptions,
                  dxdy_lookup: DxdyLookup) -> str | None:
    """A DONE reason of REFINE that needs no more averaging, or None.

    ``done_model_refined_repeat``: the last run, made within ``model_repeat_tol_mm`` of the previous
    refined centre, refined to within that distance of it again (a deterministic indexer: averaging
    more runs would average no noise). ``done_model_refined_no_dxdy``: the event's latest success
    left no usable dx/dy although an earlier one did (the indexer stopped writing its refined shift,
    e.g. the original pipeline's later ``event_######_<suffix>`` folders): further runs cannot
    improve the combined refined centre.
    """
    successes = [row for row in history.rows if row.succeeded]
    last = successes[-1]
    dx_mm, dy_mm, _ = dxdy_lookup(history.key, last.run_n)
    if dx_mm is None or dy_mm is None:
        return DONE_NO_DXDY
    if len(estimates) < 2 or history.rows[-1] is not last:
        return None
    tol = options.model_repeat_tol_mm
    previous, latest = estimates[-2], estimates[-1]
    applied = (last.det_shift_x_mm, last.det_shift_y_mm)
    if math.dist(applied, previous) <= tol and math.dist(latest, previous) <= tol:
        return DONE_REPEATED
    return None


class _TriedCentres:
    """Every tried centre (mm) of every event as a NaN-padded (E x K x 2) array, and the first centres (E x 2)."""

    def __init__(self, histories: Sequence[EventHistory]):
        counts = np.array([len(h.rows) for h in histories], dtype=np.int64)
        flat = np.array([(row.det_shift_x_mm, row.det_shift_y_mm) for h in histories for row in h.rows],
                        dtype=np.float64).reshape(-1, 2)
        event_of = np.repeat(np.arange(counts.size), counts)
        position = np.arange(flat.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
        self.xy = np.full((counts.size, int(counts.max(initial=1)), 2), np.nan)
        self.xy[event_of, position] = flat
        self.first = self.xy[:, 0, :]

    def nearest2(self, events: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Squared distance (mm^2) from ``points`` (n x M x 2) of ``events`` (n,) to their nearest tried centre (n x M)."""
        d2 = np.sum((points[:, :, None, :] - self.xy[events, None, :, :]) ** 2, axis=-1)
        return np.min(np.where(np.isnan(d2), np.inf, d2), axis=-1)


def _probe_targets(unusable: dict[int, str], tried: _TriedCentres, options: ProposerOptions,
                   why: dict[int, str]) -> list[_Target]:
    """The first untried probe of each event of ``unusable``; events without one go to the fallback with their why."""
    if not unusable:
        return []
    events = sorted(unusable)
    rows = np.asarray(events)
    angles, radii = np.deg2rad(np.array(PROBES)[:, 0]), np.array(PROBES)[:, 1]
    pattern = radii[:, None] * np.stack((np.cos(angles), np.sin(angles)), axis=-1)
    probes = tried.first[rows, None, :] + options.model_probe_frac * options.radius_mm * pattern[None]
    free = tried.nearest2(rows, probes) >= options.min_spacing_mm**2
    first_free = np.argmax(free, axis=1)
    targets = []
    for position, (event, has_free) in enumerate(zip(events, free.any(axis=1).tolist())):
        if has_free:
            x, y = probes[position, first_free[position]].tolist()
            targets.append(_Target(event, x, y, REASON_PROBE, True))
        else:
            why[event] = unusable[event]
    return targets


def _fit_targets(histories: Sequence[EventHistory], events: list[int], tried: _TriedCentres,
                 options: ProposerOptions, proposals: list[Proposal | None],
                 unusable: dict[int, str]) -> list[_Target]:
    """Cone fits of ``events`` (grouped by number of successes): DONE, the fitted minimum, or (in ``unusable``) why not."""
    groups: dict[int, list[int]] = {}
    trials: dict[int, list[tuple[float, float, float]]] = {}
    for event in events:
        trials[event] = [(row.det_shift_x_mm, row.det_shift_y_mm, row.wrmsd) for row in histories[event].rows
                         if row.succeeded]
        groups.setdefault(len(trials[event]), []).append(event)
    radius = options.radius_mm
    targets = []
    for members in groups.values():
        data = np.array([trials[event] for event in members], dtype=np.float64)
        xy, wrmsd = data[:, :, :2], data[:, :, 2]
        origin = tried.first[np.asarray(members)]
        fit = fit_cone(xy, wrmsd, origin, radius, options.model_noise_frac)
        best, outside, best_se = _project_to_disk(fit, origin, radius)
        well = (fit.full_rank & (fit.curvature_t >= options.model_min_curvature_t)
                & (best_se <= options.model_max_centre_se_frac * radius) & np.isfinite(best).all(axis=1))
        gain = np.min(fit.predict_px(xy), axis=1) - fit.predict_px(best[:, None, :])[:, 0]
        noise = options.model_noise_frac * np.min(wrmsd, axis=1)
        for position, event in enumerate(members):
            if not well[position]:
                unusable[event] = WHY_ILLCONDITIONED
            elif fit.chi[position] > options.model_max_chi:
                unusable[event] = WHY_BADFIT
            elif gain[position] < noise[position]:
                proposals[event] = Proposal(None, None, DONE_CONVERGED)
            else:
                x, y = best[position].tolist()
                targets.append(_Target(event, x, y, REASON_FIT_DISK if outside[position] else REASON_FIT, True))
    return targets


def _project_to_disk(fit: ConeFit, origin: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's minimum over the disk (n x 2, mm), whether ``c*`` lay outside it (n,), and that point's error (n, mm).

    Inside, the error is the centre's standard error along its worst direction. Outside, the point
    is ``c0 + R v / |v|`` (``v = c* - c0``): it moves only with the centre's error across ``v``,
    scaled by ``R / |v|``, so a far but well-aimed extrapolation still gives a precise proposal.
    """
    offset = fit.centre_mm - origin
    distance = np.hypot(offset[:, 0], offset[:, 1])
    outside = distance > radius
    shrink = np.where(outside, radius / np.where(outside, distance, 1.0), 1.0)
    across = np.stack((-offset[:, 1], offset[:, 0]), axis=-1) / np.where(distance > 0, distance, 1.0)[:, None]
    across_var = np.einsum("ei,eij,ej->e", across, fit.centre_cov_mm2, across)
    error = np.where(outside, shrink * np.sqrt(np.maximum(across_var, 0.0)), fit.centre_se_mm())
    return origin + offset * shrink[:, None], outside, error


def _combine_grouped(estimates: Sequence[list[tuple[float, float]]],
                     options: ProposerOptions) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Combined refined centres of events grouped by number of estimates: (positions, mean (n x 2), SE (n,))."""
    groups: dict[int, list[int]] = {}
    for position, event_estimates in enumerate(estimates):
        if event_estimates:
            groups.setdefault(len(event_estimates), []).append(position)
    out = []
    for members in groups.values():
        mean, se = combine_estimates(np.array([estimates[p] for p in members], dtype=np.float64),
                                     options.model_refine_sigma_mm)
        out.append((np.asarray(members), mean, se))
    return out


def _refine_targets(events: list[int], estimates: list[list[tuple[float, float]]], options: ProposerOptions,
                    proposals: list[Proposal | None]) -> list[_Target]:
    """DONE when the combined refined centre is precise enough, otherwise that centre as the next shift."""
    targets = []
    for positions, mean, se in _combine_grouped(estimates, options):
        for position, (x, y), error in zip(positions.tolist(), mean.tolist(), se.tolist()):
            if error < options.model_refine_tol_mm:
                proposals[events[position]] = Proposal(None, None, DONE_REFINED)
            else:
                targets.append(_Target(events[position], x, y, REASON_REFINE, False))
    return targets


def _place(targets: list[_Target], tried: _TriedCentres, options: ProposerOptions,
           proposals: list[Proposal | None], why: dict[int, str]) -> None:
    """Turn targets into proposals, moving those that sit on a tried centre to a free point nearby."""
    if not targets:
        return
    events = np.array([t.event for t in targets])
    points = np.array([(t.x_mm, t.y_mm) for t in targets], dtype=np.float64)[:, None, :]
    free = (tried.nearest2(events, points)[:, 0] >= options.min_spacing_mm**2).tolist()
    for target, is_free in zip(targets, free):
        if is_free:
            proposals[target.event] = Proposal(target.x_mm, target.y_mm, target.reason)
            continue
        # Rare (a failed run there, or a coincidence): a Python loop over these events is cheap enough.
        moved = _nudge(target, tried, options)
        if moved is None:
            why[target.event] = WHY_SPACING
        else:
            proposals[target.event] = Proposal(moved[0], moved[1], target.reason + NUDGED)


def _nudge(target: _Target, tried: _TriedCentres, options: ProposerOptions) -> tuple[float, float] | None:
    """The first free point (mm) on rings of radius 1.01, 2.02, 3.03 x ``min_spacing_mm`` around the target.

    Points of targets bound to the disk must lie in it.
    """
    radii = 1.01 * options.min_spacing_mm * np.arange(1, _NUDGE_RINGS + 1)
    angles = 2.0 * np.pi * np.arange(_NUDGE_ANGLES) / _NUDGE_ANGLES
    ring = np.stack((np.outer(radii, np.cos(angles)).ravel(), np.outer(radii, np.sin(angles)).ravel()), axis=-1)
    candidates = np.array([target.x_mm, target.y_mm]) + ring
    event = np.array([target.event])
    ok = tried.nearest2(event, candidates[None])[0] >= options.min_spacing_mm**2
    if target.in_disk:
        ok &= np.hypot(*(candidates - tried.first[target.event]).T) <= options.radius_mm
    if not ok.any():
        return None
    x, y = candidates[np.argmax(ok)].tolist()
    return x, y
