"""Sim-lines diagnostics kernels on small synthetic arrays with known answers (no training here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptylib.ptycho.diagnostics import comparison
from ptylib.ptycho.diagnostics.ab import grid_summary, grouping_rows
from ptylib.ptycho.diagnostics.data import simulate_split_group
from ptylib.ptycho.diagnostics.lines import lines_object
from ptylib.ptycho.diagnostics.probe_stats import probe_normalisation_ab
from ptylib.ptycho.diagnostics.reassembly import (
    lost_energy_fraction,
    reassembly_limits,
    stitch_frame,
    stitch_on_canvas,
)
from ptylib.ptycho.diagnostics.report import scenario_checks
from ptylib.ptycho.diagnostics.scenario import builtin_scenario, load_custom_probe
from ptylib.ptycho.diagnostics.training import first_nan
from ptylib.ptycho.stitch import window

SMALL = {"patch_size_px": 32, "n_images": 100, "n_groups": 40, "scan_step_px": 6}


def _expected_lost(offsets: np.ndarray, energy: np.ndarray, n_px: int, side: int) -> float:
    """Independent count: each patch's rows/cols overlapping [0, side) by interval arithmetic."""
    centre = (side - 1) / 2
    start = np.round(centre + offsets + 0.5) - n_px // 2  # (M, 2) as (x, y)
    overlap = np.clip(np.minimum(start + n_px, side) - np.maximum(start, 0), 0, None)
    kept = overlap[:, 0] * overlap[:, 1] * energy
    return 1.0 - kept.sum() / (n_px * n_px * energy).sum()


def test_reassembly_flags_undersized_canvas_and_measures_lost_energy() -> None:
    rng = np.random.default_rng(3)
    n_px, offsets = 16, rng.uniform(-30, 30, size=(50, 2))
    energy = rng.uniform(0.5, 2.0, size=50)
    patches = np.sqrt(energy)[:, None, None] * np.ones((50, n_px, n_px), np.complex64)
    required = math.ceil(n_px + 2 * np.abs(offsets).max())
    fit = reassembly_limits(patches, offsets, required)
    assert fit["canvas_required_px"] == required and fit["fits_canvas"] and fit["lost_energy_fraction"] == 0.0
    small = reassembly_limits(patches, offsets, 40)
    expected = _expected_lost(offsets, energy, n_px, 40)
    assert not small["fits_canvas"] and small["canvas_used_px"] == 40
    assert 0.3 < expected < 0.9
    assert small["lost_energy_fraction"] == pytest.approx(expected, rel=0.01)
    # One patch half off the canvas loses half its energy.
    assert lost_energy_fraction(np.ones((1, 16, 16)), np.array([[8.0, 0.0]]), 16) == pytest.approx(0.5)


def test_stitch_frame_puts_truth_patches_back_on_the_object() -> None:
    data = simulate_split_group(builtin_scenario("gs2_ideal", **SMALL))
    test = data.test
    members = test["group_indices"]
    patches = test["Y"][members].reshape(-1, 32, 32)
    x, y = test["xcoords"][members].ravel(), test["ycoords"][members].ravel()
    frame = stitch_frame(x, y, 32, None)
    canvas, weight = stitch_on_canvas(patches, frame.offsets_xy, frame.side)
    truth = window(test["objectGuess"], frame.origin_yx, (frame.side, frame.side))
    assert frame.side >= math.ceil(32 + 2 * np.abs(frame.offsets_xy).max())
    assert np.abs(canvas - truth)[weight > 0].max() < 1e-6
    clipped = stitch_frame(x, y, 32, 40)
    assert reassembly_limits(patches, clipped.offsets_xy, clipped.side)["lost_energy_fraction"] > 0.2


def test_best_fit_scalar_recovers_known_factor() -> None:
    truth = np.abs(lines_object(128, 30, rng=np.random.default_rng(0)))
    noise = np.random.default_rng(1).normal(0, 0.002, truth.shape)
    predicted = truth / 1.878 + noise
    assert comparison.best_fit_scalar(predicted, truth) == pytest.approx(1.878, rel=2e-3)
    bias = comparison.bias_stats(predicted.astype(np.complex64), truth.astype(np.complex64))
    assert bias["best_fit_scalar"] == pytest.approx(1.878, rel=2e-3)
    assert bias["mean_ratio"] == pytest.approx(1 / 1.878, rel=5e-3)
    assert bias["rescaled_amplitude"]["mae"] < 0.01 < bias["difference"]["median"] * -1
    factor = comparison.rescale_factor("lsq", predicted, truth, model_scale=None, data_scale=None)
    rescaled = comparison.rescale_amplitude(predicted.astype(np.complex64), factor)
    assert np.abs(rescaled).mean() == pytest.approx(truth.mean(), rel=5e-3)


def test_comparison_removes_global_phase_and_scores_blank_and_shifted_images_low() -> None:
    obj = lines_object(128, 30, rng=np.random.default_rng(0))
    same = comparison.compare_to_truth(obj * np.exp(0.7j), obj)
    assert same["phase"]["pearson"] == pytest.approx(1.0) and same["phase"]["mae"] < 1e-5
    blank = comparison.compare_to_truth(np.ones_like(obj), obj)
    assert blank["amplitude"]["pearson"] == 0.0
    shifted = comparison.compare_to_truth(np.roll(obj, 8, axis=1), obj)
    assert shifted["amplitude"]["pearson"] < 0.2 and shifted["phase"]["pearson"] < 0.2


def test_first_nan_from_history_and_from_a_stopped_run() -> None:
    history = [{"epoch": 1, "loss": 3.0}, {"epoch": 2, "loss": 2.0}, {"epoch": 3, "loss": float("nan")}]
    assert first_nan(history) == {"epoch": 3, "tensor": "loss", "message": None}
    assert first_nan(history[:2]) is None
    stopped = first_nan(history[:2], "train.npz: pinn gs1: epoch 3: gradient of 'dec/kernel' became non-finite")
    assert stopped["epoch"] == 3 and stopped["tensor"] == "gradient of 'dec/kernel'"


def test_report_checks_fail_on_nan_clipping_and_dim_amplitudes() -> None:
    ok_fit = {"fits_canvas": True, "canvas_used_px": 63, "canvas_required_px": 63, "lost_energy_fraction": 0.0}
    good = {"amplitude": {"pearson": 0.8}, "phase": {"pearson": 0.7}}
    checks = scenario_checks({"history": [{"epoch": 1, "loss": 1.0}], "nan": None}, ok_fit, good,
                             {"mean_ratio": 1.05}, min_pearson=0.2, bias_tolerance=0.25)
    assert all(c["passed"] for c in checks) and len(checks) == 5
    clipped = ok_fit | {"fits_canvas": False, "canvas_used_px": 40, "lost_energy_fraction": 0.6}
    dim = scenario_checks({"history": [], "nan": {"epoch": 2, "tensor": "loss"}}, clipped, good,
                          {"mean_ratio": 1 / 12}, min_pearson=0.2, bias_tolerance=0.25)
    assert [c["passed"] for c in dim] == [False, False, True, True, False]


def test_probe_normalisation_branches_differ_by_one_scalar() -> None:
    data = simulate_split_group(builtin_scenario("gs1_ideal", **SMALL))
    record = probe_normalisation_ab(data.probe_raw, data.train["probeGuess"])
    assert record["stats"]["unit_power"]["l2_norm"] == pytest.approx(1.0, rel=1e-5)
    ratios = record["ratio_dose_scaled_over_unit"]
    assert ratios["amplitude_max"] == pytest.approx(ratios["l2_norm"], rel=1e-4)
    assert ratios["l2_norm"] > 1
    assert record["normalised_max_abs_delta"] < 1e-5


def test_grouping_ab_reports_too_few_points_as_a_result() -> None:
    rows = grouping_rows([builtin_scenario("gs1_ideal", **SMALL), builtin_scenario("gs2_ideal", **SMALL)])
    by_config = {(r["config"], r["split"]): r for r in rows}
    gs2 = by_config[("gs2_ideal", "train")]
    assert gs2["status"] == "ok" and gs2["groups_achieved"] == 40 and gs2["group_size"] == 4
    assert gs2["relative.x.max"] > 0 and gs2["neighbor_index_min"] >= 0
    legacy = by_config[("gs2_ideal on 2 patterns/split", "train")]
    assert legacy["status"] == "failed" and legacy["groups_achieved"] == 0 and "fewer than K=4" in legacy["error"]


def test_bad_scenarios_give_one_line_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown scenario 'gs3'; choose one of gs1_ideal, gs2_ideal"):
        builtin_scenario("gs3")
    with pytest.raises(ValueError, match=r"neighbor_count K=3 must be ≥ C=gridsize²=4"):
        builtin_scenario("gs2_ideal", neighbor_count=3)
    with pytest.raises(ValueError, match="a custom probe needs probe_npz"):
        builtin_scenario("gs1_custom")
    np.savez(tmp_path / "real.npz", probeGuess=np.ones((64, 64), np.float32))
    with pytest.raises(ValueError, match=r"real.npz: key 'probeGuess': expected a complex64 or complex128 array, got float32"):
        load_custom_probe(tmp_path / "real.npz", 64)
    np.savez(tmp_path / "small.npz", probe=np.ones((32, 32), np.complex64))
    with pytest.raises(ValueError, match=r"small.npz: key 'probe': expected shape \(64, 64\).*got \(32, 32\)"):
        load_custom_probe(tmp_path / "small.npz", 64)
    np.savez(tmp_path / "none.npz", other=np.ones(3))
    with pytest.raises(ValueError, match="expected a key probeGuess or probe, got keys other"):
        load_custom_probe(tmp_path / "none.npz", 64)


def test_lines_object_is_seeded_and_in_range() -> None:
    a = lines_object(96, 20, rng=np.random.default_rng(5))
    b = lines_object(96, 20, rng=np.random.default_rng(5))
    assert a.dtype == np.complex64 and np.array_equal(a, b)
    assert np.abs(a).min() >= 0.5 - 1e-6 and np.abs(a).max() == pytest.approx(1.0, abs=1e-6)
    assert 0.0 <= np.angle(a).min() and np.angle(a).max() == pytest.approx(1.0, abs=1e-6)


def test_grid_summary_puts_both_scenarios_checks_side_by_side(tmp_path) -> None:
    reports = {"grid": {"passed": True, "checks": [{"name": "phase Pearson r vs truth", "value": 0.5}]},
               "nongrid": {"passed": False, "checks": [{"name": "phase Pearson r vs truth", "value": 0.1}]}}
    record = grid_summary(tmp_path, reports)
    assert [r["passed"] for r in record["rows"]] == [True, False]
    table = (tmp_path / "ab_grid.md").read_text()
    assert "| grid | True | 0.5 |" in table and "| nongrid | False | 0.1 |" in table


def test_custom_probe_scenario_simulates_with_the_loaded_probe(tmp_path) -> None:
    from ptylib.ptycho.probes import focused_probe

    probe = 3.0 * focused_probe(32, rng=np.random.default_rng(9), aberration_rad=1.0)
    np.savez(tmp_path / "lsqml.npz", probe=probe, object=np.ones((8, 8), np.complex64))
    options = builtin_scenario("gs2_custom", probe_npz=str(tmp_path / "lsqml.npz"), **SMALL)
    data = simulate_split_group(options)
    assert np.array_equal(data.probe_raw, probe.astype(np.complex64))
    record = probe_normalisation_ab(data.probe_raw, data.train["probeGuess"])
    assert record["stats"]["raw"]["l2_norm"] == pytest.approx(3.0, rel=1e-5)
    assert record["normalised_max_abs_delta"] < 1e-5
