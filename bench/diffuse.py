"""Diffuse Phase 3 benchmark: binning throughput vs numpy ``bincount``, and peak memory of the HDF5 accumulator.

``python bench/diffuse.py`` (quick: 10 M observations binned, 10 M streamed) or
``python bench/diffuse.py --stream-observations 100000000`` (the issue's 100 M, minutes and ~2.8 GB of
disk). One thread (BLAS/OpenMP limited before numpy loads). Binning = lab q -> fractional HKL
(``A^-1 q``) -> voxel index with bounds and d_min checks -> per-voxel sums of I and counts
(``bincount``); the reference is ``numpy.bincount`` alone on the already-computed voxel indices,
timed alternately with ours in the same run (medians of ``--repeats``). Peak memory is the process's maximum resident set (``ru_maxrss``) while
stills of ``--per-still`` observations are appended to the accumulator, minus the RSS before it.
``--store`` puts the table into bench/RESULTS.md.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import machine_line, measurement_report, store_section
from ptylib.diffuse.accumulator import VoxelAccumulator
from ptylib.diffuse.binning import bin_observations
from ptylib.diffuse.grid import build_grid
from ptylib.diffuse.options import GridOptions

HEADING = "## Diffuse Phase 3 (binning, HDF5 accumulator)"
A_MATRIX = np.diag([1 / 36.0, 1 / 42.0, 1 / 48.0])


def binning(n: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Median observations/s of ours and of bincount alone on ``n`` random q-vectors: {name: (wall, CPU)}.

    The two are timed alternately, repeat by repeat, so that both see the same machine load; the CPU
    rate uses the process's CPU time, which on a shared machine is what one core would deliver.
    """
    rng = np.random.default_rng(0)
    q = rng.uniform(-0.3, 0.3, size=(n, 3)).astype(np.float32)
    intensity = rng.uniform(0, 100, n).astype(np.float32)
    grid = build_grid([A_MATRIX], 0.3, GridOptions())

    def ours() -> None:
        voxel, _ = bin_observations(grid, q, A_MATRIX)
        # Shift by one so that bin 0 collects the rows outside the grid (-1) and is dropped: cheaper
        # than selecting the inside rows of every column.
        voxel += 1
        np.bincount(voxel, intensity, grid.n_voxels + 1)[1:]
        np.bincount(voxel, minlength=grid.n_voxels + 1)[1:]

    voxel, _ = bin_observations(grid, q, A_MATRIX)
    voxel = np.maximum(voxel, 0)

    def reference() -> None:
        np.bincount(voxel, intensity, grid.n_voxels)
        np.bincount(voxel, minlength=grid.n_voxels)

    times: dict[str, list[tuple[float, float]]] = {"ours": [], "reference": []}
    for _ in range(repeats):
        for name, function in (("ours", ours), ("reference", reference)):
            wall, cpu = time.perf_counter(), time.process_time()
            function()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: tuple(n / float(np.median(column)) for column in zip(*values, strict=True))  # type: ignore[misc]
            for name, values in times.items()}


def stream(n: int, per_still: int) -> tuple[float, float, int]:
    """(peak RSS growth MiB, seconds, file bytes) for ``n`` observations appended still by still."""
    rng = np.random.default_rng(1)
    grid = build_grid([A_MATRIX], 0.3, GridOptions())
    q = rng.uniform(-0.3, 0.3, size=(per_still, 3)).astype(np.float32)
    intensity = rng.uniform(0, 100, per_still).astype(np.float32)
    sigma = np.sqrt(intensity) + 1
    voxel, q_mag = bin_observations(grid, q, A_MATRIX)
    voxel = np.maximum(voxel, 0)  # every row kept: n rows in the file
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as folder:
        start = time.perf_counter()
        with VoxelAccumulator(Path(folder) / "acc.h5", grid.n_voxels) as accumulator:
            for still in range(n // per_still):
                accumulator.add(still + 1, voxel, intensity, sigma, q_mag)
        elapsed = time.perf_counter() - start
        size = (Path(folder) / "acc.h5").stat().st_size
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak_kib - before_kib) / 1024, elapsed, size


def main(argv: list[str] | None = None) -> None:
    """Run both measurements and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-observations", type=int, default=10_000_000)
    parser.add_argument("--stream-observations", type=int, default=10_000_000)
    parser.add_argument("--per-still", type=int, default=1_000_000, help="observations appended per still")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of each, median reported")
    parser.add_argument("--store", action="store_true", help="write the table into bench/RESULTS.md")
    args = parser.parse_args(argv)
    # Streaming first: ru_maxrss is a lifetime maximum, so the binning arrays must not be allocated yet.
    peak_mib, seconds, size = stream(args.stream_observations, args.per_still)
    peak_total_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rates = binning(args.bin_observations, args.repeats)
    (ours_wall, ours_cpu), (reference_wall, reference_cpu) = rates["ours"], rates["reference"]
    rows = [
        ("binning throughput (1 thread), wall clock", f"{ours_wall / 1e6:.1f} M obs/s",
         f"{args.bin_observations:,} obs, median of {args.repeats}; target >= 10 M/s"),
        ("numpy bincount alone, same arrays, wall clock", f"{reference_wall / 1e6:.1f} M obs/s",
         f"ours / bincount = {ours_wall / reference_wall:.2f}"),
        ("binning throughput per CPU second (process CPU time)", f"{ours_cpu / 1e6:.1f} M obs/s",
         f"bincount alone {reference_cpu / 1e6:.1f} M obs/s; ours / bincount = {ours_cpu / reference_cpu:.2f}"),
        (f"accumulator: {args.stream_observations:,} obs streamed", f"peak RSS {peak_total_mib:.0f} MiB (+{peak_mib:.0f} MiB while streaming)",
         (f"{seconds:.1f} s ({args.stream_observations / seconds / 1e6:.1f} M obs/s), file {size / 2**20:.0f} MiB, "
          f"{args.per_still:,} obs per still; target < 2 GB")),
    ]
    report = measurement_report(HEADING, f"Command: `python bench/diffuse.py {' '.join(argv or sys.argv[1:])}`. "
                                f"{machine_line()}", rows)
    print(report)
    if args.store:
        store_section(HEADING, report)


if __name__ == "__main__":
    main()
