"""Multi-event HDF5 files for stills: CrystFEL-style (+ a .geom file) and minimal NXmx for DIALS (dxtbx).

Geometry is described in the imgCIF/DIALS lab frame (the beam travels along -z, the fast axis is
+x, the slow axis -y, the detector origin is the outer corner of pixel (0, 0)). NeXus and CrystFEL
use the McStas frame (beam along +z, y up): ``mcstas = diag(-1, 1, -1) @ imgcif``.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.io.atomic import atomic_write_bytes, atomic_write_text

#: imgCIF (DIALS) <-> McStas (NeXus, CrystFEL) change of basis; its own inverse.
IMGCIF_TO_MCSTAS = np.diag([-1.0, 1.0, -1.0])


@dataclass(frozen=True)
class StillGeometry:
    """What every frame of a still dataset shares: detector, nominal beam centre and wavelength."""

    fpixels: int
    spixels: int
    pixel_size_mm: float
    distance_mm: float
    beam_center_fast_mm: float
    beam_center_slow_mm: float
    wavelength_A: float
    sensor_thickness_mm: float = 0.32

    @property
    def origin_imgcif_mm(self) -> tuple[float, float, float]:
        """Outer corner of pixel (0, 0) in the imgCIF lab frame (mm): beam centre at (0, 0, -distance)."""
        return (-self.beam_center_fast_mm, self.beam_center_slow_mm, -self.distance_mm)


@contextlib.contextmanager
def _atomic_h5(path: str | os.PathLike[str]) -> Iterator[Any]:
    """An HDF5 file built in memory and written to ``path`` atomically when the block succeeds."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        yield h5
    atomic_write_bytes(path, buffer.getvalue())


def write_crystfel_h5(path: str | os.PathLike[str], frames: np.ndarray) -> Path:
    """Write frames (events, slow, fast) as float32 ``/entry/data/data`` (CrystFEL's multi-event layout)."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (events, slow, fast), got shape {frames.shape}")
    with _atomic_h5(path) as h5:
        h5.create_dataset("/entry/data/data", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip")
    return Path(path)


def crystfel_geometry(geometry: StillGeometry, data_path: str = "/entry/data/data") -> str:
    """A CrystFEL ``.geom`` text for one panel with the nominal beam centre (McStas frame, pixels)."""
    corner_x = geometry.beam_center_fast_mm / geometry.pixel_size_mm
    corner_y = geometry.beam_center_slow_mm / geometry.pixel_size_mm
    return "\n".join([
        "; Written by ptylib.diffraction (simulated stills).",
        f"photon_energy = {12398.4198 / geometry.wavelength_A:.4f}",
        f"clen = {geometry.distance_mm * 1e-3:.6f}",
        f"res = {1e3 / geometry.pixel_size_mm:.6f}",
        "adu_per_photon = 1",
        f"data = {data_path}",
        "dim0 = %",
        "dim1 = ss",
        "dim2 = fs",
        "",
        "p0/min_fs = 0",
        f"p0/max_fs = {geometry.fpixels - 1}",
        "p0/min_ss = 0",
        f"p0/max_ss = {geometry.spixels - 1}",
        # imgCIF fast +x and slow -y are -x and -y in CrystFEL's McStas frame.
        "p0/fs = -1.000000x +0.000000y",
        "p0/ss = +0.000000x -1.000000y",
        f"p0/corner_x = {corner_x:.4f}",
        f"p0/corner_y = {corner_y:.4f}",
        "",
    ])


def write_crystfel_geometry(path: str | os.PathLike[str], geometry: StillGeometry) -> Path:
    """Write ``crystfel_geometry`` to ``path`` atomically."""
    atomic_write_text(path, crystfel_geometry(geometry))
    return Path(path)


def write_nxmx_h5(path: str | os.PathLike[str], frames: np.ndarray, geometry: StillGeometry) -> Path:
    """Write a minimal NXmx file of stills (int32 counts, (events, slow, fast)) that dxtbx reads.

    The sample has no ``depends_on`` (no goniometer): DIALS treats every frame as a still. The
    detector chain is translation (distance along the beam) <- module_offset (beam centre) <-
    fast/slow pixel directions, all in the McStas frame.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or not np.issubdtype(frames.dtype, np.integer):
        raise ValueError(f"NXmx frames must be integer counts (events, slow, fast), got {frames.dtype} {frames.shape}")
    origin = IMGCIF_TO_MCSTAS @ np.asarray(geometry.origin_imgcif_mm)
    with _atomic_h5(path) as h5:
        entry = _group(h5, "entry", "NXentry")
        entry["definition"] = "NXmx"
        entry["start_time"] = "2026-01-01T00:00:00Z"
        data = _group(entry, "data", "NXdata")
        data.attrs["signal"] = "data"
        data.create_dataset("data", data=frames.astype(np.int32), chunks=(1, *frames.shape[1:]),
                            compression="gzip")
        instrument = _group(entry, "instrument", "NXinstrument")
        instrument["name"] = "simulated"
        beam = _group(instrument, "beam", "NXbeam")
        _dataset(beam, "incident_wavelength", geometry.wavelength_A, "angstrom")
        detector = _group(instrument, "detector", "NXdetector")
        detector["depends_on"] = "/entry/instrument/detector/transformations/translation"
        detector["description"] = "simulated pixel-array detector"
        detector["type"] = "Pixel"
        detector["sensor_material"] = "Si"
        _dataset(detector, "sensor_thickness", geometry.sensor_thickness_mm, "mm")
        _dataset(detector, "x_pixel_size", geometry.pixel_size_mm * 1e-3, "m")
        _dataset(detector, "y_pixel_size", geometry.pixel_size_mm * 1e-3, "m")
        _dataset(detector, "distance", geometry.distance_mm, "mm")
        _dataset(detector, "beam_center_x", geometry.beam_center_fast_mm / geometry.pixel_size_mm, "pixels")
        _dataset(detector, "beam_center_y", geometry.beam_center_slow_mm / geometry.pixel_size_mm, "pixels")
        detector["saturation_value"] = np.int32(2**31 - 2)
        detector["underload_value"] = np.int32(-1)
        detector["pixel_mask_applied"] = False
        detector.create_dataset("pixel_mask", data=np.zeros(frames.shape[1:], dtype=np.int32), compression="gzip")
        transformations = _group(detector, "transformations", "NXtransformations")
        _axis(transformations, "translation", geometry.distance_mm, "translation", (0.0, 0.0, 1.0), ".")
        module = _group(detector, "module", "NXdetector_module")
        module["data_origin"] = np.array([0, 0], dtype=np.int64)
        module["data_size"] = np.array(frames.shape[1:], dtype=np.int64)
        _axis(module, "module_offset", 0.0, "translation", (1.0, 0.0, 0.0),
              "/entry/instrument/detector/transformations/translation", offset=(origin[0], origin[1], 0.0))
        for name, vector in (("fast_pixel_direction", (-1.0, 0.0, 0.0)), ("slow_pixel_direction", (0.0, -1.0, 0.0))):
            _axis(module, name, geometry.pixel_size_mm, "translation", vector,
                  "/entry/instrument/detector/module/module_offset", offset=(0.0, 0.0, 0.0))
        sample = _group(entry, "sample", "NXsample")
        sample["name"] = "simulated crystal"
    return Path(path)


def _group(parent: object, name: str, nx_class: str) -> object:
    group = parent.create_group(name)  # type: ignore[attr-defined]
    group.attrs["NX_class"] = nx_class
    return group


def _dataset(parent: object, name: str, value: float, units: str) -> None:
    dataset = parent.create_dataset(name, data=float(value))  # type: ignore[attr-defined]
    dataset.attrs["units"] = units


def _axis(parent: object, name: str, value: float, kind: str, vector: tuple[float, float, float],
          depends_on: str, offset: tuple[float, float, float] | None = None) -> None:
    """An NXtransformations axis; lengths in mm (offsets in the same unit, as dxtbx expects)."""
    dataset = parent.create_dataset(name, data=float(value))  # type: ignore[attr-defined]
    dataset.attrs["transformation_type"] = kind
    dataset.attrs["vector"] = np.asarray(vector, dtype=np.float64)
    dataset.attrs["units"] = "mm"
    dataset.attrs["depends_on"] = depends_on
    if offset is not None:
        dataset.attrs["offset"] = np.asarray(offset, dtype=np.float64)
        dataset.attrs["offset_units"] = "mm"
