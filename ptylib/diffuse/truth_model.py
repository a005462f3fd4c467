"""The analytic diffuse intensity of the synthetic data (known truth), a smooth function of fractional HKL and |q|.

    T(hkl, q) = A_halo exp(-|hkl - round(hkl)|^2 / (2 s^2)) exp(-B q^2 / 4)      Gaussian halos at lattice points
              + A_liquid (1 - exp(-(q / q_liquid)^2))                             liquid-like, isotropic, rising
              + A_ring exp(-(q - q_ring)^2 / (2 w^2))                             isotropic background ring

with ``q = |q|`` in 1/Å (|q| = 2 sin(theta) / lambda), ``s`` in Miller-index units and ``B`` in Å².
Values are photons per pixel of a pixel at normal incidence (solid angle pixel² / distance²) and
unit polarisation factor, before the per-still scale.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class DiffuseModel(BaseModel):
    """Parameters of the analytic diffuse intensity (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)

    halo_amplitude: float = Field(60.0, ge=0)
    """A_halo: peak of the halo at a lattice point (photons per pixel)."""
    halo_sigma_hkl: float = Field(0.22, gt=0, le=0.5)
    """s: Gaussian width of each halo in fractional Miller-index units."""
    halo_b_factor_A2: float = Field(20.0, ge=0)
    """B: the halos fade as exp(-B q^2 / 4) with resolution (Å²)."""
    liquid_amplitude: float = Field(30.0, ge=0)
    """A_liquid: high-q limit of the liquid-like term (photons per pixel)."""
    liquid_q_A: float = Field(0.12, gt=0)
    """q_liquid: |q| (1/Å) at which the liquid-like term reaches 63 % of its limit."""
    ring_amplitude: float = Field(40.0, ge=0)
    """A_ring: height of the isotropic background ring (photons per pixel)."""
    ring_q_A: float = Field(0.16, gt=0)
    """q_ring: |q| (1/Å) of the ring's maximum."""
    ring_width_A: float = Field(0.02, gt=0)
    """w: Gaussian width of the ring in |q| (1/Å)."""


def diffuse_intensity(hkl: np.ndarray, q_mag: np.ndarray, model: DiffuseModel) -> np.ndarray:
    """T(hkl, |q|) of the module docstring; ``hkl`` (..., 3) fractional, ``q_mag`` (...) in 1/Å."""
    frac = hkl - np.rint(hkl)
    halo = model.halo_amplitude * np.exp(-np.einsum("...i,...i->...", frac, frac) / (2 * model.halo_sigma_hkl**2))
    halo *= np.exp(-model.halo_b_factor_A2 * q_mag**2 / 4)
    liquid = model.liquid_amplitude * -np.expm1(-((q_mag / model.liquid_q_A) ** 2))
    ring = model.ring_amplitude * np.exp(-((q_mag - model.ring_q_A) ** 2) / (2 * model.ring_width_A**2))
    return halo + liquid + ring
