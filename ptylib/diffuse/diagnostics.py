"""The Phase 3 visual check: load grid, scaling parameters and merged voxels; write every plot and summary.

Outputs in ``out_dir`` (the seed's names): ``grid_summary.txt``, ``grid_visualization_conceptual.png``,
``voxel_occupancy_slice_{L0,K0,H0}.png``, ``voxel_occupancy_histogram.png``, ``scaling_model_params.png``,
``scaling_smoother.png``, ``scaling_residuals.png``, ``merged_intensity_slice_*.png``,
``merged_sigma_slice_*.png``, ``merged_isigi_slice_*.png``, ``merged_radial_avg.png``,
``merged_intensity_histogram.png`` (linear and log) and ``phase3_diagnostics_summary.txt``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.diffuse.files import read_json_document
from ptylib.diffuse.grid import GlobalVoxelGrid, read_grid
from ptylib.diffuse.merging import read_voxel_data
from ptylib.diffuse.plots import (
    plot_3d_grid_slice,
    plot_binned_histogram,
    plot_coverage,
    plot_histogram,
    plot_parameter_vs_index,
    plot_radial_average,
    plot_smoother_curve,
)
from ptylib.io.atomic import atomic_write_text
from ptylib.io.report import save_figure

REDUNDANCY_THRESHOLDS = (2, 3, 5, 10)


@dataclass(frozen=True)
class DiagnosticsResult:
    """What the visual check wrote: PNGs by title, text files and the headline figures."""

    pngs: dict[str, Path]
    texts: dict[str, Path]
    figures: dict[str, float]


def read_scaling_params(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``refined_scaling_model_params.json``; one-line errors naming the file and field."""
    doc = read_json_document(path, "the scaling parameters (--scaling-model-params-file)")
    for key in ("stills", "b_i", "a_control_q_per_A", "a_control_values"):
        if key not in doc:
            raise ValueError(f"{path}: field {key!r} missing from the scaling parameters")
    return doc


def check_inputs(grid_file: str | os.PathLike[str], scaling_file: str | os.PathLike[str],
                 voxel_file: str | os.PathLike[str]) -> tuple[GlobalVoxelGrid, dict[str, Any], dict[str, np.ndarray]]:
    """Load and validate the three inputs (before any plotting or flow run)."""
    return read_grid(grid_file), read_scaling_params(scaling_file), read_voxel_data(voxel_file)


def _dense(grid: GlobalVoxelGrid, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    cube = np.full(grid.n_voxels, np.nan)
    cube[index] = values
    return cube.reshape(grid.shape)


def _extent(grid: GlobalVoxelGrid, slice_dim: str) -> tuple[float, float, float, float]:
    axes = [i for i in range(3) if i != "HKL".index(slice_dim)]
    half = [0.5 / grid.ndiv[i] for i in axes]
    return (-grid.hkl_max[axes[0]] - half[0], grid.hkl_max[axes[0]] + half[0],
            -grid.hkl_max[axes[1]] - half[1], grid.hkl_max[axes[1]] + half[1])


def run_diagnostics(grid_file: str | os.PathLike[str], scaling_file: str | os.PathLike[str],
                    voxel_file: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                    pixel_data_dir: str | os.PathLike[str] | None = None,
                    max_plot_points: int = 20000, seed: int = 0) -> DiagnosticsResult:
    """Write every plot and summary of the module docstring into ``out_dir``."""
    grid, params, voxels = check_inputs(grid_file, scaling_file, voxel_file)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, Path] = {}
    index = voxels["voxel_idx"]
    counts = voxels["num_observations"].astype(np.float64)
    intensity, sigma = voxels["I_merged_relative"], voxels["Sigma_merged_relative"]
    isigi = np.divide(intensity, sigma, out=np.full_like(intensity, np.nan), where=sigma > 0)
    centre = [m * n for m, n in zip(grid.hkl_max, grid.ndiv, strict=True)]
    pngs["Grid coverage in q (average crystal frame)"] = save_figure(
        plot_coverage(_sample_q(grid, pixel_data_dir, max_plot_points, seed), _box(grid),
                      "Observed q-points and the grid's bounds"), out / "grid_visualization_conceptual.png")
    for name, values, log, label in (("voxel_occupancy", counts, False, "observations"),
                                     ("merged_intensity", intensity, True, "I (relative, log)"),
                                     ("merged_sigma", sigma, True, "sigma (relative, log)"),
                                     ("merged_isigi", isigi, False, "I / sigma")):
        cube = _dense(grid, index, values)
        for dim in "LKH":
            path = out / f"{name}_slice_{dim}0.png"
            pngs[f"{name} {SLICE_TITLE[dim]}"] = save_figure(plot_3d_grid_slice(
                cube, dim, centre["HKL".index(dim)], f"{name.replace('_', ' ')}: {SLICE_TITLE[dim]}",
                _extent(grid, dim), log=log, label=label), path)
    pngs["Voxel occupancy histogram"] = save_figure(plot_histogram(
        counts, "Observations per voxel", "observations", bins=60), out / "voxel_occupancy_histogram.png")
    stills = np.asarray(params["stills"])
    pngs["Per-still scales b_i"] = save_figure(plot_parameter_vs_index(
        np.asarray(params["b_i"]), stills, "Refined per-still scale b_i", "b_i", "still"),
        out / "scaling_model_params.png")
    pngs["Resolution smoother a(|q|)"] = save_figure(plot_smoother_curve(
        np.asarray(params["a_control_q_per_A"]), np.asarray(params["a_control_values"]),
        "Resolution smoother a(|q|)"), out / "scaling_smoother.png")
    residuals = params.get("residuals")
    if residuals:
        pngs["Scaling residuals"] = save_figure(plot_binned_histogram(
            np.asarray(residuals["histogram_edges"]), np.asarray(residuals["histogram_counts"]),
            "Normalised residuals (I - b a I_v) / sigma", "residual / sigma"), out / "scaling_residuals.png")
    finite = np.isfinite(intensity)
    pngs["Radial average"] = save_figure(plot_radial_average(
        voxels["q_center_mag"][finite], intensity[finite], 40, "Merged intensity vs |q|"), out / "merged_radial_avg.png")
    pngs["Merged intensity histogram"] = save_figure(plot_histogram(
        intensity, "Merged intensity", "I (relative)", log_too=True), out / "merged_intensity_histogram.png")
    figures = _figures(grid, params, counts, intensity, isigi)
    texts = {"grid_summary": out / "grid_summary.txt", "summary": out / "phase3_diagnostics_summary.txt"}
    atomic_write_text(texts["grid_summary"], _grid_text(grid))
    atomic_write_text(texts["summary"], _summary_text(grid_file, scaling_file, voxel_file, grid, params, figures, pngs))
    return DiagnosticsResult(pngs=pngs, texts=texts, figures=figures)


SLICE_TITLE = {"L": "H-K plane at L = 0", "K": "H-L plane at K = 0", "H": "K-L plane at H = 0"}


def _sample_q(grid: GlobalVoxelGrid, pixel_data_dir: str | os.PathLike[str] | None, limit: int,
              seed: int) -> np.ndarray:
    """Up to ``limit`` observed q-points mapped into the average crystal frame (B_avg A_i^-1 q)."""
    if pixel_data_dir is None:
        return np.zeros((0, 3))
    paths = sorted(Path(pixel_data_dir).glob("CorrectedDiffusePixelData_*.npz"))
    if not paths:
        raise ValueError(f"{pixel_data_dir}: no CorrectedDiffusePixelData_*.npz files (--corrected-pixel-data-dir)")
    rng = np.random.default_rng(seed)
    per_still = max(1, limit // len(paths))
    points = []
    for path in paths:
        with np.load(path) as data:
            q = data["q_vector"]
            pick = rng.choice(len(q), size=min(per_still, len(q)), replace=False) if len(q) else []
            points.append(q[pick] @ np.linalg.inv(data["a_matrix"]).T @ grid.b_avg.T)
    return np.concatenate(points)


def _box(grid: GlobalVoxelGrid) -> np.ndarray:
    corners = np.array([[(i >> k) & 1 for k in range(3)] for i in range(8)], dtype=np.float64)
    hkl = (2 * corners - 1) * np.asarray(grid.hkl_max)
    return hkl @ grid.b_avg.T


def _figures(grid: GlobalVoxelGrid, params: dict[str, Any], counts: np.ndarray, intensity: np.ndarray,
             isigi: np.ndarray) -> dict[str, float]:
    b = np.asarray(params["b_i"])
    figures = {"voxels_total": float(grid.n_voxels), "voxels_observed": float(counts.size),
               "redundancy_min": float(counts.min()) if counts.size else 0.0,
               "redundancy_max": float(counts.max()) if counts.size else 0.0,
               "redundancy_mean": float(counts.mean()) if counts.size else 0.0,
               "redundancy_median": float(np.median(counts)) if counts.size else 0.0,
               "b_min": float(b.min()), "b_max": float(b.max()), "b_mean": float(b.mean()),
               "intensity_median": float(np.nanmedian(intensity)) if intensity.size else float("nan"),
               "isigi_median": float(np.nanmedian(isigi)) if isigi.size else float("nan")}
    for threshold in REDUNDANCY_THRESHOLDS:
        figures[f"percent_voxels_below_{threshold}_obs"] = float(100 * np.mean(counts < threshold)) if counts.size else 0.0
    residuals = params.get("residuals") or {}
    for key in ("mean", "rms", "std"):
        if key in residuals:
            figures[f"residual_{key}"] = float(residuals[key])
    return figures


def _grid_text(grid: GlobalVoxelGrid) -> str:
    a, b, c, al, be, ga = grid.cell_avg
    return "\n".join([
        "Global voxel grid",
        f"average cell: a={a:.4f} b={b:.4f} c={c:.4f} Å, alpha={al:.3f} beta={be:.3f} gamma={ga:.3f} deg",
        f"space group: {grid.space_group}",
        f"d_min: {grid.d_min_A:.4f} Å",
        f"HKL bounds: H ±{grid.hkl_max[0]}, K ±{grid.hkl_max[1]}, L ±{grid.hkl_max[2]}",
        f"ndiv (h, k, l): {grid.ndiv}; voxel size (1/ndiv): {tuple(round(1 / n, 6) for n in grid.ndiv)}",
        f"voxels along H, K, L: {grid.shape}; total: {grid.n_voxels}", ""])


def _summary_text(grid_file: Any, scaling_file: Any, voxel_file: Any, grid: GlobalVoxelGrid,
                  params: dict[str, Any], figures: dict[str, float], pngs: dict[str, Path]) -> str:
    lines = ["Phase 3 diagnostics summary", "", "Inputs:", f"  grid definition: {grid_file}",
             f"  scaling parameters: {scaling_file}", f"  voxel data: {voxel_file}", "",
             _grid_text(grid), "Figures:"]
    lines += [f"  {key}: {value:.6g}" for key, value in figures.items()]
    lines += ["", f"Scaling: {len(params['b_i'])} stills, {len(params['a_control_values'])} smoother control points, "
              f"{params.get('iterations', '?')} iterations; gauge: {params.get('gauge', '?')}",
              f"Scaling options: {json.dumps(params.get('options', {}), sort_keys=True)}", "", "Plots:"]
    lines += [f"  {path.name}: {title}" for title, path in pngs.items()]
    return "\n".join(lines) + "\n"
