"""Overlap views: keep groups whose centres are at least S = (1 − f)·N apart, plus spacing statistics.

The filter is vectorised over groups (no Python loop over them). Centres are binned into square cells of
side S/√2, so two centres in one cell are always closer than S and at most one per cell is kept. In each
round every cell proposes its lowest-ranked (random, seeded order) undecided centre; a proposal is kept
when no conflicting proposal of the 20 cells within reach ranks lower, and every undecided centre closer
than S to a kept one is dropped (KD-tree). Rounds repeat until every centre is decided, so the result is
a maximal set: every dropped centre lies within S of a kept one.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

# Cell offsets (di, dj) whose cells can hold a centre closer than S to one in cell (0, 0), for side S/√2.
_REACH = np.array([(di, dj) for di in range(-2, 3) for dj in range(-2, 3)
                   if (di, dj) != (0, 0) and abs(di) + abs(dj) < 4])


def spacing_filter(centers: np.ndarray, min_spacing_px: float, *, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of the groups kept: every kept pair of centres (G, 2) is ≥ ``min_spacing_px`` apart."""
    if not min_spacing_px >= 0:
        raise ValueError(f"minimum spacing must be ≥ 0 px, got {min_spacing_px!r}")
    centers = np.asarray(centers, np.float64)
    n = len(centers)
    if min_spacing_px == 0 or n < 2:
        return np.arange(n)
    rank = np.empty(n, dtype=np.int64)
    rank[rng.permutation(n)] = np.arange(n)
    cells = np.floor((centers - centers.min(axis=0)) / (min_spacing_px / math.sqrt(2))).astype(np.int64) + 2
    width = int(cells[:, 1].max()) + 3  # padding of 2 cells each side: neighbour keys never wrap a row
    key = cells[:, 0] * width + cells[:, 1]
    reach = _REACH[:, 0] * width + _REACH[:, 1]
    state = np.zeros(n, dtype=np.int8)  # 0 undecided, 1 kept, -1 dropped
    while np.any(state == 0):
        undecided = np.flatnonzero(state == 0)
        order = undecided[np.lexsort((rank[undecided], key[undecided]))]
        proposals = order[np.r_[True, key[order][1:] != key[order][:-1]]]  # lowest rank per cell
        near_keys = key[proposals][:, None] + reach[None, :]
        slot = np.minimum(np.searchsorted(key[proposals], near_keys), len(proposals) - 1)
        near = proposals[slot]
        gaps = centers[near] - centers[proposals][:, None, :]
        conflict = (key[near] == near_keys) & (np.einsum("ijk,ijk->ij", gaps, gaps) < min_spacing_px**2)
        winners = proposals[~np.any(conflict & (rank[near] < rank[proposals][:, None]), axis=1)]
        state[winners] = 1
        rest = np.flatnonzero(state == 0)
        if rest.size:
            distance, _ = cKDTree(centers[winners]).query(centers[rest], distance_upper_bound=min_spacing_px)
            state[rest[distance < min_spacing_px]] = -1
    return np.flatnonzero(state == 1)


def nearest_neighbor_distances(points: np.ndarray) -> np.ndarray:
    """Distance (pixels) from each point (m, 2) to its nearest other point; empty for m < 2."""
    if len(points) < 2:
        return np.empty(0)
    distances, _ = cKDTree(points).query(points, k=2)
    return distances[:, 1]


def spacing_stats(centers: np.ndarray, kept: np.ndarray, min_spacing_px: float) -> dict[str, float | int | bool]:
    """Counts, acceptance and nearest-neighbour spacing (pixels) of all and of the kept group centres."""
    nn_all = nearest_neighbor_distances(centers)
    nn_kept = nearest_neighbor_distances(centers[kept])
    stats: dict[str, float | int | bool] = {
        "n_groups": len(centers), "n_kept": len(kept),
        "acceptance": float(len(kept) / len(centers)) if len(centers) else 0.0,
        "min_spacing_px": float(min_spacing_px),
        "all_median_nn_px": float(np.median(nn_all)) if nn_all.size else float("nan"),
    }
    for name, fn in (("min", np.min), ("median", np.median), ("mean", np.mean), ("max", np.max)):
        stats[f"kept_{name}_nn_px"] = float(fn(nn_kept)) if nn_kept.size else float("nan")
    stats["respects_spacing"] = bool(nn_kept.size == 0 or nn_kept.min() >= min_spacing_px)
    return stats
