"""The "lines" object: seeded random line segments, blurred, giving amplitude and phase structure."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SAMPLES_PER_PX = 2  # points drawn per pixel of segment length: no gaps in a rasterised line


def line_density(size_px: int, n_lines: int, *, rng: np.random.Generator, blur_px: float = 1.0) -> np.ndarray:
    """(size_px, size_px) float64 map in [0, 1] of ``n_lines`` random segments, Gaussian-blurred by ``blur_px``.

    Each segment joins two uniformly drawn points of the square; it is rasterised by sampling points along it
    (all segments at once) and accumulating them onto the grid, so crossings are brighter.
    """
    if size_px < 8 or n_lines < 1:
        raise ValueError(f"a lines object needs size_px ≥ 8 and n_lines ≥ 1, got {size_px}, {n_lines}")
    ends = rng.uniform(0, size_px - 1, size=(n_lines, 2, 2))  # (line, end, (y, x))
    n_samples = int(np.ceil(SAMPLES_PER_PX * np.sqrt(2) * size_px))
    t = np.linspace(0.0, 1.0, n_samples)[None, :, None]
    points = ends[:, :1] + t * (ends[:, 1:] - ends[:, :1])  # (line, sample, 2)
    length = np.linalg.norm(ends[:, 1] - ends[:, 0], axis=-1)
    # A segment's sample weight is its length per sample, so every segment has the same line density.
    weight = np.broadcast_to((length / n_samples)[:, None], points.shape[:2])
    rows, cols = np.rint(points[..., 0]).astype(np.int64), np.rint(points[..., 1]).astype(np.int64)
    grid = np.bincount((rows * size_px + cols).ravel(), weights=weight.ravel(), minlength=size_px * size_px)
    density = ndimage.gaussian_filter(grid.reshape(size_px, size_px), blur_px)
    peak = density.max()
    return density / peak if peak > 0 else density


def lines_object(size_px: int, n_lines: int, *, rng: np.random.Generator, amplitude_background: float = 0.5,
                 phase_range_rad: float = 1.0, blur_px: float = 1.0) -> np.ndarray:
    """(size_px, size_px) complex64 object: amplitude ``background + (1 − background)·lines``, phase
    ``phase_range_rad·lines`` (radians), from one seeded line map."""
    if not 0.0 <= amplitude_background < 1.0:
        raise ValueError(f"amplitude_background must lie in [0, 1), got {amplitude_background!r}")
    lines = line_density(size_px, n_lines, rng=rng, blur_px=blur_px)
    amplitude = amplitude_background + (1.0 - amplitude_background) * lines
    return (amplitude * np.exp(1j * phase_range_rad * lines)).astype(np.complex64)
