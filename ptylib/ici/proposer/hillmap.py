"""Step-1 of the proposer: the wRMSD-weighted hillmap, vectorised over candidates and events (mm, px).

For one event with first centre ``c0`` (the shift of its first run), tried centres ``p_k`` (every run,
absolute mm), successes ``s_i`` with wRMSD ``r_i`` (px) and failures ``f_j``::

    G(d)  = exp(-|d|^2 / (2 sigma^2)),   sigma = R / 2
    w_i   = exp(-beta (r_i - min r)) / sum_i exp(-beta (r_i - min r))
    W(c)  = max(0, A0 / max(1, n_s) G(c - c0)
                   + hill_amp_frac A0 sum_i w_i G(c - s_i)
                   - drop_amp_frac A0 sum_j G(c - f_j)) + explore_floor

``C`` candidates ``c_j`` are uniform in the disk of radius ``R`` around ``c0``; candidates closer than
``min_spacing_mm`` to any tried centre get weight 0; one candidate is drawn with probability
``W(c_j) / sum W``. Everything is computed in one absolute frame.

The draw is exact rejection sampling over that candidate set: pick ``j`` uniformly, accept with
probability ``W(c_j) / M`` for a bound ``M >= max W``. Each accepted index is distributed exactly as
``W(c_j) / sum W``, and only the visited candidates are evaluated (tens instead of 8192).
``M = floor + sum of the positive amplitudes``, except for events without a success: there
``W(c) - floor <= max(0, H(u))`` with ``u = (c - c0) / sigma`` and the concave
``H(u) = a_0 - sum_j b_j exp(u.v_j - |v_j|^2 / 2)`` (``v_j = (f_j - c0) / sigma``), so any tangent
plane of ``H`` bounds it on the disk; a few Newton steps find a nearly tight one. That keeps the
acceptance high when failures have cancelled the base Gaussian and only the floor is left.
An event that accepts nothing within ``C / 4`` tries is drawn by evaluating all ``C`` candidates
(same distribution); so is the spacing relaxation, which needs every candidate's distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.rng import uniforms

STATUS_OK = 0
STATUS_RELAXED = 1
STATUS_EXHAUSTED = 2

_TRIES = 32  # candidates visited per event in the first rejection round; doubles every round
_TRY_FRACTION = 4  # visit at most C / _TRY_FRACTION candidates before evaluating all C
_CHUNK = 1 << 16  # candidates per numpy pass (all events of a chunk together): stays in cache
_FULL_DRAW_COUNTER = 1 << 40  # selection-stream counter of the full draw, far from the rejection counters
_MAX_HALVINGS = 64
_NEWTON_STEPS = 12


@dataclass(frozen=True)
class Step1Batch:
    """The trials of ``E`` events, flattened in event order.

    ``xy`` (N x 2, mm): every tried centre; ``wrmsd`` (N, px): NaN where the run failed;
    ``counts`` (E,): trials per event (>= 1; the first is the event's first centre);
    ``keys`` (E x 2, uint64): candidate and selection stream keys (:mod:`ptylib.ici.proposer.rng`).
    """

    xy: np.ndarray
    wrmsd: np.ndarray
    counts: np.ndarray
    keys: np.ndarray

    def starts(self) -> np.ndarray:
        """Index in ``xy`` of each event's first trial."""
        return np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)


@dataclass(frozen=True)
class _Group:
    """Events with the same number K of trials: tried centres (E x K, mm; column 0 = first centre), their
    amplitudes, the two stream keys and the weight bound M of each event."""

    x: np.ndarray
    y: np.ndarray
    amp: np.ndarray
    candidate_keys: np.ndarray
    select_keys: np.ndarray
    bound: np.ndarray

    def take(self, rows: np.ndarray) -> _Group:
        """The sub-group of ``rows``."""
        return _Group(self.x[rows], self.y[rows], self.amp[rows], self.candidate_keys[rows],
                      self.select_keys[rows], self.bound[rows])


def trial_amplitudes(batch: Step1Batch, options: ProposerOptions) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian amplitude of every trial (N,), the base folded into each event's first, and successes per event (E,)."""
    starts, counts = batch.starts(), batch.counts
    ok = np.isfinite(batch.wrmsd)
    event_of = np.repeat(np.arange(counts.size), counts)
    n_success = np.add.reduceat(ok.astype(np.int64), starts)
    wr_min = np.minimum.reduceat(np.where(ok, batch.wrmsd, np.inf), starts)
    wr_min = np.where(np.isfinite(wr_min), wr_min, 0.0)  # events without successes have no hills anyway
    excess = np.where(ok, batch.wrmsd - wr_min[event_of], 0.0)
    boltzmann = np.where(ok, np.exp(-options.beta * excess), 0.0)
    norm = np.add.reduceat(boltzmann, starts)
    a0 = options.step1_A0
    hills = options.step1_hill_amp_frac * a0 * boltzmann / np.where(norm > 0, norm, 1.0)[event_of]
    amplitudes = np.where(ok, hills, -options.step1_drop_amp_frac * a0)
    # The base Gaussian sits at the first centre, which is also the first trial's centre.
    amplitudes[starts] += a0 / np.maximum(1, n_success)
    return amplitudes, n_success


def sample_step1(batch: Step1Batch, options: ProposerOptions) -> tuple[np.ndarray, np.ndarray]:
    """Draw one Step-1 proposal per event: shifts (E x 2, mm; NaN when exhausted) and status codes (E,).

    Status: ``STATUS_OK``; ``STATUS_RELAXED`` (no candidate respected ``min_spacing_mm``, the spacing was
    halved until one did; only with ``step1_allow_spacing_relax``); ``STATUS_EXHAUSTED`` (no candidate
    respects the spacing and relaxing is not allowed).
    """
    n_events = batch.counts.size
    out = np.full((n_events, 2), np.nan)
    status = np.zeros(n_events, dtype=np.int8)
    if n_events == 0:
        return out, status
    amplitudes, n_success = trial_amplitudes(batch, options)
    starts = batch.starts()
    # Events with equal trial counts are processed together (no padding); results do not depend on grouping.
    order = np.argsort(batch.counts, kind="stable")
    sorted_counts = batch.counts[order]
    for n_trials in np.unique(sorted_counts):
        events = order[np.searchsorted(sorted_counts, n_trials) : np.searchsorted(sorted_counts, n_trials, "right")]
        index = starts[events, None] + np.arange(n_trials)[None, :]
        amp = amplitudes[index]
        bound = np.maximum(amp, 0.0).sum(axis=1)
        no_hills = n_success[events] == 0
        x, y = batch.xy[index, 0], batch.xy[index, 1]
        if no_hills.any():
            bound[no_hills] = np.minimum(bound[no_hills], _concave_bound(x[no_hills], y[no_hills], amp[no_hills],
                                                                         options.radius_mm))
        group = _Group(x, y, amp, batch.keys[events, 0], batch.keys[events, 1], options.step1_explore_floor + bound)
        rows, xy = _rejection_draw(group, options)
        out[events[rows]] = xy
        left = np.setdiff1d(np.arange(events.size), rows, assume_unique=True)
        if left.size:
            out[events[left]], status[events[left]] = _full_draw(group.take(left), options)
    return out, status


def _concave_bound(x: np.ndarray, y: np.ndarray, amp: np.ndarray, radius_mm: float) -> np.ndarray:
    """Upper bound (E,) of ``max(0, W - floor)`` on the disk for events whose only positive amplitude is the first.

    Tangent planes of the concave ``H`` (module docstring) at Newton iterates ``q``:
    ``H(u) <= H(q) + g.(u - q) <= H(q) - g.q + rho |g|`` on ``|u| <= rho = R / sigma = 2``.
    """
    sigma = radius_mm / 2.0
    vx, vy = (x[:, 1:] - x[:, :1]) / sigma, (y[:, 1:] - y[:, :1]) / sigma
    b = -amp[:, 1:]  # > 0: failures only
    offset = -0.5 * (vx * vx + vy * vy)
    qx, qy = np.zeros(x.shape[0]), np.zeros(x.shape[0])
    rho = 2.0
    best = np.full(x.shape[0], np.inf)
    for _ in range(_NEWTON_STEPS + 1):
        e = b * np.exp(qx[:, None] * vx + qy[:, None] * vy + offset)
        h = amp[:, 0] - e.sum(axis=1)
        gx, gy = -(e * vx).sum(axis=1), -(e * vy).sum(axis=1)
        best = np.minimum(best, h - gx * qx - gy * qy + rho * np.hypot(gx, gy))
        # Newton step on the (negative semi-definite, slightly regularised) Hessian, projected onto the disk.
        hxx, hxy, hyy = -(e * vx * vx).sum(axis=1) - 1e-9, -(e * vx * vy).sum(axis=1), -(e * vy * vy).sum(axis=1) - 1e-9
        det = hxx * hyy - hxy * hxy
        qx, qy = qx - (hyy * gx - hxy * gy) / det, qy - (hxx * gy - hxy * gx) / det
        scale = np.minimum(1.0, rho / np.maximum(np.hypot(qx, qy), 1e-300))
        qx, qy = qx * scale, qy * scale
    # A relative margin covers rounding in the bound itself.
    return np.maximum(best, 0.0) + 1e-9 * np.abs(amp).sum(axis=1)


def _candidates(group: _Group, options: ProposerOptions, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (mm) of candidates ``index`` (E x T) of the group's events: uniform in the disk around ``c0``."""
    radius = options.radius_mm * np.sqrt(uniforms(group.candidate_keys, 2 * index))
    angle = (2.0 * np.pi) * uniforms(group.candidate_keys, 2 * index + 1)
    return group.x[:, :1] + radius * np.cos(angle), group.y[:, :1] + radius * np.sin(angle)


def _weights(group: _Group, options: ProposerOptions, cx: np.ndarray, cy: np.ndarray,
             dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Hillmap weight W (Gaussians in ``dtype``) and squared distance (mm^2) to the nearest tried centre (E x T)."""
    inv_two_sigma2 = 2.0 / options.radius_mm**2  # sigma = R / 2
    field: np.ndarray = np.zeros(cx.shape, dtype)
    nearest2 = np.full(cx.shape, np.inf)
    d2, dy2 = np.empty(cx.shape), np.empty(cx.shape)
    # One pass per tried centre over (E x T) arrays: no (E x T x K) temporaries, no short-axis reductions.
    for k in range(group.x.shape[1]):
        np.subtract(cx, group.x[:, k, None], out=d2)
        np.square(d2, out=d2)
        np.subtract(cy, group.y[:, k, None], out=dy2)
        np.square(dy2, out=dy2)
        d2 += dy2
        np.minimum(nearest2, d2, out=nearest2)
        gauss = np.exp((-inv_two_sigma2 * d2).astype(dtype, copy=False))
        gauss *= group.amp[:, k, None].astype(dtype)
        field += gauss
    return np.maximum(field, 0.0).astype(np.float64) + options.step1_explore_floor, nearest2


def _rejection_draw(group: _Group, options: ProposerOptions) -> tuple[np.ndarray, np.ndarray]:
    """Rejection-sample the group's events: rows that accepted a candidate, and its position (mm).

    Try ``t`` of an event uses selection-stream counters ``2t`` (candidate index) and ``2t + 1``
    (acceptance); the first accepted try wins, so round sizes and chunking do not change the result.
    """
    spacing2 = options.min_spacing_mm**2
    n_candidates = options.step1_candidates
    budget = max(_TRIES, n_candidates // _TRY_FRACTION)
    active = np.arange(group.x.shape[0])
    found_rows, found_xy = [], []
    tried, size = 0, _TRIES
    while active.size and tried < budget:
        size = min(size, budget - tried)
        tries = np.arange(tried, tried + size, dtype=np.uint64)[None, :]
        hit = np.zeros(active.size, dtype=bool)
        step = max(1, _CHUNK // size)
        for begin in range(0, active.size, step):
            rows = active[begin : begin + step]
            part = group.take(rows)
            pick = np.minimum((uniforms(part.select_keys, 2 * tries) * n_candidates).astype(np.int64),
                              n_candidates - 1)
            threshold = uniforms(part.select_keys, 2 * tries + 1) * part.bound[:, None]
            cx, cy = _candidates(part, options, pick)
            weight, nearest2 = _weights(part, options, cx, cy)
            accept = (nearest2 >= spacing2) & (threshold < weight)
            accepted = accept.any(axis=1)
            chosen = np.flatnonzero(accepted)
            first = accept[chosen].argmax(axis=1)
            found_rows.append(rows[chosen])
            found_xy.append(np.stack((cx[chosen, first], cy[chosen, first]), axis=1))
            hit[begin : begin + step] = accepted
        active = active[~hit]
        tried += size
        size *= 2
    if not found_rows:
        return np.empty(0, dtype=np.int64), np.empty((0, 2))
    return np.concatenate(found_rows), np.concatenate(found_xy)


def _full_draw(group: _Group, options: ProposerOptions) -> tuple[np.ndarray, np.ndarray]:
    """Draw the group's events by evaluating all their candidates; relaxes the spacing or reports exhaustion."""
    n_candidates = options.step1_candidates
    n_events = group.x.shape[0]
    out = np.full((n_events, 2), np.nan)
    status = np.zeros(n_events, dtype=np.int8)
    step = max(1, _CHUNK // n_candidates)
    for begin in range(0, n_events, step):
        rows = np.arange(begin, min(begin + step, n_events))
        part = group.take(rows)
        index = np.broadcast_to(np.arange(n_candidates, dtype=np.uint64), (rows.size, n_candidates))
        cx, cy = _candidates(part, options, index)
        # float32 Gaussians: a 4x faster exp here, and ample precision for sampling weights.
        weight, nearest2 = _weights(part, options, cx, cy, np.float32)
        valid = nearest2 >= options.min_spacing_mm**2
        for row in np.flatnonzero(~valid.any(axis=1)):
            valid[row], status[rows[row]] = _relaxed_mask(nearest2[row], options)
        weight = np.where(valid, weight, 0.0)
        no_weight = ~(weight > 0).any(axis=1)
        weight[no_weight] = valid[no_weight]  # explore_floor = 0 and all clipped: uniform among valid ones
        cumulative = np.cumsum(weight, axis=1)
        counter = np.full((rows.size, 1), _FULL_DRAW_COUNTER, dtype=np.uint64)
        target = uniforms(part.select_keys, counter)[:, 0] * cumulative[:, -1]
        chosen = np.minimum((cumulative <= target[:, None]).sum(axis=1), n_candidates - 1)
        drawn = np.flatnonzero(status[rows] != STATUS_EXHAUSTED)
        out[rows[drawn], 0] = cx[drawn, chosen[drawn]]
        out[rows[drawn], 1] = cy[drawn, chosen[drawn]]
    return out, status


def _relaxed_mask(nearest2: np.ndarray, options: ProposerOptions) -> tuple[np.ndarray, int]:
    """Valid-candidate mask after halving the spacing until some candidate respects it, and the status."""
    if options.step1_allow_spacing_relax:
        spacing = options.min_spacing_mm
        for _ in range(_MAX_HALVINGS):
            spacing /= 2.0
            valid = nearest2 >= spacing**2
            if valid.any():
                return valid, STATUS_RELAXED
    return np.zeros(nearest2.shape, dtype=bool), STATUS_EXHAUSTED
