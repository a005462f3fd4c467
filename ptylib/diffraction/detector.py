"""Detector geometry in nanoBragg's MOSFLM convention: sub-pixel scattering vectors, solid angle, polarisation.

Lab frame (nanoBragg ``-mosflm``, its default): the beam travels along +x, the detector normal is
+x, the fast axis is +z, the slow axis is -y and the E-vector of the beam lies along +z.
Detector coordinates are measured from the outer corner of pixel (0, 0): pixel ``(s, f)`` covers
``[f, f + 1) * pixel`` along fast and ``[s, s + 1) * pixel`` along slow, and the image is laid out
[slow, fast].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ptylib.diffraction.options import BeamOptions, CrystalOptions, DetectorOptions


def default_beam_center_mm(pixels: int, pixel_size_mm: float) -> float:
    """nanoBragg's default beam position along one axis (mm from the detector corner).

    Its MOSFLM default ``Xbeam = (detsize + pixel) / 2`` is then shifted by another half pixel
    (``Fbeam = Ybeam + pixel / 2``), so the beam lands one pixel past the geometric centre
    ``detsize / 2``: on the corner shared by pixels N/2 and N/2 + 1 (0-based) for even N.
    """
    return pixels * pixel_size_mm / 2 + pixel_size_mm


def beam_center_mm(detector: DetectorOptions) -> tuple[float, float]:
    """(fast, slow) direct-beam position (mm from the corner of pixel (0, 0))."""
    fast = detector.beam_center_fast_mm
    slow = detector.beam_center_slow_mm
    if fast is None:
        fast = default_beam_center_mm(detector.fpixels, detector.pixel_size_mm)
    if slow is None:
        slow = default_beam_center_mm(detector.spixels, detector.pixel_size_mm)
    return fast, slow


def auto_oversample(crystal: CrystalOptions, detector: DetectorOptions, beam: BeamOptions) -> int:
    """nanoBragg's sub-pixel count when ``-oversample`` is absent: ceil(3 * crystal size / reciprocal pixel).

    The reciprocal pixel size is lambda * distance / pixel, the crystal size the longest of
    N_a |a|, N_b |b|, N_c |c|.
    """
    if detector.oversample is not None:
        return detector.oversample
    lengths_A = (crystal.cell_a_A, crystal.cell_b_A, crystal.cell_c_A)
    crystal_size_A = max(n * length for n, length in zip(crystal.n_cells, lengths_A, strict=True))
    reciprocal_pixel_A = beam.wavelength_A * detector.distance_mm / detector.pixel_size_mm
    return max(1, math.ceil(3.0 * crystal_size_A / reciprocal_pixel_A))


@dataclass(frozen=True)
class PixelGeometry:
    """Per-sub-pixel scattering vectors and the per-pixel (or per-sub-pixel) omega * polar weights.

    ``scattering_A`` is (pixels, subpixels, 3) in 1/Å; ``weight`` is (pixels, subpixels) when
    ``oversample_omega`` or ``oversample_polar`` asks for per-sub-pixel factors, else (pixels, 1)
    evaluated at the pixel's first sub-pixel, as nanoBragg does. The image is
    ``(I_sub * weight).mean(-1)`` times the scale.
    """

    scattering_A: Tensor
    weight: Tensor
    shape: tuple[int, int]
    oversample: int


def _pixel_positions_mm(detector: DetectorOptions, oversample: int, dtype: torch.dtype,
                        device: torch.device | str) -> Tensor:
    """Lab positions (spixels, fpixels, oversample**2, 3) of sub-pixel centres, in mm."""
    fast_mm, slow_mm = beam_center_mm(detector)
    sub_mm = detector.pixel_size_mm / oversample
    # nanoBragg: Fdet = sub * (fpixel * oversample + subF) + sub / 2; the same along slow.
    fdet = (torch.arange(detector.fpixels * oversample, dtype=dtype, device=device) + 0.5) * sub_mm
    sdet = (torch.arange(detector.spixels * oversample, dtype=dtype, device=device) + 0.5) * sub_mm
    shape = (detector.spixels, detector.fpixels, oversample, oversample)
    # pix0 = -Fbeam * fdet - Sbeam * sdet + distance * beam with fdet = +z, sdet = -y, beam = +x.
    x = torch.full(shape, detector.distance_mm, dtype=dtype, device=device)
    y = (slow_mm - sdet.reshape(detector.spixels, 1, oversample, 1)).expand(shape)
    z = (fdet.reshape(1, detector.fpixels, 1, oversample) - fast_mm).expand(shape)
    return torch.stack([x, y, z], dim=-1).reshape(detector.spixels, detector.fpixels, oversample * oversample, 3)


def _omega_polar(position_mm: Tensor, detector: DetectorOptions, beam: BeamOptions) -> tuple[Tensor, Tensor]:
    """Solid angle (sr) of a whole pixel seen from ``position_mm`` (..., 3) and the polarisation factor."""
    airpath = torch.linalg.vector_norm(position_mm, dim=-1)
    # nanoBragg: omega = pixel^2 / airpath^2 * close_distance / airpath (close distance = distance here).
    omega = detector.pixel_size_mm**2 / airpath**2 * detector.distance_mm / airpath
    if not beam.apply_polarization:
        return omega, torch.ones_like(omega)
    unit = position_mm / airpath[..., None]
    # nanoBragg's polarization_factor with incident +x and E-vector axis +z: the diffracted ray's
    # components along E (z) and B (y) give cos(2 psi) sin^2(2 theta) = d_z^2 - d_y^2.
    polar = 0.5 * (1 + unit[..., 0] ** 2 - beam.kahn_factor * (unit[..., 2] ** 2 - unit[..., 1] ** 2))
    return omega, polar


def pixel_geometry(detector: DetectorOptions, beam: BeamOptions, oversample: int, *,
                   dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> PixelGeometry:
    """Scattering vectors and weights of every sub-pixel (see ``PixelGeometry``)."""
    positions = _pixel_positions_mm(detector, oversample, dtype, device)
    pixels = detector.spixels * detector.fpixels
    positions = positions.reshape(pixels, oversample * oversample, 3)
    unit = positions / torch.linalg.vector_norm(positions, dim=-1, keepdim=True)
    incident = torch.tensor([1.0, 0.0, 0.0], dtype=dtype, device=device)
    scattering = (unit - incident) / beam.wavelength_A
    # nanoBragg evaluates both factors once per pixel unless asked per sub-pixel, at the pixel's first
    # sub-pixel (subS = subF = 0, nearest the corner of pixel (0, 0)): it caches them when they are
    # still 0. At short distances with large pixels that differs from the pixel centre by percents.
    omega, polar = _omega_polar(positions[:, :1], detector, beam)
    if detector.oversample_omega or detector.oversample_polar:
        omega_sub, polar_sub = _omega_polar(positions, detector, beam)
        omega = omega_sub if detector.oversample_omega else omega
        polar = polar_sub if detector.oversample_polar else polar
    return PixelGeometry(scattering_A=scattering, weight=omega * polar, shape=(detector.spixels, detector.fpixels),
                         oversample=oversample)
