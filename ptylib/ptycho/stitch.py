"""Stitch patches into a canvas sized from their actual offsets, and cut windows out of larger images."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ptylib.ptycho.forward import snap_positions


def canvas_size_px(offsets_xy: np.ndarray, patch_size_px: int) -> int:
    """Side of the square canvas that holds every patch: ceil(N + 2·max|offset|) (pixels)."""
    reach = float(np.abs(offsets_xy).max()) if np.size(offsets_xy) else 0.0
    return math.ceil(patch_size_px + 2 * reach)


@dataclass(frozen=True)
class Stitched:
    """Mean of the overlapping patches on a square canvas, with the number of patches per pixel."""

    canvas: np.ndarray
    weight: np.ndarray
    """(S, S) patches covering each pixel."""
    center_px: float
    """Canvas coordinate (row and column) of offset (0, 0)."""


def stitch_patches(patches: np.ndarray, offsets_xy: np.ndarray, *, canvas_px: int | None = None) -> Stitched:
    """Average patches (M, N, N) placed at ``offsets_xy`` (M, 2) from the canvas centre; uncovered pixels are 0.

    A patch lands where the forward model takes it from (start ``round(c + 0.5) − N/2``), so exact patches of an
    object stitch back to that object.
    """
    n_px = patches.shape[-1]
    side = canvas_size_px(offsets_xy, n_px) if canvas_px is None else canvas_px
    center = (side - 1) / 2
    starts, _ = snap_positions(center + offsets_xy[:, 0], center + offsets_xy[:, 1], n_px)
    if starts.size and (starts.min() < 0 or starts.max() + n_px > side):
        raise ValueError(f"a {side}-px canvas cannot hold patches at these offsets; it needs "
                         f"{canvas_size_px(offsets_xy, n_px)} px")
    rows = starts[:, 0, None, None] + np.arange(n_px)[None, :, None]
    cols = starts[:, 1, None, None] + np.arange(n_px)[None, None, :]
    flat = (rows * side + cols).ravel()
    weight = np.bincount(flat, minlength=side * side).reshape(side, side).astype(np.float64)
    total = np.bincount(flat, weights=patches.real.ravel(), minlength=side * side)
    if np.iscomplexobj(patches):
        total = total + 1j * np.bincount(flat, weights=patches.imag.ravel(), minlength=side * side)
    canvas = np.divide(total.reshape(side, side), weight, out=np.zeros((side, side), total.dtype), where=weight > 0)
    return Stitched(canvas.astype(patches.dtype), weight, center)


def window(image: np.ndarray, origin_yx: tuple[int, int], shape: tuple[int, int], *, fill: complex = 0) -> np.ndarray:
    """The ``shape`` window of ``image`` whose pixel (0, 0) is image pixel ``origin_yx``; outside pixels get ``fill``."""
    out = np.full(shape, fill, dtype=image.dtype)
    y0, x0 = origin_yx
    ys = slice(max(y0, 0), min(y0 + shape[0], image.shape[0]))
    xs = slice(max(x0, 0), min(x0 + shape[1], image.shape[1]))
    if ys.start < ys.stop and xs.start < xs.stop:
        out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = image[ys, xs]
    return out
