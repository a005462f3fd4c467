"""The pty-chi LSQML adapter: conventions match our forward model, global state is restored, smoke quality."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from ptylib.ptycho import study
from ptylib.ptycho.contract import DatasetContractError, load_dataset
from ptylib.ptycho.dataset import simulate_dataset
from ptylib.ptycho.forward import simulate_intensities
from ptylib.ptycho.lsqml import (
    Device,
    LSQMLOptions,
    build_task,
    preserved_global_state,
    resolve_device,
    run_lsqml,
)
from ptylib.ptycho.objects import synthetic_object
from ptylib.ptycho.options import StudyDesign
from ptylib.ptycho.probes import focused_probe
from ptylib.ptycho.scans import raster_positions
from ptylib.ptycho.stitch import window

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def small_scan() -> dict[str, np.ndarray]:
    obj = synthetic_object(80, rng=np.random.default_rng(0))
    probe = focused_probe(32, rng=np.random.default_rng(1))
    x, y = raster_positions(obj.shape, 32, 6, jitter_px=0.8, rng=np.random.default_rng(2))
    return simulate_dataset(obj, probe, x, y, 1e5, rng=np.random.default_rng(3), ground_truth_patches=False)


def test_ptychi_reproduces_our_forward_model(small_scan: dict[str, np.ndarray]) -> None:
    data = small_scan
    expected = simulate_intensities(data["objectGuess"], data["probeGuess"], data["xcoords"], data["ycoords"])
    with preserved_global_state():
        task, origin = build_task(data["diffraction"], data["probeGuess"], data["xcoords"], data["ycoords"],
                                  LSQMLOptions(epochs=1))
        shape = tuple(task.object.data.shape[-2:])
        truth = window(data["objectGuess"], origin, shape, fill=1)
        with torch.no_grad():
            task.object.set_data(torch.from_numpy(truth)[None])
            predicted = task.reconstructor.forward_model.forward(torch.arange(len(data["xcoords"]))).numpy()
    # pty-chi predicts with the zero frequency in the corner; ours is centred.
    predicted = np.fft.fftshift(predicted, axes=(-2, -1))
    error = np.linalg.norm(predicted - expected, axis=(1, 2)) / np.linalg.norm(expected, axis=(1, 2))
    assert error.max() < 2e-6  # float32 precision, sub-pixel positions included


def test_global_torch_state_is_restored(small_scan: dict[str, np.ndarray]) -> None:
    data = small_scan
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        threads = torch.get_num_threads()
        torch_rng, np_rng, py_rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
        result = run_lsqml(data["diffraction"][:20], data["probeGuess"], data["xcoords"][:20], data["ycoords"][:20],
                           LSQMLOptions(epochs=2, seed=7, threads=1))
        assert torch.get_default_dtype() == torch.float64
        assert torch.get_default_device().type == "cpu" and torch.get_num_threads() == threads
        assert torch.equal(torch.get_rng_state(), torch_rng)
        assert np.random.get_state()[1].tolist() == np_rng[1].tolist() and random.getstate() == py_rng
        assert result.loss.shape == (2,) and np.all(np.isfinite(result.loss))
        assert result.object.dtype == np.complex64 and result.probe.shape == (32, 32)
        np.testing.assert_allclose(result.probe, data["probeGuess"])  # probe fixed by default
    finally:
        torch.set_default_dtype(previous)


def test_lsqml_is_seeded(small_scan: dict[str, np.ndarray]) -> None:
    """Same seed, same result; another seed, another minibatch order (pty-chi 2.2.0 alone ignores the seed)."""
    data = {k: v[:30] if k in ("diffraction", "xcoords", "ycoords") else v for k, v in small_scan.items()}

    def run(seed: int) -> tuple[np.ndarray, list[list[int]]]:
        options = LSQMLOptions(epochs=3, batch_size=8, seed=seed, threads=1, device=Device.CPU)
        with preserved_global_state(threads=1):
            task, _ = build_task(data["diffraction"], data["probeGuess"], data["xcoords"], data["ycoords"], options)
            order = [batch[0].tolist() for batch in task.reconstructor.dataloader]
        return run_lsqml(data["diffraction"], data["probeGuess"], data["xcoords"], data["ycoords"], options).object, order

    (first, order_a), (again, order_b), (other, order_c) = run(11), run(11), run(12)
    np.testing.assert_array_equal(first, again)
    assert order_a == order_b and order_a != order_c
    assert sorted(i for batch in order_c for i in batch) == list(range(30))  # every pattern once per epoch
    assert np.abs(first - other).max() > 1e-4


def test_lsqml_device_choice() -> None:
    assert resolve_device(Device.CPU) == "cpu"
    assert resolve_device(Device.AUTO) == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' requested, but torch .* sees no CUDA device"):
            resolve_device(Device.CUDA)
    with pytest.raises(ValueError, match="device"):
        LSQMLOptions(device="gpu")


@pytest.mark.parametrize(("spoil", "message"), [
    (lambda d: d.__setitem__("diffraction", np.where(np.arange(d["diffraction"].size).reshape(d["diffraction"].shape)
                                                     == 5, np.nan, d["diffraction"]).astype(np.float32)),
     "LSQML input: key 'diffraction': expected finite values, got 1 NaN/inf entries"),
    (lambda d: d.__setitem__("diffraction", np.round(np.square(d["diffraction"]))),
     "key 'diffraction': expected amplitudes sqrt\\(counts\\), got integer counts"),
    (lambda d: d.__setitem__("diffraction", np.square(d["diffraction"]) + np.float32(0.25)),
     "key 'diffraction': expected amplitudes with mean Σ diffraction² ≤ 4·N²·Σ\\|probe\\|², got .*intensities"),
    (lambda d: d.__setitem__("xcoords", d["xcoords"][:-1]), "key 'xcoords': expected shape \\(20,\\)"),
    (lambda d: d.__setitem__("probeGuess", d["probeGuess"] * np.nan), "key 'probe': expected finite values"),
])
def test_lsqml_rejects_bad_inputs(small_scan: dict[str, np.ndarray], spoil, message: str) -> None:
    data = {k: v[:20] if k in ("diffraction", "xcoords", "ycoords") else v for k, v in small_scan.items()}
    spoil(data)
    with pytest.raises(DatasetContractError, match=message):
        run_lsqml(data["diffraction"], data["probeGuess"], data["xcoords"], data["ycoords"], LSQMLOptions(epochs=1))


def test_smoke_dataset_at_dose_1e5_reconstructs(tmp_path: Path) -> None:
    design = StudyDesign.for_profile("smoke")
    inputs = study.prepare_inputs(design, "b", root=tmp_path)
    dataset = study.generate_dose(design, inputs["base_npz"], 1e5, "c", root=tmp_path)
    record = study.reconstruct(design, dataset["test"]["path"], "f", "smoke 1e5 test", root=tmp_path, threads=1,
                               device=Device.CPU)
    assert record["phase_pearson"] >= 0.9  # phase correlation with the truth after registration
    assert record["phase_ms_ssim"] > 0.9 and record["amplitude_ms_ssim"] > 0.8
    assert (record["device"], record["batch_size"], record["dataset"]) == ("cpu", 64, "c/test.npz")
    assert record["final_loss"] < record["epochs"]
    assert len(load_dataset(tmp_path / dataset["test"]["path"])["xcoords"]) == 192
    with np.load(tmp_path / record["lsqml_npz"]) as saved:
        assert saved["loss"].shape == (design.lsqml_epochs,) and saved["loss"][-1] < saved["loss"][0] / 10
    assert all((tmp_path / record[key]).stat().st_size > 0 for key in ("loss_png", "image_png"))
    again = study.reconstruct(design, dataset["test"]["path"], "f", "smoke 1e5 test", root=tmp_path, threads=2)
    assert again["reused"] is True  # threads and device change speed, not the result
