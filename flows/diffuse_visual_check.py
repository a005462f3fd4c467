"""The seed's Phase 3 diagnostic script as a flow: plots and summaries from existing Phase 3 outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from ptylib.io.manifest import write_manifest
from tasks.diffuse import diagnostics_task


@flow(name="diffuse-visual-check", flow_run_name="diffuse-visual-check", log_prints=True)
def diffuse_visual_check(grid_definition_file: str, scaling_model_params_file: str, voxel_data_file: str,
                         output_dir: str, corrected_pixel_data_dir: str | None = None,
                         max_plot_points: int = 20000) -> dict[str, Any]:
    """Grid summary, occupancy, scaling parameters and residuals, merged slices, radial average, histograms.

    Parameters
    ----------
    grid_definition_file : ``global_voxel_grid_definition.json`` of a Phase 3 run.
    scaling_model_params_file : ``refined_scaling_model_params.json``.
    voxel_data_file : ``voxel_data_relative.npz`` or ``.hdf5``.
    output_dir : folder for the PNGs, ``grid_summary.txt`` and ``phase3_diagnostics_summary.txt``.
    corrected_pixel_data_dir : optional ``phase2`` folder of ``CorrectedDiffusePixelData_*.npz`` (q coverage plot).
    max_plot_points : most q-points in the coverage scatter plot.
    """
    from ptylib.diffuse.diagnostics import check_inputs

    check_inputs(grid_definition_file, scaling_model_params_file, voxel_data_file)
    result = diagnostics_task(grid_definition_file, scaling_model_params_file, voxel_data_file, output_dir,
                              corrected_pixel_data_dir, max_plot_points)
    write_manifest(Path(output_dir), pipeline="diffuse_visual_check",
                   parameters={"grid_definition_file": grid_definition_file,
                               "scaling_model_params_file": scaling_model_params_file,
                               "voxel_data_file": voxel_data_file, "output_dir": output_dir,
                               "corrected_pixel_data_dir": corrected_pixel_data_dir, "max_plot_points": max_plot_points},
                   inputs=[grid_definition_file, scaling_model_params_file, voxel_data_file],
                   outputs={**result["pngs"], **result["texts"]})
    get_run_logger().info("visual check: %d plots in %s", len(result["pngs"]), output_dir)
    return result
