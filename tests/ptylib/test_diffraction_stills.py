"""The still renderer: CrystFEL HDF5, NXmx HDF5, miniCBF and ground truth agree with each other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from scipy import ndimage  # noqa: E402

from ptylib.diffraction.options import CrystalOptions, DetectorOptions  # noqa: E402
from ptylib.diffraction.still_renderer import StillDatasetOptions, render_stills  # noqa: E402
from ptylib.io.minicbf import MiniCbfHeader, beam_xy_px, is_pilatus_size, read_minicbf, write_minicbf  # noqa: E402


def _small(**update: object) -> StillDatasetOptions:
    return StillDatasetOptions(**{
        "events": 2, "seed": 11,
        "crystal": CrystalOptions(cell_a_A=79.1, cell_b_A=79.1, cell_c_A=37.9, n_cells=(6, 6, 6)),
        "detector": DetectorOptions(fpixels=72, spixels=64, pixel_size_mm=0.172, distance_mm=60.0),
        **update,
    })


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    return render_stills(_small(), tmp_path_factory.mktemp("stills"))


def test_all_formats_hold_the_same_frames(dataset) -> None:
    with h5py.File(dataset.crystfel_h5) as h5:
        crystfel = h5["/entry/data/data"][()]
    assert crystfel.shape == (2, 64, 72) and crystfel.dtype == np.float32
    with h5py.File(dataset.nxmx_h5) as h5:
        nxmx = h5["/entry/data/data"][()]
    np.testing.assert_array_equal(nxmx, crystfel.astype(np.int32))
    assert [p.name for p in dataset.cbf_paths] == ["still_00001.cbf", "still_00002.cbf"]
    for index, path in enumerate(dataset.cbf_paths):
        image, fields = read_minicbf(path)
        np.testing.assert_array_equal(image, crystfel[index])
        assert 'GENERIC_MINI' in path.read_bytes()[:300].decode("ascii")  # 72 x 64 is no Pilatus module array
        truth = dataset.truth["detector"]
        assert beam_xy_px(fields) == pytest.approx((truth["nominal_beam_center_fast_px"],
                                                   truth["nominal_beam_center_slow_px"]), abs=1e-4)
    assert crystfel.max() > 50 and crystfel.min() >= 0


def test_nxmx_layout_follows_the_standard(dataset) -> None:
    with h5py.File(dataset.nxmx_h5) as h5:
        assert h5["/entry"].attrs["NX_class"] == "NXentry" and h5["/entry/definition"][()] == b"NXmx"
        assert h5["/entry/instrument/beam/incident_wavelength"].attrs["units"] == "angstrom"
        module = h5["/entry/instrument/detector/module"]
        assert list(module["data_origin"][()]) == [0, 0] and list(module["data_size"][()]) == [64, 72]
        assert list(module["fast_pixel_direction"].attrs["vector"]) == [-1, 0, 0]
        chain = []
        node = h5[h5["/entry/instrument/detector/depends_on"][()].decode()]
        while True:
            chain.append(node.name)
            target = node.attrs["depends_on"]
            if target == ".":
                break
            node = h5[target]
        assert chain == ["/entry/instrument/detector/transformations/translation"]
        origin = module["module_offset"].attrs["offset"] + [0, 0, h5[chain[0]][()]]
        truth = dataset.truth["detector"]
        # McStas origin = diag(-1, 1, -1) @ imgCIF origin.
        np.testing.assert_allclose(origin, np.diag([-1, 1, -1]) @ truth["nominal_origin_imgcif_mm"])
        assert "depends_on" not in h5["/entry/sample"]  # stills: no goniometer


def test_ground_truth_predicts_the_spots(tmp_path: Path) -> None:
    # Noise-free stills: every strong spot must index to integers with the true A matrix, the true
    # beam centre and the stated imgCIF frame.
    options = _small(events=1, poisson_noise=False, background_photons=0.0, seed=3, beam_offset_max_mm=0.3)
    data = render_stills(options, tmp_path)
    with h5py.File(data.crystfel_h5) as h5:
        image = h5["/entry/data/data"][0].astype(np.float64)
    truth = data.truth
    event = truth["events"][0]
    peaks = (image == ndimage.maximum_filter(image, size=5)) & (image > 0.2 * image.max())
    slow, fast = np.nonzero(peaks)
    assert slow.size >= 3
    pixel = truth["detector"]["pixel_size_mm"]
    origin = np.asarray(event["true_detector_origin_imgcif_mm"])
    position = origin + np.outer((fast + 0.5) * pixel, [1, 0, 0]) + np.outer((slow + 0.5) * pixel, [0, -1, 0])
    wavelength = truth["wavelength_A"]
    scattering = position / np.linalg.norm(position, axis=1, keepdims=True) / wavelength - [0, 0, -1 / wavelength]
    hkl = scattering @ np.linalg.inv(np.asarray(event["A_matrix_imgcif_per_A"])).T
    assert np.abs(hkl - np.round(hkl)).max() < 0.15
    u_matrix = np.asarray(event["U_matrix_imgcif"])
    np.testing.assert_allclose(u_matrix @ u_matrix.T, np.eye(3), atol=1e-12)
    assert event["true_beam_center_fast_mm"] == pytest.approx(
        truth["detector"]["nominal_beam_center_fast_mm"] + event["beam_offset_fast_mm"])


def test_same_seed_same_dataset(tmp_path: Path, dataset) -> None:
    again = render_stills(_small(), tmp_path)
    with h5py.File(again.crystfel_h5) as a, h5py.File(dataset.crystfel_h5) as b:
        np.testing.assert_array_equal(a["/entry/data/data"][()], b["/entry/data/data"][()])
    assert json.loads(again.truth_json.read_text())["events"] == dataset.truth["events"]


def test_default_detector_is_a_pilatus_module() -> None:
    defaults = StillDatasetOptions()
    assert (defaults.detector.fpixels, defaults.detector.spixels) == (487, 195)
    assert is_pilatus_size(487, 195) and is_pilatus_size(487, 619) and not is_pilatus_size(72, 64)
    assert defaults.crystal.cell == (79.1, 79.1, 37.9, 90.0, 90.0, 90.0)


def test_minicbf_roundtrip_covers_every_byte_offset_escape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.poisson(4, size=5000).astype(np.int32)
    values[::97] = rng.integers(128, 32000, size=values[::97].size)
    values[::389] = rng.integers(40000, 2**31 - 1, size=values[::389].size)
    values[[10, 11, 12]] = [-1, -2**31, 2**31 - 1]  # one-byte, int16 and int32 deltas of both signs
    image = values.reshape(50, 100)
    header = MiniCbfHeader(pixel_size_mm=0.172, distance_mm=200.0, wavelength_A=1.0,
                           beam_center_fast_px=50.25, beam_center_slow_px=24.5)
    path = write_minicbf(tmp_path / "x_00001.cbf", image, header)
    read, fields = read_minicbf(path)
    np.testing.assert_array_equal(read, image)
    assert beam_xy_px(fields) == (50.25, 24.5) and fields["Pixel_size"] == "0.000172 m x 0.000172 m"
    assert fields["X-Binary-Size-Fastest-Dimension"] == "100" and not list(tmp_path.glob(".*.tmp"))
