"""Per-pixel lab geometry of a still: scattering vectors q, solid angles and polarisation factors (vectorised).

For the centre of pixel (s, f), ``r = origin + (f + 1/2) p_f fast + (s + 1/2) p_s slow`` (mm) and
``u = r / |r|``; then (imgCIF frame, 1/Å)

    q = (u - s0_dir) / lambda,            |q| = 2 sin(theta) / lambda,  hkl = A^-1 q
    Omega = p_f p_s |n . u| / |r|^2       (sr; n the panel normal)
    P = (1 + (u . s0_dir)^2 - K ((u . e)^2 - (u . b)^2)) / 2

with ``e`` the beam's E-vector (lab x, DIALS' polarisation normal y gives e = x), ``b = s0_dir x e``
and K the Kahn factor (0: unpolarised, P = (1 + cos^2 2theta) / 2), as nanoBragg defines it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptylib.diffuse.experiment import StillExperiment


@dataclass(frozen=True)
class PixelGeometry:
    """Flattened per-pixel arrays for the pixels in ``index`` (flat indices into [slow, fast])."""

    index: np.ndarray
    q: np.ndarray
    solid_angle_sr: np.ndarray
    polarization: np.ndarray

    @property
    def q_mag(self) -> np.ndarray:
        """|q| (1/Å)."""
        return np.linalg.norm(self.q, axis=1)


def pixel_positions_mm(experiment: StillExperiment, index: np.ndarray) -> np.ndarray:
    """Lab positions (n, 3) mm of the centres of the pixels with flat indices ``index``."""
    n_fast = experiment.image_size[0]
    slow, fast = np.divmod(index, n_fast)
    return (experiment.origin_mm
            + np.multiply.outer((fast + 0.5) * experiment.pixel_size_mm[0], experiment.fast_axis)
            + np.multiply.outer((slow + 0.5) * experiment.pixel_size_mm[1], experiment.slow_axis))


def pixel_geometry(experiment: StillExperiment, index: np.ndarray | None = None, *,
                   kahn_factor: float = 0.0) -> PixelGeometry:
    """q, solid angle and polarisation (module docstring) for the pixels ``index`` (default: all)."""
    if index is None:
        index = np.arange(experiment.image_size[0] * experiment.image_size[1])
    r = pixel_positions_mm(experiment, np.asarray(index))
    distance = np.linalg.norm(r, axis=1)
    u = r / distance[:, None]
    s0 = experiment.s0_direction
    q = (u - s0) / experiment.wavelength_A
    solid = experiment.pixel_size_mm[0] * experiment.pixel_size_mm[1] * np.abs(u @ experiment.normal) / distance**2
    e_vec = np.array([1.0, 0.0, 0.0])
    b_vec = np.cross(s0, e_vec)
    polar = 0.5 * (1 + (u @ s0) ** 2 - kahn_factor * ((u @ e_vec) ** 2 - (u @ b_vec) ** 2))
    return PixelGeometry(index=np.asarray(index), q=q, solid_angle_sr=solid, polarization=polar)


def reference_solid_angle_sr(experiment: StillExperiment) -> float:
    """Solid angle of a pixel at normal incidence at the panel's distance: p_f p_s / d^2 (sr)."""
    distance = float(abs(np.dot(experiment.origin_mm, experiment.normal)))
    return experiment.pixel_size_mm[0] * experiment.pixel_size_mm[1] / distance**2


def fractional_hkl(experiment: StillExperiment, q: np.ndarray) -> np.ndarray:
    """Fractional Miller indices (n, 3) of lab scattering vectors ``q`` (n, 3): A^-1 q."""
    return q @ np.linalg.inv(experiment.a_matrix).T
