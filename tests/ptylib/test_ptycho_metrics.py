"""Metrics: exact values for identical images, ranking of known degradations, registration, TF cross-check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from ptylib.ptycho.metrics import (
    MSSSIM_WEIGHTS,
    compare,
    fourier_shift_image,
    frc,
    mae,
    ms_ssim,
    ms_ssim_scales,
    mse,
    psnr,
    register,
)
from ptylib.ptycho.objects import synthetic_object


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return synthetic_object(128, rng=np.random.default_rng(0)).astype(np.complex128)


def test_identical_images_give_one_zero_infinity(truth: np.ndarray) -> None:
    phase = np.angle(truth)
    assert ms_ssim(phase, phase, data_range=float(np.ptp(phase))).value == pytest.approx(1.0, abs=1e-12)
    assert mae(phase, phase) == 0.0 and mse(phase, phase) == 0.0
    assert psnr(phase, phase) == math.inf
    ring = frc(truth, truth)
    assert not ring.crossed and ring.resolution_px == 2.0
    np.testing.assert_allclose(ring.curve, 1.0)
    report = compare(truth, truth)
    assert report["phase"]["ms_ssim"] == pytest.approx(1.0) and report["phase"]["psnr_db"] == math.inf
    assert report["amplitude"]["mae"] == pytest.approx(0.0, abs=1e-12) and report["frc"]["crossed"] is False


def test_uncorrelated_images_score_near_zero(truth: np.ndarray) -> None:
    noise = np.random.default_rng(1).standard_normal(truth.shape)
    ring = frc(np.angle(truth), noise)
    assert np.abs(ring.curve[5:]).mean() < 0.15 and ring.crossed
    scaled = (noise - noise.min()) / np.ptp(noise)
    assert ms_ssim(np.angle(truth) - np.angle(truth).min(), scaled, data_range=1.0).value < 0.3


def test_known_degradations_are_ranked(truth: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    phase = np.angle(truth)
    degraded = [phase + s * rng.standard_normal(phase.shape) for s in (0.02, 0.1, 0.3)]
    degraded += [ndimage.gaussian_filter(phase, s) for s in (1.0, 2.0, 4.0)]
    for trio in (degraded[:3], degraded[3:]):
        ssim = [ms_ssim(phase - phase.min(), d - phase.min(), data_range=float(np.ptp(phase))).value for d in trio]
        errors = [mae(phase, d) for d in trio]
        peaks = [psnr(phase, d) for d in trio]
        resolution = [frc(phase, d).resolution_px for d in trio]
        assert ssim[0] > ssim[1] > ssim[2]
        assert errors[0] < errors[1] < errors[2]
        assert peaks[0] > peaks[1] > peaks[2]
        assert resolution[0] <= resolution[1] <= resolution[2] and resolution[0] < resolution[2]


def test_registration_removes_subpixel_shift_and_global_phase(truth: np.ndarray) -> None:
    moved = fourier_shift_image(truth, np.array([2.3, -1.6])) * np.exp(1j * 0.7)
    reg = register(truth, moved)
    assert reg.shift_yx == pytest.approx((-2.3, 1.6), abs=0.06)
    assert reg.phase_offset_rad == pytest.approx(0.7, abs=1e-2)
    assert reg.border_px == 4 and reg.reference.shape == (120, 120)
    # Interior (away from the periodic wrap of the synthetic shift) matches to a fraction of a percent.
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(reg.image[inner] - reg.reference[inner]).mean() < 5e-3
    report = compare(truth, moved)
    assert report["phase"]["pearson"] > 0.99 and report["phase_offset_rad"] == pytest.approx(0.7, abs=1e-2)
    # A shift beyond the allowed maximum is recorded but not applied (a failed correlation, not an offset).
    far = fourier_shift_image(truth, np.array([9.0, 0.0]))
    capped = register(truth, far, max_shift_px=4.0)
    assert capped.shift_yx == (0.0, 0.0) and capped.measured_shift_yx[0] == pytest.approx(-9.0, abs=0.06)


def test_scales_follow_image_size_and_are_recorded() -> None:
    assert ms_ssim_scales((128, 128), 7) == 5
    assert ms_ssim_scales((60, 200), 7) == 4  # 60 → 30 → 15 → 8 (≥ 7) → 4 (< 7)
    assert ms_ssim_scales((6, 6), 7) == 0
    image = np.random.default_rng(3).random((60, 70))
    result = ms_ssim(image, image * 0.9, data_range=1.0, sigma=1.0)
    assert (result.scales, result.window_px) == (4, 7)
    assert sum(result.weights) == pytest.approx(1.0)
    np.testing.assert_allclose(result.weights, np.array(MSSSIM_WEIGHTS[:4]) / sum(MSSSIM_WEIGHTS[:4]))
    with pytest.raises(ValueError, match="allows 1..4 MS-SSIM scales"):
        ms_ssim(image, image, data_range=1.0, scales=5)
    with pytest.raises(ValueError, match="one shape"):
        ms_ssim(image, image[:-1], data_range=1.0)


@pytest.mark.parametrize("shape, sigma", [((128, 128), 1.0), ((61, 90), 1.0), ((160, 176), 1.5)])
def test_ms_ssim_matches_tensorflow(truth: np.ndarray, shape: tuple[int, int], sigma: float) -> None:
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(4)
    base = np.angle(synthetic_object(max(shape), rng=rng))[: shape[0], : shape[1]]
    base = (base - base.min()) / np.ptp(base)
    other = np.clip(ndimage.gaussian_filter(base, 1.2) + 0.05 * rng.standard_normal(shape), 0, 1)
    ours = ms_ssim(base, other, data_range=1.0, sigma=sigma)
    weights = tuple(ours.weights)
    theirs = tf.image.ssim_multiscale(base[None, :, :, None].astype(np.float32), other[None, :, :, None].astype(np.float32),
                                      max_val=1.0, power_factors=weights, filter_size=ours.window_px,
                                      filter_sigma=sigma)
    assert ours.value == pytest.approx(float(theirs.numpy()[0]), abs=2e-4)
    assert 0.3 < ours.value < 0.99
