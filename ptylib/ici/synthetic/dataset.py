"""A synthetic ICI input: multi-event HDF5 stills, their hidden true centres and a CrystFEL geometry file.

The images are simple Gaussian spots on a noisy background (no diffraction physics): enough for a
peak search. The hidden truth lives beside the data in ``<file>.truth.json``; the stand-in indexer
(:mod:`ptylib.ici.synthetic.standin_indexer`) reads it to decide how well a given detector shift indexes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ptylib.ici.events import DATA_PATH
from ptylib.ici.model import IciInputError
from ptylib.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

TRUTH_SUFFIX = ".truth.json"
TRUTH_FORMAT = "ptyflows-ici-truth-1"
# Spots sit in a grid of cells this many pixels wide, one spot per chosen cell, so that no two
# spots merge in the peak search.
_CELL_PX = 8
_SPOT_SIGMA_PX = 1.0
_NOISE_SIGMA = 1.0


@dataclass(frozen=True)
class IndexerModel:
    """How the stand-in indexer responds to the distance d (mm) between applied shift and true centre.

    Success probability is ``1 / (1 + exp((d - success_radius_mm) / success_edge_mm))``;
    wRMSD (px) is ``(wrmsd_base_px + wrmsd_slope_px_per_mm * d) * (1 + wrmsd_noise_frac * N(0, 1))``;
    the refined offset it reports is ``applied - true`` plus ``N(0, dxdy_noise_m)`` per axis (m).
    """

    wrmsd_base_px: float = 0.11
    wrmsd_slope_px_per_mm: float = 3.0
    wrmsd_noise_frac: float = 0.05
    success_radius_mm: float = 0.5
    success_edge_mm: float = 0.02
    dxdy_noise_m: float = 4e-6


@dataclass(frozen=True)
class Truth:
    """Hidden truth of a synthetic file: per-event true centre offsets (mm, shape (E, 2)) and the indexer model."""

    true_offset_mm: np.ndarray
    model: IndexerModel
    seed: int


@dataclass(frozen=True)
class SyntheticRun:
    """Paths of a synthetic run's files and its true centre offsets (mm, shape (E, 2))."""

    h5_path: Path
    truth_path: Path
    geometry_path: Path
    n_events: int
    true_offset_mm: np.ndarray


def truth_path_for(h5_path: str | os.PathLike[str]) -> Path:
    """Where the hidden truth of an HDF5 file lives: ``<file>.truth.json``."""
    return Path(f"{os.fspath(h5_path)}{TRUTH_SUFFIX}")


def read_truth(h5_path: str | os.PathLike[str]) -> Truth:
    """Read the hidden truth written by :func:`make_synthetic_run` for ``h5_path``."""
    path = truth_path_for(h5_path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != TRUTH_FORMAT:
            raise IciInputError(str(path), f"format is {doc.get('format')!r}, expected {TRUTH_FORMAT!r}",
                                field_name="format")
        offsets = np.asarray(doc["true_offset_mm"], dtype=float).reshape(-1, 2)
        return Truth(offsets, IndexerModel(**doc.get("indexer_model", {})), int(doc["seed"]))
    except FileNotFoundError:
        raise IciInputError(str(path), "no hidden truth beside the image file") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise IciInputError(str(path), f"unreadable truth file ({exc})") from None


def spot_images(rng: np.random.Generator, n_events: int, image_shape: tuple[int, int], n_spots: int) -> np.ndarray:
    """Float32 images (E, H, W) with ``n_spots`` separated Gaussian spots (σ = 1 px) each plus unit noise."""
    height, width = image_shape
    cells_y, cells_x = height // _CELL_PX, width // _CELL_PX
    n_spots = min(n_spots, cells_y * cells_x)
    if n_spots < 1:
        raise ValueError(f"image_shape {image_shape} is too small for spots (need at least {_CELL_PX} px per side)")
    # One random permutation of the cells per event; the first n_spots cells get a spot.
    cells = np.argsort(rng.random((n_events, cells_y * cells_x)), axis=1)[:, :n_spots]
    y = (cells // cells_x) * _CELL_PX + rng.uniform(2.0, _CELL_PX - 2.0, cells.shape)
    x = (cells % cells_x) * _CELL_PX + rng.uniform(2.0, _CELL_PX - 2.0, cells.shape)
    amplitude = rng.uniform(20.0, 200.0, cells.shape)
    gy = np.exp(-0.5 * ((np.arange(height)[None, None, :] - y[..., None]) / _SPOT_SIGMA_PX) ** 2)
    gx = np.exp(-0.5 * ((np.arange(width)[None, None, :] - x[..., None]) / _SPOT_SIGMA_PX) ** 2)
    images = np.matmul((amplitude[..., None] * gy).transpose(0, 2, 1), gx)
    images += rng.normal(0.0, _NOISE_SIGMA, images.shape)
    return images.astype(np.float32)


def geometry_text(image_shape: tuple[int, int], *, data_path: str = DATA_PATH) -> str:
    """A minimal one-panel CrystFEL geometry (75 µm pixels, 100 mm camera length) for (H, W) multi-event data."""
    height, width = image_shape
    return "\n".join([
        "; Minimal CrystFEL geometry of a synthetic ICI run (written by ptyflows)",
        "photon_energy = 9500 eV",
        "adu_per_photon = 1",
        "clen = 0.100 m",
        "res = 13333.3  ; pixels per metre (75 um pixels)",
        f"data = {data_path}",
        "dim0 = %",
        "dim1 = ss",
        "dim2 = fs",
        "",
        "p0/min_fs = 0",
        f"p0/max_fs = {width - 1}",
        "p0/min_ss = 0",
        f"p0/max_ss = {height - 1}",
        "p0/fs = +1.0000x +0.0000y",
        "p0/ss = +0.0000x +1.0000y",
        f"p0/corner_x = {-width / 2:.1f}",
        f"p0/corner_y = {-height / 2:.1f}",
        "",
    ])


def write_h5_images(path: str | os.PathLike[str], images: np.ndarray, *, data_path: str = DATA_PATH) -> None:
    """Write images (E, H, W) as a CrystFEL-style multi-event HDF5 file, atomically."""
    import h5py

    # Built in memory and written in one atomic step: a killed run never leaves half a file.
    with h5py.File(f"{os.fspath(path)}.mem", "w", driver="core", backing_store=False) as handle:
        handle.create_dataset(data_path, data=images, chunks=(1, *images.shape[1:]))
        handle.flush()
        image = handle.id.get_file_image()
    atomic_write_bytes(path, image)


def make_synthetic_run(
    out_dir: str | os.PathLike[str],
    n_events: int,
    *,
    seed: int,
    radius_mm: float = 0.05,
    image_shape: tuple[int, int] = (64, 64),
    n_spots: int = 30,
    model: IndexerModel | None = None,
) -> SyntheticRun:
    """Write ``synthetic.h5`` (E×H×W float32 at ``/entry/data/data``), its truth and ``synthetic.geom`` to ``out_dir``.

    True centre offsets (mm) are drawn uniformly in the disk of radius ``radius_mm``; every draw
    comes from ``numpy.random.default_rng(seed)``, so equal arguments give identical files.
    """
    if n_events < 1:
        raise ValueError(f"n_events must be >= 1, got {n_events}")
    if radius_mm < 0:
        raise ValueError(f"radius_mm must be >= 0, got {radius_mm}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    radius = radius_mm * np.sqrt(rng.random(n_events))
    angle = rng.uniform(0.0, 2.0 * np.pi, n_events)
    offsets = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    images = spot_images(rng, n_events, image_shape, n_spots)

    h5_path = (out / "synthetic.h5").resolve()
    write_h5_images(h5_path, images)
    truth = {
        "format": TRUTH_FORMAT,
        "seed": int(seed),
        "radius_mm": float(radius_mm),
        "true_offset_mm": offsets.tolist(),
        "indexer_model": asdict(model or IndexerModel()),
    }
    truth_path = truth_path_for(h5_path)
    atomic_write_json(truth_path, truth)
    geometry_path = out / "synthetic.geom"
    atomic_write_text(geometry_path, geometry_text(image_shape))
    return SyntheticRun(h5_path, truth_path, geometry_path.resolve(), n_events, offsets)
