"""Options of one sim-lines debug scenario (frozen, validated) and the built-in scenarios.

A scenario fixes everything of simulate → split → group → train → infer → stitch: the lines object, the
probe ("ideal" synthetic or "custom" from an NPZ), the scan (grid or non-grid), gridsize, neighbour count,
image and group counts, batch size and epochs, the stitching canvas, the optional amplitude rescale and the
report's pass thresholds. Built-ins are the seed's reduced-load profiles (``gs1_ideal``: 512 images, 256
groups, batch 8; ``gs2_ideal``: 256 images, 128 groups, batch 4, K = 4), their ``_custom`` twins (which need
a probe NPZ) and a ``grid`` / ``nongrid`` pair that differ only in the scan.
"""

from __future__ import annotations

import math
import os
import zipfile
from enum import StrEnum, auto
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ProbeKind(StrEnum):
    """Where the probe comes from."""

    IDEAL = auto()
    """The synthetic focused probe of :func:`ptylib.ptycho.probes.focused_probe` (seeded)."""
    CUSTOM = auto()
    """A complex (N, N) probe read from ``probe_npz`` (key ``probeGuess`` or ``probe``)."""


class ScanKind(StrEnum):
    """Layout of the scan positions."""

    GRID = auto()
    """A raster with step ``scan_step_px``, row by row."""
    NONGRID = auto()
    """Uniform random positions over the same area as the grid (seeded)."""


class Rescale(StrEnum):
    """Amplitude rescaling applied to the stitched reconstruction before it is saved."""

    NONE = auto()
    """Save the amplitudes as predicted."""
    LSQ = auto()
    """Multiply by the least-squares scalar that best maps predicted onto true amplitude."""
    INTENSITY_SCALE = auto()
    """Multiply by the test data's intensity scale over the model's recorded (training) one."""


class ScenarioOptions(BaseModel):
    """One sim-lines scenario; lengths in pixels, dose in photons per exposure."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, revalidate_instances="always")

    name: str = Field("custom", pattern=r"^[A-Za-z0-9_.-]+$")
    """Label of the scenario (folder name of its outputs)."""
    probe: ProbeKind = ProbeKind.IDEAL
    """Ideal synthetic probe or a custom one from ``probe_npz``."""
    probe_npz: str | None = None
    """NPZ holding the custom probe (``probeGuess`` or ``probe``, complex N × N); relative to the working directory."""
    scan: ScanKind = ScanKind.NONGRID
    """Grid (raster) or non-grid (random) scan."""
    gridsize: int = Field(1, ge=1, le=4)
    """gs: a group holds C = gs² patterns."""
    neighbor_count: int = Field(4, ge=1)
    """K: nearest neighbours (anchor included) each group's C members are drawn from; K ≥ C."""
    n_images: int = Field(512, ge=8)
    """Diffraction patterns simulated (train and test split on y, with a guard band)."""
    n_groups: int = Field(256, ge=1)
    """Groups requested per split (fewer are achieved when the split has fewer to offer)."""
    batch_size: int = Field(8, ge=1)
    """Groups per training step."""
    epochs: int = Field(20, ge=1)
    """Training epochs of the PINN."""
    learning_rate: float = Field(3e-3, gt=0.0, le=1.0)
    """Adam learning rate of the PINN (a very large one makes a deliberately diverging run)."""
    patch_size_px: int = Field(64, ge=8, le=256)
    """N: side of a diffraction pattern / object patch (even)."""
    scan_step_px: int = Field(16, ge=1)
    """Grid step; the non-grid scan covers the same area at the same mean density."""
    n_lines: int = Field(15, ge=1)
    """Line segments of the lines object."""
    line_blur_px: float = Field(2.0, gt=0.0)
    """Gaussian blur (sigma) of the lines: sets their width (pixels)."""
    dose: float = Field(1e6, gt=0.0)
    """Photons per exposure (mean expected total counts of a pattern)."""
    seed: int = Field(42, ge=0)
    """Seed of object, probe, scan, noise and grouping (identical across an A/B pair)."""
    canvas_px: int | None = Field(None, ge=8)
    """Side of the stitching canvas; None sizes it from the offsets, ceil(n + 2·max|offset|). A smaller
    value reproduces the seed's clipped reconstructions (and the report flags it)."""
    rescale: Rescale = Rescale.NONE
    """Amplitude rescale applied before saving (the scalar is recorded)."""
    min_pearson: float = Field(0.2, ge=-1.0, le=1.0)
    """Pass threshold of the Pearson r between reconstructed and true amplitude and phase: a blank image
    scores 0, the lines object shifted by 8 px about 0.15."""
    bias_tolerance: float = Field(0.25, gt=0.0)
    """Pass threshold of |mean predicted / mean true amplitude − 1| (after the rescale)."""

    @model_validator(mode="after")
    def _cross_checks(self) -> ScenarioOptions:
        if self.patch_size_px % 2:
            raise ValueError(f"patch_size_px must be even, got {self.patch_size_px}")
        if self.neighbor_count < self.gridsize**2:
            raise ValueError(f"neighbor_count K={self.neighbor_count} must be ≥ C=gridsize²={self.gridsize ** 2} "
                             "(K-choose-C grouping)")
        if self.probe == ProbeKind.CUSTOM and not self.probe_npz:
            raise ValueError("a custom probe needs probe_npz (an NPZ with a complex N×N 'probeGuess' or 'probe')")
        return self

    @property
    def scan_side(self) -> int:
        """Positions per row of the grid: ceil(sqrt(n_images))."""
        return math.ceil(math.sqrt(self.n_images))

    @property
    def object_size_px(self) -> int:
        """Side of the lines object: the grid's extent plus one patch and a margin of one step."""
        return self.patch_size_px + self.scan_step_px * (self.scan_side + 1)


BUILTIN: dict[str, dict[str, object]] = {
    "gs1_ideal": {"gridsize": 1, "n_images": 512, "n_groups": 256, "batch_size": 8},
    "gs2_ideal": {"gridsize": 2, "n_images": 256, "n_groups": 128, "batch_size": 4, "neighbor_count": 4},
    "gs1_custom": {"gridsize": 1, "n_images": 512, "n_groups": 256, "batch_size": 8, "probe": "custom"},
    "gs2_custom": {"gridsize": 2, "n_images": 256, "n_groups": 128, "batch_size": 4, "neighbor_count": 4,
                   "probe": "custom"},
    "grid": {"gridsize": 1, "n_images": 256, "n_groups": 128, "batch_size": 8, "scan": "grid"},
    "nongrid": {"gridsize": 1, "n_images": 256, "n_groups": 128, "batch_size": 8, "scan": "nongrid"},
}
"""Built-in scenarios: name → overrides of :class:`ScenarioOptions`' defaults."""


def builtin_scenario(name: str, **overrides: object) -> ScenarioOptions:
    """The built-in scenario ``name`` with ``overrides`` (None values ignored), validated.

    Raises ``ValueError`` listing the known names for an unknown one.
    """
    if name not in BUILTIN:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(BUILTIN)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ScenarioOptions.model_validate({"name": name, **BUILTIN[name], **given})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise ValueError(f"scenario {name}: {problems}") from None


PROBE_KEYS = ("probeGuess", "probe")


def load_custom_probe(path: str | os.PathLike[str], patch_size_px: int) -> np.ndarray:
    """The complex (N, N) probe of an NPZ (key ``probeGuess`` or ``probe``) as complex64; one-line errors."""
    source = Path(path)
    try:
        loaded = np.load(source, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{source}: no such probe NPZ file") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile):
        raise ValueError(f"{source}: expected an NPZ archive with key probeGuess or probe, got an unreadable "
                         "file") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy: wrong input file, reported like the others
        raise ValueError(  # noqa: TRY004
            f"{source}: expected an NPZ archive with key probeGuess or probe, got a single array")
    with loaded:
        arrays = {k: loaded[k] for k in loaded.files}
    if (key := next((k for k in PROBE_KEYS if k in arrays), None)) is None:
        raise ValueError(f"{source}: expected a key {' or '.join(PROBE_KEYS)}, got keys "
                         f"{', '.join(arrays) or '(none)'}")
    probe = arrays[key]
    if probe.dtype.kind != "c":
        raise ValueError(f"{source}: key {key!r}: expected a complex64 or complex128 array, got {probe.dtype}")
    if probe.shape != (patch_size_px, patch_size_px):
        raise ValueError(f"{source}: key {key!r}: expected shape ({patch_size_px}, {patch_size_px}) "
                         f"(the scenario's patch_size_px), got {probe.shape}")
    if not np.all(np.isfinite(probe)) or not np.any(probe):
        raise ValueError(f"{source}: key {key!r}: expected finite, non-zero values")
    return probe.astype(np.complex64)
