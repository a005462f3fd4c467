"""Far-field ptychographic forward model in pty-chi's conventions.

A pattern at centre c (x, y, pixels) uses the object patch starting at ``round(c + 0.5) − N/2`` and the
probe Fourier-shifted by the sub-pixel remainder ``c + 0.5 − round(c + 0.5)``; its intensity is
``|FFT(shifted probe · patch)|²`` with the unnormalised FFT (pty-chi's ``FourierPropagator``), stored with
the zero frequency at the centre. Data simulated here are reproduced by pty-chi to float32 precision.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view

CHUNK_PATTERNS = 256  # patterns per FFT batch: bounds memory at ~N²·256·16 bytes


def snap_positions(xcoords: np.ndarray, ycoords: np.ndarray, patch_size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer patch starts (n, 2) as (row, col) and sub-pixel remainders (n, 2) as (dy, dx), pixels."""
    centers = np.stack([np.asarray(ycoords, np.float64), np.asarray(xcoords, np.float64)], axis=1) + 0.5
    snapped = np.round(centers)
    return snapped.astype(np.int64) - patch_size_px // 2, centers - snapped


def extract_patches(obj: np.ndarray, starts: np.ndarray, patch_size_px: int) -> np.ndarray:
    """Object patches (n, N, N) at integer ``starts`` (n, 2) = (row, col); every patch must lie inside ``obj``."""
    if starts.size and (starts.min() < 0 or np.any(starts.max(axis=0) + patch_size_px > np.asarray(obj.shape))):
        raise ValueError(f"patches of {patch_size_px} px at starts {starts.min(axis=0)}..{starts.max(axis=0)} "
                         f"leave the {obj.shape} object")
    windows = sliding_window_view(obj, (patch_size_px, patch_size_px))
    return windows[starts[:, 0], starts[:, 1]]


def fourier_shift(images: np.ndarray, shifts_yx: np.ndarray) -> np.ndarray:
    """Shift each image (n, H, W) by ``shifts_yx`` (n, 2) pixels (content moves towards +y, +x), periodically."""
    height, width = images.shape[-2:]
    fy = sfft.fftfreq(height)[None, :, None]
    fx = sfft.fftfreq(width)[None, None, :]
    ramp = np.exp(-2j * np.pi * (fy * shifts_yx[:, 0, None, None] + fx * shifts_yx[:, 1, None, None]))
    return sfft.ifft2(sfft.fft2(images, workers=-1) * ramp, workers=-1)


def exit_waves(obj: np.ndarray, probe: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray) -> np.ndarray:
    """Exit waves (n, N, N) complex128: sub-pixel-shifted probe times the object patch of each centre."""
    n_px = probe.shape[-1]
    starts, remainders = snap_positions(xcoords, ycoords, n_px)
    probes = fourier_shift(np.broadcast_to(probe.astype(np.complex128), (len(starts), n_px, n_px)), remainders)
    return probes * extract_patches(obj, starts, n_px)


def far_field_intensity(waves: np.ndarray) -> np.ndarray:
    """|FFT(waves)|² (unnormalised FFT), zero frequency at the centre; Σ equals N²·Σ|wave|² (Parseval)."""
    return sfft.fftshift(np.abs(sfft.fft2(waves, workers=-1)) ** 2, axes=(-2, -1))


def simulate_intensities(obj: np.ndarray, probe: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray) -> np.ndarray:
    """Noise-free diffraction intensities (n, N, N) float64 of every scan position, in probe-scale units."""
    n_px = probe.shape[-1]
    out = np.empty((len(xcoords), n_px, n_px), dtype=np.float64)
    for lo in range(0, len(xcoords), CHUNK_PATTERNS):  # batches of patterns, vectorised within
        hi = lo + CHUNK_PATTERNS
        out[lo:hi] = far_field_intensity(exit_waves(obj, probe, xcoords[lo:hi], ycoords[lo:hi]))
    return out


def illumination(probe: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Σ|probe|² placed at every scan position on an array of ``shape`` (integer-snapped; photons per probe unit)."""
    n_px = probe.shape[-1]
    starts, _ = snap_positions(xcoords, ycoords, n_px)
    rows = starts[:, 0, None, None] + np.arange(n_px)[None, :, None]
    cols = starts[:, 1, None, None] + np.arange(n_px)[None, None, :]
    flat = (rows * shape[1] + cols).ravel()
    weights = np.broadcast_to(np.abs(probe) ** 2, (len(starts), n_px, n_px)).ravel()
    return np.bincount(flat, weights=weights, minlength=shape[0] * shape[1]).reshape(shape)
