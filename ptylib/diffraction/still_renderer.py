"""A serial-crystallography dataset: E stills of randomly oriented crystals, each with its own beam centre.

Each event draws a uniformly random crystal orientation and a true beam-centre offset (uniform in
+-``beam_offset_max_mm`` along fast and slow); the image is rendered with the direct beam at the
nominal centre plus that offset, a flat background is added and Poisson noise drawn. The files
carry the nominal centre (what an indexer is told); the ground-truth JSON carries the true one.

Random streams (``numpy.random.SeedSequence(seed).spawn(3)``): orientations, beam offsets and
noise draw from separate streams, so changing e.g. the noise level leaves the geometry unchanged.

Outputs in ``out_dir`` (``{prefix}`` defaults to ``still``):
``{prefix}_crystfel.h5`` + ``{prefix}.geom``, ``{prefix}_nxmx.h5``, ``cbf/{prefix}_00001.cbf`` ...,
and ``{prefix}_truth.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.spatial.transform import Rotation

from ptylib.diffraction.b_matrix import cctbx_b_matrix
from ptylib.diffraction.cell import reciprocal_vectors
from ptylib.diffraction.detector import beam_center_mm
from ptylib.diffraction.options import BeamOptions, CrystalOptions, DetectorOptions, SimulationOptions
from ptylib.diffraction.simulator import Simulator
from ptylib.diffraction.still_formats import (
    IMGCIF_TO_MCSTAS,
    StillGeometry,
    write_crystfel_geometry,
    write_crystfel_h5,
    write_nxmx_h5,
)
from ptylib.io.atomic import atomic_write_json
from ptylib.io.minicbf import MiniCbfHeader, write_minicbf

#: nanoBragg's MOSFLM lab frame -> imgCIF (DIALS) lab frame: beam +x -> -z, fast +z -> +x, slow -y -> -y.
NANOBRAGG_TO_IMGCIF = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])


def _lysozyme() -> CrystalOptions:
    return CrystalOptions(cell_a_A=79.1, cell_b_A=79.1, cell_c_A=37.9, n_cells=(10, 10, 10), default_F=100.0)


def _pilatus_100k() -> DetectorOptions:
    return DetectorOptions(fpixels=487, spixels=195, pixel_size_mm=0.172, distance_mm=100.0)


class StillDatasetOptions(BaseModel):
    """A still dataset: events, crystal (lysozyme-like), detector (Pilatus 100K), beam, noise, outputs."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)

    events: int = Field(10, ge=1)
    """Number of stills."""
    seed: int = Field(2026, ge=0)
    """Seed of the orientation, beam-offset and noise streams."""
    crystal: CrystalOptions = Field(default_factory=_lysozyme)
    """Crystal (tetragonal lysozyme-like cell 79.1 79.1 37.9 Å by default); its misset is ignored."""
    detector: DetectorOptions = Field(default_factory=_pilatus_100k)
    """Detector with the nominal beam centre (Pilatus 100K module, 0.172 mm pixels, by default)."""
    beam: BeamOptions = BeamOptions(fluence_photons_per_m2=1e28)
    """Beam (1 Å; 1e28 photons/m^2 gives spots of ~10^3 photons from the default 10^3-cell crystal)."""
    beam_offset_max_mm: float = Field(0.1, ge=0)
    """True beam centre = nominal + uniform offset in [-max, max] mm along fast and slow."""
    background_photons: float = Field(2.0, ge=0)
    """Flat background added to every pixel (photons)."""
    poisson_noise: bool = True
    """Draw Poisson counts; otherwise round the expected photons."""
    prefix: str = Field("still", pattern=r"^[A-Za-z0-9_.-]+$")
    """Stem of every output file name."""
    dtype: Literal["float64", "float32"] = "float64"
    """Compute precision of the simulator."""


@dataclass(frozen=True)
class StillDataset:
    """Paths of a written still dataset and its ground truth."""

    crystfel_h5: Path
    crystfel_geom: Path
    nxmx_h5: Path
    cbf_paths: list[Path]
    truth_json: Path
    truth: dict[str, Any]


def render_stills(options: StillDatasetOptions, out_dir: str | os.PathLike[str], *,
                  device: torch.device | str = "cpu") -> StillDataset:
    """Render and write the dataset (see the module docstring); returns its paths and ground truth."""
    out = Path(out_dir)
    streams = np.random.SeedSequence(options.seed).spawn(3)
    orientation_rng, offset_rng, noise_rng = (np.random.default_rng(stream) for stream in streams)
    rotations = Rotation.random(options.events, random_state=orientation_rng).as_matrix()
    offsets_mm = offset_rng.uniform(-options.beam_offset_max_mm, options.beam_offset_max_mm, size=(options.events, 2))
    dtype = torch.float64 if options.dtype == "float64" else torch.float32
    crystal = options.crystal.model_copy(update={"misset_deg": (0.0, 0.0, 0.0)})
    nominal_fast_mm, nominal_slow_mm = beam_center_mm(options.detector)

    frames = np.empty((options.events, options.detector.spixels, options.detector.fpixels), dtype=np.int32)
    events = []
    for index in range(options.events):
        detector = options.detector.model_copy(update={
            "beam_center_fast_mm": nominal_fast_mm + offsets_mm[index, 0],
            "beam_center_slow_mm": nominal_slow_mm + offsets_mm[index, 1],
        })
        simulator = Simulator(SimulationOptions(crystal=crystal, detector=detector, beam=options.beam),
                              dtype=dtype, device=device)
        with torch.no_grad():
            expected = simulator.render(orientation=simulator.tensor(rotations[index])).cpu().numpy()
        expected = expected + options.background_photons
        frames[index] = noise_rng.poisson(expected) if options.poisson_noise else np.rint(expected)
        events.append(_event_truth(index, options, rotations[index], offsets_mm[index],
                                   (nominal_fast_mm, nominal_slow_mm), float(expected.sum())))

    geometry = StillGeometry(
        fpixels=options.detector.fpixels, spixels=options.detector.spixels,
        pixel_size_mm=options.detector.pixel_size_mm, distance_mm=options.detector.distance_mm,
        beam_center_fast_mm=nominal_fast_mm, beam_center_slow_mm=nominal_slow_mm,
        wavelength_A=options.beam.wavelength_A)
    crystfel_h5 = write_crystfel_h5(out / f"{options.prefix}_crystfel.h5", frames)
    crystfel_geom = write_crystfel_geometry(out / f"{options.prefix}.geom", geometry)
    nxmx_h5 = write_nxmx_h5(out / f"{options.prefix}_nxmx.h5", frames, geometry)
    header = MiniCbfHeader(pixel_size_mm=geometry.pixel_size_mm, distance_mm=geometry.distance_mm,
                           wavelength_A=geometry.wavelength_A,
                           beam_center_fast_px=nominal_fast_mm / geometry.pixel_size_mm,
                           beam_center_slow_px=nominal_slow_mm / geometry.pixel_size_mm)
    cbf_paths = [write_minicbf(out / "cbf" / f"{options.prefix}_{index + 1:05d}.cbf", frames[index], header)
                 for index in range(options.events)]
    for event, path in zip(events, cbf_paths, strict=True):
        event["cbf"] = str(path.relative_to(out))
    truth = _dataset_truth(options, geometry, events, crystfel_h5, crystfel_geom, nxmx_h5, out)
    truth_json = out / f"{options.prefix}_truth.json"
    atomic_write_json(truth_json, truth)
    return StillDataset(crystfel_h5=crystfel_h5, crystfel_geom=crystfel_geom, nxmx_h5=nxmx_h5,
                        cbf_paths=cbf_paths, truth_json=truth_json, truth=truth)


def reciprocal_matrix_imgcif(crystal: CrystalOptions, rotation: np.ndarray) -> np.ndarray:
    """DIALS' A = UB (1/Å): columns a*, b*, c* in the imgCIF lab frame for a crystal rotated by ``rotation``.

    ``rotation`` acts on nanoBragg's lab frame, in which the unrotated cell has a* along x and b*
    in the x-y plane.
    """
    base = reciprocal_vectors(torch.tensor(crystal.cell, dtype=torch.float64)).numpy()
    return NANOBRAGG_TO_IMGCIF @ rotation @ base.T


def _event_truth(index: int, options: StillDatasetOptions, rotation: np.ndarray, offset_mm: np.ndarray,
                 nominal_mm: tuple[float, float], expected_photons: float) -> dict[str, Any]:
    pixel = options.detector.pixel_size_mm
    true_fast, true_slow = nominal_mm[0] + offset_mm[0], nominal_mm[1] + offset_mm[1]
    a_matrix = reciprocal_matrix_imgcif(options.crystal, rotation)
    u_matrix = a_matrix @ np.linalg.inv(cctbx_b_matrix(options.crystal.cell))
    real = np.linalg.inv(a_matrix).T  # columns: a, b, c in Å
    return {
        "event": index,
        "beam_offset_fast_mm": float(offset_mm[0]),
        "beam_offset_slow_mm": float(offset_mm[1]),
        "true_beam_center_fast_mm": float(true_fast),
        "true_beam_center_slow_mm": float(true_slow),
        "true_beam_center_fast_px": float(true_fast / pixel),
        "true_beam_center_slow_px": float(true_slow / pixel),
        "true_detector_origin_imgcif_mm": [-float(true_fast), float(true_slow), -options.detector.distance_mm],
        "rotation_nanobragg_frame": rotation.tolist(),
        "A_matrix_imgcif_per_A": a_matrix.tolist(),
        "U_matrix_imgcif": u_matrix.tolist(),
        "real_space_imgcif_A": {"a": real[:, 0].tolist(), "b": real[:, 1].tolist(), "c": real[:, 2].tolist()},
        "expected_photons": expected_photons,
    }


def _dataset_truth(options: StillDatasetOptions, geometry: StillGeometry, events: list[dict[str, Any]],
                   crystfel_h5: Path, crystfel_geom: Path, nxmx_h5: Path, out: Path) -> dict[str, Any]:
    return {
        "format": "ptyflows-stills-truth-v1",
        "conventions": {
            "lab_frame": "imgCIF/DIALS: beam along -z, fast axis +x, slow axis -y, detector origin = outer "
                         "corner of pixel (0, 0); beam centres in mm (and px) from that corner",
            "beam_offset": "true beam centre = nominal (in the file headers) + offset",
            "nanobragg_to_imgcif": NANOBRAGG_TO_IMGCIF.tolist(),
            "imgcif_to_mcstas": IMGCIF_TO_MCSTAS.tolist(),
            "A_matrix": "DIALS A = U B, columns a*, b*, c* (1/Å); U uses cctbx's B (a along x, b in x-y)",
        },
        "options": options.model_dump(mode="json"),
        "cell_A_deg": list(options.crystal.cell),
        "wavelength_A": geometry.wavelength_A,
        "detector": {
            "fpixels": geometry.fpixels, "spixels": geometry.spixels, "pixel_size_mm": geometry.pixel_size_mm,
            "distance_mm": geometry.distance_mm,
            "nominal_beam_center_fast_mm": geometry.beam_center_fast_mm,
            "nominal_beam_center_slow_mm": geometry.beam_center_slow_mm,
            "nominal_beam_center_fast_px": geometry.beam_center_fast_mm / geometry.pixel_size_mm,
            "nominal_beam_center_slow_px": geometry.beam_center_slow_mm / geometry.pixel_size_mm,
            "nominal_origin_imgcif_mm": list(geometry.origin_imgcif_mm),
        },
        "files": {
            "crystfel_h5": crystfel_h5.name, "crystfel_h5_dataset": "/entry/data/data",
            "crystfel_geom": crystfel_geom.name, "nxmx_h5": nxmx_h5.name,
        },
        "events": events,
    }
