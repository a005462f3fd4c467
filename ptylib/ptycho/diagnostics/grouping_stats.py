"""Grouping diagnostics: requested vs achieved groups and the geometry of what was achieved."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ptylib.ptycho.diagnostics.reassembly import scan_offsets


def axis_stats(values: np.ndarray) -> dict[str, dict[str, float]]:
    """Per axis (x, y) of points (..., 2): min, max, mean and std (pixels)."""
    flat = values.reshape(-1, 2)
    return {axis: {"min": float(flat[:, i].min()), "max": float(flat[:, i].max()),
                   "mean": float(flat[:, i].mean()), "std": float(flat[:, i].std())}
            for i, axis in enumerate("xy")}


def grouping_summary(arrays: Mapping[str, np.ndarray], n_groups_requested: int) -> dict[str, object]:
    """Requested vs achieved groups; per-axis stats of the group centres' offsets from the scan centre
    (where stitching puts them) and of the members' offsets within their group; neighbour-index range."""
    indices = np.asarray(arrays["group_indices"])
    centers = np.asarray(arrays["group_centers"])
    return {"status": "ok", "error": None, "n_patterns": len(arrays["xcoords"]),
            "groups_requested": int(n_groups_requested), "groups_achieved": len(indices),
            "group_size": int(indices.shape[1]),
            "offsets": axis_stats(scan_offsets(centers[:, 0], centers[:, 1])),
            "relative": axis_stats(np.asarray(arrays["group_offsets"])),
            "neighbor_index_min": int(indices.min()), "neighbor_index_max": int(indices.max())}


def grouping_failure(error: Exception, n_patterns: int, n_groups_requested: int) -> dict[str, object]:
    """A grouping that could not be made (too few points for the group size), recorded as a result."""
    return {"status": "failed", "error": str(error), "n_patterns": int(n_patterns),
            "groups_requested": int(n_groups_requested), "groups_achieved": 0}
