"""Phase 2: per unmasked pixel the lab q-vector, the corrected intensity and its sigma; one NPZ per still.

Order and formulas (counts ``N`` of a pixel, :mod:`ptylib.diffuse.pixel_geometry` for Omega and P):

1. sigma_N = max(sqrt(N), sigma_floor)                    Poisson counting statistics
2. C = (Omega_0 / Omega) * (1 / P)                        solid angle relative to a pixel at normal
                                                          incidence (Omega_0 = p^2 / d^2), then polarisation
3. I = N * C,  sigma_I = sigma_N * C                      so I is in photons of a normal-incidence,
                                                          unpolarised pixel and the correction is exact
                                                          for the synthetic data's forward model

NPZ keys: ``q_vector`` (n, 3) float32 1/Å (lab frame), ``intensity``, ``sigma`` (n,) float32,
``pixel_index`` (n,) int32 (flat [slow, fast]), ``a_matrix`` (3, 3) float64 (columns a*, b*, c*),
``still`` (the 1-based still number), ``image_shape``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ptylib.diffuse.experiment import StillExperiment
from ptylib.diffuse.options import ExtractionOptions
from ptylib.diffuse.pixel_geometry import pixel_geometry, reference_solid_angle_sr
from ptylib.io.atomic import atomic_open


def extract_pixels(image: np.ndarray, experiment: StillExperiment, usable: np.ndarray,
                   options: ExtractionOptions) -> dict[str, np.ndarray]:
    """The Phase-2 arrays (module docstring) of the pixels where ``usable`` is True."""
    step = options.pixel_step
    keep = np.zeros_like(usable)
    keep[::step, ::step] = usable[::step, ::step]
    index = np.flatnonzero(keep)
    counts = image.reshape(-1)[index].astype(np.float64)
    geometry = pixel_geometry(experiment, index, kahn_factor=options.kahn_factor)
    correction = np.ones_like(counts)
    if options.apply_solid_angle:
        correction *= reference_solid_angle_sr(experiment) / geometry.solid_angle_sr
    if options.apply_polarization:
        correction /= geometry.polarization
    sigma = np.maximum(np.sqrt(counts), options.min_counts_sigma)
    return {"q_vector": geometry.q.astype(np.float32), "intensity": (counts * correction).astype(np.float32),
            "sigma": (sigma * correction).astype(np.float32), "pixel_index": index.astype(np.int32),
            "a_matrix": experiment.a_matrix, "image_shape": np.asarray(image.shape)}


def write_pixel_data(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], still: int) -> Path:
    """Save one still's Phase-2 arrays as ``CorrectedDiffusePixelData_<i>.npz`` atomically."""
    with atomic_open(path, "wb") as handle:
        np.savez(handle, still=np.int64(still), **arrays)
    return Path(path)


def read_pixel_data(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a Phase-2 NPZ; one-line error naming the file and the missing field."""
    path = Path(path)
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read Phase-2 pixel data: {exc}") from None
    for key in ("q_vector", "intensity", "sigma", "a_matrix", "still"):
        if key not in arrays:
            raise ValueError(f"{path}: field {key!r} missing from the Phase-2 pixel data")
    return arrays
