"""Accuracy of a diffuse run against the synthetic set's known truth (what ``accuracy.json`` holds).

- ``scale_pearson``: Pearson r of refined b_i with the true scales (r is blind to the gauge's factor).
- ``map_pearson``: Pearson r of ``I_merged_relative`` with the true model binned the same way (the
  mean of T(hkl, |q|) over each voxel's observations) on voxels with >= ``min_observations``.
- ``bragg_flux_removed``: 1 - (expected Bragg photons on pixels kept for diffuse) / (expected Bragg
  photons on statically good pixels), over all stills.
- Geometry (median and max over the stills): beam-centre error (px) and misorientation (degrees, after the integer change of basis
  that best maps one indexing onto the other, so symmetry-equivalent settings count as equal).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.diffuse.binning import bin_observations
from ptylib.diffuse.experiment import StillExperiment, read_experiment
from ptylib.diffuse.extraction import read_pixel_data
from ptylib.diffuse.grid import read_grid
from ptylib.diffuse.layout import RunLayout
from ptylib.diffuse.masks import read_masks
from ptylib.diffuse.merging import read_voxel_data
from ptylib.diffuse.truth_model import DiffuseModel, diffuse_intensity


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation coefficient of two 1-D arrays."""
    return float(np.corrcoef(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))[0, 1])


def run_accuracy(layout: RunLayout, stills: Sequence[int], truth_json: str | os.PathLike[str],
                 truth_bragg: str | os.PathLike[str], *, min_observations: int = 3) -> dict[str, Any]:
    """The figures of the module docstring for a finished run over the synthetic set's ``stills`` (1-based)."""
    truth = json.loads(Path(truth_json).read_text(encoding="utf-8"))
    model = DiffuseModel.model_validate(truth["options"]["diffuse"])
    true_scale = {s["still"]: s["scale"] for s in truth["stills"]}
    params = json.loads(layout.scaling.read_text(encoding="utf-8"))
    refined = dict(zip(params["stills"], params["b_i"], strict=True))
    common = [s for s in stills if s in refined]
    grid = read_grid(layout.grid)
    sums = np.zeros(grid.n_voxels)
    hits = np.zeros(grid.n_voxels)
    for still in stills:
        data = read_pixel_data(layout.pixel_data(still))
        voxel, q_mag = bin_observations(grid, data["q_vector"], data["a_matrix"])
        hkl = data["q_vector"].astype(np.float64) @ np.linalg.inv(data["a_matrix"]).T
        inside = voxel >= 0
        sums += np.bincount(voxel[inside], diffuse_intensity(hkl[inside], q_mag[inside], model), grid.n_voxels)
        hits += np.bincount(voxel[inside], minlength=grid.n_voxels)
    merged = read_voxel_data(layout.voxel_data)
    compared = merged["num_observations"] >= min_observations
    index = merged["voxel_idx"][compared]
    expected = sums[index] / hits[index]
    bragg = np.load(truth_bragg)["bragg_photons"]
    kept, good = 0.0, 0.0
    for still in stills:
        masks = read_masks(layout.masks(still))
        kept += float(bragg[still - 1][masks.total_diffuse].sum())
        good += float(bragg[still - 1][masks.static_good].sum())
    geometry = [geometry_errors(read_experiment(layout.experiment(s)), truth["stills"][s - 1]) for s in stills]
    centre = [g["centre_error_px"] for g in geometry]
    angle = [g["misorientation_deg"] for g in geometry]
    return {"scale_pearson": pearson([refined[s] for s in common], [true_scale[s] for s in common]),
            "geometry_centre_error_px_median": float(np.median(centre)),
            "geometry_centre_error_px_max": float(np.max(centre)),
            "geometry_misorientation_deg_median": float(np.median(angle)),
            "geometry_misorientation_deg_max": float(np.max(angle)),
            "map_pearson": pearson(merged["I_merged_relative"][compared], expected),
            "bragg_flux_removed": 1.0 - kept / good if good > 0 else float("nan"),
            "n_voxels_compared": int(compared.sum()), "n_stills": len(stills),
            "min_observations_compared": min_observations}


def misorientation_deg(a_test: np.ndarray, a_true: np.ndarray) -> float:
    """Rotation angle (degrees) between two indexings, after the nearest integer change of basis."""
    basis = np.rint(np.linalg.solve(a_true, a_test))
    if abs(round(np.linalg.det(basis))) != 1:
        return float("nan")
    mapped = a_true @ basis
    rotation = a_test @ np.linalg.inv(mapped)
    u, _, vt = np.linalg.svd(rotation)
    rotation = u @ vt
    return float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0))))


def geometry_errors(experiment: StillExperiment, truth_still: dict[str, Any]) -> dict[str, float]:
    """Beam-centre error (px, fast and slow and their length) and misorientation (deg) against the truth."""
    fast, slow = experiment.beam_centre_px()
    d_fast = fast - truth_still["beam_centre_fast_px"]
    d_slow = slow - truth_still["beam_centre_slow_px"]
    return {"centre_error_fast_px": d_fast, "centre_error_slow_px": d_slow,
            "centre_error_px": float(np.hypot(d_fast, d_slow)),
            "misorientation_deg": misorientation_deg(experiment.a_matrix,
                                                     np.asarray(truth_still["A_matrix_imgcif_per_A"]))}
