"""The dataset NPZ contract (docs/data_contracts.md): keys, dtypes, shapes, units, and its validator.

Every dataset file the study writes or reads goes through :func:`validate_dataset`; a violation raises
:class:`DatasetContractError` naming the file, the key and what was expected.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ptylib.io.atomic import atomic_open


class DatasetContractError(ValueError):
    """A dataset file or array set does not follow the NPZ contract."""


@dataclass(frozen=True)
class KeySpec:
    """One key of the contract: dtype, dimensions (symbolic) and meaning."""

    dtype: str
    shape: str
    meaning: str


CONTRACT: dict[str, KeySpec] = {
    "diffraction": KeySpec("float32", "(n, N, N)", "diffraction amplitudes sqrt(counts), zero frequency at the centre"),
    "xcoords": KeySpec("float64", "(n,)", "patch-centre x (column) coordinate in objectGuess pixels"),
    "ycoords": KeySpec("float64", "(n,)", "patch-centre y (row) coordinate in objectGuess pixels"),
    "objectGuess": KeySpec("complex64", "(H, W)", "complex object transmission (ground truth when simulated)"),
    "probeGuess": KeySpec("complex64", "(N, N)", "complex probe, scaled so |FFT(probe·object)|² is in photons"),
    "Y": KeySpec("complex64", "(n, N, N)", "ground-truth object patch of each pattern (optional)"),
    "dose": KeySpec("float64", "()", "photons per exposure: mean expected total counts of a pattern (optional)"),
    "scan_index": KeySpec("int64", "(n,)", "index of each pattern in the parent scan (optional)"),
    "group_indices": KeySpec("int64", "(G, C)", "indices of each group's C patterns (optional)"),
    "group_centers": KeySpec("float64", "(G, 2)", "group centre (x, y) in objectGuess pixels (optional)"),
    "group_offsets": KeySpec("float64", "(G, C, 2)", "member centre minus group centre (x, y), pixels (optional)"),
    "min_center_spacing_px": KeySpec("float64", "()", "S: every pair of group centres is ≥ S apart (optional)"),
}
REQUIRED: tuple[str, ...] = ("diffraction", "xcoords", "ycoords", "objectGuess", "probeGuess")
GROUP_KEYS: tuple[str, ...] = ("group_indices", "group_centers", "group_offsets")


def _fail(source: str, key: str, expected: str, got: str) -> DatasetContractError:
    return DatasetContractError(f"{source}: key {key!r}: expected {expected}, got {got}")


def load_dataset(path: str | os.PathLike[str], *, validate: bool = True) -> dict[str, np.ndarray]:
    """Read a dataset NPZ into a dict of arrays (validated unless ``validate=False``)."""
    source = str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise DatasetContractError(f"{source}: no such dataset file") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DatasetContractError(f"{source}: not a readable NPZ archive ({exc})") from None
    if validate:
        validate_dataset(arrays, source=source)
    return arrays


def save_dataset(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """Validate ``arrays`` and write them as an uncompressed NPZ, atomically; returns the path."""
    validate_dataset(arrays, source=str(path))
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return Path(path)


def _check_array(arrays: Mapping[str, np.ndarray], key: str, source: str, shape: tuple[int | None, ...]) -> np.ndarray:
    spec = CONTRACT[key]
    value = np.asarray(arrays[key])
    if value.dtype != np.dtype(spec.dtype):
        raise _fail(source, key, f"dtype {spec.dtype} {spec.shape}", f"dtype {value.dtype}")
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")
        raise _fail(source, key, f"shape {spec.shape} = {want}", f"shape {value.shape}")
    if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        raise _fail(source, key, "finite values", f"{bad} NaN/inf entries")
    return value


def _check_amplitudes(diffraction: np.ndarray, dose: float | None, source: str) -> None:
    if np.any(diffraction < 0):
        raise _fail(source, "diffraction", "non-negative amplitudes", f"minimum {float(diffraction.min())}")
    totals_amp2 = np.einsum("nij,nij->n", diffraction, diffraction, dtype=np.float64).mean()
    if dose is not None:
        totals_amp = diffraction.sum(axis=(1, 2), dtype=np.float64).mean()
        ratio2, ratio1 = totals_amp2 / dose, totals_amp / dose
        if not 0.5 < ratio2 < 2.0:
            hint = " (intensities stored instead of amplitudes?)" if abs(np.log(ratio1)) < abs(np.log(ratio2)) else ""
            raise _fail(source, "diffraction", f"amplitudes whose squares sum to ≈ dose = {dose:g} photons per "
                        "pattern", f"mean Σ amplitude² = {totals_amp2:.4g}{hint}")
        return
    values = diffraction[diffraction > 0]
    # Counts are integers; their square roots are integers only for perfect squares.
    if values.size and np.all(values == np.round(values)):
        roots = np.sqrt(values)
        if np.any(roots != np.round(roots)):
            raise _fail(source, "diffraction", "amplitudes sqrt(counts)",
                        "integer counts (intensities stored instead of amplitudes)")


def _check_patches_inside(x: np.ndarray, y: np.ndarray, obj_shape: tuple[int, ...], n_px: int, source: str) -> None:
    for key, coord, size in (("xcoords", x, obj_shape[1]), ("ycoords", y, obj_shape[0])):
        starts = np.round(coord + 0.5) - n_px // 2
        if coord.size and (starts.min() < 0 or starts.max() + n_px > size):
            raise _fail(source, key, f"patch centres whose {n_px}-px patches lie inside objectGuess (0..{size} px)",
                        f"patches spanning {starts.min():.0f}..{starts.max() + n_px:.0f} px")


def _check_groups(arrays: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray, source: str) -> None:
    present = [k for k in GROUP_KEYS if k in arrays]
    if not present:
        return
    if len(present) != len(GROUP_KEYS):
        missing = sorted(set(GROUP_KEYS) - set(present))
        raise _fail(source, missing[0], "all of " + ", ".join(GROUP_KEYS) + " together", "it missing")
    indices = _check_array(arrays, "group_indices", source, (None, None))
    n_groups, c = indices.shape
    centers = _check_array(arrays, "group_centers", source, (n_groups, 2))
    offsets = _check_array(arrays, "group_offsets", source, (n_groups, c, 2))
    if indices.size and (indices.min() < 0 or indices.max() >= x.size):
        raise _fail(source, "group_indices", f"pattern indices in [0, {x.size})",
                    f"range {indices.min()}..{indices.max()}")
    ordered = np.sort(indices, axis=1)
    if np.any(ordered[:, 1:] == ordered[:, :-1]):
        raise _fail(source, "group_indices", "C distinct patterns per group", "a repeated pattern in a group")
    members = np.stack([x[indices], y[indices]], axis=-1)
    if not np.allclose(members.mean(axis=1), centers, atol=1e-6):
        raise _fail(source, "group_centers", "the mean (x, y) of each group's members", "different values")
    if not np.allclose(members - centers[:, None, :], offsets, atol=1e-6):
        raise _fail(source, "group_offsets", "member centre minus group centre", "different values")
    if "min_center_spacing_px" in arrays:
        spacing = float(_check_array(arrays, "min_center_spacing_px", source, ()))
        closest = nearest_pair_distance(centers)
        if closest < spacing:
            raise _fail(source, "group_centers", f"every pair of centres ≥ S = {spacing:.4g} px apart",
                        f"a pair {closest:.4g} px apart")


def nearest_pair_distance(points: np.ndarray) -> float:
    """Smallest distance between two distinct rows of ``points`` (m, 2) in pixels; inf for m < 2."""
    if len(points) < 2:
        return float("inf")
    distances, _ = cKDTree(points).query(points, k=2)
    return float(distances[:, 1].min())


def validate_dataset(arrays: Mapping[str, np.ndarray], *, source: str = "<arrays>") -> None:
    """Check ``arrays`` against the contract; raise :class:`DatasetContractError` naming ``source`` and the key."""
    for key in REQUIRED:
        if key not in arrays:
            raise _fail(source, key, f"a {CONTRACT[key].dtype} {CONTRACT[key].shape} array ({CONTRACT[key].meaning})",
                        "no such key (keys: " + ", ".join(sorted(arrays)) + ")")
    diffraction = _check_array(arrays, "diffraction", source, (None, None, None))
    n, n_px, width = diffraction.shape
    if n_px != width or n_px % 2:
        raise _fail(source, "diffraction", "square patterns with an even side N", f"shape {diffraction.shape}")
    x = _check_array(arrays, "xcoords", source, (n,))
    y = _check_array(arrays, "ycoords", source, (n,))
    obj = _check_array(arrays, "objectGuess", source, (None, None))
    if min(obj.shape) < n_px:
        raise _fail(source, "objectGuess", f"an object at least {n_px} px on each side", f"shape {obj.shape}")
    _check_array(arrays, "probeGuess", source, (n_px, n_px))
    for key, shape in (("Y", (n, n_px, n_px)), ("scan_index", (n,))):
        if key in arrays:
            _check_array(arrays, key, source, shape)
    dose = None
    if "dose" in arrays:
        dose = float(_check_array(arrays, "dose", source, ()))
        if dose <= 0:
            raise _fail(source, "dose", "a positive number of photons per exposure", repr(dose))
    _check_amplitudes(diffraction, dose, source)
    _check_patches_inside(x, y, obj.shape, n_px, source)
    _check_groups(arrays, x, y, source)


MAX_POWER_RATIO = 4.0
"""Largest accepted mean Σ diffraction² / (N²·Σ|probe|²): a transmission object has |O| ≤ 1, so amplitudes
give ≤ 1 up to noise; intensities stored as amplitudes give about the counts per bright pixel instead."""


def check_reconstruction_inputs(diffraction: np.ndarray, probe: np.ndarray, xcoords: np.ndarray,
                                ycoords: np.ndarray, *, source: str = "<reconstruction input>") -> None:
    """Check arrays handed to a reconstruction as the file contract checks a dataset; raise naming the argument.

    ``diffraction`` (n, N, N) real amplitudes sqrt(counts) (finite, ≥ 0, not integer counts), ``probe`` (N, N)
    complex, finite, in photon units, ``xcoords``/``ycoords`` (n,) finite pixels. Since the forward model's FFT
    is unnormalised, amplitudes satisfy mean Σ diffraction² ≤ N²·Σ|probe|² for a transmission object; a ratio
    above :data:`MAX_POWER_RATIO` means intensities were passed as amplitudes (or a wrongly scaled probe).
    """
    diffraction, probe = np.asarray(diffraction), np.asarray(probe)
    if diffraction.ndim != 3 or diffraction.shape[1] != diffraction.shape[2] or diffraction.dtype.kind != "f":
        raise _fail(source, "diffraction", "real amplitudes of shape (n, N, N)",
                    f"dtype {diffraction.dtype} shape {diffraction.shape}")
    n, n_px = diffraction.shape[:2]
    shapes = {"probe": (probe, (n_px, n_px)), "xcoords": (np.asarray(xcoords), (n,)),
              "ycoords": (np.asarray(ycoords), (n,))}
    for key, (value, shape) in shapes.items():
        if value.shape != shape:
            raise _fail(source, key, f"shape {shape}", f"shape {value.shape}")
    for key, value in {"diffraction": diffraction, **{k: v for k, (v, _) in shapes.items()}}.items():
        if value.dtype.kind not in "iufc":
            raise _fail(source, key, "numbers", f"dtype {value.dtype}")
        if not np.all(np.isfinite(value)):
            raise _fail(source, key, "finite values", f"{value.size - np.count_nonzero(np.isfinite(value))} NaN/inf entries")
    _check_amplitudes(diffraction, None, source)
    probe_power = n_px**2 * float(np.sum(np.abs(probe.astype(np.complex128)) ** 2))
    data_power = float(np.einsum("nij,nij->n", diffraction, diffraction, dtype=np.float64).mean())
    if probe_power <= 0:
        raise _fail(source, "probe", "a probe with non-zero power", "an all-zero probe")
    if data_power > MAX_POWER_RATIO * probe_power:
        raise _fail(source, "diffraction", f"amplitudes with mean Σ diffraction² ≤ {MAX_POWER_RATIO:g}·N²·Σ|probe|²",
                    f"{data_power / probe_power:.4g}× (intensities passed as amplitudes, or a probe not in photon "
                    "units?)")


def check_split_disjoint(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], *,
                         source: str = "<split>") -> float:
    """Raise unless no test patch shares an object pixel with any train patch; returns the smallest gap (px).

    Two N-px patches share pixels when their integer starts differ by less than N on both axes
    (Chebyshev distance < N); the returned gap is that distance minus N over all train/test pairs.
    """
    n_px = np.asarray(train["diffraction"]).shape[-1]
    starts = [np.stack([np.round(d["xcoords"] + 0.5), np.round(d["ycoords"] + 0.5)], axis=1) for d in (train, test)]
    if not len(starts[0]) or not len(starts[1]):
        return float("inf")
    distance, _ = cKDTree(starts[0]).query(starts[1], k=1, p=np.inf)
    gap = float(distance.min()) - n_px
    if gap < 0:
        raise DatasetContractError(f"{source}: keys 'xcoords'/'ycoords': expected train and test patches with no "
                                   f"shared object pixels, got {int(np.sum(distance < n_px))} test patches "
                                   "overlapping train patches")
    return gap
