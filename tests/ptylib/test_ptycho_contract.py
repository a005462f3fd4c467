"""The dataset NPZ contract: valid files pass, every kind of bad input fails with file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptylib.ptycho.contract import (
    DatasetContractError,
    check_split_disjoint,
    load_dataset,
    save_dataset,
    validate_dataset,
)
from ptylib.ptycho.dataset import select_groups, simulate_dataset, subset, with_groups
from ptylib.ptycho.grouping import knn_groups
from ptylib.ptycho.objects import synthetic_object
from ptylib.ptycho.probes import focused_probe
from ptylib.ptycho.scans import raster_positions
from ptylib.ptycho.split import split_on_y


@pytest.fixture(scope="module")
def dataset() -> dict[str, np.ndarray]:
    obj = synthetic_object(64, rng=np.random.default_rng(0))
    probe = focused_probe(16, rng=np.random.default_rng(1))
    x, y = raster_positions(obj.shape, 16, 4, jitter_px=0.5, rng=np.random.default_rng(2))
    arrays = simulate_dataset(obj, probe, x, y, 1e4, rng=np.random.default_rng(3))
    groups = knn_groups(x, y, neighbor_count=7, gridsize=2, rng=np.random.default_rng(4))
    return with_groups(arrays, groups)


def test_valid_dataset_round_trips(tmp_path: Path, dataset: dict[str, np.ndarray]) -> None:
    path = save_dataset(tmp_path / "ok.npz", dataset)
    loaded = load_dataset(path)
    assert set(loaded) == set(dataset)
    assert loaded["diffraction"].dtype == np.float32 and loaded["objectGuess"].dtype == np.complex64
    np.testing.assert_array_equal(loaded["group_indices"], dataset["group_indices"])
    assert [p.name for p in tmp_path.iterdir()] == ["ok.npz"]


def _broken(dataset: dict[str, np.ndarray], key: str, value: object) -> dict[str, np.ndarray]:
    arrays = dict(dataset)
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    return arrays


def _nan_diffraction(d: dict[str, np.ndarray]) -> np.ndarray:
    out = d["diffraction"].copy()
    out[3, 5, 5] = np.nan
    return out


CASES = [
    ("diffraction", lambda d: None, "key 'diffraction': expected a float32 \\(n, N, N\\) array .*got no such key"),
    ("probeGuess", lambda d: None, "key 'probeGuess': expected .*got no such key"),
    ("diffraction", lambda d: d["diffraction"].astype(np.float64), "key 'diffraction': expected dtype float32 .*got dtype float64"),
    ("objectGuess", lambda d: d["objectGuess"].astype(np.complex128), "key 'objectGuess': expected dtype complex64 .*got dtype complex128"),
    ("xcoords", lambda d: d["xcoords"].astype(np.float32), "key 'xcoords': expected dtype float64"),
    ("diffraction", _nan_diffraction, "key 'diffraction': expected finite values, got 1 NaN/inf entries"),
    ("diffraction", lambda d: -d["diffraction"], "key 'diffraction': expected non-negative amplitudes"),
    ("diffraction", lambda d: np.square(d["diffraction"]), "intensities stored instead of amplitudes"),
    ("diffraction", lambda d: d["diffraction"][:, :, :15], "expected square patterns with an even side N"),
    ("ycoords", lambda d: d["ycoords"][:-1], "key 'ycoords': expected shape \\(n,\\)"),
    ("xcoords", lambda d: d["xcoords"] + 30, "key 'xcoords': expected patch centres whose 16-px patches lie inside objectGuess"),
    ("probeGuess", lambda d: d["probeGuess"][:8, :8], "key 'probeGuess': expected shape \\(N, N\\)"),
    ("dose", lambda d: np.float64(-1), "key 'dose': expected a positive number of photons"),
    ("group_offsets", lambda d: None, "key 'group_offsets': expected all of group_indices"),
    ("group_indices", lambda d: d["group_indices"] + len(d["xcoords"]), "key 'group_indices': expected pattern indices in"),
    ("group_indices", lambda d: np.repeat(d["group_indices"][:, :1], 4, axis=1), "expected C distinct patterns per group"),
    ("group_centers", lambda d: d["group_centers"] + 1.0, "key 'group_centers': expected the mean"),
    ("min_center_spacing_px", lambda d: np.float64(1e6), "key 'group_centers': expected every pair of centres ≥ S"),
]


@pytest.mark.parametrize("key, change, message", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_contract_violations_name_file_key_and_expectation(tmp_path: Path, dataset: dict[str, np.ndarray],
                                                           key: str, change, message: str) -> None:
    arrays = _broken(dataset, key, change(dataset))
    with pytest.raises(DatasetContractError, match="bad.npz: " + f"(?s:.*){message}"):
        save_dataset(tmp_path / "bad.npz", arrays)
    assert not (tmp_path / "bad.npz").exists()  # nothing written by a failed save


def test_integer_counts_without_dose_are_rejected(dataset: dict[str, np.ndarray]) -> None:
    arrays = {k: v for k, v in dataset.items() if k != "dose"}
    validate_dataset(arrays)  # amplitudes: squares are counts, values mostly not integers
    arrays["diffraction"] = np.square(dataset["diffraction"]).round().astype(np.float32)
    with pytest.raises(DatasetContractError, match="integer counts \\(intensities stored instead of amplitudes\\)"):
        validate_dataset(arrays, source="counts.npz")


def test_malformed_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(DatasetContractError, match="garbage.npz: not a readable NPZ archive"):
        load_dataset(garbage)
    with pytest.raises(DatasetContractError, match="absent.npz: no such dataset file"):
        load_dataset(tmp_path / "absent.npz")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, diffraction=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetContractError, match="pickled.npz: not a readable NPZ archive"):
        load_dataset(pickled)


def test_split_check_finds_shared_pixels(dataset: dict[str, np.ndarray]) -> None:
    split = split_on_y(dataset["xcoords"], dataset["ycoords"], 16)
    train, test = subset(dataset, split.train), subset(dataset, split.test)
    assert check_split_disjoint(train, test) >= 0
    leaky = subset(dataset, np.concatenate([split.test, split.train[-1:]]))
    with pytest.raises(DatasetContractError, match="expected train and test patches with no shared object pixels, "
                                                   "got 1 test patches overlapping"):
        check_split_disjoint(train, leaky, source="dose_1000")


def test_select_groups_renumbers(dataset: dict[str, np.ndarray]) -> None:
    kept = np.array([0, 5, 9])
    view = select_groups(dataset, kept, 0.0)
    validate_dataset(view)
    original = dataset["scan_index"][dataset["group_indices"][kept]]
    np.testing.assert_array_equal(view["scan_index"][view["group_indices"]], original)
    assert len(view["xcoords"]) == len(np.unique(dataset["group_indices"][kept]))
