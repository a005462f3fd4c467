"""``simulate`` / ``refine`` command lines: nanoBragg option names and units, outputs, fast imports."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptylib.diffraction.cli import (
    add_refine_arguments,
    add_simulate_arguments,
    main,
    refinement_options_from_args,
    simulation_options_from_args,
)


def _parse(argv: list[str], add=add_simulate_arguments) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def test_nanobragg_options_map_onto_simulation_options() -> None:
    options = simulation_options_from_args(_parse(
        "-cell 80 -Na 3 -N 7 -default_F 20 -misset 5 3 -2 -mosaic 0.3 -lambda 1.5 -distance 80 -pixel 0.2 "
        "-detpixels_f 30 -detpixels_s 20 -Xbeam 2.0 -Ybeam 3.0 -fluence 1e25 -polar 0.5".split()))
    crystal, detector, beam = options.crystal, options.detector, options.beam
    assert crystal.cell == (80.0, 80.0, 80.0, 90.0, 90.0, 90.0)  # nanoBragg: missing b, c copy a
    assert crystal.n_cells == (3, 7, 7)
    assert crystal.misset_deg == (5.0, 3.0, -2.0)
    assert crystal.mosaic_domains == 10  # nanoBragg's count when only -mosaic is given
    assert (detector.fpixels, detector.spixels, detector.pixel_size_mm, detector.distance_mm) == (30, 20, 0.2, 80.0)
    # MOSFLM convention: Xbeam runs along slow, Ybeam along fast, both half a pixel short of our corner origin.
    assert detector.beam_center_slow_mm == pytest.approx(2.1) and detector.beam_center_fast_mm == pytest.approx(3.1)
    assert (beam.wavelength_A, beam.fluence_photons_per_m2, beam.kahn_factor) == (1.5, 1e25, 0.5)


def test_missing_structure_factors_and_bad_values_fail_cleanly(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    out = ["--out", str(tmp_path / "never.npy")]
    assert main(["simulate", "-cell", "50", *out]) == 2
    assert "-default_F" in capsys.readouterr().err
    assert main(["simulate", "-cell", "50", "-default_F", "1", "-detpixels", "0", *out]) == 2
    assert "fpixels" in capsys.readouterr().err
    assert not (tmp_path / "never.npy").exists()


def test_simulate_writes_float32_slow_fast_npy_and_floatfile(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out, raw = tmp_path / "image.npy", tmp_path / "image.bin"
    code = main(["simulate", "-cell", "50", "-N", "4", "-default_F", "10", "-detpixels_f", "12", "-detpixels_s", "8",
                 "-fluence", "1e28", "--out", str(out), "-floatfile", str(raw)])
    assert code == 0
    image = np.load(out)
    assert image.dtype == np.float32 and image.shape == (8, 12)
    np.testing.assert_array_equal(np.fromfile(raw, dtype="<f4").reshape(8, 12), image)


def test_refine_arguments_map_onto_refinement_options() -> None:
    options = refinement_options_from_args(_parse(
        "--robust --iterations 7 --learning-rate 0.1 --start-misset-deg 1 -1 0.5 --true-mosaic-deg 0.6".split(),
        add=add_refine_arguments))
    assert options.robust and options.iterations == 7 and options.learning_rate == 0.1
    assert options.start_misset_deg == (1.0, -1.0, 0.5) and options.true_mosaic_deg == 0.6
    assert options.true_misset_deg == (5.0, 3.0, -2.0) and options.start_mosaic_deg == 0.2


def test_refine_defaults_to_robust_mode_and_plain_selects_the_seed_adam() -> None:
    assert refinement_options_from_args(_parse([], add=add_refine_arguments)).robust
    assert not refinement_options_from_args(_parse(["--plain"], add=add_refine_arguments)).robust
    with pytest.raises(SystemExit):
        _parse(["--plain", "--robust"], add=add_refine_arguments)


def test_refine_out_dir_gets_history_result_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ptylib.diffraction.cli import run_refine

    out = tmp_path / "run"
    code = run_refine(_parse(["--plain", "--iterations", "3", "--threads", "1", "--out-dir", str(out)],
                             add=add_refine_arguments))
    assert code == 1  # three Adam steps cannot meet the seed's criteria: a failing exit code
    written = {p.name: p.stat().st_size for p in out.iterdir()}
    assert set(written) == {"history.json", "history.csv", "images.npz", "result.json", "loss.png",
                            "parameters.png", "images.png"} and min(written.values()) > 0
    assert json.loads((out / "result.json").read_text())["mode"] == "plain Adam"
    assert f"wrote {out / 'loss.png'}" in capsys.readouterr().out


def test_parsing_imports_neither_torch_nor_pydantic() -> None:
    code = ("import sys, argparse; from ptylib.diffraction import cli; p = argparse.ArgumentParser(); "
            "cli.add_simulate_arguments(p); cli.add_refine_arguments(argparse.ArgumentParser()); "
            "p.parse_args(['-cell', '50']); "
            "assert not {'torch', 'pydantic', 'prefect'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
