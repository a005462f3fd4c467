"""h5py with the compression filters detector files use (bitshuffle/LZ4, Blosc, Zstd, ...) registered."""

from __future__ import annotations

from types import ModuleType


def h5py_with_filters() -> ModuleType:
    """The ``h5py`` module after ``hdf5plugin`` registered its filters with the HDF5 library.

    Eiger and Jungfrau masters store frames with bitshuffle/LZ4, which plain h5py cannot decompress.
    """
    import h5py
    import hdf5plugin  # noqa: F401 - imported for its side effect: the filters become available to h5py

    return h5py
