"""One still's geometry (beam, flat detector panel, crystal) read from and written to DIALS ``.expt`` JSON.

Both Phase-1 paths end here: DIALS writes ``indexed.expt``; the known-geometry path writes the
same form from a known model. Only the fields the pipeline needs are read, so no DIALS import is
needed. Frame: DIALS' imgCIF lab frame (beam along -z, lengths in mm, reciprocal lengths in 1/Å);
``A = U B`` has the reciprocal vectors a*, b*, c* as columns, so ``q = A @ hkl``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.diffuse.files import read_json_document
from ptylib.io.atomic import atomic_write_json


@dataclass(frozen=True)
class StillExperiment:
    """Geometry of one still (imgCIF frame, mm, Å).

    ``s0_direction`` is the unit incident-beam direction (sample toward detector); ``origin_mm`` the
    outer corner of pixel (0, 0); ``fast_axis``/``slow_axis`` unit vectors; ``image_size`` (fast, slow)
    pixels; ``a_matrix`` (3, 3) 1/Å with columns a*, b*, c*.
    """

    wavelength_A: float
    s0_direction: np.ndarray
    origin_mm: np.ndarray
    fast_axis: np.ndarray
    slow_axis: np.ndarray
    pixel_size_mm: tuple[float, float]
    image_size: tuple[int, int]
    a_matrix: np.ndarray
    space_group: str = "P 1"

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the panel (fast x slow), pointing away from the sample for DIALS' usual panels."""
        n = np.cross(self.fast_axis, self.slow_axis)
        return n / np.linalg.norm(n)

    def beam_centre_px(self) -> tuple[float, float]:
        """(fast, slow) pixel position where the direct beam meets the panel plane."""
        n = self.normal
        hit = float(np.dot(n, self.origin_mm) / np.dot(n, self.s0_direction)) * self.s0_direction
        rel = hit - self.origin_mm
        return (float(rel @ self.fast_axis / self.pixel_size_mm[0]), float(rel @ self.slow_axis / self.pixel_size_mm[1]))

    def cell(self) -> tuple[float, float, float, float, float, float]:
        """Unit cell (a, b, c Å, alpha, beta, gamma degrees) of the crystal."""
        return cell_from_a_matrix(self.a_matrix)


def cell_from_a_matrix(a_matrix: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """Cell parameters (Å, degrees) from ``A`` (columns a*, b*, c*)."""
    real = np.linalg.inv(a_matrix)  # rows a, b, c (Å)
    lengths = np.linalg.norm(real, axis=1)

    def angle(i: int, j: int) -> float:
        return float(np.degrees(np.arccos(np.dot(real[i], real[j]) / (lengths[i] * lengths[j]))))

    return (*(float(v) for v in lengths), angle(1, 2), angle(0, 2), angle(0, 1))  # type: ignore[return-value]


def _vector(value: Any, path: Path, field: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: field {field!r} must be 3 finite numbers, got {value!r}")
    return array


def read_experiment(path: str | os.PathLike[str]) -> StillExperiment:
    """The first experiment of a DIALS ``.expt`` file (single-panel detector); one-line errors naming the field."""
    path = Path(path)
    doc = read_json_document(path, "the experiment file (DIALS .expt)")
    try:
        entry = doc["experiment"][0]
        beam = doc["beam"][entry["beam"]]
        panels = doc["detector"][entry["detector"]]["panels"]
        crystal = doc["crystal"][entry["crystal"]]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"{path}: field {exc!s} missing: expected an experiment with beam, detector and crystal") from None
    if len(panels) != 1:
        raise ValueError(f"{path}: field 'detector.panels' has {len(panels)} panels; one panel is supported")
    panel = panels[0]
    direction = _vector(beam.get("direction"), path, "beam.direction")
    real = np.stack([_vector(crystal.get(f"real_space_{k}"), path, f"crystal.real_space_{k}") for k in "abc"])
    if abs(np.linalg.det(real)) < 1e-6:
        raise ValueError(f"{path}: field 'crystal.real_space_a/b/c' describes a flat cell (zero volume)")
    wavelength = float(beam.get("wavelength", float("nan")))
    if not wavelength > 0:
        raise ValueError(f"{path}: field 'beam.wavelength' must be > 0 Å, got {beam.get('wavelength')!r}")
    try:
        size = tuple(int(v) for v in panel["image_size"])
        pixel = tuple(float(v) for v in panel["pixel_size"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: fields 'image_size' and 'pixel_size' of the panel must be two numbers each") from None
    return StillExperiment(
        wavelength_A=wavelength,
        s0_direction=-direction / np.linalg.norm(direction),  # DIALS stores the sample-to-source direction
        origin_mm=_vector(panel.get("origin"), path, "panel.origin"),
        fast_axis=_vector(panel.get("fast_axis"), path, "panel.fast_axis"),
        slow_axis=_vector(panel.get("slow_axis"), path, "panel.slow_axis"),
        pixel_size_mm=(pixel[0], pixel[1]), image_size=(size[0], size[1]),
        a_matrix=np.linalg.inv(real), space_group=str(crystal.get("space_group_hall_symbol", " P 1")).strip())


def experiment_json(experiment: StillExperiment, image_path: str, *, trusted_max: float = 1048576.0) -> dict[str, Any]:
    """A minimal DIALS experiment list (one still, no goniometer) that ``dxtbx`` loads with ``check_format=False``."""
    real = np.linalg.inv(experiment.a_matrix)
    panel = {
        "name": "Panel", "type": "SENSOR_PAD", "identifier": "", "material": "Si", "thickness": 0.32, "mu": 0.0,
        "fast_axis": experiment.fast_axis.tolist(), "slow_axis": experiment.slow_axis.tolist(),
        "origin": experiment.origin_mm.tolist(), "raw_image_offset": [0, 0],
        "image_size": list(experiment.image_size), "pixel_size": list(experiment.pixel_size_mm),
        "trusted_range": [-1.0, trusted_max], "gain": 1.0, "pedestal": 0.0, "mask": [],
        "px_mm_strategy": {"type": "SimplePxMmStrategy"},
    }
    return {
        "__id__": "ExperimentList",
        "experiment": [{"__id__": "Experiment", "identifier": "", "beam": 0, "detector": 0, "crystal": 0,
                        "imageset": 0}],
        "imageset": [{"__id__": "ImageSet", "images": [image_path], "mask": "", "gain": "", "pedestal": "",
                      "dx": "", "dy": "", "params": {"dynamic_shadowing": "Auto", "multi_panel": False}}],
        "beam": [{"direction": (-experiment.s0_direction).tolist(), "wavelength": experiment.wavelength_A,
                  "divergence": 0.0, "sigma_divergence": 0.0, "polarization_normal": [0.0, 1.0, 0.0],
                  "polarization_fraction": 0.5, "flux": 0.0, "transmission": 1.0, "probe": "x-ray",
                  "sample_to_source_distance": 0.0}],
        "detector": [{"panels": [panel], "hierarchy": {
            "name": "", "type": "", "fast_axis": [1.0, 0.0, 0.0], "slow_axis": [0.0, 1.0, 0.0],
            "origin": [0.0, 0.0, 0.0], "raw_image_offset": [0, 0], "image_size": [0, 0], "pixel_size": [0.0, 0.0],
            "trusted_range": [0.0, 0.0], "thickness": 0.0, "material": "", "mu": 0.0, "identifier": "",
            "mask": [], "gain": 1.0, "pedestal": 0.0, "px_mm_strategy": {"type": "SimplePxMmStrategy"},
            "children": [{"panel": 0}]}}],
        "goniometer": [], "scan": [], "profile": [], "scaling_model": [],
        "crystal": [{"__id__": "crystal", "real_space_a": real[0].tolist(), "real_space_b": real[1].tolist(),
                     "real_space_c": real[2].tolist(), "space_group_hall_symbol": f" {experiment.space_group}"}],
    }


def write_experiment(path: str | os.PathLike[str], experiment: StillExperiment, image_path: str) -> Path:
    """Write ``experiment`` as a DIALS ``.expt`` file atomically; returns the path."""
    atomic_write_json(path, experiment_json(experiment, image_path))
    return Path(path)
