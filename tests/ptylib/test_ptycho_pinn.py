"""The PINN kernel: physics layer vs the numpy forward model, the overlap constraint, training, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ptylib.ptycho import study
from ptylib.ptycho.contract import DatasetContractError
from ptylib.ptycho.dataset import simulate_dataset, subset, with_groups
from ptylib.ptycho.forward import extract_patches, simulate_intensities, snap_positions
from ptylib.ptycho.grouping import knn_groups
from ptylib.ptycho.metrics import pearson
from ptylib.ptycho.objects import synthetic_object
from ptylib.ptycho.pinn import physics
from ptylib.ptycho.pinn.data import group_members
from ptylib.ptycho.pinn.infer import (
    check_compatible,
    predict_patches,
    stitch_group_patches,
)
from ptylib.ptycho.pinn.options import ModelKind, TrainingOptions
from ptylib.ptycho.pinn.store import load_model, save_model
from ptylib.ptycho.pinn.train import (
    NonFiniteTrainingError,
    first_non_finite,
    train_model,
)
from ptylib.ptycho.probes import focused_probe
from ptylib.ptycho.scans import raster_positions
from ptylib.ptycho.stitch import window


@pytest.fixture(scope="module")
def smoke_train() -> dict[str, np.ndarray]:
    """The top half of a smoke-profile scan (N = 32, 128² object, step 4 px) at 1e5 photons, grouped gs = 2."""
    rng = study.rng_for
    obj = synthetic_object(128, rng=rng(42, "object"))
    probe = focused_probe(32, rng=rng(42, "probe"))
    x, y = raster_positions(obj.shape, 32, 4, jitter_px=0.5, rng=rng(42, "scan"))
    arrays = simulate_dataset(obj, probe, x, y, 1e5, rng=rng(42, "noise"))
    top = subset(arrays, np.flatnonzero(y < 40))
    return with_groups(top, knn_groups(top["xcoords"], top["ycoords"], neighbor_count=7, gridsize=2,
                                       rng=rng(123, "train")))


def test_inference_stitching_returns_the_object_from_its_true_patches(smoke_train: dict[str, np.ndarray]) -> None:
    """Phase G's stitching path (gs = 2 groups, central crops, canvas from the offsets) is exact on exact patches,
    so poor PINN images come from the network, not from the stitching."""
    members = group_members(smoke_train, 2)
    image, (oy, ox) = stitch_group_patches(smoke_train, members, smoke_train["Y"][members])
    truth = window(smoke_train["objectGuess"], (oy, ox), image.shape, fill=1)
    covered = image != 1
    assert covered.mean() > 0.3
    np.testing.assert_allclose(image[covered], truth[covered], atol=1e-5)


def test_physics_layer_equals_numpy_forward_model() -> None:
    rng = np.random.default_rng(0)
    n_px, size = 16, 48
    obj = (rng.uniform(0.5, 1, (size, size)) * np.exp(1j * rng.uniform(-1, 1, (size, size)))).astype(np.complex64)
    probe = (rng.normal(size=(n_px, n_px)) + 1j * rng.normal(size=(n_px, n_px))).astype(np.complex64)
    x, y = rng.uniform(10, 37, 20), rng.uniform(10, 37, 20)
    expected = np.sqrt(simulate_intensities(obj, probe, x, y))
    starts, remainders = snap_positions(x, y, n_px)
    patches = extract_patches(obj, starts, n_px)
    got = physics.far_field_amplitudes(patches, physics.shift_probes(probe, remainders.astype(np.float32))).numpy()
    assert np.abs(got - expected).max() <= 2e-5 * expected.max()


def test_overlap_constraint_makes_shared_pixels_agree_and_keeps_consistent_patches() -> None:
    rng = np.random.default_rng(1)
    n_px = 8
    starts = np.array([[[0, 0], [0, 3], [2, 1], [5, 5]]], np.int32)
    patches = (rng.normal(size=(1, 4, n_px, n_px)) + 1j * rng.normal(size=(1, 4, n_px, n_px))).astype(np.complex64)
    out = physics.overlap_constraint(tf.constant(patches), tf.constant(starts)).numpy()[0]
    canvas_values: dict[tuple[int, int], list[complex]] = {}
    for c in range(4):
        for r in range(n_px):
            for q in range(n_px):
                canvas_values.setdefault((starts[0, c, 0] + r, starts[0, c, 1] + q), []).append(out[c, r, q])
    shared = [v for v in canvas_values.values() if len(v) > 1]
    assert len(shared) > 20
    assert all(np.allclose(v, v[0], atol=1e-6) for v in shared)
    # Patches cut from one object are left as they are.
    obj = (rng.normal(size=(20, 20)) + 1j * rng.normal(size=(20, 20))).astype(np.complex64)
    exact = np.stack([obj[s[0] : s[0] + n_px, s[1] : s[1] + n_px] for s in starts[0]])[None]
    again = physics.overlap_constraint(tf.constant(exact), tf.constant(starts)).numpy()
    assert np.allclose(again, exact, atol=1e-6)


def test_poisson_nll_is_zero_at_the_data_and_positive_elsewhere() -> None:
    measured = tf.constant(np.sqrt(np.array([[0.0, 1.0, 4.0, 9.0]], np.float32)))
    assert float(physics.poisson_nll(measured, measured)) == pytest.approx(0.0, abs=1e-5)
    assert float(physics.poisson_nll(measured * 1.2, measured)) > 0.05


def _phase_correlation(network, sidecar, arrays) -> float:
    members, patches, _, _ = predict_patches(network, sidecar, arrays)
    lo, hi = 8, 24  # the illuminated centre of the 32-px patches
    truth = np.angle(arrays["Y"][members][..., lo:hi, lo:hi])
    got = np.angle(patches[..., lo:hi, lo:hi])
    # Remove each group's global phase (the data cannot fix it) before correlating.
    offset = np.angle(np.sum(np.exp(1j * (got - truth)), axis=(1, 2, 3)))[:, None, None, None]
    return pearson(truth, np.angle(np.exp(1j * (got - offset))))


@pytest.mark.slow  # about 50 s on a quiet 2-core machine: three trainings of the study's network
def test_pinn_training_lowers_the_loss_and_learns_phase(smoke_train: dict[str, np.ndarray]) -> None:
    options = TrainingOptions(epochs=12, batch_size=4, learning_rate=1e-3, filters=16)
    untrained = train_model(smoke_train, ModelKind.PINN, 2, options.model_copy(update={"epochs": 1}))
    trained = train_model(smoke_train, ModelKind.PINN, 2, options)
    losses = [h["loss"] for h in trained.history]
    assert trained.initial_loss >= 5 * losses[-1]
    sidecar = {"gridsize": 2, "patch_size_px": 32}
    assert _phase_correlation(trained.network, sidecar, smoke_train) > _phase_correlation(
        untrained.network, sidecar, smoke_train) + 0.2
    # Deterministic: the same seed gives the same history.
    again = train_model(smoke_train, ModelKind.PINN, 2, options.model_copy(update={"epochs": 2}))
    assert [h["loss"] for h in again.history] == losses[:2]


def test_non_finite_tensor_stops_training_with_epoch_and_name(smoke_train: dict[str, np.ndarray]) -> None:
    assert first_non_finite({"loss": True, "gradient of 'enc0a/kernel'": False}) == "gradient of 'enc0a/kernel'"
    few = subset(smoke_train, np.arange(16))  # gridsize 1 ignores the groups
    options = TrainingOptions(epochs=2, batch_size=8, filters=4)
    result = train_model(few, ModelKind.PINN, 1, options.model_copy(update={"epochs": 1}))
    kernel = result.network.get_layer("amplitude").kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    with pytest.raises(NonFiniteTrainingError, match=r"epoch 1: network output 'amplitude' became non-finite"):
        train_model(few, ModelKind.PINN, 1, options, network=result.network)


def test_save_load_round_trip_and_mismatch_errors(smoke_train: dict[str, np.ndarray], tmp_path: Path) -> None:
    result = train_model(subset(smoke_train, np.arange(16)), ModelKind.BASELINE, 1, TrainingOptions(epochs=1, filters=4))
    sidecar = save_model(tmp_path / "m", result, train_sha256="abc")
    network, loaded = load_model(tmp_path / "m")
    assert loaded == json.loads((tmp_path / "m" / "model.json").read_text()) and loaded["train_sha256"] == "abc"
    assert sidecar["kind"] == "baseline" and sidecar["intensity_scale"] > 0
    x = np.ones((2, 32, 32, 1), np.float32)
    for a, b in zip(network(x), result.network(x)):
        assert np.array_equal(a.numpy(), b.numpy())
    with pytest.raises(DatasetContractError, match=r"key 'diffraction': expected 64×64 patterns"):
        check_compatible({"patch_size_px": 64, "gridsize": 1}, smoke_train, "data.npz")
    no_groups = {k: v for k, v in smoke_train.items() if not k.startswith("group_")}
    with pytest.raises(DatasetContractError, match=r"data.npz: key 'group_indices'"):
        check_compatible({"patch_size_px": 32, "gridsize": 2}, no_groups, "data.npz")
    (tmp_path / "m" / "model.keras").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"model.keras: sha256 differs"):
        load_model(tmp_path / "m")
    with pytest.raises(ValueError, match=r"model.json: no model sidecar"):
        load_model(tmp_path / "nothing")
