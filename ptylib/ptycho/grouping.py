"""K-nearest-neighbour grouping with K-choose-C sampling (gridsize gs, C = gs², K ≥ C), seeded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class Groups:
    """Groups of C patterns: member indices, anchor, centre and member offsets (pixels, (x, y))."""

    indices: np.ndarray
    """(G, C) int64 pattern indices."""
    anchors: np.ndarray
    """(G,) int64 pattern whose K nearest neighbours the group was drawn from."""
    centers: np.ndarray
    """(G, 2) float64 mean (x, y) of the members."""
    offsets: np.ndarray
    """(G, C, 2) float64 member (x, y) minus the group centre."""


def group_geometry(indices: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (G, 2) and member offsets (G, C, 2) of groups ``indices`` (G, C), pixels."""
    members = np.stack([xcoords[indices], ycoords[indices]], axis=-1)
    centers = members.mean(axis=1)
    return centers, members - centers[:, None, :]


def check_grouping(neighbor_count: int, gridsize: int, n_patterns: int) -> int:
    """Return C = gridsize², or raise unless 1 ≤ C ≤ K ≤ n_patterns."""
    if gridsize < 1:
        raise ValueError(f"gridsize must be ≥ 1, got {gridsize!r}")
    c = gridsize**2
    if neighbor_count < c:
        raise ValueError(f"K-choose-C grouping needs K ≥ C: K={neighbor_count} < C=gridsize²={c}")
    if n_patterns < neighbor_count:
        raise ValueError(f"{n_patterns} patterns are fewer than K={neighbor_count} neighbours")
    return c


def knn_groups(xcoords: np.ndarray, ycoords: np.ndarray, *, neighbor_count: int, gridsize: int,
               rng: np.random.Generator, groups_per_anchor: int = 1) -> Groups:
    """For every pattern (the anchor), ``groups_per_anchor`` groups of C distinct patterns drawn uniformly
    from the anchor's K nearest neighbours (the anchor included); gridsize 1 gives one group per pattern."""
    x, y = np.asarray(xcoords, np.float64), np.asarray(ycoords, np.float64)
    c = check_grouping(neighbor_count, gridsize, len(x))
    if groups_per_anchor < 1:
        raise ValueError(f"groups_per_anchor must be ≥ 1, got {groups_per_anchor!r}")
    anchors = np.repeat(np.arange(len(x), dtype=np.int64), groups_per_anchor)
    if c == 1:
        indices = anchors[:, None].copy()
    else:
        _, neighbours = cKDTree(np.stack([x, y], axis=1)).query(np.stack([x, y], axis=1), k=neighbor_count)
        # argsort of uniform keys = a uniform random permutation per row; its first C give a uniform C-subset.
        pick = np.argsort(rng.random((len(anchors), neighbor_count)), axis=1)[:, :c]
        indices = np.take_along_axis(neighbours[anchors], pick, axis=1).astype(np.int64)
    centers, offsets = group_geometry(indices, x, y)
    return Groups(indices, anchors, centers, offsets)
