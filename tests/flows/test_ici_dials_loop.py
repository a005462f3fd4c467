"""The ICI loop with the real DIALS backend on a folder of rendered CBF stills: the CLI in refine mode, the flow in fixed."""

from __future__ import annotations

import csv
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from ptylib.ici.backends import BackendName, DialsOptions
from ptylib.ici.report.centres import COLUMNS as CENTRES_COLUMNS
from ptylib.ici.report.final import best_centres
from ptylib.ici.runroot.layout import CENTRES_NAME, LEDGER_NAME
from ptylib.ici.runroot.ledger import read_ledger
from ptylib.io.minicbf import beam_xy_px, read_minicbf

pytestmark = [
    pytest.mark.prefect_test, pytest.mark.slow, pytest.mark.dials, pytest.mark.usefixtures("prefect_harness"),
]  # without DIALS: skipped, or failed under PTYFLOWS_REQUIRE_DIALS=1 (tests/conftest.py)
REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def stills(tmp_path_factory: pytest.TempPathFactory):
    from ptylib.ici.synthetic.dials_dataset import make_dials_dataset

    return make_dials_dataset(tmp_path_factory.mktemp("stills") / "data", events=4, seed=3)


def test_cli_indexes_a_folder_of_cbf_stills_and_writes_the_centres(stills) -> None:
    from prefect.settings import PREFECT_API_URL

    o = stills.dials_options
    data = stills.h5_path.parent
    command = [sys.executable, "-m", "flows.cli", "ici", "run", "--run-root", "run", "--images", "cbf/*.cbf",
               "--backend", "dials", "--unit-cell", o["unit_cell"], "--space-group", o["space_group"],
               "--find-spots-args", " ".join(o["find_spots_args"]), "--max-rmsd-px", str(o["max_rmsd_px"]),
               "--max-iterations", "4", "--workers", "2"]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=data, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "median_refined_centre_error_mm" in done.stdout and "__EVENT_DONE__" not in done.stdout + done.stderr

    root = data / "run"
    # Events are keyed by the absolute image path, in the ledger's own section form.
    assert f"#{data / 'cbf' / 'still_00001.cbf'} event 0\n" in (root / LEDGER_NAME).read_text()
    rows = list(csv.DictReader((root / CENTRES_NAME).open()))
    assert list(rows[0]) == list(CENTRES_COLUMNS) and len(rows) == 4
    errors = []
    for row, truth in zip(rows, stills.true_shift_mm.tolist(), strict=True):
        # A deterministic indexer: the run at the refined centre refines to it again, DONE after 2 runs.
        assert row["status"] == "done" and int(row["runs"]) == 2 and int(row["refined_n"]) == 2
        refined = (float(row["refined_shift_x_mm"]), float(row["refined_shift_y_mm"]))
        errors.append(math.dist(refined, truth))
        header = beam_xy_px(read_minicbf(row["image"])[1])
        assert float(row["beam_fast_px"]) == pytest.approx(header[0] + refined[0] / 0.172, abs=2e-3)
        assert float(row["beam_slow_px"]) == pytest.approx(header[1] + refined[1] / 0.172, abs=2e-3)
    assert statistics.median(errors) < 0.008 and max(errors) < 0.015, errors


def test_two_iterations_in_fixed_mode(stills, tmp_path: Path) -> None:
    from flows.ici_loop import ici_loop

    options = {k: v for k, v in stills.dials_options.items() if k != "image_template"}
    root = tmp_path / "run"
    report = ici_loop(run_root=str(root), images=stills.images, backend=BackendName.DIALS,
                      dials=DialsOptions(**options, mode="fixed"), max_iterations=2, workers=2)
    histories = read_ledger(root / LEDGER_NAME)
    assert len(histories) == 4 and {row.run_n for h in histories.values() for row in h.rows} == {0, 1}
    # Every true offset lies within 0.05 mm of the first centre, where DIALS indexes these stills.
    assert all(h.rows[0].succeeded for h in histories.values())
    best = best_centres(histories)
    truth = {key: stills.true_shift_mm[index] for index, key in enumerate(histories)}
    errors = [math.dist(best[k], truth[k]) for k in histories]
    assert report["figures"]["median_centre_error_mm"] == pytest.approx(statistics.median(errors))
    rows = {row["image"]: row for row in csv.DictReader((root / CENTRES_NAME).open())}
    assert all(rows[key.h5_path]["refined_n"] == "0" and rows[key.h5_path]["refined_shift_x_mm"] == ""
               for key in histories)  # fixed mode: DIALS does not refine the detector
    assert [row["error_best_mm"] for row in report["centres"]] == [f"{e:.4f}" for e in errors]


def test_ici_watch_continues_an_image_folder_loop_on_its_recorded_images(stills, tmp_path: Path) -> None:
    from test_scale_out import raise_iteration_cap

    from flows.ici_loop import ici_loop
    from flows.ici_watch import ici_watch, unfinished_loop

    folder = tmp_path / "stills"
    shutil.copytree(Path(stills.images).parent, folder)
    options = {k: v for k, v in stills.dials_options.items() if k != "image_template"}
    root = tmp_path / "runs" / "r1"
    ici_loop(run_root=str(root), images=str(folder / "*.cbf"), backend=BackendName.DIALS,
             dials=DialsOptions(**options, mode="fixed"), max_iterations=1, workers=2)
    images = sorted(str(p.resolve()) for p in folder.glob("*.cbf"))
    raise_iteration_cap(root, 2)
    # A still that arrives later matches the glob but is no event of this loop.
    shutil.copy(folder / Path(images[0]).name, folder / "still_99999.cbf")
    assert unfinished_loop(root)["images"] == images

    assert ici_watch(str(tmp_path / "runs")) == {"continued": [str(root)], "busy": []}
    histories = read_ledger(root / LEDGER_NAME)
    assert [key.h5_path for key in histories] == images
    assert all([row.run_n for row in h.rows] == [0, 1] for h in histories.values())
    assert unfinished_loop(root) is None


def test_readme_python_example_runs_as_written(stills, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("From Python:"):]
    code = block[block.index("```python\n") + len("```python\n"):block.index("\n```", block.index("```python"))]
    (tmp_path / "stills").symlink_to(stills.h5_path.parent / "cbf")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    rows = list(csv.DictReader((tmp_path / "runs" / "stills" / CENTRES_NAME).open()))
    assert len(rows) == 4 and all(row["status"] == "done" for row in rows)
