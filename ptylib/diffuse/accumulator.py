"""Phase 3 ``VoxelAccumulator``: every binned observation in one HDF5 file, appended still by still.

Datasets (resizable, chunked, LZF-compressed, one row per observation): ``voxel_idx`` (int32, int64 above 2^31 voxels),
``still`` (int32, 1-based), ``intensity``, ``sigma``, ``q_mag`` (float32). Beside them
``counts_per_voxel`` (int64, written on close) and attributes ``n_voxels``, ``n_observations``.
Memory stays bounded: :meth:`VoxelAccumulator.add` writes each still's rows straight to disk and
keeps only the per-voxel counts (8 bytes a voxel); :func:`iter_observations` reads back in chunks.
The file is built as ``<name>.partial`` and renamed on a clean close, so a killed run leaves no
half-written accumulator under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np

COLUMNS = {"voxel_idx": np.int64, "still": np.int32, "intensity": np.float32, "sigma": np.float32,
           "q_mag": np.float32}
CHUNK_ROWS = 1 << 18


class VoxelAccumulator:
    """Append-only HDF5 store of binned observations (module docstring); use as a context manager."""

    def __init__(self, path: str | os.PathLike[str], n_voxels: int, *, compression: str | None = "lzf") -> None:
        import h5py

        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._h5 = h5py.File(self.partial, "w")
        self._h5.attrs["n_voxels"] = n_voxels
        self.dtypes = {**COLUMNS, "voxel_idx": np.int32 if n_voxels < 2**31 else np.int64}
        for name, dtype in self.dtypes.items():
            self._h5.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(CHUNK_ROWS,),
                                    compression=compression)
        self.counts = np.zeros(n_voxels, dtype=np.int64)
        self.n_observations = 0

    def add(self, still: int, voxel_idx: np.ndarray, intensity: np.ndarray, sigma: np.ndarray,
            q_mag: np.ndarray) -> int:
        """Append one still's observations (rows with ``voxel_idx < 0`` are dropped); returns rows kept."""
        keep = voxel_idx >= 0
        rows = int(keep.sum())
        if rows == 0:
            return 0
        voxel = voxel_idx[keep]
        columns = {"voxel_idx": voxel, "still": np.full(rows, still, dtype=np.int32), "intensity": intensity[keep],
                   "sigma": sigma[keep], "q_mag": q_mag[keep]}
        start = self.n_observations
        for name, values in columns.items():
            dataset = self._h5[name]
            dataset.resize((start + rows,))
            dataset[start:] = values.astype(self.dtypes[name], copy=False)
        self.counts += np.bincount(voxel, minlength=self.counts.size)
        self.n_observations += rows
        return rows

    def close(self) -> Path:
        """Write the per-voxel counts, close and move the file to its final name."""
        self._h5.create_dataset("counts_per_voxel", data=self.counts, compression="gzip")
        self._h5.attrs["n_observations"] = self.n_observations
        self._h5.close()
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file."""
        self._h5.close()
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> VoxelAccumulator:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def iter_observations(path: str | os.PathLike[str], chunk_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """The accumulator's rows in chunks of at most ``chunk_rows`` (dict of column arrays)."""
    import h5py

    with h5py.File(path, "r") as h5:
        total = int(h5.attrs["n_observations"])
        for start in range(0, total, chunk_rows):
            stop = min(total, start + chunk_rows)
            yield {name: h5[name][start:stop] for name in COLUMNS}


def read_counts(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """(observations per voxel, total observations) of a closed accumulator."""
    import h5py

    with h5py.File(path, "r") as h5:
        return h5["counts_per_voxel"][:], int(h5.attrs["n_observations"])
