"""Complex objects: a synthetic "fly64-like" specimen built from scikit-image's sample images, or a user's NPZ.

The synthetic object has a biological specimen's structure (``skimage.data.cell``) in both phase and
absorption, plus an independent grainy texture (``skimage.data.gravel``) in the amplitude, band-limited
by a Gaussian of ``smoothing_px``. Crops keep the images' native pixel scale, so their spatial frequencies
do not depend on the object size. Crop position and orientation come from ``rng``: the same seed gives
the same object.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import ndimage

from ptylib.ptycho.contract import DatasetContractError, load_dataset


def _random_view(image: np.ndarray, size_px: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``size_px`` square crop of ``image`` at its native scale (upsampled only when the image is
    smaller), under a random one of the 8 flips/rotations."""
    from skimage.transform import resize

    side = min(*image.shape, size_px)
    y0 = int(rng.integers(0, image.shape[0] - side + 1))
    x0 = int(rng.integers(0, image.shape[1] - side + 1))
    crop = image[y0 : y0 + side, x0 : x0 + side].astype(np.float64)
    crop = np.rot90(crop, k=int(rng.integers(4)))
    if rng.integers(2):
        crop = crop[:, ::-1]
    return resize(crop, (size_px, size_px), order=3, anti_aliasing=True, mode="reflect")


def _unit_range(image: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] between the 1st and 99th percentiles (robust to a few saturated pixels)."""
    lo, hi = np.percentile(image, [1.0, 99.0])
    return np.clip((image - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def synthetic_object(size_px: int, *, rng: np.random.Generator, amplitude_min: float = 0.5,
                     phase_range_rad: float = 1.6, smoothing_px: float = 1.0) -> np.ndarray:
    """A (size_px, size_px) complex64 object: amplitude in [amplitude_min, 1], phase peak-to-peak ``phase_range_rad``."""
    from skimage import data

    if not 0.0 < amplitude_min < 1.0:
        raise ValueError(f"amplitude_min must lie in (0, 1), got {amplitude_min!r}")
    specimen = _unit_range(ndimage.gaussian_filter(_random_view(data.cell(), size_px, rng), smoothing_px))
    grain = _unit_range(ndimage.gaussian_filter(_random_view(data.gravel(), size_px, rng), smoothing_px))
    # Absorption follows the specimen (thick parts absorb and shift phase); the grain adds texture.
    absorption = _unit_range(0.7 * specimen + 0.3 * grain)
    amplitude = 1.0 - (1.0 - amplitude_min) * absorption
    phase = phase_range_rad * (specimen - 0.5)
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def load_object_probe(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``objectGuess`` (H, W) and ``probeGuess`` (N, N) from a user's NPZ as complex64 arrays."""
    arrays = load_dataset(path, validate=False)
    result = []
    for key in ("objectGuess", "probeGuess"):
        if key not in arrays:
            raise DatasetContractError(f"{path}: key {key!r}: expected a complex 2-D array, got no such key "
                                       f"(keys: {', '.join(sorted(arrays))})")
        value = arrays[key]
        if value.ndim != 2 or value.dtype.kind not in "fc":
            raise DatasetContractError(f"{path}: key {key!r}: expected a complex 2-D array, "
                                       f"got {value.dtype} {value.shape}")
        if not np.all(np.isfinite(value)):
            raise DatasetContractError(f"{path}: key {key!r}: expected finite values, got NaN/inf entries")
        result.append(value.astype(np.complex64))
    obj, probe = result
    if probe.shape[0] != probe.shape[1] or probe.shape[0] % 2 or min(obj.shape) < probe.shape[0]:
        raise DatasetContractError(f"{path}: key 'probeGuess': expected a square probe with an even side no "
                                   f"larger than objectGuess {obj.shape}, got {probe.shape}")
    return obj, probe
