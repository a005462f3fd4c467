"""``ptyflows ici propose`` / ``summarize``: seed flag names, error lines, and a light import path."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptylib.ici.cli import build_parser, main, options_from_args
from ptylib.ici.model import EventHistory, EventKey, LedgerRow
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.report.centres import COLUMNS as CENTRES_COLUMNS
from ptylib.ici.runroot.layout import LEDGER_NAME
from ptylib.ici.runroot.ledger import format_ledger, read_ledger
from ptylib.io.lock import LOCK_NAME

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("prefect", "torch", "tensorflow")


def seed_run_root(root: Path) -> Path:
    histories = {}
    for event in range(5):
        key = EventKey("/data/run.h5", event)
        rows = [LedgerRow(0, 0.0, 0.0, False, None), LedgerRow(1, 0.01 * event, 0.02, event > 1, 0.5 + event if event > 1 else None)]
        histories[key] = EventHistory(key, rows)
    root.mkdir(parents=True, exist_ok=True)
    (root / LEDGER_NAME).write_text(format_ledger(histories))
    return root


def test_every_seed_flag_maps_onto_an_option() -> None:
    args = build_parser().parse_args([
        "propose", "--run-root", "r", "--radius-mm", "0.04", "--min-spacing-mm", "0.001", "--seed", "7",
        "--step1-A0", "3", "--step1-hill-amp-frac", "4", "--step1-drop-amp-frac", "0.2", "--step1-candidates", "100",
        "--step1-explore-floor", "0.001", "--step1-allow-spacing-relax", "--beta", "5", "--done-on-streak-successes",
        "3", "--done-on-streak-length", "6", "--noimprove-N", "4", "--noimprove-eps", "0.03", "--stability-N", "5",
        "--stability-std", "0.06", "--N-conv", "4", "--recurring-tol", "0.2", "--median-rel-tol", "0.3",
        "--step2-algorithm", "none", "--damping-factor", "0.5", "--dxdy-unit-to-mm", "1",
    ])
    assert options_from_args(args) == ProposerOptions(
        radius_mm=0.04, min_spacing_mm=0.001, seed=7, step1_A0=3.0, step1_hill_amp_frac=4.0, step1_drop_amp_frac=0.2,
        step1_candidates=100, step1_explore_floor=0.001, step1_allow_spacing_relax=True, beta=5.0,
        done_on_streak_successes=3, done_on_streak_length=6, noimprove_N=4, noimprove_eps=0.03, stability_N=5,
        stability_std=0.06, N_conv=4, recurring_tol=0.2, median_rel_tol=0.3, step2_algorithm="none",
        damping_factor=0.5, dxdy_unit_to_mm=1.0,
    )
    defaults = build_parser().parse_args(["propose", "--run-root", "r"])
    assert options_from_args(defaults) == ProposerOptions()


def test_propose_and_summarize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = seed_run_root(tmp_path / "root")
    assert main(["propose", "--run-root", str(root)]) == 0
    assert "5 events, 5 proposals written" in capsys.readouterr().out
    assert all(h.rows[-1].proposal is not None for h in read_ledger(root / LEDGER_NAME).values())
    assert main(["summarize", "--run-root", str(root)]) == 0
    text = capsys.readouterr().out
    table = [re.split(r"\s{2,}", line.strip()) for line in text[text.index("centres (as in"):].splitlines()[1:]
             if line.strip()]
    assert table[0] == list(CENTRES_COLUMNS) and len(table) == 6
    # Events 2-4 indexed once at (0.01 * event, 0.02): that is their best centre; no refinement, no image.
    assert table[3] == ["2", "/data/run.h5 //2", "open", "2", "0.0200", "0.0200", "2.5000", "-", "-", "0", "-", "-"]
    assert table[1][2] == "not_indexed"
    assert main(["summarize", "--run-root", str(root), "--markdown"]) == 0
    assert "| event | image | status |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--radius-mm", "-1"], "error: bad option: radius_mm must be > 0"),
        (["--min-spacing-mm", "-0.1"], "error: bad option: min_spacing_mm must be >= 0"),
    ],
)
def test_bad_option_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                      message: str) -> None:
    root = seed_run_root(tmp_path / "root")
    before = (root / LEDGER_NAME).read_bytes()
    assert main(["propose", "--run-root", str(root), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert (root / LEDGER_NAME).read_bytes() == before


def test_corrupt_sidecar_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = seed_run_root(tmp_path / "root")
    (root / "image_run_state.json").write_text('{"last_global_run": 1, "events": [')
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    assert main(["propose", "--run-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "image_run_state.json" in err and err.count("\n") == 1
    # Only the lock file that propose takes may be new.
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.name != LOCK_NAME} == before


def test_bad_ledger_is_one_error_line_without_traceback(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    bad = "run_n,det_shift_x_mm,det_shift_y_mm,indexed,wrmsd,next_dx_mm,next_dy_mm,next_reason\n#/d.h5 event 0\n0,abc,0,0,,,,\n"
    (root / LEDGER_NAME).write_text(bad)
    done = subprocess.run([sys.executable, "-m", "ptylib.ici.cli", "propose", "--run-root", str(root)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert "line 3" in done.stderr and "det_shift_x_mm" in done.stderr
    assert (root / LEDGER_NAME).read_text() == bad
    assert sorted(p.name for p in root.iterdir()) == [LOCK_NAME, LEDGER_NAME]


def _heavy_modules_after(code: str) -> list[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_propose_path_imports_no_prefect_torch_or_tensorflow(tmp_path: Path) -> None:
    root = seed_run_root(tmp_path / "root")
    assert _heavy_modules_after(
        f"from ptylib.ici.cli import main\nassert main(['propose', '--run-root', {str(root)!r}]) == 0") == []
    # The same through the ``ptyflows`` entry point.
    assert _heavy_modules_after(
        f"from flows.cli import main\nassert main(['ici', 'propose', '--run-root', {str(root)!r}]) == 0") == []


def _ici_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", "ici", "run", "--run-root", "rr", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})


DIALS_ARGS = ("--backend", "dials", "--unit-cell", "79.1,79.1,37.9,90,90,90", "--space-group", "P43212")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--images", "none/*.cbf", *DIALS_ARGS), "error: none/*.cbf, field '--images': the glob matches no file (relative to the working "
         "directory)"),
        (("--images", "stills/*.cbf", *DIALS_ARGS), "error: {cwd}/stills/broken.cbf: not a readable CBF image (fabio could not parse its "
         "header: AttributeError)"),
        (("--images", "stills/s_*.cbf", "--backend", "dials", "--unit-cell", "79,79,38,90,90", "--space-group", "P1"),
         "error: unit_cell must be six positive numbers a,b,c,alpha,beta,gamma (Å, deg), got '79,79,38,90,90'"),
        (("--images", "stills/s_*.cbf", "--backend", "dials", "--space-group", "P1"), "error: --backend dials needs "
         "--unit-cell"),
        (("--images", "stills/s_*.cbf", "--geometry", "x.geom"), "error: {cwd}/stills/s_000.cbf, field '--images': "
         "the crystfel backend reads events of HDF5 files; index image files with --backend dials"),
        (("--images", "list.txt", *DIALS_ARGS), "error: {cwd}/list.txt, line 2, field 'image': image 'gone.cbf' does "
         "not exist"),
    ],
)
def test_bad_run_input_is_one_line_before_anything_is_written(tmp_path: Path, args: tuple[str, ...],
                                                              message: str) -> None:
    from ptylib.io.minicbf import MiniCbfHeader, write_minicbf

    for i in range(2):
        write_minicbf(tmp_path / "stills" / f"s_{i:03d}.cbf", np.zeros((20, 30), np.int32),
                      MiniCbfHeader(0.172, 155.0, 1.0, 15.0, 10.0))
    (tmp_path / "stills" / "broken.cbf").write_text("not a CBF")
    (tmp_path / "list.txt").write_text("stills/s_000.cbf\ngone.cbf\n")
    done = _ici_run(tmp_path, *args)
    assert done.returncode == 2 and done.stderr.strip() == message.format(cwd=tmp_path), done.stderr
    assert not (tmp_path / "rr").exists()


@pytest.mark.dials  # without DIALS: skipped, or failed under PTYFLOWS_REQUIRE_DIALS=1 (tests/conftest.py)
def test_unknown_space_group_is_one_line(tmp_path: Path) -> None:
    from ptylib.io.minicbf import MiniCbfHeader, write_minicbf

    write_minicbf(tmp_path / "s_001.cbf", np.zeros((20, 30), np.int32), MiniCbfHeader(0.172, 155.0, 1.0, 15.0, 10.0))
    done = _ici_run(tmp_path, "--images", "s_*.cbf", "--backend", "dials", "--unit-cell", "79,79,38,90,90,90",
                    "--space-group", "Q99")
    assert done.returncode == 2 and not (tmp_path / "rr").exists()
    assert done.stderr.strip() == ("error: --space-group, field 'space_group': 'Q99' is not a space group DIALS knows "
                                   "(Space group symbol not recognized: Q99)")


def test_run_help_lists_data_and_indexer_before_the_proposer_knobs() -> None:
    from flows.cli import build_parser as full_parser
    from ptylib.ici.backends.dials import DialsOptions
    from ptylib.ici.backends.flags import DIALS_FLAGS

    parser = full_parser()
    ici = next(a for a in parser._subparsers._group_actions[0].choices["ici"]._actions if a.dest == "ici_command")
    text = ici.choices["run"].format_help()
    order = [text.index(title) for title in ("data (relative", "indexer:", "dials backend:", "proposer:")]
    assert order == sorted(order)
    assert "--unit-cell UNIT_CELL" in text and "(default refine)" in text and "--no-dials-server" in text
    assert {f.name for f in dataclasses.fields(DialsOptions)} == set(DIALS_FLAGS)
    args = ici.choices["run"].parse_args(["--run-root", "r", *DIALS_ARGS, "--mode", "fixed", "--image-template",
                                          "cbf/s_{frame:05d}.cbf", "--find-spots-args", "a=1 b=2", "--no-dials-server"])
    from ptylib.ici.backends.flags import dials_options_from_args

    options = dials_options_from_args(args, cwd="/data/beamtime")
    assert options == DialsOptions(unit_cell="79.1,79.1,37.9,90,90,90", space_group="P43212", mode="fixed",
                                   image_template="/data/beamtime/cbf/s_{frame:05d}.cbf",
                                   find_spots_args=("a=1", "b=2"), persistent=False)
