"""Simulator invariances, known values, gradients and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

torch = pytest.importorskip("torch")

from ptylib.diffraction.cell import misset_rotation, oriented_real_vectors, real_from_reciprocal, reciprocal_vectors  # noqa: E402
from ptylib.diffraction.detector import auto_oversample, default_beam_center_mm, pixel_geometry  # noqa: E402
from ptylib.diffraction.lattice import StructureFactors, shape_transform  # noqa: E402
from ptylib.diffraction.mosaic import Ran1, mosaic_draws, mosaic_rotations  # noqa: E402
from ptylib.diffraction.options import BeamOptions, CrystalOptions, DetectorOptions, SimulationOptions  # noqa: E402
from ptylib.diffraction.simulator import Simulator  # noqa: E402


def _options(crystal: dict | None = None, detector: dict | None = None, beam: dict | None = None) -> SimulationOptions:
    return SimulationOptions(
        crystal=CrystalOptions(**{"cell_a_A": 50.0, "cell_b_A": 50.0, "cell_c_A": 50.0, "n_cells": (6, 6, 6),
                                  **(crystal or {})}),
        detector=DetectorOptions(**{"fpixels": 48, "spixels": 48, "pixel_size_mm": 0.1, "distance_mm": 100.0,
                                    **(detector or {})}),
        beam=BeamOptions(**{"fluence_photons_per_m2": 1e28, **(beam or {})}),
    )


def _render(options: SimulationOptions, **kwargs: object) -> np.ndarray:
    with torch.no_grad():
        return Simulator(options).render(**kwargs).numpy()


def test_zero_misset_centred_cubic_cell_gives_a_symmetric_pattern() -> None:
    # Beam on the geometric centre (nanoBragg's default is one pixel off it), one sample per pixel.
    centred = {"beam_center_fast_mm": 2.4, "beam_center_slow_mm": 2.4, "oversample": 1}
    image = _render(_options(detector=centred, beam={"apply_polarization": False}))
    assert image.max() > 100 * image.mean() / image.size  # there are spots
    np.testing.assert_allclose(image, image[::-1, :], rtol=1e-9)
    np.testing.assert_allclose(image, image[:, ::-1], rtol=1e-9)
    np.testing.assert_allclose(image, image.T, rtol=1e-9)
    # Polarisation (E-vector along fast) keeps the mirror symmetries but breaks the fast/slow swap.
    polarised = _render(_options(detector=centred, beam={"kahn_factor": 0.9}))
    np.testing.assert_allclose(polarised, polarised[::-1, ::-1], rtol=1e-9)
    assert not np.allclose(polarised, polarised.T, rtol=1e-6)


def test_spots_sit_at_the_bragg_angle() -> None:
    # Zero misset: b* is along lab y (detector -slow) and c* along lab z (detector +fast). The (0,1,0)
    # and (0,0,1) spots of a 50 Å cell at 1 Å lie at tan(2 theta) * distance from the beam.
    options = _options(crystal={"n_cells": (10, 10, 10)},
                       detector={"fpixels": 121, "spixels": 121, "pixel_size_mm": 0.05,
                                 "beam_center_fast_mm": 3.025, "beam_center_slow_mm": 3.025, "oversample": 3})
    image = _render(options)
    two_theta = 2 * math.asin(1.0 / (2 * 50.0))
    offset_px = 100.0 * math.tan(two_theta) / 0.05
    centre_px = 3.025 / 0.05 - 0.5  # pixel-index coordinate of the beam (pixel i centred at i + 0.5 mm/px)

    def centroid(slow: float, fast: float) -> tuple[float, float]:
        s0, f0 = round(slow), round(fast)
        window = image[s0 - 4 : s0 + 5, f0 - 4 : f0 + 5]
        ss, ff = np.mgrid[s0 - 4 : s0 + 5, f0 - 4 : f0 + 5]
        return float((window * ss).sum() / window.sum()), float((window * ff).sum() / window.sum())

    for slow, fast in ((centre_px - offset_px, centre_px), (centre_px, centre_px + offset_px)):
        found = centroid(slow, fast)
        assert abs(found[0] - slow) < 0.05 and abs(found[1] - fast) < 0.05, (found, (slow, fast))


def test_total_intensity_scales_linearly_with_fluence() -> None:
    low = _render(_options(beam={"fluence_photons_per_m2": 1e27}))
    high = _render(_options(beam={"fluence_photons_per_m2": 7.3e27}))
    np.testing.assert_allclose(high.sum() / low.sum(), 7.3, rtol=1e-12)
    np.testing.assert_allclose(high, 7.3 * low, rtol=1e-12)


def test_float32_matches_float64() -> None:
    options = _options(crystal={"misset_deg": (3.0, -2.0, 7.0), "mosaic_spread_deg": 0.4, "mosaic_domains": 4})
    with torch.no_grad():
        double = Simulator(options).render().numpy()
        single = Simulator(options, dtype=torch.float32).render()
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), double, rtol=2e-3, atol=1e-4 * double.max())


def test_gradients_match_finite_differences_for_cell_misset_and_mosaic() -> None:
    options = _options(crystal={"n_cells": (3, 3, 3), "mosaic_domains": 3, "mosaic_seed": 5},
                       detector={"fpixels": 6, "spixels": 5, "pixel_size_mm": 0.4, "oversample": 1})
    simulator = Simulator(options)
    cell = torch.tensor([50.0, 52.0, 48.0, 88.0, 93.0, 91.0], dtype=torch.float64, requires_grad=True)
    misset = torch.tensor([2.0, -3.0, 4.0], dtype=torch.float64, requires_grad=True)
    spread = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def image(c: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return simulator.render(cell=c, misset_deg=m, mosaic_spread_deg=s)

    assert torch.autograd.gradcheck(image, (cell, misset, spread), eps=1e-6, atol=1e-6, rtol=1e-4)
    image(cell, misset, spread).sum().backward()
    for tensor in (cell, misset, spread):
        assert torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def test_shape_transform_limit_value_and_slope() -> None:
    # Integer h (including large ones, where sin(pi h) in floating point is not 0) give N and slope 0;
    # elsewhere value and slope match sin(pi N h) / sin(pi h) and its central difference.
    h = torch.tensor([0.0, 3.0, -41.0, 1e-3, 0.3, 7.45, -2.3], dtype=torch.float64)
    value, slope = shape_transform(h.clone(), 5.0, slope=True)
    np.testing.assert_array_equal(value[:3].numpy(), [5.0, 5.0, 5.0])
    np.testing.assert_array_equal(slope[:3].numpy(), [0.0, 0.0, 0.0])

    def exact(x: np.ndarray) -> np.ndarray:
        return np.sin(5 * np.pi * x) / np.sin(np.pi * x)

    rest = h[3:].numpy()
    # With N odd, sin(pi N h) / sin(pi h) has period 1, so the reduction changes nothing.
    np.testing.assert_allclose(value[3:].numpy(), exact(rest), rtol=1e-12)
    step = 1e-6
    np.testing.assert_allclose(slope[3:].numpy(), (exact(rest + step) - exact(rest - step)) / (2 * step), rtol=1e-6)


def test_cell_vectors_reproduce_the_cell_and_nanobragg_frame() -> None:
    cell = torch.tensor([70.0, 80.0, 90.0, 75.0, 85.0, 95.0], dtype=torch.float64)
    reciprocal = reciprocal_vectors(cell)
    real = real_from_reciprocal(reciprocal)
    np.testing.assert_allclose((real @ reciprocal.T).numpy(), np.eye(3), atol=1e-12)
    lengths = torch.linalg.vector_norm(real, dim=1).numpy()
    np.testing.assert_allclose(lengths, [70, 80, 90])
    a, b, c = real.numpy()
    angles = [np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v))) for u, v in ((b, c), (a, c), (a, b))]
    np.testing.assert_allclose(angles, [75, 85, 95])
    assert reciprocal[0, 1] == 0 and reciprocal[0, 2] == 0 and reciprocal[1, 2] == 0  # a* along x, b* in x-y


def test_misset_applies_x_then_y_then_z() -> None:
    rotation = misset_rotation(torch.tensor([90.0, 90.0, 0.0], dtype=torch.float64)).numpy()
    # x is unchanged by the x rotation, then the y rotation takes it to -z (x first, then y).
    np.testing.assert_allclose(rotation @ [1, 0, 0], [0, 0, -1], atol=1e-12)
    cell = torch.tensor([50.0, 50.0, 50.0, 90.0, 90.0, 90.0], dtype=torch.float64)
    rotated = oriented_real_vectors(cell, torch.tensor([0.0, 0.0, 90.0], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(rotated[0], [0, 50, 0], atol=1e-10)


def test_mosaic_domains_replay_nanobragg_ran1() -> None:
    # First deviates printed by nanoBragg's own ran1 (compiled from its source) after idum = -1.
    np.testing.assert_allclose(Ran1(1).draw(3), [0.415999353, 0.091964893, 0.75641048], rtol=1e-7)
    axes, fraction = mosaic_draws(6, 42)
    assert fraction[0] == 0.0 and np.all((fraction[1:] > 0) & (fraction[1:] <= 1))
    np.testing.assert_allclose(np.linalg.norm(axes, axis=1), 1.0)
    rotations = mosaic_rotations(torch.tensor(0.8, dtype=torch.float64), torch.as_tensor(axes),
                                 torch.as_tensor(fraction)).numpy()
    np.testing.assert_allclose(rotations[0], np.eye(3), atol=1e-15)
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (6, 3, 3)),
                               atol=1e-12)
    angles = np.degrees(np.arccos(np.clip((np.trace(rotations, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    np.testing.assert_allclose(angles, 0.8 * fraction, atol=1e-6)


def test_nanobragg_defaults_beam_centre_and_oversampling() -> None:
    assert default_beam_center_mm(64, 0.1) == pytest.approx(3.3)  # nanoBragg prints Fbeam=0.0033 m
    demo = _options(crystal={"cell_a_A": 100.0, "cell_b_A": 100.0, "cell_c_A": 100.0, "n_cells": (5, 5, 5)},
                    detector={"fpixels": 64, "spixels": 64})
    assert auto_oversample(demo.crystal, demo.detector, demo.beam) == 2  # nanoBragg: auto-selected 2-fold


def test_per_subpixel_omega_and_polar_equal_binning_a_finer_detector() -> None:
    # With oversample_omega/polar each sub-pixel carries its own solid angle and polarisation, so a
    # 3x oversampled pixel must equal the sum of the 3 x 3 pixels of a detector with 1/3 the pixel size.
    crystal = {"misset_deg": (4.0, 9.0, -6.0), "n_cells": (8, 8, 8)}
    coarse = _render(_options(crystal=crystal, beam={"kahn_factor": 0.7},
                              detector={"fpixels": 16, "spixels": 12, "pixel_size_mm": 0.3, "distance_mm": 20.0,
                                        "beam_center_fast_mm": 2.0, "beam_center_slow_mm": 1.5, "oversample": 3,
                                        "oversample_omega": True, "oversample_polar": True}))
    fine = _render(_options(crystal=crystal, beam={"kahn_factor": 0.7},
                            detector={"fpixels": 48, "spixels": 36, "pixel_size_mm": 0.1, "distance_mm": 20.0,
                                      "beam_center_fast_mm": 2.0, "beam_center_slow_mm": 1.5, "oversample": 1}))
    binned = fine.reshape(12, 3, 16, 3).sum(axis=(1, 3))
    np.testing.assert_allclose(coarse, binned, rtol=1e-10)
    # Without the flags the factors are those of each pixel's first sub-pixel (nanoBragg): 0.2 % off here.
    plain = _render(_options(crystal=crystal, beam={"kahn_factor": 0.7},
                             detector={"fpixels": 16, "spixels": 12, "pixel_size_mm": 0.3, "distance_mm": 20.0,
                                       "beam_center_fast_mm": 2.0, "beam_center_slow_mm": 1.5, "oversample": 3}))
    assert not np.allclose(plain, coarse, rtol=1e-6)
    np.testing.assert_allclose(plain.sum(), coarse.sum(), rtol=5e-3)


def test_default_weights_are_those_of_the_first_subpixel_as_in_nanobragg() -> None:
    # nanoBragg caches omega and polar at sub-pixel (subS, subF) = (0, 0) of every pixel; 25 mm, 1 mm
    # pixels and 4 x 4 sub-pixels make that differ from the pixel centre by percents.
    options = _options(detector={"fpixels": 5, "spixels": 4, "pixel_size_mm": 1.0, "distance_mm": 25.0,
                                 "beam_center_fast_mm": -2.0, "beam_center_slow_mm": -1.0, "oversample": 4},
                       beam={"kahn_factor": 0.9})
    weight = pixel_geometry(options.detector, options.beam, 4).weight.numpy()
    assert weight.shape == (20, 1)
    sub_mm = 0.25
    slow_mm, fast_mm = np.meshgrid(np.arange(4) * 1.0 + sub_mm / 2, np.arange(5) * 1.0 + sub_mm / 2, indexing="ij")
    x, y, z = np.full(slow_mm.shape, 25.0), -1.0 - slow_mm, fast_mm + 2.0  # lab frame: slow = -y, fast = +z
    airpath = np.sqrt(x**2 + y**2 + z**2)
    omega = 1.0 / airpath**2 * 25.0 / airpath
    polar = 0.5 * (1 + (x / airpath) ** 2 - 0.9 * ((z / airpath) ** 2 - (y / airpath) ** 2))
    np.testing.assert_allclose(weight.reshape(4, 5), omega * polar, rtol=1e-13)


def test_structure_factor_table_lookup_and_default() -> None:
    table = StructureFactors.from_reflections(np.array([[0, 0, 1], [1, -1, 2]]), np.array([3.0, 7.0]), default_F=2.0)
    hkl = torch.tensor([[0.2, -0.4, 1.49], [1.3, -0.6, 2.2], [0.0, 0.0, 0.0], [9.0, 0.0, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(table.lookup(*hkl.T).numpy(), [3.0, 7.0, 2.0, 2.0])


@pytest.mark.parametrize(("section", "field", "value"), [
    ("crystal", "cell_a_A", 0.0),
    ("crystal", "cell_c_A", -5.0),
    ("crystal", "cell_beta_deg", 180.0),
    ("crystal", "n_cells", (0, 5, 5)),
    ("crystal", "mosaic_domains", 0),
    ("crystal", "mosaic_spread_deg", math.nan),
    ("crystal", "misset_deg", (0.0, math.inf, 0.0)),
    ("beam", "wavelength_A", math.nan),
    ("beam", "fluence_photons_per_m2", math.inf),
    ("detector", "fpixels", 0),
    ("detector", "spixels", 0),
    ("detector", "pixel_size_mm", 0.0),
])
def test_bad_options_raise_an_error_naming_the_parameter(section: str, field: str, value: object) -> None:
    model = {"crystal": CrystalOptions, "detector": DetectorOptions, "beam": BeamOptions}[section]
    with pytest.raises(ValidationError, match=field):
        model(**{field: value})


def test_angles_that_make_no_cell_are_refused() -> None:
    with pytest.raises(ValidationError, match="do not make a unit cell"):
        CrystalOptions(cell_alpha_deg=120.0, cell_beta_deg=120.0, cell_gamma_deg=120.0)
    with pytest.raises(ValidationError, match="do not make a unit cell"):
        CrystalOptions(cell_alpha_deg=20.0, cell_beta_deg=30.0, cell_gamma_deg=100.0)


def test_render_refuses_nan_and_impossible_tensors_naming_them() -> None:
    simulator = Simulator(_options(detector={"fpixels": 4, "spixels": 4}))
    with pytest.raises(ValueError, match="misset_deg"):
        simulator.render(misset_deg=torch.tensor([0.0, math.nan, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="mosaic_spread_deg"):
        simulator.render(mosaic_spread_deg=torch.tensor(math.inf, dtype=torch.float64))
    with pytest.raises(ValueError, match="cell_b_A"):
        simulator.render(cell=torch.tensor([50.0, -1.0, 50.0, 90.0, 90.0, 90.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="do not make a unit cell"):
        simulator.render(cell=torch.tensor([50.0, 50.0, 50.0, 10.0, 10.0, 90.0], dtype=torch.float64))
