"""Phase 3 binning: Phase-2 pixel data -> voxel indices -> the HDF5 accumulator, one still at a time."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ptylib.diffuse.accumulator import VoxelAccumulator
from ptylib.diffuse.extraction import read_pixel_data
from ptylib.diffuse.grid import GlobalVoxelGrid

# Observations per pass: the chunk's temporaries (about 40 bytes an observation) stay in the CPU
# cache instead of streaming full-length arrays through memory once per operation.
CHUNK_ROWS = 1 << 16


def q_magnitude(q_vector: np.ndarray, out: np.ndarray) -> np.ndarray:
    """|q| of vectors (n, 3) into ``out`` (n,); same rounding as ``sqrt(einsum("ij,ij->i", q, q))`` for float32."""
    with np.errstate(over="ignore"):  # an overflowing |q| becomes inf, which lies beyond any d_min
        np.multiply(q_vector[:, 0], q_vector[:, 0], out=out)
        for axis in (1, 2):
            out += q_vector[:, axis] * q_vector[:, axis]
    return np.sqrt(out, out=out)


def bin_observations(grid: GlobalVoxelGrid, q_vector: np.ndarray, a_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(voxel index, |q|) of lab q-vectors (n, 3) of one still with orientation ``a_matrix``; -1 outside the grid.

    Chunks of :data:`CHUNK_ROWS` observations; A^-1 and the ndiv scaling are folded into one 3 x 3 product.
    """
    q_vector = np.asarray(q_vector)
    transform = (np.linalg.inv(a_matrix).T * np.asarray(grid.ndiv)).astype(q_vector.dtype)
    n = q_vector.shape[0]
    voxel = np.empty(n, dtype=grid.index_dtype)
    q_mag = np.empty(n, dtype=q_vector.dtype)
    scaled = np.empty((min(n, CHUNK_ROWS), 3), dtype=q_vector.dtype)
    for start in range(0, n, CHUNK_ROWS):
        rows = slice(start, min(n, start + CHUNK_ROWS))
        chunk = q_vector[rows]
        q_magnitude(chunk, q_mag[rows])
        grid.scaled_indices(np.matmul(chunk, transform, out=scaled[:chunk.shape[0]]), q_mag[rows], out=voxel[rows])
    return voxel, q_mag


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
