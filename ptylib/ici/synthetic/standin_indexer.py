"""A stand-in for CrystFEL's ``indexamajig`` whose success and wRMSD depend on a hidden true beam centre.

It takes indexamajig's command line (``-i``, ``-o``, ``-g``, ``--indexing``, ``-j``, ``-p``,
``--no-refine``, ``--peaks``; other options are accepted and ignored), reads each listed frame and
its detector shift the way CrystFEL does (the geometry's ``data`` and ``detector_shift_x/y``, which
may name per-event HDF5 arrays such as the ICI overlay's ``/entry/data/det_shift_*_mm``), finds the
frame's source file (through the overlay's external links, or the listed file itself) and reads
the hidden truth ``<source>.truth.json`` (:mod:`ptylib.ici.synthetic.dataset`).

With d = |applied shift − true centre offset| (mm) it indexes with probability
``1 / (1 + exp((d − success_radius) / edge))`` and writes predicted reflections at the found peaks
plus Gaussian offsets whose intensity-weighted RMS is ``(base + slope·d)·(1 + 5 % noise)`` px.
Unless ``--no-refine`` is given, a successful frame also gets ``predict_refine/det_shift`` (true −
applied, mm) in the stream and ``per_frame_dx_dy.csv`` (applied − true, m, plus ~4 µm noise) in
the working directory. Every random draw is seeded by (truth seed, source frame, applied shift):
identical inputs give identical outputs.

Run it as ``python -m ptylib.ici.synthetic.standin_indexer <indexamajig arguments>``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.ici.backends.base import write_dxdy_csv
from ptylib.ici.backends.crystfel import (
    SOURCE_GROUP,
    geometry_data_path,
    geometry_entries,
)
from ptylib.ici.backends.stream import (
    CHUNK_END,
    CHUNK_START,
    CRYSTAL_END,
    CRYSTAL_START,
    PEAKS_END,
    PEAKS_START,
    REFLECTIONS_END,
    REFLECTIONS_START,
)
from ptylib.ici.model import IciInputError
from ptylib.ici.runroot.layout import DXDY_NAME
from ptylib.ici.synthetic.dataset import IndexerModel, read_truth
from ptylib.io.atomic import atomic_write_text
from ptylib.io.h5filters import h5py_with_filters

# Scale of the (1/d) column: 75 µm pixels, 100 mm camera length, 1.305 Å (9.5 keV).
_PIXEL_M, _CLEN_M, _WAVELENGTH_M = 75e-6, 0.100, 1.305e-10
_MIN_PEAKS_TO_INDEX = 5


@dataclass(frozen=True)
class Frame:
    """One listed frame: where it was read from, its shift (mm) and its source frame."""

    filename: str
    event: int
    image: np.ndarray
    shift_mm: tuple[float, float]
    source: str
    source_event: int


def _arguments(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="indexamajig", description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--input", required=True, help="list file: lines 'file.h5 //N' or 'file.h5'")
    parser.add_argument("-o", "--output", required=True, help="stream file to write")
    parser.add_argument("-g", "--geometry", required=True, help="CrystFEL geometry file")
    parser.add_argument("--indexing", default="xgandalf", help="indexing method (recorded in indexed_by)")
    parser.add_argument("-j", type=int, default=1, help="parallel analyses (ignored)")
    parser.add_argument("-p", "--pdb", help="unit cell file (ignored)")
    parser.add_argument("--peaks", default="zaef", help="peak search method (a local-maximum search is used)")
    parser.add_argument("--no-refine", action="store_true", help="skip prediction refinement (no dx/dy output)")
    return parser.parse_known_args(list(argv))


def _length_mm(handle: Any, value: str, event: int, source: str) -> float:
    """A geometry length (``nnn [m|mm]`` or ``/hdf5/location [m|mm]``, metres by default) in mm."""
    parts = value.split()
    unit = parts[1] if len(parts) > 1 else "m"
    if unit not in ("m", "mm"):
        raise IciInputError(source, f"length unit '{unit}' is not m or mm", field_name="detector_shift")
    if parts[0].startswith("/"):
        data = np.asarray(handle[parts[0]][()])
        number = float(data if data.ndim == 0 else data[event])
    else:
        number = float(parts[0])
    return number * (1e3 if unit == "m" else 1.0)


def _read_frames(list_path: str, geometry_text: str, geometry_source: str) -> list[Frame]:
    h5py = h5py_with_filters()

    data_path = geometry_data_path(geometry_text, geometry_source)
    shift_from = {key: value for _, key, value in geometry_entries(geometry_text)
                  if key in ("detector_shift_x", "detector_shift_y")}
    frames = []
    for lineno, raw in enumerate(Path(list_path).read_text(encoding="utf-8").splitlines(), start=1):
        name, _, token = raw.strip().partition(" ")
        if not name:
            continue
        with h5py.File(name, "r") as handle:
            events = ([int(token.strip().removeprefix("//"))] if token.strip()
                      else list(range(handle[data_path].shape[0])))
            for event in events:
                shift = tuple(_length_mm(handle, shift_from[k], event, geometry_source) if k in shift_from else 0.0
                              for k in ("detector_shift_x", "detector_shift_y"))
                if not all(math.isfinite(s) for s in shift):
                    raise IciInputError(list_path, f"{name} has no detector shift for event {event}", line=lineno)
                if SOURCE_GROUP in handle:
                    k = int(handle[f"{SOURCE_GROUP}/file_index"][event])
                    link = handle[SOURCE_GROUP].get(f"file_{k:03d}", getlink=True)
                    source, source_event = link.filename, int(handle[f"{SOURCE_GROUP}/event"][event])
                else:
                    source, source_event = os.path.abspath(name), event
                image = np.asarray(handle[data_path][event], dtype=float)
                frames.append(Frame(name, event, image, (shift[0], shift[1]), source, source_event))
    return frames


def find_peaks(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima 8 robust σ above the median, with 3×3 centroids: (fs px, ss px, intensity)."""
    background = float(np.median(image))
    sigma = 1.4826 * float(np.median(np.abs(image - background))) or 1.0
    # 5x5 maximum filter with numpy only: scipy.ndimage costs more to import than the whole search.
    padded = np.pad(image, 2, mode="edge")
    local_max = np.lib.stride_tricks.sliding_window_view(padded, (5, 5)).max(axis=(2, 3))
    local = (image == local_max) & (image > background + 8.0 * sigma)
    local[[0, -1], :] = False
    local[:, [0, -1]] = False
    ss, fs = np.nonzero(local)
    offsets = np.arange(-1, 2)
    patch = np.clip(image[ss[:, None, None] + offsets[None, :, None], fs[:, None, None] + offsets[None, None, :]]
                    - background, 0.0, None)
    intensity = patch.sum(axis=(1, 2))
    fs_c = fs + (patch.sum(axis=1) * offsets).sum(axis=1) / intensity
    ss_c = ss + (patch.sum(axis=2) * offsets).sum(axis=1) / intensity
    return fs_c, ss_c, intensity


def _rng(seed: int, source_event: int, shift_mm: tuple[float, float]) -> np.random.Generator:
    # Shifts rounded to 1e-9 mm so that float noise in the shift does not change the draw.
    text = f"{seed}|{source_event}|{shift_mm[0]:.9f}|{shift_mm[1]:.9f}"
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little"))


def _chunk(frame: Frame, serial: int, method: str, refine: bool) -> tuple[list[str], tuple[float, float] | None]:
    """Stream lines of one frame and its dx/dy (m) when it indexed with refinement."""
    truth = read_truth(frame.source)
    model: IndexerModel = truth.model
    true = truth.true_offset_mm[frame.source_event]
    d = math.hypot(frame.shift_mm[0] - true[0], frame.shift_mm[1] - true[1])
    rng = _rng(truth.seed, frame.source_event, frame.shift_mm)
    fs, ss, intensity = find_peaks(frame.image)
    p_success = 1.0 / (1.0 + math.exp(min((d - model.success_radius_mm) / model.success_edge_mm, 700.0)))
    indexed = rng.random() < p_success and fs.size >= _MIN_PEAKS_TO_INDEX
    height, width = frame.image.shape
    one_over_d = np.hypot(fs - width / 2, ss - height / 2) * _PIXEL_M / _CLEN_M / _WAVELENGTH_M / 1e9
    lines = [
        CHUNK_START,
        f"Image filename: {frame.filename}",
        f"Event: //{frame.event}",
        f"Image serial number: {serial}",
        "hit = 1",
        f"indexed_by = {method + '-nolatt-nocell' if indexed else 'none'}",
        "n_indexing_tries = 1",
        "photon_energy_eV = 9500.000000",
        "beam_divergence = 0.00e+00 rad",
        "beam_bandwidth = 1.00e-08 (fraction)",
        f"average_camera_length = {_CLEN_M:f} m",
        f"num_peaks = {fs.size}",
        PEAKS_START,
        "  fs/px   ss/px (1/d)/nm^-1   Intensity  Panel",
        *(f"{x:7.2f} {y:7.2f} {q:10.2f}  {i:10.2f}   p0"
          for x, y, q, i in zip(fs, ss, one_over_d, intensity, strict=True)),
        PEAKS_END,
    ]
    dxdy = None
    if indexed:
        target = max((model.wrmsd_base_px + model.wrmsd_slope_px_per_mm * d)
                     * (1.0 + model.wrmsd_noise_frac * rng.standard_normal()), 0.01)
        offset = rng.standard_normal((fs.size, 2))
        weight = np.maximum(intensity, 0.0)
        offset *= target / math.sqrt(float(np.sum(weight * np.sum(offset**2, axis=1)) / np.sum(weight)))
        hkl = rng.integers(-20, 21, (fs.size, 3))
        lines += [
            CRYSTAL_START,
            "Cell parameters 7.90000 7.90000 3.80000 nm, 90.00000 90.00000 90.00000 deg",
            "astar = +0.1265823 +0.0000000 +0.0000000 nm^-1",
            "bstar = +0.0000000 +0.1265823 +0.0000000 nm^-1",
            "cstar = +0.0000000 +0.0000000 +0.2631579 nm^-1",
            "lattice_type = tetragonal",
            "centering = P",
            "unique_axis = c",
            "profile_radius = 0.00250 nm^-1",
        ]
        if refine:
            noise_mm = rng.normal(0.0, model.dxdy_noise_m * 1e3, 2)
            refined = (true[0] - frame.shift_mm[0] + noise_mm[0], true[1] - frame.shift_mm[1] + noise_mm[1])
            lines.append(f"predict_refine/det_shift x = {refined[0]:.3f} y = {refined[1]:.3f} mm")
            dxdy = (-refined[0] * 1e-3, -refined[1] * 1e-3)
        lines += [
            f"diffraction_resolution_limit = {one_over_d.max():.2f} nm^-1 or {10.0 / one_over_d.max():.2f} A",
            f"num_reflections = {fs.size}",
            "num_saturated_reflections = 0",
            "num_implausible_reflections = 0",
            REFLECTIONS_START,
            "   h    k    l          I   sigma(I)       peak background  fs/px  ss/px panel",
            *(f"{h[0]:4d} {h[1]:4d} {h[2]:4d} {i:10.2f} {math.sqrt(i) + 1.0:10.2f} {i / 5.0:10.2f} {1.0:10.2f} "
              f"{x:6.1f} {y:6.1f} p0"
              for h, i, x, y in zip(hkl, intensity, fs + offset[:, 0], ss + offset[:, 1], strict=True)),
            REFLECTIONS_END,
            CRYSTAL_END,
        ]
    lines.append(CHUNK_END)
    return lines, dxdy


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stand-in on indexamajig arguments; 0 on success, 1 on bad input (message on stderr)."""
    args, ignored = _arguments(sys.argv[1:] if argv is None else argv)
    if ignored:
        print(f"indexamajig (stand-in): ignoring options {' '.join(ignored)}", file=sys.stderr)
    try:
        geometry = Path(args.geometry).read_text(encoding="utf-8")
        frames = _read_frames(args.input, geometry, args.geometry)
        method = args.indexing or "xgandalf"
        out = [
            "CrystFEL stream format 2.3",
            "Generated by CrystFEL 0.11.1 (stand-in: ptylib.ici.synthetic.standin_indexer)",
            " ".join(["indexamajig", *(sys.argv[1:] if argv is None else argv)]),
            f"Indexing methods selected: {method}",
            "----- Begin geometry file -----",
            geometry.rstrip("\n"),
            "----- End geometry file -----",
        ]
        n_indexed = 0
        dxdy = None
        for serial, frame in enumerate(frames, start=1):
            lines, frame_dxdy = _chunk(frame, serial, method, refine=not args.no_refine)
            n_indexed += any(line.startswith(CRYSTAL_START) for line in lines)
            dxdy = frame_dxdy or dxdy
            out += lines
    except (OSError, KeyError, ValueError) as exc:
        print(f"indexamajig (stand-in): {exc}", file=sys.stderr)
        return 1
    atomic_write_text(args.output, "\n".join(out) + "\n")
    if dxdy is not None:
        write_dxdy_csv(Path(DXDY_NAME), *dxdy)
    n = len(frames)
    print(f"Final: {n} images processed, {n} hits (100.0%), {n_indexed} indexable "
          f"({100.0 * n_indexed / max(n, 1):.1f}%), {n_indexed} crystals.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
