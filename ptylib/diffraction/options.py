"""Validated, frozen options of the diffraction simulator (crystal, detector, beam), nanoBragg's defaults.

Units are in the field names (``_A`` Ångström, ``_deg`` degrees, ``_mm`` millimetres). Every float
must be finite; a bad value raises ``pydantic.ValidationError`` naming the field. This module imports
no torch, so command-line parsing and Prefect parameter forms stay fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: nanoBragg's default fluence (photons/m^2), used when none is given.
NANOBRAGG_DEFAULT_FLUENCE = 125932015286227086360700780544.0
#: nanoBragg's default ``-mosaic_seed``.
NANOBRAGG_DEFAULT_MOSAIC_SEED = 12345678

_CONFIG = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)

PositiveInt = Annotated[int, Field(ge=1)]


def check_cell_parameters(cell: Sequence[float]) -> None:
    """Raise ``ValueError`` naming the parameter unless (a, b, c Å, alpha, beta, gamma deg) make a cell."""
    names = ("cell_a_A", "cell_b_A", "cell_c_A", "cell_alpha_deg", "cell_beta_deg", "cell_gamma_deg")
    if len(cell) != 6:
        raise ValueError(f"a unit cell has 6 parameters (a, b, c, alpha, beta, gamma), got {len(cell)}")
    for name, value in zip(names, cell, strict=True):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    for name, value in zip(names[:3], cell[:3], strict=True):
        if value <= 0:
            raise ValueError(f"{name} must be > 0 Å, got {value!r}")
    for name, value in zip(names[3:], cell[3:], strict=True):
        if not 0 < value < 180:
            raise ValueError(f"{name} must lie strictly between 0 and 180 degrees, got {value!r}")
    cos_a, cos_b, cos_g = (math.cos(math.radians(v)) for v in cell[3:])
    # Squared volume of the unit parallelepiped; non-positive when the three angles cannot meet.
    volume_sqr = 1 - cos_a**2 - cos_b**2 - cos_g**2 + 2 * cos_a * cos_b * cos_g
    if volume_sqr <= 1e-12:
        raise ValueError(
            f"cell angles (cell_alpha_deg, cell_beta_deg, cell_gamma_deg) = {tuple(cell[3:])} do not make "
            "a unit cell (each angle must be smaller than the sum of the other two, their sum below 360)"
        )


class CrystalOptions(BaseModel):
    """The crystal: unit cell, size in cells, structure factors, orientation and mosaicity."""

    model_config = _CONFIG

    cell_a_A: float = Field(100.0, gt=0)
    """Unit-cell length a (Å); nanoBragg ``-cell a b c al be ga``."""
    cell_b_A: float = Field(100.0, gt=0)
    """Unit-cell length b (Å)."""
    cell_c_A: float = Field(100.0, gt=0)
    """Unit-cell length c (Å)."""
    cell_alpha_deg: float = Field(90.0, gt=0, lt=180)
    """Unit-cell angle alpha (degrees)."""
    cell_beta_deg: float = Field(90.0, gt=0, lt=180)
    """Unit-cell angle beta (degrees)."""
    cell_gamma_deg: float = Field(90.0, gt=0, lt=180)
    """Unit-cell angle gamma (degrees)."""
    n_cells: tuple[PositiveInt, PositiveInt, PositiveInt] = (5, 5, 5)
    """Crystal size in unit cells along a, b, c (nanoBragg ``-N`` / ``-Na -Nb -Nc``), each >= 1."""
    default_F: float = Field(100.0, ge=0)
    """Structure factor (electrons) of every reflection not listed in ``hkl_path`` (``-default_F``)."""
    hkl_path: Path | None = None
    """Optional text file of ``h k l F`` lines (nanoBragg ``-hkl``); nearest-neighbour lookup."""
    misset_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Rotations about the lab x, y, z axes (degrees), applied x first, then y, then z (``-misset``)."""
    shape: Literal["square", "gauss"] = "square"
    """Lattice shape transform: ``square`` (sinc, nanoBragg's default) or ``gauss`` (``-gauss``, no side lobes)."""
    mosaic_spread_deg: float = Field(0.0, ge=0)
    """Isotropic mosaic spread (degrees): the diameter of the spherical cap of domain rotations."""
    mosaic_domains: PositiveInt = 1
    """Number of mosaic domains averaged per pixel (``-mosaic_domains``); domain 0 is unrotated."""
    mosaic_seed: int = NANOBRAGG_DEFAULT_MOSAIC_SEED
    """Seed of nanoBragg's ran1 generator for the domain rotations (``-mosaic_seed``)."""

    @model_validator(mode="after")
    def _cell_exists(self) -> CrystalOptions:
        check_cell_parameters(self.cell)
        return self

    @property
    def cell(self) -> tuple[float, float, float, float, float, float]:
        """The cell as (a, b, c in Å, alpha, beta, gamma in degrees)."""
        return (self.cell_a_A, self.cell_b_A, self.cell_c_A,
                self.cell_alpha_deg, self.cell_beta_deg, self.cell_gamma_deg)


class DetectorOptions(BaseModel):
    """A flat detector normal to the beam in nanoBragg's MOSFLM convention (beam along +x)."""

    model_config = _CONFIG

    fpixels: PositiveInt = 1024
    """Pixels along the fast axis (image columns); nanoBragg ``-detpixels_f``."""
    spixels: PositiveInt = 1024
    """Pixels along the slow axis (image rows); nanoBragg ``-detpixels_s``."""
    pixel_size_mm: float = Field(0.1, gt=0)
    """Pixel edge length (mm); nanoBragg ``-pixel``."""
    distance_mm: float = Field(100.0, gt=0)
    """Sample-to-detector distance along the beam (mm); nanoBragg ``-distance``."""
    beam_center_fast_mm: float | None = None
    """Direct-beam position along fast from the outer corner of pixel (0, 0) (mm), as DIALS counts it.

    ``None`` gives nanoBragg's default, ``fpixels * pixel / 2 + pixel`` (see ``detector.py``).
    nanoBragg's ``-Ybeam`` equals this value minus half a pixel."""
    beam_center_slow_mm: float | None = None
    """Direct-beam position along slow (mm); nanoBragg's ``-Xbeam`` plus half a pixel."""
    oversample: PositiveInt | None = None
    """Sub-pixels per pixel edge; ``None`` picks nanoBragg's count from the crystal size."""
    oversample_omega: bool = False
    """Weight each sub-pixel by its own solid angle instead of the pixel's (``-oversample_omega``)."""
    oversample_polar: bool = False
    """Weight each sub-pixel by its own polarisation factor (``-oversample_polar``)."""


class BeamOptions(BaseModel):
    """A monochromatic, parallel, linearly polarised (Kahn factor) beam."""

    model_config = _CONFIG

    wavelength_A: float = Field(1.0, gt=0)
    """Wavelength (Å); nanoBragg ``-lambda``."""
    fluence_photons_per_m2: float = Field(NANOBRAGG_DEFAULT_FLUENCE, gt=0)
    """Integrated incident fluence (photons/m^2); nanoBragg ``-fluence``."""
    kahn_factor: float = Field(0.0, ge=-1, le=1)
    """Kahn polarisation factor (0 = unpolarised, nanoBragg's default); nanoBragg ``-polar``."""
    apply_polarization: bool = True
    """False drops the polarisation factor altogether (nanoBragg ``-nopolar``)."""


class SimulationOptions(BaseModel):
    """Everything one simulated still needs."""

    model_config = _CONFIG

    crystal: CrystalOptions = CrystalOptions()
    detector: DetectorOptions = DetectorOptions()
    beam: BeamOptions = BeamOptions()
