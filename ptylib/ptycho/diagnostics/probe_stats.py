"""Probe normalisation A/B: the two ways this pipeline scales a probe, side by side.

A: unit power, Σ|P|² = 1 (phase B of the dose/overlap study, and this scenario's simulation input).
B: dose-scaled, the unit-power probe times sqrt(dose / mean total intensity), as
:func:`ptylib.ptycho.dataset.simulate_dataset` stores it in ``probeGuess`` (|FFT(P·O)|² in photons).
The two should differ by one scalar: the normalised-shape delta says whether they do.
"""

from __future__ import annotations

import numpy as np


def amplitude_stats(probe: np.ndarray) -> dict[str, float]:
    """Amplitude min / max / mean and L2 norm sqrt(Σ|P|²) of a probe."""
    amplitude = np.abs(probe).astype(np.float64)
    return {"amplitude_min": float(amplitude.min()), "amplitude_max": float(amplitude.max()),
            "amplitude_mean": float(amplitude.mean()), "l2_norm": float(np.sqrt(np.sum(amplitude**2)))}


def probe_normalisation_ab(probe_raw: np.ndarray, probe_dose_scaled: np.ndarray) -> dict[str, object]:
    """Stats of the raw, unit-power (A) and dose-scaled (B) probes, B/A ratios of each stat, and the largest
    |Â − B̂| of the two after each is divided by its own L2 norm (0 when they differ by a scalar only)."""
    unit = probe_raw / np.sqrt(np.sum(np.abs(probe_raw) ** 2))
    stats = {"raw": amplitude_stats(probe_raw), "unit_power": amplitude_stats(unit),
             "dose_scaled": amplitude_stats(probe_dose_scaled)}
    a, b = stats["unit_power"], stats["dose_scaled"]
    ratios = {k: (b[k] / a[k] if a[k] else float("nan")) for k in a}
    shape_a = unit / np.linalg.norm(unit)
    shape_b = probe_dose_scaled / np.linalg.norm(probe_dose_scaled)
    return {"stats": stats, "ratio_dose_scaled_over_unit": ratios,
            "normalised_max_abs_delta": float(np.max(np.abs(shape_a - shape_b)))}
