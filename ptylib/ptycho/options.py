"""Design constants of the dose/overlap study (phase A) as a frozen, validated pydantic model.

The defaults are the seed's numbers (doses 1e3/1e4/1e5 photons per exposure, gridsizes 1 and 2,
K = 7 neighbours, C = gridsize² = 4, overlap fractions 0.7 / 0.2, N = 128 px patches, y split,
seeds 42 / 123 / 456, MS-SSIM sigma 1.0, FRC threshold 0.5) and the measured LSQML minibatch 32.
:meth:`StudyDesign.for_profile` gives the reduced ``smoke`` and ``small`` variants; derive others with
``StudyDesign.model_validate(design.model_dump() | {...})``: ``model_copy(update=...)`` skips validation
(instances are revalidated wherever they are passed, and :func:`ptylib.ptycho.study.save_design` checks
again before writing).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ptylib.ptycho.lsqml import LSQMLOptions
from ptylib.ptycho.pinn.options import TrainingOptions

Profile = Literal["smoke", "small", "full"]
PROFILES: tuple[str, ...] = ("smoke", "small", "full")


def min_center_spacing_px(overlap_fraction: float, patch_size_px: int) -> float:
    """Minimum group-centre spacing S = (1 − f)·N (pixels) of an overlap view with fraction ``f``."""
    if not (0.0 <= overlap_fraction < 1.0) or math.isnan(overlap_fraction):
        raise ValueError(f"overlap fraction must lie in [0, 1), got {overlap_fraction!r}")
    if patch_size_px <= 0:
        raise ValueError(f"patch size must be positive (pixels), got {patch_size_px!r}")
    return (1.0 - overlap_fraction) * patch_size_px


class SimulationOptions(BaseModel):
    """How the synthetic object, probe and scan of one study are made (all lengths in pixels)."""

    # revalidate_instances: an instance made with model_copy(update=...) is checked again wherever it is passed.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, revalidate_instances="always")

    object_size_px: int = Field(768, ge=16)
    """Side of the square synthetic object (pixels)."""
    scan_step_px: int = Field(12, ge=1)
    """Raster step between neighbouring scan positions (pixels)."""
    scan_jitter_px: float = Field(0.5, ge=0.0)
    """Uniform random displacement of each raster position, ± this many pixels (makes the scan non-grid)."""
    amplitude_min: float = Field(0.5, gt=0.0, lt=1.0)
    """Smallest object transmission amplitude; the largest is 1."""
    phase_range_rad: float = Field(1.6, gt=0.0, le=2 * math.pi)
    """Peak-to-peak object phase (radians)."""
    pupil_radius_frac: float = Field(0.25, gt=0.0, le=1.0)
    """Radius of the focusing optic's pupil as a fraction of the detector's Nyquist radius."""
    beam_diameter_frac: float = Field(0.5, gt=0.0, le=1.0)
    """Geometric beam diameter at the sample as a fraction of the patch size N (sets the defocus)."""
    store_ground_truth_patches: bool = True
    """Write the ground-truth object patches ``Y`` (n × N × N complex64) into the datasets."""


class StudyDesign(BaseModel):
    """Every constant of the dose/overlap study; serialisable to JSON with ``model_dump(mode="json")``."""

    # revalidate_instances: an instance made with model_copy(update=...) is checked again wherever it is passed.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, revalidate_instances="always")

    profile: Profile = "full"
    """Name of the profile these numbers come from (smoke / small / full)."""
    doses: tuple[float, ...] = (1e3, 1e4, 1e5)
    """Photons per exposure: the expected total counts of one diffraction pattern, averaged over the scan."""
    gridsizes: tuple[int, ...] = (1, 2)
    """Group grid sizes gs; a group has C = gs² patterns."""
    neighbor_count: int = Field(7, ge=1)
    """K: nearest neighbours (the anchor included) from which each group's C members are drawn."""
    overlap_views: dict[str, float] = Field(default_factory=lambda: {"dense": 0.7, "sparse": 0.2})
    """Overlap views: name → inter-group overlap fraction f in [0, 1); S = (1 − f)·N."""
    patch_size_px: int = Field(128, ge=8)
    """N: side of a diffraction pattern / object patch (pixels, even)."""
    split_axis: Literal["y"] = "y"
    """Axis of the spatial train/test split (top half train, bottom half test)."""
    train_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    """Fraction of the scan's y extent above the split line."""
    seed_simulation: int = Field(42, ge=0)
    """Seed of the object, probe, scan jitter and Poisson noise."""
    seed_grouping: int = Field(123, ge=0)
    """Seed of the K-choose-C group sampling."""
    seed_subsampling: int = Field(456, ge=0)
    """Seed of the overlap views' acceptance order and of LSQML's minibatch order."""
    min_groups: int = Field(4, ge=1)
    """An overlap view keeping fewer groups than this is skipped (with the reason recorded)."""
    ms_ssim_sigma: float = Field(1.0, gt=0.0)
    """Gaussian sigma of the MS-SSIM window (pixels)."""
    emphasize_phase: bool = True
    """Rank reconstructions by phase MS-SSIM first."""
    report_amplitude: bool = True
    """Also report amplitude MS-SSIM."""
    frc_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """FRC threshold that defines the resolution."""
    lsqml_epochs: int = Field(100, ge=1)
    """pty-chi LSQML epochs per reconstruction."""
    lsqml_batch_size: int = Field(LSQMLOptions.model_fields["batch_size"].default, ge=1)
    """pty-chi LSQML minibatch size (patterns); the LSQML adapter's default, chosen by bench/lsqml_batch.py."""
    simulation: SimulationOptions = Field(default_factory=SimulationOptions)
    """Synthetic object / probe / scan."""
    training: TrainingOptions = Field(default_factory=TrainingOptions)
    """PINN and supervised-baseline training (phase E)."""

    @field_validator("doses")
    @classmethod
    def _doses_positive(cls, doses: tuple[float, ...]) -> tuple[float, ...]:
        if not doses:
            raise ValueError("at least one dose is needed")
        bad = [d for d in doses if not (d > 0 and math.isfinite(d))]
        if bad:
            raise ValueError(f"doses must be positive, finite photon counts; got {bad}")
        if len(set(doses)) != len(doses):
            raise ValueError(f"doses must be distinct, got {list(doses)}")
        return doses

    @field_validator("gridsizes")
    @classmethod
    def _gridsizes_valid(cls, gridsizes: tuple[int, ...]) -> tuple[int, ...]:
        if not gridsizes or any(g < 1 for g in gridsizes):
            raise ValueError(f"gridsizes must be a non-empty list of integers ≥ 1, got {list(gridsizes)}")
        return gridsizes

    @field_validator("overlap_views")
    @classmethod
    def _views_valid(cls, views: dict[str, float]) -> dict[str, float]:
        for name, fraction in views.items():
            if not name.isidentifier():
                raise ValueError(f"overlap view name {name!r} must be an identifier (letters, digits, _)")
            min_center_spacing_px(fraction, 1)  # raises for f outside [0, 1)
        return views

    @field_validator("patch_size_px")
    @classmethod
    def _patch_even(cls, n: int) -> int:
        if n % 2:
            raise ValueError(f"patch_size_px must be even (pty-chi's integer patch convention), got {n}")
        return n

    @model_validator(mode="after")
    def _cross_checks(self) -> StudyDesign:
        if self.neighbor_count < self.group_size:
            raise ValueError(f"neighbor_count K={self.neighbor_count} must be ≥ C=gridsize²={self.group_size} "
                             "for K-choose-C grouping")
        if self.patch_size_px % 8:
            raise ValueError(f"patch_size_px ({self.patch_size_px}) must be divisible by 8 for the PINN's three "
                             "2x downsamplings")
        if self.simulation.object_size_px < 2 * self.patch_size_px:
            raise ValueError(f"simulation.object_size_px ({self.simulation.object_size_px}) must be at least "
                             f"2·patch_size_px ({2 * self.patch_size_px}) to leave room for a train/test split")
        return self

    @property
    def group_size(self) -> int:
        """C = (largest gridsize)²: patterns per group."""
        return max(self.gridsizes) ** 2

    def spacing_px(self, view: str) -> float:
        """Minimum group-centre spacing S (pixels) of overlap view ``view``."""
        return min_center_spacing_px(self.overlap_views[view], self.patch_size_px)

    @classmethod
    def for_profile(cls, profile: str) -> StudyDesign:
        """The design of a named profile: ``smoke`` (tests), ``small`` (N = 64) or ``full`` (the seed's)."""
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        return cls.model_validate(_PROFILE_OVERRIDES[profile] | {"profile": profile})


_PROFILE_OVERRIDES: dict[str, dict[str, object]] = {
    "full": {},
    "small": {"patch_size_px": 64, "simulation": {"object_size_px": 256, "scan_step_px": 8},
              "training": {"epochs": 20, "min_steps": 800}},
    # smoke's min_groups = 6 makes its sparse view (4-5 groups per split) a recorded skip: tests see both paths.
    "smoke": {"patch_size_px": 32, "doses": (1e3, 1e5), "lsqml_epochs": 30, "lsqml_batch_size": 64,
              "min_groups": 6, "simulation": {"object_size_px": 128, "scan_step_px": 4},
              "training": {"epochs": 3, "filters": 8, "batch_size": 8}},
}
