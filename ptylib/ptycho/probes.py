"""A focused, defocused X-ray probe: an annular pupil (zone plate with central stop) propagated off focus."""

from __future__ import annotations

import numpy as np


def focused_probe(n_px: int, *, rng: np.random.Generator, pupil_radius_frac: float = 0.25,
                  beam_diameter_frac: float = 0.5, central_stop_frac: float = 0.3,
                  aberration_rad: float = 0.3) -> np.ndarray:
    """An (n_px, n_px) complex64 probe with Σ|P|² = 1, centred in its window.

    Parameters
    ----------
    n_px : window side (pixels, even).
    rng : draws the orientation and strength of the astigmatism and coma (same seed, same probe).
    pupil_radius_frac : pupil radius as a fraction of the Nyquist radius n_px/2 (sets the focal spot).
    beam_diameter_frac : geometric beam diameter at the sample as a fraction of n_px (sets the defocus).
    central_stop_frac : radius of the central stop as a fraction of the pupil radius.
    aberration_rad : scale of the random astigmatism and coma at the pupil edge (radians).
    """
    if n_px < 4 or n_px % 2:
        raise ValueError(f"probe window must be an even number of pixels ≥ 4, got {n_px!r}")
    if not (0 < pupil_radius_frac <= 1 and 0 < beam_diameter_frac <= 1 and 0 <= central_stop_frac < 1):
        raise ValueError("pupil_radius_frac and beam_diameter_frac must lie in (0, 1], central_stop_frac in [0, 1)")
    freq = np.fft.fftfreq(n_px) * n_px  # pupil-plane coordinates in detector pixels
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    rho, theta = np.hypot(fy, fx), np.arctan2(fy, fx)
    radius = pupil_radius_frac * n_px / 2
    r = rho / radius
    edge = 0.5  # px: a soft pupil edge avoids ringing from a hard-edged binary aperture
    pupil = 0.5 * (1 + np.tanh((radius - rho) / edge)) * 0.5 * (1 + np.tanh((rho - central_stop_frac * radius) / edge))
    # A quadratic pupil phase a·r² moves the ray at r = 1 by a·n/(π·R) px: choose a for the wanted beam radius.
    defocus = np.pi * radius * (beam_diameter_frac * n_px / 2) / n_px
    astig, coma = aberration_rad * rng.uniform(0.5, 1.0, size=2)
    theta_a, theta_c = rng.uniform(0, 2 * np.pi, size=2)
    phase = (defocus * r**2 + astig * r**2 * np.cos(2 * (theta - theta_a))
             + coma * (3 * r**3 - 2 * r) * np.cos(theta - theta_c))
    probe = np.fft.fftshift(np.fft.ifft2(pupil * np.exp(1j * phase)))
    probe /= np.sqrt(np.sum(np.abs(probe) ** 2))
    return probe.astype(np.complex64)
