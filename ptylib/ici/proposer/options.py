"""Knobs of the ICI proposer (policy choice, Step-1 hillmap, Step-2 dx/dy, DONE rules, centre model).

The seed's knobs keep the seed's defaults. A plain frozen dataclass rather than a pydantic model:
``ptyflows ici propose`` must start fast. Lengths are in mm, wRMSD in px.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

STEP2_ALGORITHMS = ("dxdy", "none")
POLICIES = ("model", "hillmap", "spiral", "random")
# Knobs added after the seed's: each policy's digest leaves out the knobs it does not use, so adding a
# knob for one policy does not change another's random streams (see ProposerOptions.digest).
MODEL_KNOBS = ("policy", "model_probe_frac", "model_min_successes", "model_noise_frac", "model_max_centre_se_frac",
               "model_min_curvature_t", "model_max_chi", "model_refine_sigma_mm", "model_refine_tol_mm",
               "model_repeat_tol_mm")
# Knobs added after the digests were frozen enter a digest only when set away from their default, so
# the random streams (and proposals) of every policy with default knobs stay those of earlier versions.
LATE_KNOBS = ("model_repeat_tol_mm",)
BASELINE_KNOBS = ("baseline_runs",)
_UNUSED_KNOBS = {"hillmap": MODEL_KNOBS + BASELINE_KNOBS, "model": BASELINE_KNOBS}


@dataclass(frozen=True)
class ProposerOptions:
    """Every proposer knob; names match the seed's command-line flags (``--radius-mm`` -> ``radius_mm``).

    Geometry: ``radius_mm`` (Step-1 disk radius, mm), ``min_spacing_mm`` (closest allowed distance of a
    proposal to any tried centre, mm), ``seed`` (base of the per-event random streams).
    Step-1: ``step1_A0`` (base amplitude), ``step1_hill_amp_frac`` / ``step1_drop_amp_frac`` (hill and
    drop amplitudes as fractions of A0), ``step1_candidates`` (candidates per proposal),
    ``step1_explore_floor`` (weight added everywhere), ``step1_allow_spacing_relax`` (halve the spacing
    when no candidate respects it), ``beta`` (Boltzmann sharpness, 1/px).
    DONE rules: ``done_on_streak_successes`` / ``done_on_streak_length``, ``noimprove_N`` /
    ``noimprove_eps``, ``stability_N`` / ``stability_std``, ``N_conv`` / ``recurring_tol`` (fraction of
    ``radius_mm``) / ``median_rel_tol``.
    Step-2: ``step2_algorithm`` (``dxdy`` or ``none``), ``damping_factor`` (lambda),
    ``dxdy_unit_to_mm`` (factor from ``per_frame_dx_dy.csv`` units to mm; the seed's 1e3).
    Policy: ``policy`` (``model``: centre model of :mod:`ptylib.ici.proposer.centre_model`, falling back to the
    hillmap; ``hillmap``: the seed's switching logic). Model knobs: ``model_probe_frac`` (radius of the
    probe triangle around the first centre, as a fraction of ``radius_mm``), ``model_min_successes``
    (successes before fitting), ``model_noise_frac`` (relative wRMSD noise of one run),
    ``model_max_centre_se_frac`` (as a fraction of ``radius_mm``) /
    ``model_min_curvature_t`` / ``model_max_chi`` (conditioning and fit-quality limits),
    ``model_refine_sigma_mm`` (error of one refined centre per axis, mm) and ``model_refine_tol_mm``
    (stop when the combined refined centre's standard error is below this, mm) and
    ``model_repeat_tol_mm`` (stop when a run made at the previous refined centre refines to within
    this distance of it again: a deterministic indexer, mm).
    ``spiral`` and ``random`` are the study's baselines (:mod:`ptylib.ici.proposer.baselines`): a fixed budget of
    ``baseline_runs`` runs per event (the first centre included) on a spiral or uniform in the disk.
    """

    radius_mm: float = 0.05
    min_spacing_mm: float = 0.0005
    seed: int = 1337
    step1_A0: float = 2.0
    step1_hill_amp_frac: float = 5.0
    step1_drop_amp_frac: float = 0.1
    step1_candidates: int = 8192
    step1_explore_floor: float = 1e-5
    step1_allow_spacing_relax: bool = False
    beta: float = 10.0
    done_on_streak_successes: int = 2
    done_on_streak_length: int = 5
    noimprove_N: int = 2
    noimprove_eps: float = 0.02
    stability_N: int = 3
    stability_std: float = 0.05
    N_conv: int = 3
    recurring_tol: float = 0.1
    median_rel_tol: float = 0.1
    step2_algorithm: str = "dxdy"
    damping_factor: float = 0.8
    dxdy_unit_to_mm: float = 1e3
    policy: str = "model"
    model_probe_frac: float = 1.0
    model_min_successes: int = 4
    model_noise_frac: float = 0.05
    model_max_centre_se_frac: float = 0.4
    model_min_curvature_t: float = 2.0
    model_max_chi: float = 3.0
    model_refine_sigma_mm: float = 0.004
    model_refine_tol_mm: float = 0.0025
    model_repeat_tol_mm: float = 0.001
    baseline_runs: int = 6

    def __post_init__(self) -> None:
        _positive(self, "radius_mm", "step1_A0", "dxdy_unit_to_mm")
        _non_negative(self, "min_spacing_mm", "step1_hill_amp_frac", "step1_drop_amp_frac", "step1_explore_floor",
                      "beta", "noimprove_eps", "stability_std", "recurring_tol", "median_rel_tol")
        _integer(self, "seed", minimum=0)
        _integer(self, "step1_candidates", minimum=1)
        _integer(self, "done_on_streak_successes", minimum=0)
        for name in ("done_on_streak_length", "noimprove_N", "stability_N", "N_conv"):
            _integer(self, name, minimum=1)
        if not isinstance(self.step1_allow_spacing_relax, bool):
            raise TypeError(f"step1_allow_spacing_relax must be true or false, got {self.step1_allow_spacing_relax!r}")
        if self.step2_algorithm not in STEP2_ALGORITHMS:
            raise ValueError(f"step2_algorithm must be one of {', '.join(STEP2_ALGORITHMS)}, "
                             f"got {self.step2_algorithm!r}")
        if not (0.0 < self.damping_factor <= 1.0):
            raise ValueError(f"damping_factor must lie in (0, 1], got {self.damping_factor!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        _positive(self, "model_probe_frac", "model_noise_frac", "model_max_centre_se_frac", "model_max_chi",
                  "model_refine_sigma_mm", "model_refine_tol_mm")
        _non_negative(self, "model_repeat_tol_mm")
        if self.model_probe_frac > 1.0:  # probes stay in the disk
            raise ValueError(f"model_probe_frac must lie in (0, 1], got {self.model_probe_frac!r}")
        _non_negative(self, "model_min_curvature_t")
        # Four parameters (a, k, centre x, y): fewer successes cannot determine the model.
        _integer(self, "model_min_successes", minimum=4)
        _integer(self, "baseline_runs", minimum=2)
        if self.min_spacing_mm >= self.radius_mm:
            raise ValueError(f"min_spacing_mm ({self.min_spacing_mm}) must be smaller than radius_mm "
                             f"({self.radius_mm})")

    def to_dict(self) -> dict[str, Any]:
        """The knobs as a JSON-ready dict (for manifests and the state sidecar)."""
        return asdict(self)

    def digest(self) -> str:
        """Short sha256 of the knobs: proposals made with other knobs are recognised and redone.

        With ``policy="hillmap"`` only the seed's knobs enter it, so the hillmap's random streams (and
        therefore its proposals) are those of versions that had no model policy; the model policy's
        leaves out the baselines' knobs; knobs of :data:`LATE_KNOBS` enter only when not at their default.
        """
        unused = set(_UNUSED_KNOBS.get(self.policy, ()))
        unused.update(name for name in LATE_KNOBS if getattr(self, name) == _DEFAULTS[name])
        knobs = {name: value for name, value in self.to_dict().items() if name not in unused}
        text = json.dumps(knobs, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_DEFAULTS = {f.name: f.default for f in fields(ProposerOptions)}


def _number(options: ProposerOptions, name: str) -> float:
    value = getattr(options, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _positive(options: ProposerOptions, *names: str) -> None:
    for name in names:
        if _number(options, name) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(options, name)!r}")


def _non_negative(options: ProposerOptions, *names: str) -> None:
    for name in names:
        if _number(options, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(options, name)!r}")


def _integer(options: ProposerOptions, name: str, *, minimum: int) -> None:
    value = getattr(options, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
