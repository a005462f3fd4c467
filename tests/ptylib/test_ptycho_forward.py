"""Objects, probes, scans, the far-field forward model and Poisson noise at a dose."""

from __future__ import annotations

import numpy as np
import pytest

from ptylib.ptycho.forward import (
    exit_waves,
    extract_patches,
    far_field_intensity,
    fourier_shift,
    illumination,
    simulate_intensities,
    snap_positions,
)
from ptylib.ptycho.noise import counts_to_amplitudes, dose_scale, poisson_counts
from ptylib.ptycho.objects import load_object_probe, synthetic_object
from ptylib.ptycho.probes import focused_probe
from ptylib.ptycho.scans import random_positions, raster_positions


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_object(96, rng=np.random.default_rng(1)), focused_probe(32, rng=np.random.default_rng(2))


def test_object_is_deterministic_and_in_range() -> None:
    a = synthetic_object(64, rng=np.random.default_rng(7), amplitude_min=0.4, phase_range_rad=1.2)
    b = synthetic_object(64, rng=np.random.default_rng(7), amplitude_min=0.4, phase_range_rad=1.2)
    c = synthetic_object(64, rng=np.random.default_rng(8), amplitude_min=0.4, phase_range_rad=1.2)
    assert a.dtype == np.complex64 and a.shape == (64, 64)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    amplitude, phase = np.abs(a), np.angle(a)
    assert amplitude.min() >= 0.4 - 1e-6 and amplitude.max() <= 1 + 1e-6
    assert np.ptp(phase) == pytest.approx(1.2, abs=1e-5)
    # Textured, not flat: a realistic spread of spatial frequencies.
    assert phase.std() > 0.15 and amplitude.std() > 0.05


def test_probe_is_normalised_centred_and_deterministic() -> None:
    probe = focused_probe(64, rng=np.random.default_rng(3))
    again = focused_probe(64, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(probe, again)
    power = np.abs(probe) ** 2
    assert power.sum() == pytest.approx(1.0, rel=1e-5)
    yy, xx = np.indices(power.shape)
    assert abs((power * yy).sum() - 31.5) < 3 and abs((power * xx).sum() - 31.5) < 3
    # The beam is about N/2 wide and little power reaches the window edge.
    radius = np.hypot(yy - 31.5, xx - 31.5)
    assert power[radius < 20].sum() > 0.9
    assert power[radius > 30].sum() < 0.02


def test_raster_and_random_scans_stay_inside() -> None:
    rng = np.random.default_rng(0)
    x, y = raster_positions((100, 120), 32, 8, jitter_px=1.5, rng=rng)
    starts, _ = snap_positions(x, y, 32)
    assert starts.min() >= 0 and starts[:, 0].max() + 32 <= 100 and starts[:, 1].max() + 32 <= 120
    assert len(x) == len(np.arange(2, 100 - 32 - 2 + 1, 8)) * len(np.arange(2, 120 - 32 - 2 + 1, 8))
    x0, y0 = raster_positions((64, 64), 32, 16)
    np.testing.assert_array_equal(np.unique(x0), [15.5, 31.5, 47.5])  # pixel corners: no sub-pixel shift
    assert np.all(snap_positions(x0, y0, 32)[1] == 0)
    xr, yr = random_positions((80, 80), 32, 2000, rng=rng)
    starts, _ = snap_positions(xr, yr, 32)
    assert starts.min() == 0 and starts.max() == 48
    with pytest.raises(ValueError, match="explicit numpy Generator"):
        raster_positions((64, 64), 32, 4, jitter_px=1.0)


def test_parseval_energy_is_conserved(scene: tuple[np.ndarray, np.ndarray]) -> None:
    obj, probe = scene
    x, y = random_positions(obj.shape, 32, 50, rng=np.random.default_rng(4))
    waves = exit_waves(obj, probe, x, y)
    intensity = far_field_intensity(waves)
    # Unnormalised FFT: Σ|FFT ψ|² = N²·Σ|ψ|², pattern by pattern.
    np.testing.assert_allclose(intensity.sum(axis=(1, 2)), 32 * 32 * (np.abs(waves) ** 2).sum(axis=(1, 2)), rtol=1e-10)
    # The sub-pixel probe shift is unitary: the exit wave of a unit object carries the probe's power.
    shifted = fourier_shift(np.broadcast_to(probe, (3, 32, 32)).astype(complex), np.array([[0.3, -0.2], [0.5, 0.5], [0, 0]]))
    np.testing.assert_allclose((np.abs(shifted) ** 2).sum(axis=(1, 2)), (np.abs(probe) ** 2).sum(), rtol=1e-6)
    # Zero frequency at the centre: a unit object's pattern is centred on pixel (16, 16).
    blank = far_field_intensity(exit_waves(np.ones((32, 32), np.complex64), probe, np.array([15.5]), np.array([15.5])))[0]
    yy, xx = np.indices(blank.shape)
    assert (blank * yy).sum() / blank.sum() == pytest.approx(16, abs=0.5)
    assert (blank * xx).sum() / blank.sum() == pytest.approx(16, abs=0.5)


def test_forward_uses_integer_patches_and_probe_shift(scene: tuple[np.ndarray, np.ndarray]) -> None:
    obj, probe = scene
    x, y = np.array([20.2, 39.5]), np.array([30.7, 49.5])
    starts, rem = snap_positions(x, y, 32)
    np.testing.assert_array_equal(starts, [[15, 5], [34, 24]])
    np.testing.assert_allclose(rem, [[0.2, -0.3], [0.0, 0.0]], atol=1e-12)
    waves = exit_waves(obj, probe, x, y)
    np.testing.assert_allclose(waves[1], probe * obj[34:66, 24:56], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="leave the"):
        extract_patches(obj, np.array([[90, 0]]), 32)
    simulated = simulate_intensities(obj, probe, x, y)
    np.testing.assert_allclose(simulated, far_field_intensity(waves))


def test_illumination_sums_probe_power(scene: tuple[np.ndarray, np.ndarray]) -> None:
    obj, probe = scene
    x, y = raster_positions(obj.shape, 32, 8)
    lit = illumination(probe, x, y, obj.shape)
    assert lit.sum() == pytest.approx(len(x) * (np.abs(probe) ** 2).sum(), rel=1e-6)


@pytest.mark.parametrize("dose", [1e3, 1e5])
def test_poisson_counts_have_the_requested_mean_dose(scene: tuple[np.ndarray, np.ndarray], dose: float) -> None:
    obj, probe = scene
    x, y = raster_positions(obj.shape, 32, 4, jitter_px=0.5, rng=np.random.default_rng(5))
    intensity = simulate_intensities(obj, probe, x, y)
    expected = intensity * dose_scale(intensity, dose)
    assert expected.sum(axis=(1, 2)).mean() == pytest.approx(dose, rel=1e-12)
    counts = poisson_counts(expected, rng=np.random.default_rng(6))
    totals = counts.sum(axis=(1, 2))
    # The mean of n Poisson totals has standard error sqrt(dose / n); allow 4 of them.
    assert abs(totals.mean() - dose) < 4 * np.sqrt(dose / len(totals))
    assert np.all(counts == np.round(counts)) and counts.min() >= 0
    # Poisson: variance equals mean, pixel by pixel (checked on the brightest pixel over patterns).
    k = np.unravel_index(np.argmax(expected.mean(axis=0)), expected.shape[1:])
    assert np.var(counts[:, k[0], k[1]] - expected[:, k[0], k[1]]) == pytest.approx(expected[:, k[0], k[1]].mean(), rel=0.25)
    amplitudes = counts_to_amplitudes(counts)
    assert amplitudes.dtype == np.float32
    np.testing.assert_allclose(amplitudes.astype(np.float64) ** 2, counts, rtol=1e-6)


@pytest.mark.parametrize("dose", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_dose_is_refused(dose: float) -> None:
    with pytest.raises(ValueError, match="dose must be a positive, finite number of photons"):
        dose_scale(np.ones((2, 4, 4)), dose)


def test_load_object_probe(tmp_path, scene: tuple[np.ndarray, np.ndarray]) -> None:
    obj, probe = scene
    path = tmp_path / "real.npz"
    np.savez(path, objectGuess=obj.astype(np.complex128), probeGuess=probe)
    loaded_obj, loaded_probe = load_object_probe(path)
    assert loaded_obj.dtype == np.complex64 and loaded_probe.shape == (32, 32)
    np.savez(tmp_path / "noprobe.npz", objectGuess=obj)
    with pytest.raises(ValueError, match=r"noprobe.npz: key 'probeGuess': expected a complex 2-D array, got no such key"):
        load_object_probe(tmp_path / "noprobe.npz")
    bad = probe.copy()
    bad[0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", objectGuess=obj, probeGuess=bad)
    with pytest.raises(ValueError, match="key 'probeGuess': expected finite values"):
        load_object_probe(tmp_path / "nan.npz")
