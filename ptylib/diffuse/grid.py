"""Phase 3 global voxel grid on fractional HKL: average crystal model, HKL bounds from d_min, ndiv per axis.

Voxel centres sit at ``h = j / ndiv_h`` for ``j`` in ``[-H ndiv_h, H ndiv_h]`` with ``H = ceil(|a| / d_min)``
(alike for k, l), so integer lattice points are voxel centres. An observation with fractional
indices ``hkl`` (from its own still's ``A``) belongs to voxel ``(rint(h ndiv_h) + H ndiv_h, ...)``,
raveled in C order (h slowest); observations with |q| > 1 / d_min or outside the bounds get -1.
Voxel q-centres are given in the average crystal's frame, ``q = B_avg hkl`` (1/Å), so |q| is
frame-independent. The grid serialises to JSON.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.diffraction.b_matrix import cctbx_b_matrix
from ptylib.diffuse.experiment import cell_from_a_matrix
from ptylib.diffuse.files import read_json_document
from ptylib.diffuse.options import GridOptions
from ptylib.io.atomic import atomic_write_json

GRID_FORMAT = "ptyflows-diffuse-grid-v1"


def b_matrix(cell: Sequence[float]) -> np.ndarray:
    """cctbx's B (1/Å) of a cell (a, b, c Å, alpha, beta, gamma degrees): columns a*, b*, c*, a along x."""
    return cctbx_b_matrix(tuple(cell))


@dataclass(frozen=True)
class GlobalVoxelGrid:
    """The grid (module docstring); ``hkl_max`` are the bounds H, K, L; ``ndiv`` voxels per lattice unit."""

    cell_avg: tuple[float, float, float, float, float, float]
    space_group: str
    d_min_A: float
    hkl_max: tuple[int, int, int]
    ndiv: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxels along h, k, l."""
        return tuple(2 * m * n + 1 for m, n in zip(self.hkl_max, self.ndiv, strict=True))  # type: ignore[return-value]

    @property
    def n_voxels(self) -> int:
        """Total voxel count."""
        return int(np.prod(self.shape))

    @property
    def b_avg(self) -> np.ndarray:
        """B matrix of the average cell (1/Å)."""
        return b_matrix(self.cell_avg)

    def voxel_indices(self, hkl: np.ndarray, q_mag: np.ndarray | None = None) -> np.ndarray:
        """Flat voxel index (:attr:`index_dtype`) of each fractional ``hkl`` (n, 3); -1 outside the bounds or beyond d_min."""
        return self.scaled_indices(hkl * np.asarray(self.ndiv, dtype=hkl.dtype), q_mag)

    @property
    def index_dtype(self) -> type[np.signedinteger]:
        """Dtype of flat voxel indices: int32 (half the memory traffic) unless the grid has 2^31 voxels or more."""
        return np.int64 if self.n_voxels >= 2**31 else np.int32

    def scaled_indices(self, scaled: np.ndarray, q_mag: np.ndarray | None = None,
                       out: np.ndarray | None = None) -> np.ndarray:
        """As :meth:`voxel_indices` for ``hkl * ndiv`` already computed (n, 3); ``scaled`` is overwritten.

        ``out`` (n,) of :attr:`index_dtype` receives the indices when given (and is returned).
        """
        shape = self.shape
        dtype = self.index_dtype
        np.rint(scaled, out=scaled)
        # Axis-major integer copy: every later pass runs on contiguous rows instead of stride-3 columns.
        axes = np.empty((3, scaled.shape[0]), dtype=dtype)
        with np.errstate(invalid="ignore"):  # NaN / huge values cast to garbage that the bounds check rejects
            np.copyto(axes, scaled.T, casting="unsafe")
        axes += (np.asarray(self.hkl_max) * np.asarray(self.ndiv)).astype(dtype)[:, None]
        # A negative value wraps to a huge unsigned one, so a single unsigned comparison checks both
        # bounds; the bounds are unsigned scalars so that numpy does not widen the comparison.
        unsigned = axes.view(np.uint32 if dtype is np.int32 else np.uint64)
        limit = unsigned.dtype.type
        outside = unsigned[0] >= limit(shape[0])
        outside |= unsigned[1] >= limit(shape[1])
        outside |= unsigned[2] >= limit(shape[2])
        if q_mag is not None:
            # "not <=" rather than ">" so that a NaN |q| counts as outside.
            outside |= ~(q_mag <= 1.0 / self.d_min_A)
        flat = np.multiply(axes[0], shape[1] * shape[2], out=out)
        axes[1] *= shape[2]
        flat += axes[1]
        flat += axes[2]
        # -1 has every bit set, so OR-ing minus the mask marks the outside rows without a
        # data-dependent branch per row (np.copyto(where=...) is ten times slower on mixed masks).
        flat |= np.subtract(0, outside, dtype=dtype)
        return flat

    def voxel_hkl(self, index: np.ndarray) -> np.ndarray:
        """Fractional HKL (n, 3) of voxel centres with flat indices ``index``."""
        grid = np.stack(np.unravel_index(np.asarray(index), self.shape), axis=1)
        return (grid - np.asarray(self.hkl_max) * np.asarray(self.ndiv)) / np.asarray(self.ndiv, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable description (what ``global_voxel_grid_definition.json`` holds)."""
        return {"format": GRID_FORMAT, "cell_avg": list(self.cell_avg), "space_group": self.space_group,
                "d_min_A": self.d_min_A, "hkl_max": list(self.hkl_max), "ndiv": list(self.ndiv),
                "shape": list(self.shape), "n_voxels": self.n_voxels, "b_avg_per_A": self.b_avg.tolist(),
                "voxel_size_hkl": [1.0 / n for n in self.ndiv]}

    @classmethod
    def from_json(cls, doc: dict[str, Any], source: str = "grid definition") -> GlobalVoxelGrid:
        """Inverse of :meth:`to_json`; a one-line error names the source and field."""
        try:
            grid = cls(cell_avg=tuple(float(v) for v in doc["cell_avg"]), space_group=str(doc["space_group"]),
                       d_min_A=float(doc["d_min_A"]), hkl_max=tuple(int(v) for v in doc["hkl_max"]),
                       ndiv=tuple(int(v) for v in doc["ndiv"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: field {exc!s} missing or malformed in the voxel grid definition") from None
        if not grid.d_min_A > 0:
            raise ValueError(f"{source}: field 'd_min_A' must be > 0 Å, got {grid.d_min_A}")
        if min(grid.ndiv) < 1:
            raise ValueError(f"{source}: field 'ndiv' must be >= 1 along each axis, got {list(grid.ndiv)}")
        return grid


def build_grid(a_matrices: Sequence[np.ndarray], max_q_mag: float, options: GridOptions,
               space_group: str = "P 1") -> GlobalVoxelGrid:
    """The grid from the stills' ``A`` matrices (average cell) and the largest observed |q| (1/Å)."""
    cells = np.array([cell_from_a_matrix(a) for a in a_matrices])
    cell_avg = tuple(float(v) for v in cells.mean(axis=0))
    d_min = options.d_min_target if options.d_min_target is not None else 1.0 / max_q_mag
    hkl_max = tuple(math.ceil(length / d_min) for length in cell_avg[:3])
    return GlobalVoxelGrid(cell_avg=cell_avg, space_group=space_group, d_min_A=float(d_min),  # type: ignore[arg-type]
                           hkl_max=hkl_max, ndiv=(options.ndiv_h, options.ndiv_k, options.ndiv_l))  # type: ignore[arg-type]


def write_grid(path: str | os.PathLike[str], grid: GlobalVoxelGrid) -> Path:
    """Write the grid definition JSON atomically."""
    atomic_write_json(path, grid.to_json())
    return Path(path)


def read_grid(path: str | os.PathLike[str]) -> GlobalVoxelGrid:
    """Read a grid definition; one-line errors for a missing or malformed file."""
    doc = read_json_document(path, "the voxel grid definition (--grid-definition-file)")
    return GlobalVoxelGrid.from_json(doc, str(path))
