"""Diffuse pipeline kernels on small synthetic arrays with known answers (fast, no Prefect)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from ptylib.diffuse.accumulator import VoxelAccumulator, iter_observations, read_counts
from ptylib.diffuse.accuracy import misorientation_deg, pearson
from ptylib.diffuse.binning import CHUNK_ROWS, bin_observations
from ptylib.diffuse.experiment import StillExperiment, read_experiment, write_experiment
from ptylib.diffuse.grid import GlobalVoxelGrid, build_grid, read_grid, write_grid
from ptylib.diffuse.images import check_sizes, read_still
from ptylib.diffuse.masks import compute_masks
from ptylib.diffuse.options import (
    BraggMaskOptions,
    GridOptions,
    ScalingOptions,
    StaticMaskOptions,
    options_from_json,
)
from ptylib.diffuse.pixel_geometry import pixel_geometry, reference_solid_angle_sr
from ptylib.diffuse.scaling import refine_scaling
from ptylib.io.minicbf import MiniCbfHeader, write_minicbf

CELL_A = np.diag([1 / 36.0, 1 / 42.0, 1 / 48.0])


def _experiment(size: int = 64, centre_px: float = 32.0, a_matrix: np.ndarray = CELL_A) -> StillExperiment:
    pixel = 0.172
    return StillExperiment(wavelength_A=1.0, s0_direction=np.array([0.0, 0.0, -1.0]),
                           origin_mm=np.array([-centre_px * pixel, centre_px * pixel, -100.0]),
                           fast_axis=np.array([1.0, 0.0, 0.0]), slow_axis=np.array([0.0, -1.0, 0.0]),
                           pixel_size_mm=(pixel, pixel), image_size=(size, size), a_matrix=a_matrix)


def test_experiment_file_round_trip_and_beam_centre(tmp_path: Path) -> None:
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    experiment = _experiment(centre_px=30.25, a_matrix=rotation @ CELL_A)
    path = write_experiment(tmp_path / "e.expt", experiment, "still.cbf")
    back = read_experiment(path)
    np.testing.assert_allclose(back.a_matrix, experiment.a_matrix, atol=1e-12)
    np.testing.assert_allclose(back.beam_centre_px(), (30.25, 30.25), atol=1e-9)
    np.testing.assert_allclose(back.cell(), (36, 42, 48, 90, 90, 90), atol=1e-9)
    assert json.loads(path.read_text())["beam"][0]["direction"] == [0.0, 0.0, 1.0]  # DIALS: toward the source


def test_pixel_geometry_formulas() -> None:
    experiment = _experiment()
    geometry = pixel_geometry(experiment)
    q = geometry.q.reshape(64, 64, 3)
    # Pixel (31, 31) has its centre half a pixel from the beam in fast and slow.
    assert np.linalg.norm(q[31, 31]) == pytest.approx(np.hypot(0.086, 0.086) / 100.0, rel=1e-3)
    two_theta = np.arccos(1.0 / np.sqrt(1 + (np.hypot(0.086 * 63, 0.086 * 63) / 100) ** 2))
    corner = geometry.polarization.reshape(64, 64)[0, 0]
    assert corner == pytest.approx((1 + np.cos(two_theta) ** 2) / 2, rel=1e-3)  # unpolarised
    solid = geometry.solid_angle_sr.reshape(64, 64)
    assert solid.max() == pytest.approx(reference_solid_angle_sr(experiment), rel=1e-4)
    polarised = pixel_geometry(experiment, kahn_factor=1.0).polarization.reshape(64, 64)
    assert polarised[32, 0] < polarised[0, 32]  # E along lab x (= fast): scattering along x is weakest


def test_grid_indices_round_trip_bounds_and_json(tmp_path: Path) -> None:
    grid = build_grid([CELL_A], 0.25, GridOptions(ndiv_h=2, ndiv_k=3, ndiv_l=1))
    assert grid.d_min_A == pytest.approx(4.0)
    assert grid.hkl_max == (9, 11, 12)
    hkl = np.array([[1.0, -2.0, 3.0], [0.49, 1 / 3, -12.0], [9.6, 0.0, 0.0]])
    index = grid.voxel_indices(hkl)
    assert index[2] == -1
    np.testing.assert_allclose(grid.voxel_hkl(index[:2]), [[1.0, -2.0, 3.0], [0.5, 1 / 3, -12.0]])
    q_mag = np.array([0.1, 0.26, 0.1])
    assert grid.voxel_indices(hkl, q_mag)[1] == -1  # beyond d_min
    assert read_grid(write_grid(tmp_path / "g.json", grid)) == grid


def _reference_bins(grid: GlobalVoxelGrid, q: np.ndarray, a_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid's definition written plainly (full-length arrays, ravel_multi_index): what the fast path must match."""
    scaled = np.rint(q @ (np.linalg.inv(a_matrix).T * np.asarray(grid.ndiv)).astype(q.dtype))
    q_mag = np.sqrt(np.einsum("ij,ij->i", q, q))
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(scaled).all(axis=1) & (np.abs(scaled) < 2**30).all(axis=1)
        index = np.where(finite[:, None], scaled, 0).astype(np.int64) + np.asarray(grid.hkl_max) * np.asarray(grid.ndiv)
        inside = finite & ((index >= 0) & (index < np.asarray(grid.shape))).all(axis=1) & (q_mag <= 1.0 / grid.d_min_A)
    flat = np.full(len(q), -1, dtype=np.int64)
    flat[inside] = np.ravel_multi_index(tuple(index[inside].T), grid.shape)
    return flat, q_mag


def test_chunked_binning_matches_the_plain_definition() -> None:
    # Power-of-two cell and ndiv: q = (j + 1/2) / 64 is exact in float32, so those rows sit exactly on
    # voxel boundaries (rint's ties-to-even decides); others lie outside the bounds, beyond d_min, or are
    # NaN / huge; 2.5 chunks so chunk edges are crossed.
    a_matrix = np.diag([1 / 32.0, 1 / 64.0, 1 / 16.0])
    grid = build_grid([a_matrix], 0.2, GridOptions(ndiv_h=2, ndiv_k=2, ndiv_l=2))
    rng = np.random.default_rng(3)
    n = 5 * CHUNK_ROWS // 2
    q = rng.uniform(-0.22, 0.22, size=(n, 3)).astype(np.float32)
    ties = rng.integers(-8, 8, size=(n // 4, 3)) + 0.5
    q[: n // 4] = ties / np.array([64.0, 128.0, 32.0])
    q[n // 4] = np.nan
    q[n // 4 + 1] = [1e30, 0.0, 0.0]
    voxel, q_mag = bin_observations(grid, q, a_matrix)
    expected_voxel, expected_q_mag = _reference_bins(grid, q, a_matrix)
    assert voxel.dtype == np.int32
    np.testing.assert_array_equal(voxel, expected_voxel)
    np.testing.assert_array_equal(q_mag, expected_q_mag)  # float32: same rounding as the einsum
    outside = voxel < 0
    assert 0.2 < outside.mean() < 0.8 and outside[n // 4] and outside[n // 4 + 1]
    np.testing.assert_array_equal(np.abs(grid.voxel_hkl(voxel[: n // 4][~outside[: n // 4]]) * 2 % 2), 0.0)
    # A rotated still in float64: indices equal, |q| to rounding.
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    q64 = q[n // 4 + 2:].astype(np.float64)
    voxel64, q_mag64 = bin_observations(grid, q64, rotation @ a_matrix)
    expected_voxel, expected_q_mag = _reference_bins(grid, q64, rotation @ a_matrix)
    np.testing.assert_array_equal(voxel64, expected_voxel)
    np.testing.assert_allclose(q_mag64, expected_q_mag, rtol=1e-15)


def test_grid_over_two_to_the_31_voxels_uses_int64_indices() -> None:
    grid = GlobalVoxelGrid(cell_avg=(10.0, 10.0, 10.0, 90.0, 90.0, 90.0), space_group="P 1", d_min_A=0.01,
                           hkl_max=(1000, 1000, 1000), ndiv=(1, 1, 1))
    hkl = np.array([[1000.0, 1000.0, 1000.0], [-1000.0, 0.0, 3.0], [1000.6, 0.0, 0.0]])
    index = grid.voxel_indices(hkl)
    assert index.dtype == np.int64
    assert index.tolist() == [grid.n_voxels - 1, 3 + 1000 + 2001 * 1000, -1]


def test_grid_and_option_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="d_min_target"):
        GridOptions(d_min_target=0.0)
    with pytest.raises(ValidationError, match="ndiv_h"):
        GridOptions(ndiv_h=0)
    with pytest.raises(ValueError, match=r"--grid-config-json .*field 'd_min_target'"):
        options_from_json(GridOptions, '{"d_min_target": -1}', option="--grid-config-json")
    bad = tmp_path / "grid.json"
    bad.write_text(json.dumps({**build_grid([CELL_A], 0.25, GridOptions()).to_json(), "d_min_A": 0}))
    with pytest.raises(ValueError, match=r"grid.json: field 'd_min_A' must be > 0"):
        read_grid(bad)
    with pytest.raises(ValueError, match="smoother_points"):
        ScalingOptions(smoother_points=1)


def _observations(rng: np.random.Generator, n_stills: int = 12, n_voxels: int = 400, per_still: int = 3000):
    true_b = rng.uniform(0.5, 1.5, n_stills)
    true_i = rng.uniform(10, 100, n_voxels)
    rows = []
    for still in range(1, n_stills + 1):
        voxel = rng.integers(0, n_voxels, per_still)
        expected = true_b[still - 1] * true_i[voxel]
        counts = rng.poisson(expected).astype(np.float32)
        rows.append((still, voxel, counts, np.sqrt(np.maximum(counts, 1)), rng.uniform(0.05, 0.3, per_still)))
    return true_b, true_i, rows


@pytest.mark.parametrize("chunk", [10_000, 4_000_000])
def test_scaling_recovers_scales_and_intensities(tmp_path: Path, chunk: int) -> None:
    true_b, true_i, rows = _observations(np.random.default_rng(1))
    with VoxelAccumulator(tmp_path / "acc.h5", true_i.size) as accumulator:
        for still, voxel, counts, sigma, q_mag in rows:
            accumulator.add(still, voxel, counts, sigma, q_mag)
    counts, total = read_counts(tmp_path / "acc.h5")
    assert total == sum(r[1].size for r in rows) and counts.sum() == total
    assert sum(c["intensity"].size for c in iter_observations(tmp_path / "acc.h5", 5000)) == total
    result = refine_scaling(tmp_path / "acc.h5", ScalingOptions(chunk_observations=chunk, max_iterations=50))
    assert pearson(result.model.b, true_b) > 0.999
    assert np.exp(np.mean(np.log(result.model.b))) == pytest.approx(1.0)  # the gauge
    assert np.abs(result.model.control_values - 1).max() < 0.05  # no resolution trend in the data
    ratio = result.intensity / true_i
    assert np.std(ratio) / np.mean(ratio) < 0.05
    assert 0.8 < result.residuals["rms"] < 1.2


def test_accumulator_leaves_no_file_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), VoxelAccumulator(tmp_path / "acc.h5", 10) as accumulator:
        accumulator.add(1, np.array([1, 2, -1]), np.ones(3), np.ones(3), np.ones(3))
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_masks_static_bragg_and_total() -> None:
    experiment = _experiment()
    image = np.full((64, 64), 50, dtype=np.int32)
    image[5, 5] = -1
    image[6, 40] = 2_000_000
    image[50, 50] = 90_000  # isolated hot pixel
    masks = compute_masks(image, experiment, StaticMaskOptions(beamstop_radius_px=3, rectangles=((10, 12, 0, 64),)),
                          BraggMaskOptions(radius_hkl=0.1, dilation_px=0), saturation_counts=1_000_000)
    good = masks.static_good
    assert not good[5, 5] and not good[6, 40] and not good[50, 50] and not good[32, 32] and not good[11, 3]
    assert good[40, 20]
    assert masks.bragg[31, 31]  # near q = 0, hkl = 0 is a lattice point
    assert masks.total_diffuse.sum() == (good & ~masks.bragg).sum()


def test_bad_cbf_and_size_mismatch_are_one_line_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.cbf"
    broken.write_bytes(b"###CBF: not really\n")
    with pytest.raises(ValueError, match=r"broken.cbf: .*CBF") as error:
        read_still(broken)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="missing.cbf: cannot read CBF image"):
        read_still(tmp_path / "missing.cbf")
    header = MiniCbfHeader(pixel_size_mm=0.172, distance_mm=100.0, wavelength_A=1.0, beam_center_fast_px=16,
                           beam_center_slow_px=16)
    cbf = write_minicbf(tmp_path / "s.cbf", np.zeros((32, 48), dtype=np.int32), header)
    image, cutoff = read_still(cbf)
    assert cutoff == header.count_cutoff
    with pytest.raises(ValueError, match=r"e.expt: field 'image_size' is \[64, 64\] .*s.cbf is 48 x 32"):
        check_sizes(image, _experiment(), cbf, "e.expt")


def test_misorientation_ignores_equivalent_settings() -> None:
    flip = np.diag([-1.0, -1.0, 1.0])
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(0.01), -np.sin(0.01)], [0.0, np.sin(0.01), np.cos(0.01)]])
    assert misorientation_deg(tilt @ CELL_A @ flip, CELL_A) == pytest.approx(np.degrees(0.01), rel=1e-6)


def test_gauss_lattice_shape_matches_nanobragg_formula() -> None:
    import torch

    from ptylib.diffraction.lattice import lattice_factor

    hkl = torch.tensor([[1.0, 2.0, 3.0], [1.05, 2.0, 2.98]], dtype=torch.float64)
    n = torch.tensor([10.0, 10.0, 10.0], dtype=torch.float64)
    values = lattice_factor(hkl, n, "gauss")
    assert values[0].item() == pytest.approx(1000.0)
    assert values[1].item() == pytest.approx(1000.0 * np.exp(-(0.5**2 + 0.2**2) / 0.63), rel=1e-9)


def test_empty_diffuse_mask_is_a_one_line_error_and_writes_nothing(tmp_path: Path) -> None:
    from ptylib.diffuse.layout import RunLayout
    from ptylib.diffuse.phase12 import phase1_known

    header = MiniCbfHeader(pixel_size_mm=0.172, distance_mm=100.0, wavelength_A=1.0, beam_center_fast_px=32,
                           beam_center_slow_px=32)
    cbf = write_minicbf(tmp_path / "s.cbf", np.full((64, 64), 10, dtype=np.int32), header)
    expt = write_experiment(tmp_path / "s.expt", _experiment(), str(cbf))
    layout = RunLayout(tmp_path / "run")
    with pytest.raises(ValueError, match=r"s.cbf: field 'total_diffuse' mask is empty") as error:
        phase1_known(cbf, expt, layout, 1, StaticMaskOptions(rectangles=((0, 64, 0, 64),)), BraggMaskOptions())
    assert "\n" not in str(error.value)
    assert not layout.masks(1).exists()
    result = phase1_known(cbf, expt, layout, 1, StaticMaskOptions(), BraggMaskOptions())
    assert result["total_diffuse_px"] > 2000
    stamp = layout.masks(1).with_name(layout.masks(1).name + ".done.json")
    assert json.loads(stamp.read_text())["options"]["geometry"] == "known"
