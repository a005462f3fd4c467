"""Prefect tasks of the diffuse pipeline: thin wrappers over ``ptylib.diffuse`` that pass paths and small records.

The kernels are resumable themselves (a stamp of input hashes beside each output), so the tasks
use ``NO_CACHE``; Phase 1 retries on OS-level trouble (file system, fork), never on a still that
DIALS could not index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ptylib.diffuse.layout import RunLayout
from ptylib.diffuse.options import (
    DiffuseOptions,
    ExtractionOptions,
    GridOptions,
    ScalingOptions,
)
from tasks.artifacts import (
    ProgressArtifact,
    publish_markdown,
    publish_pngs,
    publish_table,
)
from tasks.retry import transient_os_error


@task(name="diffuse-render-synthetic", cache_policy=NO_CACHE)
def render_task(options: Any, out_dir: str) -> dict[str, Any]:
    """Render the synthetic still set with known truth; returns its paths."""
    from ptylib.diffuse.synthetic import render_synthetic

    data = render_synthetic(options, out_dir)
    return {"cbf_paths": [str(p) for p in data.cbf_paths], "experiment_paths": [str(p) for p in data.experiment_paths],
            "truth_json": str(data.truth_json), "truth_bragg": str(data.truth_bragg)}


@task(name="diffuse-phase1", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_os_error)
def phase1_task(cbf: str, experiment: str | None, run_dir: str, still: int, options: DiffuseOptions) -> dict[str, Any]:
    """Geometry (known ``experiment`` file, else DIALS) and masks of one still."""
    from ptylib.diffuse.phase12 import phase1_known, phase1_masks_from

    layout = RunLayout(Path(run_dir))
    if experiment is not None:
        return phase1_known(cbf, experiment, layout, still, options.static_mask, options.bragg_mask)
    from ptylib.diffuse.dials_phase1 import dials_geometry

    summary = dials_geometry(cbf, layout, still, options.dials)
    stamp = {"geometry": "dials", "static": options.static_mask.model_dump(mode="json"),
             "bragg": options.bragg_mask.model_dump(mode="json")}
    result = phase1_masks_from(cbf, layout, still, options.static_mask, options.bragg_mask, stamp)
    return {**result, "dials_rmsd_px": summary.get("rmsd_px"), "dials_indexed_fraction": summary.get("indexed_fraction")}


@task(name="diffuse-phase2", cache_policy=NO_CACHE)
def phase2_task(cbf: str, run_dir: str, still: int, options: ExtractionOptions) -> dict[str, Any]:
    """Corrected pixel data of one still (``CorrectedDiffusePixelData_<i>.npz``)."""
    from ptylib.diffuse.phase12 import phase2

    return phase2(cbf, RunLayout(Path(run_dir)), still, options)


@task(name="diffuse-grid", cache_policy=NO_CACHE)
def grid_task(run_dir: str, stills: Sequence[int], options: GridOptions) -> dict[str, Any]:
    """Global voxel grid from the processed stills."""
    from ptylib.diffuse.phase3 import define_grid

    layout = RunLayout(Path(run_dir))
    grid = define_grid([layout.experiment(s) for s in stills], [layout.pixel_data(s) for s in stills], layout, options)
    publish_table("diffuse-grid", [{"field": k, "value": str(v)} for k, v in grid.items() if k != "b_avg_per_A"],
                  description="Global voxel grid")
    return grid


@task(name="diffuse-bin", cache_policy=NO_CACHE)
def bin_task(run_dir: str, stills: Sequence[int]) -> dict[str, Any]:
    """Stream every still into the HDF5 voxel accumulator (progress per still)."""
    from ptylib.diffuse.phase3 import bin_stills

    layout = RunLayout(Path(run_dir))
    progress = ProgressArtifact(len(stills), "binning stills into voxels")
    return bin_stills([layout.pixel_data(s) for s in stills], layout, progress=progress.advance)


@task(name="diffuse-scale-merge", cache_policy=NO_CACHE)
def scale_merge_task(run_dir: str, options: ScalingOptions) -> dict[str, Any]:
    """Refine b_i and a(|q|), merge to ``VoxelData_relative``."""
    from ptylib.diffuse.phase3 import scale_and_merge

    return scale_and_merge(RunLayout(Path(run_dir)), options)


@task(name="diffuse-diagnostics", cache_policy=NO_CACHE)
def diagnostics_task(grid_file: str, scaling_file: str, voxel_file: str, out_dir: str,
                     pixel_data_dir: str | None, max_plot_points: int) -> dict[str, Any]:
    """Every plot and summary of the visual check, on disk and as artifacts."""
    from ptylib.diffuse.diagnostics import run_diagnostics

    result = run_diagnostics(grid_file, scaling_file, voxel_file, out_dir, pixel_data_dir=pixel_data_dir,
                             max_plot_points=max_plot_points)
    publish_table("diffuse-phase3-figures", [{"figure": k, "value": v} for k, v in result.figures.items()],
                  description="Phase 3 diagnostics: headline figures")
    publish_pngs("diffuse-phase3-plots", result.pngs, intro="# Phase 3 visual check\n")
    publish_markdown("diffuse-phase3-summary", "```\n" + result.texts["summary"].read_text() + "```\n")
    return {"pngs": {k: str(v) for k, v in result.pngs.items()}, "texts": {k: str(v) for k, v in result.texts.items()},
            "figures": result.figures}


@task(name="diffuse-accuracy", cache_policy=NO_CACHE)
def accuracy_task(run_dir: str, stills: Sequence[int], truth_json: str, truth_bragg: str,
                  out_path: str) -> dict[str, Any]:
    """Compare the run with the synthetic truth; write ``accuracy.json`` and a table artifact."""
    from ptylib.diffuse.accuracy import run_accuracy
    from ptylib.io.atomic import atomic_write_json

    figures = run_accuracy(RunLayout(Path(run_dir)), stills, truth_json, truth_bragg)
    atomic_write_json(out_path, figures)
    publish_table("diffuse-accuracy", [{"figure": k, "value": v} for k, v in figures.items()],
                  description="Accuracy against the known truth")
    return figures
