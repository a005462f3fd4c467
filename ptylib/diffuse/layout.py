"""Where a diffuse run keeps its files (one run directory; names follow the seed where it gives them).

::

    <run>/manifest.json
    <run>/phase1/still_00001/Experiment_dials_00001.expt   geometry (DIALS or known)
    <run>/phase1/still_00001/Mask_00001.npz                 static, bragg, total_diffuse (bool [slow, fast])
    <run>/phase1/still_00001/dials/                         DIALS' own files (DIALS path)
    <run>/phase2/CorrectedDiffusePixelData_00001.npz
    <run>/phase3/global_voxel_grid_definition.json
    <run>/phase3/voxel_observations.h5                      the HDF5 voxel accumulator
    <run>/phase3/refined_scaling_model_params.json
    <run>/phase3/voxel_data_relative.npz  (+ .hdf5)
    <run>/phase3_diagnostics/                               plots and summaries of the visual check
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    """Paths of one diffuse run rooted at ``root``; stills are numbered from 1."""

    root: Path

    def still_dir(self, still: int) -> Path:
        """Phase-1 folder of still ``still``."""
        return self.root / "phase1" / f"still_{still:05d}"

    def experiment(self, still: int) -> Path:
        """Phase-1 geometry of still ``still`` (DIALS ``.expt``)."""
        return self.still_dir(still) / f"Experiment_dials_{still:05d}.expt"

    def masks(self, still: int) -> Path:
        """Phase-1 masks of still ``still``."""
        return self.still_dir(still) / f"Mask_{still:05d}.npz"

    def dials_dir(self, still: int) -> Path:
        """Working folder of DIALS for still ``still``."""
        return self.still_dir(still) / "dials"

    def pixel_data(self, still: int) -> Path:
        """Phase-2 output of still ``still``."""
        return self.root / "phase2" / f"CorrectedDiffusePixelData_{still:05d}.npz"

    @property
    def phase3(self) -> Path:
        """Phase-3 folder."""
        return self.root / "phase3"

    @property
    def grid(self) -> Path:
        """Serialised global voxel grid."""
        return self.phase3 / "global_voxel_grid_definition.json"

    @property
    def accumulator(self) -> Path:
        """HDF5 voxel accumulator."""
        return self.phase3 / "voxel_observations.h5"

    @property
    def scaling(self) -> Path:
        """Refined scaling-model parameters."""
        return self.phase3 / "refined_scaling_model_params.json"

    @property
    def voxel_data(self) -> Path:
        """Merged ``VoxelData_relative`` (NPZ; an HDF5 copy sits beside it)."""
        return self.phase3 / "voxel_data_relative.npz"

    @property
    def diagnostics(self) -> Path:
        """Output folder of the visual check."""
        return self.root / "phase3_diagnostics"
