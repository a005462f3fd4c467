"""Command-line front ends: ``simulate`` with nanoBragg's option names and units, and ``refine``.

``ptyflows`` mounts ``add_simulate_arguments`` / ``run_simulate`` and ``add_refine_arguments``;
``python -m ptylib.diffraction.cli simulate|refine ...`` runs them without Prefect. Parsing imports
nothing heavy; torch and pydantic load only when a command runs.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ptylib.diffraction.options import SimulationOptions
    from ptylib.diffraction.refine import RefinementOptions, RefinementResult

# nanoBragg's mosaic-domain count when -mosaic is given without -mosaic_domains.
_NANOBRAGG_DEFAULT_DOMAINS = 10


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add nanoBragg's options (same names, same units) plus ``--out``, ``--dtype`` and ``--device``."""
    crystal = parser.add_argument_group("crystal (nanoBragg options)")
    crystal.add_argument("-cell", nargs="+", type=float, metavar="A",
                         help="unit cell a b c (Å) alpha beta gamma (deg); missing b, c = a, angles = 90")
    crystal.add_argument("-N", type=int, help="unit cells along a, b and c")
    crystal.add_argument("-Na", type=int, help="unit cells along a")
    crystal.add_argument("-Nb", type=int, help="unit cells along b")
    crystal.add_argument("-Nc", type=int, help="unit cells along c")
    crystal.add_argument("-default_F", type=float, help="structure factor of unlisted reflections (electrons)")
    crystal.add_argument("-hkl", metavar="FILE", help="text file of 'h k l F' lines")
    crystal.add_argument("-misset", nargs=3, type=float, metavar=("RX", "RY", "RZ"),
                         help="rotations about x, then y, then z (deg)")
    crystal.add_argument("-mosaic", type=float, metavar="DEG", help="isotropic mosaic spread (deg)")
    crystal.add_argument("-mosaic_domains", type=int, help="mosaic domains (default 10 when -mosaic is given)")
    crystal.add_argument("-mosaic_seed", type=int, help="seed of the domain orientations (nanoBragg's ran1)")
    beam = parser.add_argument_group("beam (nanoBragg options)")
    beam.add_argument("-lambda", dest="wavelength", type=float, metavar="A", help="wavelength (Å)")
    beam.add_argument("-fluence", type=float, help="fluence (photons/m^2)")
    beam.add_argument("-polar", type=float, metavar="K", help="Kahn polarisation factor (default 0)")
    beam.add_argument("-nopolar", action="store_true", help="no polarisation factor")
    detector = parser.add_argument_group("detector (nanoBragg options, MOSFLM convention)")
    detector.add_argument("-distance", type=float, metavar="MM", help="sample-detector distance (mm)")
    detector.add_argument("-pixel", type=float, metavar="MM", help="pixel size (mm)")
    detector.add_argument("-detpixels", type=int, help="pixels along fast and slow")
    detector.add_argument("-detpixels_f", type=int, help="pixels along fast")
    detector.add_argument("-detpixels_s", type=int, help="pixels along slow")
    detector.add_argument("-detsize", type=float, metavar="MM", help="detector edge (mm), both axes")
    detector.add_argument("-Xbeam", type=float, metavar="MM", help="MOSFLM beam centre along slow (mm)")
    detector.add_argument("-Ybeam", type=float, metavar="MM", help="MOSFLM beam centre along fast (mm)")
    detector.add_argument("-oversample", type=int, help="sub-pixels per pixel edge (default: from crystal size)")
    detector.add_argument("-oversample_omega", action="store_true",
                          help="solid angle per sub-pixel (default: the first sub-pixel's for the whole pixel)")
    detector.add_argument("-oversample_polar", action="store_true",
                          help="polarisation per sub-pixel (default: the first sub-pixel's for the whole pixel)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", metavar="FILE.npy", help="write the image as float32 .npy, [slow, fast]")
    output.add_argument("-floatfile", metavar="FILE", help="write raw float32 like nanoBragg's -floatfile")
    output.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="compute precision")
    output.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    output.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: measured, the fastest of 1, 2, 4, ... up to torch's count)")


def simulation_options_from_args(args: argparse.Namespace) -> SimulationOptions:
    """Translate parsed nanoBragg-style arguments into ``SimulationOptions`` (nanoBragg's defaults)."""
    from ptylib.diffraction.options import BeamOptions, CrystalOptions, DetectorOptions, SimulationOptions

    crystal: dict[str, object] = {}
    if args.cell is not None:
        crystal.update(_cell_fields(args.cell))
    n_cells = [_first_given(args.N, 1)] * 3
    for axis, value in enumerate((args.Na, args.Nb, args.Nc)):
        if value is not None:
            n_cells[axis] = value
    crystal["n_cells"] = tuple(n_cells)
    crystal["default_F"] = args.default_F if args.default_F is not None else 0.0
    if args.hkl is not None:
        crystal["hkl_path"] = args.hkl
    elif crystal["default_F"] == 0.0:
        raise ValueError("give -hkl FILE or a non-zero -default_F (nanoBragg needs structure factors)")
    if args.misset is not None:
        crystal["misset_deg"] = tuple(args.misset)
    # nanoBragg: -mosaic alone renders 10 domains; no (or zero) spread means a single domain.
    spread = args.mosaic or 0.0
    crystal["mosaic_spread_deg"] = spread
    domains = args.mosaic_domains if args.mosaic_domains is not None else _NANOBRAGG_DEFAULT_DOMAINS
    crystal["mosaic_domains"] = domains if spread > 0 else 1
    if args.mosaic_seed is not None:
        crystal["mosaic_seed"] = args.mosaic_seed

    pixel_mm = args.pixel if args.pixel is not None else 0.1
    detector: dict[str, object] = {"pixel_size_mm": pixel_mm}
    # nanoBragg: -detpixels wins over -detsize; the pixel count is ceil(detsize / pixel - 0.5).
    from_size = None if args.detsize is None else max(1, math.ceil(args.detsize / pixel_mm - 0.5))
    detector["fpixels"] = _first_given(args.detpixels_f, args.detpixels, from_size, 1024)
    detector["spixels"] = _first_given(args.detpixels_s, args.detpixels, from_size, 1024)
    if args.distance is not None:
        detector["distance_mm"] = args.distance
    # MOSFLM convention: Fbeam = Ybeam + pixel/2, Sbeam = Xbeam + pixel/2 (see detector.py).
    if args.Ybeam is not None:
        detector["beam_center_fast_mm"] = args.Ybeam + pixel_mm / 2
    if args.Xbeam is not None:
        detector["beam_center_slow_mm"] = args.Xbeam + pixel_mm / 2
    detector["oversample"] = args.oversample
    detector["oversample_omega"] = args.oversample_omega
    detector["oversample_polar"] = args.oversample_polar

    beam: dict[str, object] = {"apply_polarization": not args.nopolar}
    if args.wavelength is not None:
        beam["wavelength_A"] = args.wavelength
    if args.fluence is not None:
        beam["fluence_photons_per_m2"] = args.fluence
    if args.polar is not None:
        beam["kahn_factor"] = args.polar
    return SimulationOptions(crystal=CrystalOptions(**crystal), detector=DetectorOptions(**detector),
                             beam=BeamOptions(**beam))


def _first_given(*values: int | None) -> int | None:
    """The first value that is not None (0 counts as given, so validation can refuse it)."""
    return next((value for value in values if value is not None), None)


def _cell_fields(values: Sequence[float]) -> dict[str, float]:
    """nanoBragg's ``-cell`` with 1 to 6 numbers: missing b and c copy a, missing angles are 90."""
    if not 1 <= len(values) <= 6:
        raise ValueError(f"-cell takes 1 to 6 numbers (a b c alpha beta gamma), got {len(values)}")
    a = values[0]
    full = [a, a, a, 90.0, 90.0, 90.0]
    full[: len(values)] = values
    names = ("cell_a_A", "cell_b_A", "cell_c_A", "cell_alpha_deg", "cell_beta_deg", "cell_gamma_deg")
    return dict(zip(names, full, strict=True))


def run_simulate(args: argparse.Namespace) -> int:
    """Render one image from parsed ``simulate`` arguments and write it; returns the exit code."""
    from pydantic import ValidationError

    try:
        options = simulation_options_from_args(args)
    except (ValueError, ValidationError) as error:
        print(f"simulate: {error}", file=sys.stderr)
        return 2
    if args.out is None and args.floatfile is None:
        print("simulate: give --out FILE.npy and/or -floatfile FILE", file=sys.stderr)
        return 2

    import numpy as np
    import torch

    from ptylib.diffraction.simulator import Simulator
    from ptylib.io.atomic import atomic_save_npy, atomic_write_bytes

    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    simulator = Simulator(options, dtype=dtype, device=args.device, threads=args.threads)
    with torch.no_grad():
        image = simulator.render().cpu().numpy().astype(np.float32)
    if args.out is not None:
        atomic_save_npy(args.out, image)
    if args.floatfile is not None:
        atomic_write_bytes(args.floatfile, image.astype("<f4").tobytes())
    print(f"{image.shape[0]}x{image.shape[1]} image ([slow, fast]), {simulator.oversample}x oversampling, "
          f"{options.crystal.mosaic_domains} mosaic domains: total {image.sum():.6g} photons, "
          f"max {image.max():.6g}")
    return 0


def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the refinement demo's parameters (the seed's defaults); names follow ``RefinementOptions``."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--robust", dest="robust", action="store_true", default=True,
                      help="grid search + coarse-to-fine multi-start L-BFGS (the default)")
    mode.add_argument("--plain", dest="robust", action="store_false",
                      help="the seed's single-start Adam (misses the seed's criteria from most starts)")
    parser.add_argument("--iterations", type=int, default=100, help="Adam iterations (default 100)")
    parser.add_argument("--learning-rate", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    parser.add_argument("--true-mosaic-deg", type=float, default=0.8, help="ground-truth mosaic spread (deg)")
    parser.add_argument("--true-misset-deg", type=float, nargs=3, default=(5.0, 3.0, -2.0), metavar=("X", "Y", "Z"),
                        help="ground-truth misset (deg)")
    parser.add_argument("--start-mosaic-deg", type=float, default=0.2, help="initial mosaic spread (deg)")
    parser.add_argument("--start-misset-deg", type=float, nargs=3, default=(0.0, 0.0, 0.0), metavar=("X", "Y", "Z"),
                        help="initial misset (deg)")
    parser.add_argument("--mosaic-seed", type=int, default=42, help="seed of the mosaic domains (default 42)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="compute precision")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    parser.add_argument("--threads", type=int, default=None,
                        help="most torch CPU threads; the simulator measures which count up to it is fastest "
                             "(default: torch's count)")
    parser.add_argument("--out-dir", default=None, metavar="DIR",
                        help="write history.json/.csv, images.npz, result.json and loss/parameters/images PNGs here")


def refinement_options_from_args(args: argparse.Namespace) -> RefinementOptions:
    """``RefinementOptions`` from parsed ``refine`` arguments (the scene keeps the seed's defaults)."""
    from ptylib.diffraction.refine import RefinementOptions

    return RefinementOptions(
        robust=args.robust, iterations=args.iterations, learning_rate=args.learning_rate,
        true_mosaic_deg=args.true_mosaic_deg, true_misset_deg=tuple(args.true_misset_deg),
        start_mosaic_deg=args.start_mosaic_deg, start_misset_deg=tuple(args.start_misset_deg),
        mosaic_seed=args.mosaic_seed, dtype=args.dtype,
    )


def run_refine(args: argparse.Namespace) -> int:
    """Run the refinement kernel without Prefect (progress bar on a terminal); returns the exit code."""
    from pydantic import ValidationError

    from ptylib.diffraction.refine import RefinementDiverged, refine
    from ptylib.io.progress import TerminalProgress
    from ptylib.io.report import format_cell

    try:
        options = refinement_options_from_args(args)
    except (ValueError, ValidationError) as error:
        print(f"refine: {error}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    bar = TerminalProgress(options.total_iterations, "refining")
    try:
        result = refine(options, device=args.device, progress=lambda done, total: bar.advance())
    except RefinementDiverged as error:
        print(f"refine: {error}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    if args.out_dir is not None:
        write_run_files(result, args.out_dir)
    for row in result.criteria_table():
        print(f"{row['criterion']:<34} {format_cell(row['value']):<12} {'PASS' if row['passed'] else 'FAIL'}")
    print(f"refined mosaic {result.final_mosaic_deg:.3f} deg, misset "
          f"({', '.join(f'{v:+.2f}' for v in result.final_misset_deg)}) deg")
    return 0 if result.success else 1


def write_run_files(result: RefinementResult, out_dir: str) -> None:
    """The run's files and plots in ``out_dir`` (created), each path printed."""
    from ptylib.diffraction.plots import save_plots
    from ptylib.diffraction.refine import write_result

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    files = write_result(result, out_dir)
    pngs = save_plots(result.history, result.summary(), result.experimental, result.initial, result.final, out_dir)
    for path in [*files.values(), *pngs.values()]:
        print(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ptylib.diffraction.cli simulate|refine ...``."""
    parser = argparse.ArgumentParser(prog="python -m ptylib.diffraction.cli",
                                     description="Diffraction simulator and refinement demo (no Prefect).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    simulate = sub.add_parser("simulate", help="render one image (nanoBragg options)")
    add_simulate_arguments(simulate)
    simulate.set_defaults(handler=run_simulate)
    refine = sub.add_parser("refine", help="recover mosaic spread and misset by gradient descent")
    add_refine_arguments(refine)
    refine.set_defaults(handler=run_refine)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
