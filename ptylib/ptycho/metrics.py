"""Image-quality metrics of a complex reconstruction against its ground truth.

Registration removes a sub-pixel translation (phase cross-correlation, Fourier shift) and the global
phase offset, then crops the wrapped border. MS-SSIM follows ``tf.image.ssim_multiscale`` (Gaussian
window, VALID filtering, 2×2 average pooling with symmetric padding of odd sides, relu'd contrast terms,
Wang et al.'s scale weights); the number of scales is chosen from the image size and recorded, because
five scales need a side ≥ 16 × the window. FRC uses one-pixel rings and reports where the curve first
falls below the threshold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view

MSSSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
K1, K2 = 0.01, 0.03


@dataclass(frozen=True)
class Registration:
    """Registered, cropped pair and what was removed."""

    reference: np.ndarray
    image: np.ndarray
    shift_yx: tuple[float, float]
    """Translation applied to the image (pixels, + moves content down/right)."""
    phase_offset_rad: float
    """Global phase subtracted from the image (radians)."""
    border_px: int
    """Pixels cropped from every side after shifting."""
    measured_shift_yx: tuple[float, float]
    """Translation found by cross-correlation; not applied when larger than the allowed maximum."""


def register(reference: np.ndarray, image: np.ndarray, *, upsample: int = 20, max_shift_px: float | None = None,
             border_px: int | None = None) -> Registration:
    """Align complex ``image`` to ``reference`` (same shape): sub-pixel shift, global phase, cropped border.

    A measured shift beyond ``max_shift_px`` (pixels, per axis) is taken as a failed correlation of a poor
    image, not a real offset, and is not applied (it stays recorded in ``measured_shift_yx``).
    """
    from skimage.registration import phase_cross_correlation

    if reference.shape != image.shape:
        raise ValueError(f"reference {reference.shape} and image {image.shape} must have the same shape")
    measured, _, _ = phase_cross_correlation(reference - reference.mean(), image - image.mean(),
                                             upsample_factor=upsample, normalization=None)
    shift = measured if max_shift_px is None or np.abs(measured).max() <= max_shift_px else np.zeros(2)
    shifted = fourier_shift_image(image, shift)
    border = math.ceil(float(np.abs(shift).max())) + 1 if border_px is None else border_px
    window = (slice(border, reference.shape[0] - border), slice(border, reference.shape[1] - border))
    ref, img = reference[window], shifted[window]
    offset = float(np.angle(np.vdot(ref, img)))  # Σ conj(ref)·img: phase of img relative to ref
    return Registration(ref, img * np.exp(-1j * offset), (float(shift[0]), float(shift[1])), offset, border,
                        (float(measured[0]), float(measured[1])))


def fourier_shift_image(image: np.ndarray, shift_yx: np.ndarray) -> np.ndarray:
    """One image shifted by ``shift_yx`` pixels with a Fourier phase ramp (periodic)."""
    if not np.any(shift_yx):
        return image.copy()  # exact: an FFT round trip would add rounding noise
    fy = sfft.fftfreq(image.shape[0])[:, None]
    fx = sfft.fftfreq(image.shape[1])[None, :]
    ramp = np.exp(-2j * np.pi * (fy * shift_yx[0] + fx * shift_yx[1]))
    result = sfft.ifft2(sfft.fft2(image) * ramp)
    return result if np.iscomplexobj(image) else result.real


def mae(reference: np.ndarray, image: np.ndarray) -> float:
    """Mean absolute error (image units)."""
    return float(np.mean(np.abs(image - reference)))


def mse(reference: np.ndarray, image: np.ndarray) -> float:
    """Mean squared error (image units²)."""
    return float(np.mean(np.abs(image - reference) ** 2))


def psnr(reference: np.ndarray, image: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) with the reference's range as peak; inf for identical images."""
    error = mse(reference, image)
    peak = float(np.ptp(reference))
    if error == 0:
        return math.inf
    return 10.0 * math.log10(peak**2 / error) if peak > 0 else -math.inf


def pearson(reference: np.ndarray, image: np.ndarray) -> float:
    """Pearson correlation coefficient of two real images."""
    a, b = reference.ravel() - reference.mean(), image.ravel() - image.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denominator if denominator > 0 else 0.0


def gaussian_window(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of side 2·ceil(3σ)+1 (pixels); its outer product is TF's ``_fspecial_gauss``."""
    size = 2 * math.ceil(3 * sigma) + 1
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * coords**2 / sigma**2)
    return g / g.sum()


def _filter_valid(image: np.ndarray, g: np.ndarray) -> np.ndarray:
    rows = sliding_window_view(image, g.size, axis=0) @ g
    return sliding_window_view(rows, g.size, axis=1) @ g


def _ssim_terms(x: np.ndarray, y: np.ndarray, g: np.ndarray, data_range: float) -> tuple[float, float]:
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    luminance = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    cs = (2 * _filter_valid(x * y, g) - 2 * mx * my + c2) / (_filter_valid(x * x + y * y, g) - mx**2 - my**2 + c2)
    return float(np.mean(luminance * cs)), float(np.mean(cs))


def _downsample(image: np.ndarray) -> np.ndarray:
    # TF pads odd sides by repeating the last row/column, then 2×2 average pooling.
    padded = np.pad(image, ((0, image.shape[0] % 2), (0, image.shape[1] % 2)), mode="symmetric")
    h, w = padded.shape
    return padded.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def ms_ssim_scales(shape: tuple[int, ...], window_px: int, max_scales: int = len(MSSSIM_WEIGHTS)) -> int:
    """Largest number of scales (≤ 5) whose coarsest image is still at least ``window_px`` on each side."""
    side, scales = min(shape), 0
    while scales < max_scales and side >= window_px:
        scales += 1
        side = math.ceil(side / 2)
    return scales


@dataclass(frozen=True)
class MSSSIM:
    """An MS-SSIM value with the settings that produced it."""

    value: float
    scales: int
    window_px: int
    sigma_px: float
    weights: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return asdict(self)


def ms_ssim(reference: np.ndarray, image: np.ndarray, *, data_range: float, sigma: float = 1.0,
            scales: int | None = None) -> MSSSIM:
    """Multi-scale SSIM of two real images; weights are Wang et al.'s first ``scales``, renormalised to sum 1."""
    if reference.shape != image.shape or reference.ndim != 2:
        raise ValueError(f"MS-SSIM needs two 2-D images of one shape, got {reference.shape} and {image.shape}")
    g = gaussian_window(sigma)
    possible = ms_ssim_scales(reference.shape, g.size)
    n_scales = possible if scales is None else scales
    if not 1 <= n_scales <= possible:
        raise ValueError(f"a {reference.shape} image allows 1..{possible} MS-SSIM scales with a {g.size}-px "
                         f"window, not {n_scales}")
    weights = np.asarray(MSSSIM_WEIGHTS[:n_scales]) / sum(MSSSIM_WEIGHTS[:n_scales])
    x, y = np.asarray(reference, np.float64), np.asarray(image, np.float64)
    terms = []
    for k in range(n_scales):  # a handful of scales, each fully vectorised
        if k:
            x, y = _downsample(x), _downsample(y)
        ssim_k, cs_k = _ssim_terms(x, y, g, data_range)
        terms.append(max(cs_k, 0.0) if k < n_scales - 1 else max(ssim_k, 0.0))
    value = float(np.prod(np.power(terms, weights)))
    return MSSSIM(value, n_scales, int(g.size), float(sigma), tuple(float(w) for w in weights))


@dataclass(frozen=True)
class FRC:
    """Fourier ring correlation curve and the resolution where it first drops below the threshold."""

    frequency: np.ndarray
    """Ring frequencies (cycles per pixel)."""
    curve: np.ndarray
    threshold: float
    resolution_px: float
    """Period (pixels) at the threshold crossing; 2 px (Nyquist) when the curve never drops below it."""
    crossed: bool


def frc(reference: np.ndarray, image: np.ndarray, *, threshold: float = 0.5, window: bool = True) -> FRC:
    """FRC of two images (real or complex) over one-pixel rings, optionally Hann-windowed against edge leakage."""
    if reference.shape != image.shape:
        raise ValueError(f"reference {reference.shape} and image {image.shape} must have the same shape")
    height, width = reference.shape
    a, b = reference - reference.mean(), image - image.mean()
    if window:
        hann = np.outer(np.hanning(height), np.hanning(width))
        a, b = a * hann, b * hann
    fa, fb = sfft.fft2(a), sfft.fft2(b)
    q = np.hypot(*np.meshgrid(sfft.fftfreq(height), sfft.fftfreq(width), indexing="ij"))
    side = min(height, width)
    rings = np.round(q * side).astype(np.int64).ravel()
    n_rings = side // 2 + 1
    keep = rings < n_rings
    rings = rings[keep]
    cross = np.bincount(rings, (fa * np.conj(fb)).real.ravel()[keep], n_rings)
    power_a = np.bincount(rings, (np.abs(fa) ** 2).ravel()[keep], n_rings)
    power_b = np.bincount(rings, (np.abs(fb) ** 2).ravel()[keep], n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.where(power_a * power_b > 0, cross / np.sqrt(power_a * power_b), 1.0)
    curve[0] = 1.0  # the means were removed: the zero-frequency ring carries no information
    frequency = np.arange(n_rings) / side
    below = np.nonzero(curve[1:] < threshold)[0]
    if below.size == 0:
        return FRC(frequency, curve, threshold, 2.0, False)
    i = int(below[0]) + 1
    # Linear interpolation between the last ring at or above (c0 ≥ t) and the first below (c1 < t) the threshold.
    f0, f1, c0, c1 = frequency[i - 1], frequency[i], curve[i - 1], curve[i]
    f_cross = f0 + (c0 - threshold) * (f1 - f0) / (c0 - c1)
    return FRC(frequency, curve, threshold, float(1.0 / f_cross), True)


def compare(reference: np.ndarray, image: np.ndarray, *, sigma: float = 1.0, frc_threshold: float = 0.5,
            max_shift_px: float | None = 4.0) -> dict[str, object]:
    """Registration plus every metric on phase (emphasised) and amplitude; a JSON-ready dict.

    Amplitude and phase are compared on the reference's range (MS-SSIM maps that range to [0, 1]).
    """
    reg = register(reference, image, max_shift_px=max_shift_px)
    result: dict[str, object] = {"shift_yx_px": list(reg.shift_yx), "measured_shift_yx_px": list(reg.measured_shift_yx),
                                 "phase_offset_rad": reg.phase_offset_rad, "border_px": reg.border_px,
                                 "shape": list(reg.reference.shape)}
    for name, part in (("phase", np.angle), ("amplitude", np.abs)):
        ref, img = part(reg.reference), part(reg.image)
        low, span = float(ref.min()), float(np.ptp(ref)) or 1.0
        ssim = ms_ssim((ref - low) / span, (img - low) / span, data_range=1.0, sigma=sigma)
        result[name] = {"ms_ssim": ssim.value, "ms_ssim_scales": ssim.scales, "ms_ssim_window_px": ssim.window_px,
                        "mae": mae(ref, img), "mse": mse(ref, img), "psnr_db": psnr(ref, img),
                        "pearson": pearson(ref, img)}
    ring = frc(reg.reference, reg.image, threshold=frc_threshold)
    result["frc"] = {"threshold": frc_threshold, "resolution_px": ring.resolution_px, "crossed": ring.crossed,
                     "frequency": ring.frequency.tolist(), "curve": ring.curve.tolist()}
    return result
