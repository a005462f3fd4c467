"""Options of the diffuse pipeline's phases as frozen, validated pydantic models (no numpy, no torch).

Phase 1: :class:`StaticMaskOptions`, :class:`BraggMaskOptions`; Phase 2: :class:`ExtractionOptions`;
Phase 3: :class:`GridOptions`, :class:`ScalingOptions`. :class:`DiffuseOptions` composes them; the
command line reads each from a JSON string or file with the seed's option names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_CONFIG = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)

PositiveInt = Annotated[int, Field(ge=1)]


class StaticMaskOptions(BaseModel):
    """Static (per-detector) mask: beamstop, gaps, negative, saturated and hot pixels."""

    model_config = _CONFIG

    beamstop_radius_px: float = Field(10.0, ge=0)
    """Pixels within this distance of the beam centre are masked (the beamstop's shadow)."""
    rectangles: tuple[tuple[int, int, int, int], ...] = ()
    """Extra masked regions (gaps, dead modules) as (slow_start, slow_stop, fast_start, fast_stop) pixel ranges."""
    saturation_counts: int | None = Field(None, ge=1)
    """Counts at or above this are saturated; ``None`` reads the image header's ``Count_cutoff``."""
    hot_ratio: float = Field(20.0, gt=1)
    """A pixel is hot when it exceeds this many times the median of its 3 x 3 neighbourhood ..."""
    hot_min_counts: float = Field(1000.0, ge=0)
    """... and at least this many counts (so that quiet regions give no false hot pixels)."""


class BraggMaskOptions(BaseModel):
    """Bragg mask: predicted lattice points (geometry known) or found spots, dilated."""

    model_config = _CONFIG

    method: Literal["predicted", "spots"] = "predicted"
    """``predicted``: pixels whose fractional HKL lies within ``radius_hkl`` of an integer lattice point
    (the seed's shoebox option); ``spots``: pixels above the local background threshold, dilated."""
    radius_hkl: float = Field(0.2, gt=0, le=0.5)
    """Radius of the masked sphere around each lattice point, in fractional Miller-index units."""
    spot_sigma: float = Field(6.0, gt=0)
    """``spots``: a pixel is a spot when it exceeds the local median by this many Poisson sigmas."""
    dilation_px: int = Field(1, ge=0)
    """Pixels added around every masked pixel (both methods)."""


class ExtractionOptions(BaseModel):
    """Phase 2: which pixels become observations and how intensities are corrected."""

    model_config = _CONFIG

    kahn_factor: float = Field(0.0, ge=-1, le=1)
    """Kahn polarisation factor of the beam, E-vector along the lab x axis (0 = unpolarised)."""
    apply_solid_angle: bool = True
    """Divide by the pixel's solid angle relative to a pixel at normal incidence."""
    apply_polarization: bool = True
    """Divide by the polarisation factor."""
    min_counts_sigma: float = Field(1.0, gt=0)
    """Floor of the counting sigma (counts), so empty pixels keep a finite weight."""
    pixel_step: PositiveInt = 1
    """Keep every n-th pixel along each axis (1 = all); larger values thin the data for quick looks."""


class GridOptions(BaseModel):
    """Phase 3 global voxel grid on fractional HKL (the seed's ``d_min_target`` and ``ndiv_hkl``)."""

    model_config = _CONFIG

    d_min_target: float | None = Field(None, gt=0)
    """Highest resolution (Å) kept; ``None`` takes it from the largest |q| among the observations."""
    ndiv_h: PositiveInt = 2
    """Voxels per reciprocal-lattice unit along h (voxel size 1/ndiv_h)."""
    ndiv_k: PositiveInt = 2
    """Voxels per reciprocal-lattice unit along k."""
    ndiv_l: PositiveInt = 2
    """Voxels per reciprocal-lattice unit along l."""


class ScalingOptions(BaseModel):
    """Phase 3 relative scaling: per-still scales b_i and a resolution smoother a(|q|)."""

    model_config = _CONFIG

    max_iterations: PositiveInt = 30
    """Alternating least-squares rounds at most."""
    tolerance: float = Field(1e-4, gt=0)
    """Stop when the relative change of the objective falls below this."""
    smoother_points: int = Field(6, ge=0)
    """Control points of a(|q|) (piecewise linear in |q|), 0 or at least 2; 0 fixes a(|q|) = 1."""
    smoothness_weight: float = Field(1.0, ge=0)
    """Weight of the second-difference penalty on a(|q|), relative to the data term's curvature."""
    ridge_weight: float = Field(0.1, ge=0)
    """Weight of the penalty pulling a(|q|) toward 1, relative to the data term's curvature."""
    min_observations_per_voxel: PositiveInt = 2
    """Voxels with fewer observations are left out of the refinement of b_i and a(|q|) (still merged)."""
    chunk_observations: int = Field(4_000_000, ge=1000)
    """Observations read from the HDF5 accumulator at a time (bounds memory)."""

    @field_validator("smoother_points")
    @classmethod
    def _zero_or_two(cls, value: int) -> int:
        if value == 1:
            raise ValueError("smoother_points must be 0 (no smoother) or at least 2 (a piecewise-linear curve)")
        return value


class DialsPhase1Options(BaseModel):
    """Phase 1 with DIALS (import, find spots, index with known symmetry, refine), via the ICI DIALS worker."""

    model_config = _CONFIG

    unit_cell: str | None = None
    """Known cell ``a,b,c,alpha,beta,gamma`` (Å, degrees); required for the DIALS path."""
    space_group: str | None = None
    """Known space group, e.g. ``P222``; required for the DIALS path."""
    dials_phil_path: Path | None = None
    """Extra PHIL file passed to ``dials.index`` (the seed's ``--dials-phil-path``)."""
    fix_cell: bool = True
    """Keep the known cell fixed while DIALS refines (only orientation and beam centre move)."""
    min_indexed_fraction: float = Field(0.5, gt=0, le=1)
    """A still counts as indexed when at least this fraction of its strong spots index ..."""
    max_rmsd_px: float = Field(1.0, gt=0)
    """... and DIALS' positional RMSD is at most this (px)."""
    timeout_s: float = Field(600.0, gt=0)
    """Limit of one still's DIALS run (s)."""
    persistent: bool = False
    """Hand stills to the per-user DIALS server (imports DIALS once, exits after 2 idle minutes)."""


class DiffuseOptions(BaseModel):
    """Every option of Phases 1-3."""

    model_config = _CONFIG

    static_mask: StaticMaskOptions = StaticMaskOptions()
    """Phase 1 static mask."""
    bragg_mask: BraggMaskOptions = BraggMaskOptions()
    """Phase 1 Bragg mask."""
    extraction: ExtractionOptions = ExtractionOptions()
    """Phase 2 extraction and corrections."""
    grid: GridOptions = GridOptions()
    """Phase 3 voxel grid."""
    scaling: ScalingOptions = ScalingOptions()
    """Phase 3 relative scaling."""
    dials: DialsPhase1Options = DialsPhase1Options()
    """Phase 1 with DIALS (used when no experiment files are given)."""


Model = TypeVar("Model", bound=BaseModel)


def options_from_json(model: type[Model], text_or_path: str | None, *, option: str) -> Model:
    """``model`` from a JSON string or a JSON file path (``None`` gives the defaults); one-line errors.

    ``option`` names the command-line option in messages, e.g. ``--grid-config-json``.
    """
    if text_or_path is None:
        return model()
    source = text_or_path
    text = text_or_path
    if not text_or_path.lstrip().startswith("{"):
        path = Path(text_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{option}: cannot read JSON file {path}: {exc.strerror or exc}") from None
        source = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{option} ({source}): not valid JSON at line {exc.lineno}: {exc.msg}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ValueError(f"{option} ({source}): field {field!r}: {first['msg']} (got {first.get('input')!r})") from None


def describe_fields(model: type[BaseModel]) -> str:
    """One line per field: ``name = default: docstring`` (help text generated from the options model)."""
    lines = []
    for name, field in model.model_fields.items():
        default = field.default if not isinstance(field.default, BaseModel) else "{...}"
        lines.append(f"{name} = {default!r}: {(field.description or '').splitlines()[0]}")
    return "; ".join(lines)
