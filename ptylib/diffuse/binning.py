"""Phase 3 binning: Phase-2 pixel data -> voxel indices -> the HDF5 accumulator, one still at a time."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ptylib.diffuse.accumulator import VoxelAccumulator
from ptylib.diffuse.extraction import read_pixel_data
from ptylib.diffuse.grid import GlobalVoxelGrid


def bin_observations(grid: GlobalVoxelGrid, q_vector: np.ndarray, a_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(voxel index, |q|) of lab q-vectors (n, 3) of one still with orientation ``a_matrix``; -1 outside the grid."""
    # A^-1 and the ndiv scaling folded into one 3 x 3 product: one pass over the observations.
    scaled = q_vector @ (np.linalg.inv(a_matrix).T * np.asarray(grid.ndiv)).astype(q_vector.dtype)
    q_mag = np.sqrt(np.einsum("ij,ij->i", q_vector, q_vector))
    return grid.scaled_indices(scaled, q_mag), q_mag


def accumulate_stills(grid: GlobalVoxelGrid, pixel_data_paths: Sequence[str | os.PathLike[str]],
                      output: str | os.PathLike[str], *,
                      progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Bin every still's Phase-2 NPZ into a new accumulator at ``output``; returns kept/total observation counts."""
    total = 0
    with VoxelAccumulator(output, grid.n_voxels) as accumulator:
        for path in pixel_data_paths:
            data = read_pixel_data(path)
            voxel, q_mag = bin_observations(grid, data["q_vector"], data["a_matrix"])
            accumulator.add(int(data["still"]), voxel, data["intensity"], data["sigma"], q_mag)
            total += int(voxel.size)
            if progress is not None:
                progress(1)
        kept = accumulator.n_observations
    return {"observations": kept, "observations_outside_grid": total - kept, "stills": len(pixel_data_paths),
            "accumulator": str(Path(output))}
