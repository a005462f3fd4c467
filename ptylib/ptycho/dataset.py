"""Contract-conforming datasets in memory: simulate one at a dose, take subsets, attach and select groups."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ptylib.ptycho.forward import extract_patches, simulate_intensities, snap_positions
from ptylib.ptycho.grouping import Groups, group_geometry
from ptylib.ptycho.noise import counts_to_amplitudes, dose_scale, poisson_counts

PER_PATTERN_KEYS = ("diffraction", "xcoords", "ycoords", "Y", "scan_index")


def simulate_dataset(obj: np.ndarray, probe: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray, dose: float, *,
                     rng: np.random.Generator, ground_truth_patches: bool = True) -> dict[str, np.ndarray]:
    """Poisson-noisy amplitudes of a scan at ``dose`` photons per exposure, as a contract dict.

    The probe is rescaled so that the mean expected total counts per pattern equal the dose, and stored
    that way in ``probeGuess`` (|FFT(probe·object)|² is then in photons).
    """
    n_px = probe.shape[-1]
    x, y = np.asarray(xcoords, np.float64), np.asarray(ycoords, np.float64)
    intensities = simulate_intensities(obj, probe, x, y)
    scale = dose_scale(intensities, dose)
    counts = poisson_counts(intensities * scale, rng=rng)
    arrays = {"diffraction": counts_to_amplitudes(counts), "xcoords": x, "ycoords": y,
              "objectGuess": obj.astype(np.complex64), "probeGuess": (probe * np.sqrt(scale)).astype(np.complex64),
              "dose": np.float64(dose), "scan_index": np.arange(len(x), dtype=np.int64)}
    if ground_truth_patches:
        arrays["Y"] = extract_patches(arrays["objectGuess"], snap_positions(x, y, n_px)[0], n_px).copy()
    return arrays


def subset(arrays: Mapping[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """The patterns ``index`` of a dataset (per-pattern keys indexed, the rest shared)."""
    return {k: (v[index] if k in PER_PATTERN_KEYS else v) for k, v in arrays.items()}


def with_groups(arrays: Mapping[str, np.ndarray], groups: Groups) -> dict[str, np.ndarray]:
    """The dataset with its groups' indices, centres and offsets attached."""
    return {**arrays, "group_indices": groups.indices, "group_centers": groups.centers,
            "group_offsets": groups.offsets}


def select_groups(arrays: Mapping[str, np.ndarray], kept: np.ndarray, min_spacing_px: float) -> dict[str, np.ndarray]:
    """The dataset restricted to the groups ``kept`` and the patterns they use, group indices renumbered."""
    members = arrays["group_indices"][kept]
    patterns = np.unique(members)
    data = subset(arrays, patterns)
    indices = np.searchsorted(patterns, members).astype(np.int64)
    centers, offsets = group_geometry(indices, data["xcoords"], data["ycoords"])
    return data | {"group_indices": indices, "group_centers": centers, "group_offsets": offsets,
                   "min_center_spacing_px": np.float64(min_spacing_px)}
