"""A contract dataset as training/inference groups: member amplitudes, integer starts, sub-pixel remainders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ptylib.ptycho.contract import DatasetContractError
from ptylib.ptycho.forward import snap_positions


@dataclass(frozen=True)
class Groups:
    """Groups of C = gridsize² patterns, arrays indexed (G, C, ...)."""

    members: np.ndarray
    """(G, C) int64 pattern indices."""
    amplitudes: np.ndarray
    """(G, C, N, N) float32 measured amplitudes sqrt(counts)."""
    starts_yx: np.ndarray
    """(G, C, 2) int64 integer patch starts (row, col) in object pixels."""
    remainders_yx: np.ndarray
    """(G, C, 2) float32 sub-pixel probe shifts (dy, dx), pixels."""
    truth: np.ndarray | None
    """(G, C, N, N) complex64 ground-truth patches when the dataset has ``Y``."""


def intensity_scale(diffraction: np.ndarray) -> float:
    """RMS amplitude per pixel, sqrt(mean a²): the network sees amplitudes divided by it (≈ unit scale)."""
    return float(np.sqrt(np.mean(np.square(diffraction, dtype=np.float64))))


def group_members(arrays: Mapping[str, np.ndarray], gridsize: int, *, source: str = "<arrays>") -> np.ndarray:
    """Member indices (G, C): one group per pattern for gridsize 1, the dataset's ``group_indices`` otherwise."""
    n = len(arrays["xcoords"])
    if gridsize == 1:
        return np.arange(n, dtype=np.int64)[:, None]
    if "group_indices" not in arrays:
        raise DatasetContractError(f"{source}: key 'group_indices': expected (G, {gridsize ** 2}) groups for "
                                   f"gridsize {gridsize}, got no such key")
    members = np.asarray(arrays["group_indices"], np.int64)
    if members.shape[1] != gridsize**2:
        raise DatasetContractError(f"{source}: key 'group_indices': expected C = gridsize² = {gridsize ** 2} "
                                   f"members per group, got {members.shape[1]}")
    return members


def make_groups(arrays: Mapping[str, np.ndarray], gridsize: int, *, source: str = "<arrays>") -> Groups:
    """The dataset's groups for ``gridsize`` with everything the network and the physics layer need."""
    members = group_members(arrays, gridsize, source=source)
    n_px = arrays["diffraction"].shape[-1]
    starts, remainders = snap_positions(arrays["xcoords"], arrays["ycoords"], n_px)
    truth = np.asarray(arrays["Y"])[members] if "Y" in arrays else None
    return Groups(members, np.asarray(arrays["diffraction"], np.float32)[members], starts[members],
                  remainders[members].astype(np.float32), truth)
