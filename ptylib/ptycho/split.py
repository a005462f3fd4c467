"""Spatial train/test split on the y axis with a guard band: no test patch shares a pixel with a train patch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptylib.ptycho.forward import snap_positions


@dataclass(frozen=True)
class YSplit:
    """Indices of the train (top) and test (bottom) patterns and the split line."""

    train: np.ndarray
    test: np.ndarray
    y_cut_px: int
    """Object row where the test half starts: train patches end above it, test patches start at or below."""
    dropped: int
    """Patterns whose patch straddles the line (the guard band, N px wide in patch centres)."""


def split_on_y(xcoords: np.ndarray, ycoords: np.ndarray, patch_size_px: int, *, train_fraction: float = 0.5) -> YSplit:
    """Split the scan at ``train_fraction`` of its y extent; patches crossing the line belong to neither half."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction!r}")
    starts, _ = snap_positions(xcoords, ycoords, patch_size_px)
    rows = starts[:, 0]
    top, bottom = int(rows.min()), int(rows.max()) + patch_size_px
    cut = round(top + train_fraction * (bottom - top))
    train = np.flatnonzero(rows + patch_size_px <= cut)
    test = np.flatnonzero(rows >= cut)
    if not len(train) or not len(test):
        raise ValueError(f"a y split at row {cut} leaves {len(train)} train and {len(test)} test patterns: the scan "
                         f"(rows {top}..{bottom}) is too short for {patch_size_px}-px patches and a guard band")
    return YSplit(train, test, cut, int(len(rows) - len(train) - len(test)))
