"""Differentiable far-field physics in TensorFlow with the conventions of :mod:`ptylib.ptycho.forward`.

A pattern's predicted amplitude is ``|fftshift(FFT2(shift(P, r) · O))|``: unnormalised FFT, zero
frequency at the centre, probe ``P`` Fourier-shifted by the sub-pixel remainder ``r`` = (dy, dx) of the
pattern's centre, ``O`` the object patch at the pattern's integer start. The gs = 2 overlap constraint
places a group's C patches at their integer start offsets, averages the pixels they share and
re-extracts each patch, so overlapping pixels agree before the physics sees them.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def shift_probes(probe: tf.Tensor, remainders_yx: tf.Tensor) -> tf.Tensor:
    """Probe (N, N) complex64 shifted by ``remainders_yx`` (..., 2) pixels → (..., N, N), periodic."""
    n_px = int(probe.shape[-1])
    freq = tf.constant(np.fft.fftfreq(n_px), tf.float32)
    dy = tf.cast(remainders_yx[..., 0], tf.float32)[..., None, None]
    dx = tf.cast(remainders_yx[..., 1], tf.float32)[..., None, None]
    angle = -2.0 * math.pi * (freq[:, None] * dy + freq[None, :] * dx)
    ramp = tf.complex(tf.cos(angle), tf.sin(angle))
    return tf.signal.ifft2d(tf.signal.fft2d(tf.cast(probe, tf.complex64)) * ramp)


def far_field_amplitudes(patches: tf.Tensor, probes: tf.Tensor) -> tf.Tensor:
    """Amplitudes |FFT(probe · patch)| (..., N, N) float32, zero frequency at the centre (photon units)."""
    waves = tf.cast(probes, tf.complex64) * tf.cast(patches, tf.complex64)
    return tf.abs(tf.signal.fftshift(tf.signal.fft2d(waves), axes=(-2, -1)))


def overlap_constraint(patches: tf.Tensor, starts_yx: tf.Tensor) -> tf.Tensor:
    """Average every group's overlapping pixels: patches (B, C, N, N), integer starts (B, C, 2) → same shape.

    Pixel p of member c sits at ``start_c + p``; the result at that pixel is the mean over all members
    whose patch covers it (member c itself always does).
    """
    n_px = int(patches.shape[-1])
    c = int(patches.shape[1])
    if c == 1:
        return patches
    starts = tf.cast(starts_yx, tf.int32)
    delta = starts[:, :, None, :] - starts[:, None, :, :]  # (B, C_target, C_source, 2)
    grid = tf.range(n_px)
    rows = grid[None, None, None, :, None] + delta[..., 0, None, None]
    cols = grid[None, None, None, None, :] + delta[..., 1, None, None]
    inside = (rows >= 0) & (rows < n_px) & (cols >= 0) & (cols < n_px)  # (B, C, C, N, N)
    source = tf.range(c)[None, None, :, None, None]
    flat = (source * n_px + tf.clip_by_value(rows, 0, n_px - 1)) * n_px + tf.clip_by_value(cols, 0, n_px - 1)
    batch = tf.shape(patches)[0]
    gathered = tf.gather(tf.reshape(patches, (batch, c * n_px * n_px)), tf.reshape(flat, (batch, -1)), batch_dims=1)
    gathered = tf.reshape(gathered, tf.shape(inside))
    weight = tf.cast(inside, patches.dtype)
    return tf.reduce_sum(gathered * weight, axis=2) / tf.reduce_sum(weight, axis=2)


def poisson_nll(predicted_amplitudes: tf.Tensor, measured_amplitudes: tf.Tensor) -> tf.Tensor:
    """Mean Poisson NLL of the counts k = a² under the rate λ = â², minus its value at λ = k (so ≥ 0, 0 at a fit).

    Per pixel ``λ − k − k·log(λ / k)`` (with 0·log 0 = 0): the deviance halved.
    """
    rate = tf.square(predicted_amplitudes) + 1e-6
    counts = tf.square(measured_amplitudes)
    log_ratio = tf.math.log(rate) - tf.math.log(tf.maximum(counts, 1e-6))
    return tf.reduce_mean(rate - counts - tf.where(counts > 0, counts * log_ratio, 0.0))


def amplitude_mae(predicted_amplitudes: tf.Tensor, measured_amplitudes: tf.Tensor) -> tf.Tensor:
    """Mean absolute error of the amplitudes (sqrt(counts) units)."""
    return tf.reduce_mean(tf.abs(predicted_amplitudes - measured_amplitudes))


def complex_mae(predicted: tf.Tensor, truth: tf.Tensor) -> tf.Tensor:
    """Mean |predicted − truth| of complex patches (object transmission units): the baseline's loss."""
    return tf.reduce_mean(tf.abs(tf.cast(predicted, tf.complex64) - tf.cast(truth, tf.complex64)))
