"""Photon dose and Poisson noise: intensities scaled to a dose (photons per exposure), then counted."""

from __future__ import annotations

import math

import numpy as np


def check_dose(dose: float) -> float:
    """Return ``dose`` as a float, or raise if it is not a positive, finite number of photons per exposure."""
    value = float(dose)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"dose must be a positive, finite number of photons per exposure, got {dose!r}")
    return value


def dose_scale(intensities: np.ndarray, dose: float) -> float:
    """Factor that makes the mean total of the patterns (n, H, W) equal ``dose`` photons."""
    dose = check_dose(dose)
    mean_total = float(intensities.sum(axis=(-2, -1)).mean())
    if not mean_total > 0:
        raise ValueError(f"cannot scale dark patterns (mean total intensity {mean_total}) to a dose")
    return dose / mean_total


def poisson_counts(expected: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """Poisson-distributed counts (float64) with the given expected values (photons)."""
    if np.any(expected < 0) or not np.all(np.isfinite(expected)):
        raise ValueError("expected counts must be finite and non-negative")
    return rng.poisson(expected).astype(np.float64)


def counts_to_amplitudes(counts: np.ndarray) -> np.ndarray:
    """Diffraction amplitudes sqrt(counts) as float32 (the dataset contract's storage)."""
    return np.sqrt(counts).astype(np.float32)
