"""Reassembly limits: does the stitching canvas hold every patch, and how much energy a smaller one loses.

Offsets are patch centres relative to the centre of the stitched scan (pixels, (x, y)); a canvas of side S
holds every patch of side n when S ≥ ceil(n + 2·max|offset|). On a smaller canvas the pixels that fall
outside are dropped: the lost energy fraction is 1 − Σ|kept|² / Σ|all|².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ptylib.ptycho.forward import snap_positions
from ptylib.ptycho.stitch import canvas_size_px


def scan_offsets(xcoords: np.ndarray, ycoords: np.ndarray) -> np.ndarray:
    """Patch centres (M, 2) as (x, y) minus the centre of their bounding box, pixels."""
    points = np.stack([np.asarray(xcoords, np.float64), np.asarray(ycoords, np.float64)], axis=1)
    return points - (points.min(axis=0) + points.max(axis=0)) / 2


@dataclass(frozen=True)
class Frame:
    """Where a scan is stitched: offsets from the canvas centre, canvas side and the canvas origin."""

    offsets_xy: np.ndarray
    """(M, 2) patch centres minus the canvas centre, pixels."""
    side: int
    origin_yx: tuple[int, int]
    """Object pixel (row, col) of canvas pixel (0, 0): canvas and object pixels map one to one."""


def stitch_frame(xcoords: np.ndarray, ycoords: np.ndarray, patch_size_px: int, canvas_px: int | None) -> Frame:
    """A canvas centred on the scan (to within half a pixel, so that canvas pixels are object pixels) of side
    ``canvas_px``, or, for None, the smallest odd side that holds every patch."""
    points = np.stack([np.asarray(xcoords, np.float64), np.asarray(ycoords, np.float64)], axis=1)
    middle = (points.min(axis=0) + points.max(axis=0)) / 2
    side = canvas_px if canvas_px is not None else canvas_size_px(points - np.round(middle), patch_size_px) | 1
    half = (side - 1) / 2
    reference = np.round(middle - half) + half  # origin = reference − half is an integer pixel
    origin = np.rint(reference - half).astype(np.int64)
    return Frame(points - reference, int(side), (int(origin[1]), int(origin[0])))


@dataclass(frozen=True)
class Placement:
    """Flat canvas index of every patch pixel and whether it lies on the canvas."""

    flat: np.ndarray
    """(M·n·n,) int64 row·side + col (meaningless where ``inside`` is False)."""
    inside: np.ndarray
    """(M·n·n,) bool."""
    side: int


def place(offsets_xy: np.ndarray, patch_size_px: int, side: int) -> Placement:
    """Where each pixel of patches of side n at ``offsets_xy`` (M, 2) lands on a ``side``-px canvas, with the
    convention of :func:`ptylib.ptycho.stitch.stitch_patches` (offset 0 at the canvas centre)."""
    center = (side - 1) / 2
    starts, _ = snap_positions(center + offsets_xy[:, 0], center + offsets_xy[:, 1], patch_size_px)
    rows = (starts[:, 0, None, None] + np.arange(patch_size_px)[None, :, None]).repeat(patch_size_px, axis=2)
    cols = (starts[:, 1, None, None] + np.arange(patch_size_px)[None, None, :]).repeat(patch_size_px, axis=1)
    inside = (rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)
    return Placement((rows * side + cols).ravel(), inside.ravel(), side)


def stitch_on_canvas(patches: np.ndarray, offsets_xy: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of patches (M, n, n) on a ``side``-px canvas, dropping what falls outside; (canvas, weight)."""
    spot = place(offsets_xy, patches.shape[-1], side)
    flat, values = spot.flat[spot.inside], patches.ravel()[spot.inside]
    weight = np.bincount(flat, minlength=side * side).astype(np.float64)
    total = np.bincount(flat, weights=values.real, minlength=side * side).astype(patches.dtype)
    if np.iscomplexobj(patches):
        total = total + 1j * np.bincount(flat, weights=values.imag, minlength=side * side)
    canvas = np.divide(total, weight, out=np.zeros(side * side, total.dtype), where=weight > 0)
    return canvas.reshape(side, side).astype(patches.dtype), weight.reshape(side, side)


def lost_energy_fraction(patches: np.ndarray, offsets_xy: np.ndarray, side: int) -> float:
    """1 − Σ|patch pixels on the canvas|² / Σ|all patch pixels|² for a ``side``-px canvas."""
    spot = place(offsets_xy, patches.shape[-1], side)
    energy = np.abs(patches.ravel()) ** 2
    total = float(energy.sum())
    return 1.0 - float(energy[spot.inside].sum()) / total if total > 0 else 0.0


def reassembly_limits(patches: np.ndarray, offsets_xy: np.ndarray, used: int) -> dict[str, object]:
    """Observed max offsets per axis, the canvas used, the required ceil(n + 2·max|offset|), ``fits_canvas``
    and the lost energy fraction on the canvas used."""
    n_px = patches.shape[-1]
    required = canvas_size_px(offsets_xy, n_px)
    max_abs = np.abs(offsets_xy).max(axis=0) if len(offsets_xy) else np.zeros(2)
    lost = lost_energy_fraction(patches, offsets_xy, used)
    return {"patch_px": int(n_px), "n_patches": len(offsets_xy), "max_abs_offset_x_px": float(max_abs[0]),
            "max_abs_offset_y_px": float(max_abs[1]), "canvas_used_px": used, "canvas_required_px": required,
            "fits_canvas": used >= required and math.isclose(lost, 0.0, abs_tol=1e-12),
            "lost_energy_fraction": lost}
