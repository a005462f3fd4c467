"""Synthetic stills with known truth: Bragg peaks (the torch simulator), the analytic diffuse model, scales, noise.

Per still ``i`` (random orientation U_i, true scale b_i, beam centre = nominal + small offset):

    expected_i = b_i * (Bragg_i + T(hkl, |q|) * Omega * P / Omega_0)

with ``Bragg_i`` the simulator's image (nanoBragg ``-gauss`` spots, so the peaks carry no sinc side
lobes), ``T`` of :mod:`ptylib.diffuse.truth_model`, ``Omega * P`` the simulator's per-pixel solid
angle times polarisation and ``Omega_0 = pixel^2 / distance^2``. Pixels in the beamstop's shadow
get no photons; counts are Poisson draws; a gap of rows is set to -1 and a few hot pixels to a
large count, as a real detector would show. Written: miniCBF stills (nominal beam centre in the
header), the true geometry as DIALS ``.expt`` files (the known-geometry path reads them),
``truth.json`` (scales, orientations, centres, model) and ``truth_bragg.npz`` (expected Bragg photons).

Random streams (``SeedSequence(seed).spawn(4)``): orientations, scales and centre offsets, noise,
hot pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ptylib.diffuse.experiment import StillExperiment, write_experiment
from ptylib.diffuse.truth_model import DiffuseModel, diffuse_intensity
from ptylib.io.atomic import atomic_open, atomic_write_json
from ptylib.io.minicbf import MiniCbfHeader, write_minicbf

_CONFIG = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)
GAP_VALUE = -1
HOT_VALUE = 500_000


class SyntheticDiffuseOptions(BaseModel):
    """The synthetic still set (defaults: 24 stills of 256 x 256 pixels, a few seconds to render)."""

    model_config = _CONFIG

    stills: int = Field(24, ge=1)
    """Number of stills."""
    seed: int = Field(2026, ge=0)
    """Seed of every random stream."""
    cell_A_deg: tuple[float, float, float, float, float, float] = (36.0, 42.0, 48.0, 90.0, 90.0, 90.0)
    """Unit cell (a, b, c Å, alpha, beta, gamma degrees)."""
    space_group: str = "P 2 2"
    """Hall symbol written to the experiment files (P222)."""
    space_group_symbol: str = "P222"
    """The same space group's Hermann-Mauguin symbol (what DIALS is told when it indexes the set)."""
    n_cells: int = Field(10, ge=2)
    """Crystal size in unit cells along each axis (sets the Bragg spot width)."""
    default_F: float = Field(100.0, gt=0)
    """Structure factor of every reflection (electrons)."""
    fluence_photons_per_m2: float = Field(2e28, gt=0)
    """Incident fluence of the Bragg render."""
    pixels: int = Field(256, ge=32)
    """Detector side (pixels, square)."""
    pixel_size_mm: float = Field(0.172, gt=0)
    """Pixel edge (mm)."""
    distance_mm: float = Field(60.0, gt=0)
    """Sample-detector distance (mm); 60 mm reaches 2.1 Å in the corners (at 100 mm DIALS indexed fewer stills)."""
    wavelength_A: float = Field(1.0, gt=0)
    """Wavelength (Å)."""
    scale_range: tuple[float, float] = (0.5, 1.5)
    """True per-still scales b_i are uniform in this range."""
    beam_offset_max_mm: float = Field(0.05, ge=0)
    """True beam centre = nominal + uniform offset in +-this along fast and slow (mm)."""
    beamstop_radius_px: float = Field(6.0, ge=0)
    """Radius of the beamstop's shadow around the true beam centre (pixels)."""
    gap_rows: tuple[int, int] | None = (124, 130)
    """Rows [start, stop) written as -1 (a module gap); ``None`` for none."""
    hot_pixels: int = Field(4, ge=0)
    """Hot pixels per still (fixed positions)."""
    diffuse: DiffuseModel = DiffuseModel()
    """The analytic diffuse intensity."""


@dataclass(frozen=True)
class SyntheticDataset:
    """Paths of a written synthetic set."""

    root: Path
    cbf_paths: list[Path]
    experiment_paths: list[Path]
    truth_json: Path
    truth_bragg: Path


def render_synthetic(options: SyntheticDiffuseOptions, out_dir: str | os.PathLike[str], *,
                     device: str = "cpu") -> SyntheticDataset:
    """Render and write the synthetic set (module docstring) into ``out_dir``."""
    import torch
    from scipy.spatial.transform import Rotation

    from ptylib.diffraction.cell import oriented_real_vectors
    from ptylib.diffraction.detector import pixel_geometry
    from ptylib.diffraction.options import (
        BeamOptions,
        CrystalOptions,
        DetectorOptions,
        SimulationOptions,
    )
    from ptylib.diffraction.simulator import Simulator
    from ptylib.diffraction.still_renderer import reciprocal_matrix_imgcif

    out = Path(out_dir)
    orient_rng, scale_rng, noise_rng, hot_rng = (np.random.default_rng(s) for s in
                                                 np.random.SeedSequence(options.seed).spawn(4))
    rotations = Rotation.random(options.stills, random_state=orient_rng).as_matrix()
    scales = scale_rng.uniform(*options.scale_range, size=options.stills)
    offsets = scale_rng.uniform(-options.beam_offset_max_mm, options.beam_offset_max_mm, size=(options.stills, 2))
    hot = hot_rng.integers(0, options.pixels, size=(options.hot_pixels, 2))
    a, b, c, al, be, ga = options.cell_A_deg
    crystal = CrystalOptions(cell_a_A=a, cell_b_A=b, cell_c_A=c, cell_alpha_deg=al, cell_beta_deg=be,
                             cell_gamma_deg=ga, n_cells=(options.n_cells,) * 3, default_F=options.default_F,
                             shape="gauss")
    beam = BeamOptions(wavelength_A=options.wavelength_A, fluence_photons_per_m2=options.fluence_photons_per_m2)
    nominal_mm = options.pixels * options.pixel_size_mm / 2
    omega_0 = options.pixel_size_mm**2 / options.distance_mm**2
    header = MiniCbfHeader(pixel_size_mm=options.pixel_size_mm, distance_mm=options.distance_mm,
                           wavelength_A=options.wavelength_A, beam_center_fast_px=options.pixels / 2,
                           beam_center_slow_px=options.pixels / 2)
    cbf_paths, expt_paths, events, bragg_images = [], [], [], []
    for i in range(options.stills):
        centre_mm = (nominal_mm + offsets[i, 0], nominal_mm + offsets[i, 1])
        detector = DetectorOptions(fpixels=options.pixels, spixels=options.pixels,
                                   pixel_size_mm=options.pixel_size_mm, distance_mm=options.distance_mm,
                                   beam_center_fast_mm=centre_mm[0], beam_center_slow_mm=centre_mm[1])
        simulator = Simulator(SimulationOptions(crystal=crystal, detector=detector, beam=beam))
        rotation = torch.as_tensor(rotations[i], dtype=torch.float64)
        with torch.no_grad():
            bragg = simulator.render(orientation=rotation).numpy()
            centres = pixel_geometry(detector, beam, 1)
            real = oriented_real_vectors(torch.tensor(crystal.cell, dtype=torch.float64),
                                         torch.zeros(3, dtype=torch.float64), rotation)
            s_vec = centres.scattering_A[:, 0, :]
            hkl = (s_vec @ real.T).numpy()
            q_mag = torch.linalg.vector_norm(s_vec, dim=-1).numpy()
            weight = centres.weight[:, 0].numpy()
        diffuse = (diffuse_intensity(hkl, q_mag, options.diffuse) * weight / omega_0).reshape(bragg.shape)
        expected = scales[i] * (bragg + diffuse) * _beamstop_transmission(options, centre_mm)
        counts = noise_rng.poisson(expected).astype(np.int32)
        if options.gap_rows is not None:
            counts[options.gap_rows[0]:options.gap_rows[1]] = GAP_VALUE
        counts[hot[:, 0], hot[:, 1]] = HOT_VALUE
        bragg_images.append((scales[i] * bragg).astype(np.float32))
        cbf = write_minicbf(out / "cbf" / f"still_{i + 1:05d}.cbf", counts, header)
        a_matrix = reciprocal_matrix_imgcif(crystal, rotations[i])
        experiment = StillExperiment(
            wavelength_A=options.wavelength_A, s0_direction=np.array([0.0, 0.0, -1.0]),
            origin_mm=np.array([-centre_mm[0], centre_mm[1], -options.distance_mm]),
            fast_axis=np.array([1.0, 0.0, 0.0]), slow_axis=np.array([0.0, -1.0, 0.0]),
            pixel_size_mm=(options.pixel_size_mm,) * 2, image_size=(options.pixels, options.pixels),
            a_matrix=a_matrix, space_group=options.space_group)
        expt = write_experiment(out / "expt" / f"still_{i + 1:05d}.expt", experiment, str(cbf.resolve()))
        cbf_paths.append(cbf)
        expt_paths.append(expt)
        events.append(_still_truth(i, scales[i], centre_mm, options, a_matrix, rotations[i]))
    truth_bragg = out / "truth_bragg.npz"
    with atomic_open(truth_bragg, "wb") as handle:
        np.savez_compressed(handle, bragg_photons=np.stack(bragg_images))
    truth = {"format": "ptyflows-diffuse-truth-v1", "options": options.model_dump(mode="json"),
             "hot_pixels_slow_fast": hot.tolist(), "stills": events,
             "conventions": "imgCIF lab frame; A columns a*, b*, c* (1/Å); centres from the corner of pixel (0, 0)"}
    truth_json = out / "truth.json"
    atomic_write_json(truth_json, truth)
    return SyntheticDataset(root=out, cbf_paths=cbf_paths, experiment_paths=expt_paths, truth_json=truth_json,
                            truth_bragg=truth_bragg)


def _beamstop_transmission(options: SyntheticDiffuseOptions, centre_mm: tuple[float, float]) -> np.ndarray:
    """1 outside and 0 inside the beamstop's circular shadow, [slow, fast]."""
    coords = (np.arange(options.pixels) + 0.5) * options.pixel_size_mm
    fast, slow = np.meshgrid(coords - centre_mm[0], coords - centre_mm[1], indexing="xy")
    return (np.hypot(fast, slow) > options.beamstop_radius_px * options.pixel_size_mm).astype(np.float64)


def _still_truth(index: int, scale: float, centre_mm: tuple[float, float], options: SyntheticDiffuseOptions,
                 a_matrix: np.ndarray, rotation: np.ndarray) -> dict[str, Any]:
    return {"still": index + 1, "scale": float(scale),
            "beam_centre_fast_px": centre_mm[0] / options.pixel_size_mm,
            "beam_centre_slow_px": centre_mm[1] / options.pixel_size_mm,
            "A_matrix_imgcif_per_A": a_matrix.tolist(), "rotation_nanobragg_frame": rotation.tolist()}
