"""Phase 3 steps on files: grid definition, binning into the accumulator, scaling and merging.

Each step is resumable like Phases 1-2 (a stamp of input hashes and options beside its output).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.diffuse.binning import accumulate_stills
from ptylib.diffuse.experiment import read_experiment
from ptylib.diffuse.grid import build_grid, read_grid, write_grid
from ptylib.diffuse.layout import RunLayout
from ptylib.diffuse.merging import voxel_data, write_voxel_data
from ptylib.diffuse.options import GridOptions, ScalingOptions
from ptylib.diffuse.phase12 import is_done, mark_done
from ptylib.diffuse.scaling import refine_scaling, write_scaling_params


def define_grid(experiment_paths: Sequence[str | os.PathLike[str]], pixel_data_paths: Sequence[str | os.PathLike[str]],
                layout: RunLayout, options: GridOptions) -> dict[str, Any]:
    """Build and write ``global_voxel_grid_definition.json`` from the experiments and the observed |q| range."""
    inputs = [Path(p) for p in (*experiment_paths, *pixel_data_paths)]
    stamp = {"grid": options.model_dump(mode="json")}
    if not is_done(layout.grid, inputs, stamp):
        experiments = [read_experiment(p) for p in experiment_paths]
        max_q = 0.0
        for path in pixel_data_paths:
            with np.load(path) as data:
                q = data["q_vector"]
                if q.size:
                    max_q = max(max_q, float(np.sqrt(np.einsum("ij,ij->i", q, q)).max()))
        if max_q <= 0 and options.d_min_target is None:
            raise ValueError(f"{pixel_data_paths[0]}: field 'q_vector' is empty in every still: nothing to grid")
        grid = build_grid([e.a_matrix for e in experiments], max_q, options, experiments[0].space_group)
        write_grid(layout.grid, grid)
        mark_done(layout.grid, inputs, stamp)
    return read_grid(layout.grid).to_json()


def bin_stills(pixel_data_paths: Sequence[str | os.PathLike[str]], layout: RunLayout, *,
               progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Stream every still's observations into ``voxel_observations.h5``."""
    inputs = [layout.grid, *(Path(p) for p in pixel_data_paths)]
    if not is_done(layout.accumulator, inputs, {}):
        summary = accumulate_stills(read_grid(layout.grid), pixel_data_paths, layout.accumulator, progress=progress)
        mark_done(layout.accumulator, inputs, {})
        return summary
    from ptylib.diffuse.accumulator import read_counts

    _, total = read_counts(layout.accumulator)
    return {"observations": total, "stills": len(pixel_data_paths), "accumulator": str(layout.accumulator),
            "resumed": True}


def scale_and_merge(layout: RunLayout, options: ScalingOptions) -> dict[str, Any]:
    """Refine the scaling model, write its parameters and ``VoxelData_relative`` (NPZ + HDF5)."""
    inputs = [layout.grid, layout.accumulator]
    stamp = {"scaling": options.model_dump(mode="json")}
    if not (is_done(layout.voxel_data, inputs, stamp) and layout.scaling.is_file()):
        result = refine_scaling(layout.accumulator, options)
        write_scaling_params(layout.scaling, result, options)
        data = voxel_data(read_grid(layout.grid), result.intensity, result.sigma, result.counts)
        write_voxel_data(layout.voxel_data, data)
        mark_done(layout.voxel_data, inputs, stamp)
    return {"scaling_params": str(layout.scaling), "voxel_data": str(layout.voxel_data),
            "voxel_data_hdf5": str(layout.voxel_data.with_suffix(".hdf5"))}
