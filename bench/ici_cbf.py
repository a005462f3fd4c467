"""Benchmark of CBF I/O through fabio (``ptylib.io.minicbf``) and a check that dxtbx reads what it writes.

Run ``python bench/ici_cbf.py``: writes and reads a 1000 x 1000 miniCBF (Poisson counts with some
pixels above 2^15, so every byte-offset escape occurs) ``--repeats`` times, reports the fastest
times against ``numpy.save`` / ``numpy.load`` of the same array measured in the same run (the
reference), and, when DIALS' Python is installed, reads the file back with dxtbx (beam centre,
pixel size, pixels). Puts the Markdown into ``bench/RESULTS.md`` under ``## ICI CBF I/O (fabio)``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.results import machine_line, store_section  # noqa: E402
from ptylib.io.minicbf import MiniCbfHeader, read_minicbf, write_minicbf  # noqa: E402

_DXTBX_CHECK = """
import sys
from dxtbx.model.experiment_list import ExperimentListFactory
e = ExperimentListFactory.from_filenames([sys.argv[1]])[0]
p = e.detector[0]
data = e.imageset.get_raw_data(0)[0]
print(*p.get_beam_centre_px(e.beam.get_s0()), *p.get_pixel_size(), data.all()[0], data.all()[1], max(data))
"""


def fastest(action: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` wall times (s) of ``action``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    """Time the writes and reads, check dxtbx, print and store the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    image = rng.poisson(2, (1000, 1000)).astype(np.int32)
    image[::50, ::50] = 100_000
    header = MiniCbfHeader(pixel_size_mm=0.172, distance_mm=155.0, wavelength_A=1.0,
                           beam_center_fast_px=500.5, beam_center_slow_px=490.25)
    with tempfile.TemporaryDirectory() as work:
        cbf, npy = Path(work) / "still_00001.cbf", Path(work) / "still.npy"
        write_s = fastest(lambda: write_minicbf(cbf, image, header), args.repeats)
        read_s = fastest(lambda: read_minicbf(cbf), args.repeats)
        save_s = fastest(lambda: np.save(npy, image), args.repeats)
        load_s = fastest(lambda: np.load(npy), args.repeats)
        same = bool((read_minicbf(cbf)[0] == image).all())
        size_mb = cbf.stat().st_size / 1e6
        dxtbx = "DIALS not installed"
        python = shutil.which("dials.import")
        if python:
            interpreter = Path(python).read_text().splitlines()[0].removeprefix("#!").split()
            done = subprocess.run([*interpreter, "-c", _DXTBX_CHECK, str(cbf)], capture_output=True, text=True,
                                  check=False)
            values = done.stdout.split()
            dxtbx = (f"beam centre ({float(values[0]):.3f}, {float(values[1]):.3f}) px, pixel {values[2]} mm, "
                     f"{values[4]} x {values[5]} pixels, max {values[6]}") if done.returncode == 0 else done.stderr[-200:]
    report = "\n".join([
        "## ICI CBF I/O (fabio)", "", machine_line(), "",
        f"`python bench/ici_cbf.py`: a 1000 x 1000 int32 miniCBF ({size_mb:.2f} MB), fastest of {args.repeats}.", "",
        "| measurement | time | vs numpy .npy (same run) |", "|---|---|---|",
        f"| `write_minicbf` (fabio byte-offset) | {1e3 * write_s:.1f} ms | {write_s / save_s:.1f}x `np.save` ({1e3 * save_s:.1f} ms) |",
        f"| `read_minicbf` (fabio) | {1e3 * read_s:.1f} ms | {read_s / load_s:.1f}x `np.load` ({1e3 * load_s:.1f} ms) |",
        f"| pixels read back equal | {same} | |",
        f"| dxtbx reads the file | {dxtbx} | header: (500.5, 490.25) px, 0.172 mm |",
        "",
    ])
    print(report)
    store_section("## ICI CBF I/O (fabio)", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
