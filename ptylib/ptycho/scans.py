"""Scan positions (patch centres, pixels) on an object: raster, jittered raster and random.

Convention (shared with :mod:`ptylib.ptycho.forward` and pty-chi): a patch of even side N centred at
coordinate c starts at pixel ``round(c + 0.5) - N/2``; centres on pixel corners (c = s + (N-1)/2 for an
integer start s) need no sub-pixel shift.
"""

from __future__ import annotations

import math

import numpy as np


def raster_positions(object_shape: tuple[int, int], patch_size_px: int, step_px: int, *, jitter_px: float = 0.0,
                     rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raster (row by row) patch centres (x, y) in pixels over an object of ``object_shape`` (rows, cols).

    Each position is displaced by U(−jitter, +jitter) per axis when ``jitter_px`` > 0 (``rng`` required);
    patches stay inside the object whatever the jitter.
    """
    if step_px < 1 or jitter_px < 0:
        raise ValueError(f"step must be ≥ 1 px and jitter ≥ 0 px, got step {step_px!r}, jitter {jitter_px!r}")
    margin = math.ceil(jitter_px)
    row_starts, col_starts = (np.arange(margin, size - patch_size_px - margin + 1, step_px, dtype=np.float64)
                              for size in object_shape)
    if row_starts.size == 0 or col_starts.size == 0:
        raise ValueError(f"no {patch_size_px}-px patch fits a {tuple(object_shape)} object with {margin} px margin")
    sy, sx = np.meshgrid(row_starts, col_starts, indexing="ij")
    x = sx.ravel() + (patch_size_px - 1) / 2
    y = sy.ravel() + (patch_size_px - 1) / 2
    if jitter_px > 0:
        if rng is None:
            raise ValueError("a jittered scan needs an explicit numpy Generator (rng)")
        # |jitter| ≤ margin, so the snapped start round(c + 0.5) − N/2 moves by at most the margin.
        x = x + rng.uniform(-jitter_px, jitter_px, size=x.size)
        y = y + rng.uniform(-jitter_px, jitter_px, size=y.size)
    return x, y


def random_positions(object_shape: tuple[int, int], patch_size_px: int, count: int, *,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` patch centres (x, y) drawn uniformly over the positions whose patches fit the object (pixels)."""
    low = (patch_size_px - 1) / 2
    high_y, high_x = (size - patch_size_px + low for size in object_shape)
    if min(high_y, high_x) < low or count < 0:
        raise ValueError(f"no {patch_size_px}-px patch fits a {tuple(object_shape)} object, or count {count} < 0")
    # 0.49 px beyond each end at most, so that round(c + 0.5) cannot step outside.
    x = rng.uniform(low - 0.49, high_x + 0.49, size=count)
    y = rng.uniform(low - 0.49, high_y + 0.49, size=count)
    return x, y
