"""Phase 3 merging: ``VoxelData_relative``, one row per observed voxel, as NPZ and HDF5.

Columns (the seed's): ``voxel_idx``, ``H_center``, ``K_center``, ``L_center``, ``q_center_x/y/z``
(1/Å, average crystal frame, q = B_avg hkl), ``q_center_mag``, ``I_merged_relative``,
``Sigma_merged_relative`` (relative units: the gauge of the scaling model) and
``num_observations``. The HDF5 copy holds the same columns as datasets under ``/voxel_data``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ptylib.diffuse.grid import GlobalVoxelGrid
from ptylib.io.atomic import atomic_open, atomic_write_bytes

COLUMNS = ("voxel_idx", "H_center", "K_center", "L_center", "q_center_x", "q_center_y", "q_center_z",
           "q_center_mag", "I_merged_relative", "Sigma_merged_relative", "num_observations")


def voxel_data(grid: GlobalVoxelGrid, intensity: np.ndarray, sigma: np.ndarray,
               counts: np.ndarray) -> dict[str, np.ndarray]:
    """The ``VoxelData_relative`` columns of every voxel with at least one observation."""
    index = np.flatnonzero(counts > 0)
    hkl = grid.voxel_hkl(index)
    q = hkl @ grid.b_avg.T
    return {"voxel_idx": index, "H_center": hkl[:, 0], "K_center": hkl[:, 1], "L_center": hkl[:, 2],
            "q_center_x": q[:, 0], "q_center_y": q[:, 1], "q_center_z": q[:, 2],
            "q_center_mag": np.linalg.norm(q, axis=1), "I_merged_relative": intensity[index],
            "Sigma_merged_relative": sigma[index], "num_observations": counts[index]}


def write_voxel_data(npz_path: str | os.PathLike[str], data: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """Write ``data`` as ``<name>.npz`` and ``<name>.hdf5`` atomically; returns both paths."""
    import h5py

    npz_path = Path(npz_path)
    with atomic_open(npz_path, "wb") as handle:
        np.savez_compressed(handle, **data)
    h5_path = npz_path.with_suffix(".hdf5")
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        group = h5.create_group("voxel_data")
        for name in COLUMNS:
            group.create_dataset(name, data=data[name], compression="gzip")
    atomic_write_bytes(h5_path, buffer.getvalue())
    return npz_path, h5_path


def read_voxel_data(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read ``VoxelData_relative`` from NPZ or HDF5; one-line errors naming the file and field."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: voxel data file (--voxel-data-file) does not exist")
    try:
        if path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as h5:
                group = h5["voxel_data"]
                data = {name: group[name][:] for name in group}
        else:
            with np.load(path) as npz:
                data = {name: npz[name] for name in npz.files}
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read VoxelData_relative: {exc}") from None
    missing = [name for name in COLUMNS if name not in data]
    if missing:
        raise ValueError(f"{path}: field {missing[0]!r} missing from VoxelData_relative")
    return data
