"""Phase 1 masks of one still, DIALS' convention (True = good pixel), all [slow, fast] booleans.

- ``static_good``: not in the beamstop circle, not in a listed rectangle (gaps), not negative
  (Pilatus marks gaps and dead pixels with -1/-2), below saturation, not hot (a pixel above
  ``hot_ratio`` times its 3 x 3 neighbourhood's median and above ``hot_min_counts``).
- ``bragg``: True on Bragg pixels. ``predicted``: the pixel centre's fractional HKL lies within
  ``radius_hkl`` (Euclidean, index units) of an integer lattice point; ``spots``: counts above the
  7 x 7 local median by ``spot_sigma`` Poisson sigmas. Both are then dilated by ``dilation_px``.
- ``total_diffuse`` = ``static_good`` and not ``bragg``: the pixels Phase 2 extracts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptylib.diffuse.experiment import StillExperiment
from ptylib.diffuse.options import BraggMaskOptions, StaticMaskOptions
from ptylib.diffuse.pixel_geometry import fractional_hkl, pixel_geometry
from ptylib.io.atomic import atomic_open


@dataclass(frozen=True)
class StillMasks:
    """The three masks of one still (module docstring)."""

    static_good: np.ndarray
    bragg: np.ndarray

    @property
    def total_diffuse(self) -> np.ndarray:
        """Pixels used for diffuse scattering: static good and not Bragg."""
        return self.static_good & ~self.bragg


def static_mask(image: np.ndarray, experiment: StillExperiment, options: StaticMaskOptions,
                saturation_counts: int | None) -> np.ndarray:
    """``static_good`` (module docstring); ``saturation_counts`` applies unless the options give one."""
    from scipy.ndimage import median_filter

    good = image >= 0
    cutoff = options.saturation_counts or saturation_counts
    if cutoff is not None:
        good &= image < cutoff
    neighbourhood = median_filter(np.maximum(image, 0).astype(np.float32), size=3, mode="nearest")
    good &= ~((image > options.hot_ratio * np.maximum(neighbourhood, 1.0)) & (image >= options.hot_min_counts))
    fast_c, slow_c = experiment.beam_centre_px()
    slow, fast = np.indices(image.shape)
    good &= np.hypot(fast + 0.5 - fast_c, slow + 0.5 - slow_c) > options.beamstop_radius_px
    for s0, s1, f0, f1 in options.rectangles:
        good[s0:s1, f0:f1] = False
    return good


def bragg_mask(image: np.ndarray, experiment: StillExperiment, options: BraggMaskOptions,
               static_good: np.ndarray) -> np.ndarray:
    """Bragg pixels (module docstring), dilated."""
    from scipy.ndimage import binary_dilation, median_filter

    if options.method == "predicted":
        geometry = pixel_geometry(experiment)
        hkl = fractional_hkl(experiment, geometry.q)
        distance = np.linalg.norm(hkl - np.rint(hkl), axis=1)
        bragg = (distance < options.radius_hkl).reshape(image.shape)
    else:
        counts = np.where(static_good, image, 0).astype(np.float32)
        background = median_filter(counts, size=7, mode="nearest")
        bragg = static_good & (counts > background + options.spot_sigma * np.sqrt(np.maximum(background, 1.0)))
    if options.dilation_px:
        bragg = binary_dilation(bragg, iterations=options.dilation_px)
    return bragg


def compute_masks(image: np.ndarray, experiment: StillExperiment, static: StaticMaskOptions,
                  bragg: BraggMaskOptions, saturation_counts: int | None = None) -> StillMasks:
    """All masks of one still."""
    good = static_mask(image, experiment, static, saturation_counts)
    return StillMasks(static_good=good, bragg=bragg_mask(image, experiment, bragg, good))


def write_masks(path: str | os.PathLike[str], masks: StillMasks) -> Path:
    """Save the masks as an NPZ (``static_good``, ``bragg``, ``total_diffuse``) atomically."""
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, static_good=masks.static_good, bragg=masks.bragg,
                            total_diffuse=masks.total_diffuse)
    return Path(path)


def read_masks(path: str | os.PathLike[str]) -> StillMasks:
    """Read masks written by :func:`write_masks`."""
    with np.load(path) as data:
        return StillMasks(static_good=data["static_good"], bragg=data["bragg"])
