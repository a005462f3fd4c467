"""Phase A: the study design constants, their validation, JSON round trip and profiles."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from ptylib.ptycho.options import StudyDesign, min_center_spacing_px


def test_defaults_are_the_seed_numbers() -> None:
    design = StudyDesign()
    assert design.doses == (1e3, 1e4, 1e5)
    assert design.gridsizes == (1, 2)
    assert (design.neighbor_count, design.group_size) == (7, 4)
    assert design.overlap_views == {"dense": 0.7, "sparse": 0.2}
    assert design.patch_size_px == 128 and design.split_axis == "y"
    assert (design.seed_simulation, design.seed_grouping, design.seed_subsampling) == (42, 123, 456)
    assert (design.ms_ssim_sigma, design.emphasize_phase, design.report_amplitude) == (1.0, True, True)
    assert design.frc_threshold == 0.5 and design.lsqml_epochs == 100
    assert design.spacing_px("dense") == pytest.approx(38.4)
    assert design.spacing_px("sparse") == pytest.approx(102.4)


def test_json_round_trip_and_frozen() -> None:
    design = StudyDesign.for_profile("small")
    text = design.model_dump_json()
    assert StudyDesign.model_validate_json(text) == design
    assert json.loads(text)["simulation"]["object_size_px"] == 256
    with pytest.raises(ValidationError):
        design.patch_size_px = 32  # type: ignore[misc]


@pytest.mark.parametrize("profile, n_px", [("smoke", 32), ("small", 64), ("full", 128)])
def test_profiles(profile: str, n_px: int) -> None:
    design = StudyDesign.for_profile(profile)
    assert design.profile == profile and design.patch_size_px == n_px


@pytest.mark.parametrize("update, message", [
    ({"neighbor_count": 3}, "K=3 must be ≥ C=gridsize²=4"),
    ({"doses": (1e3, 0.0)}, "doses must be positive"),
    ({"doses": (-5.0,)}, "doses must be positive"),
    ({"doses": ()}, "at least one dose"),
    ({"overlap_views": {"dense": 1.0}}, r"overlap fraction must lie in \[0, 1\)"),
    ({"overlap_views": {"dense": -0.1}}, r"overlap fraction must lie in \[0, 1\)"),
    ({"patch_size_px": 63}, "must be even"),
    ({"gridsizes": (0, 2)}, "gridsizes"),
    ({"bogus": 1}, "Extra inputs are not permitted"),
])
def test_bad_designs_raise(update: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StudyDesign.model_validate(StudyDesign().model_dump() | update)


def test_spacing_rule_rejects_fraction_outside_unit_interval() -> None:
    assert min_center_spacing_px(0.0, 64) == 64.0
    for bad in (1.0, 1.5, -0.01, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            min_center_spacing_px(bad, 128)


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        StudyDesign.for_profile("huge")
