"""The ICI loop flow end to end with the stand-in indexamajig: convergence, artifacts, locking (kills: test_ici_kills.py)."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flows.ici_demo import standin_indexamajig
from ptylib.ici.backends import CrystfelOptions
from ptylib.ici.report.centres import COLUMNS as CENTRES_COLUMNS
from ptylib.ici.report.final import best_centres
from ptylib.ici.runroot.layout import LEDGER_NAME
from ptylib.ici.runroot.ledger import read_ledger
from ptylib.ici.synthetic.dataset import make_synthetic_run

pytestmark = [pytest.mark.prefect_test, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ici-data")
    return make_synthetic_run(root / "data", 20, seed=11, radius_mm=0.05), standin_indexamajig(root / "bin")


def _truth(data) -> dict:
    return {i: tuple(xy) for i, xy in enumerate(data.true_offset_mm)}


def test_loop_converges_and_reports(synthetic, tmp_path: Path, artifact_keys) -> None:
    from prefect.client.orchestration import get_client

    from flows.ici_loop import ici_loop

    data, indexamajig = synthetic
    root = tmp_path / "run"
    report = ici_loop(run_root=str(root), inputs=[str(data.h5_path)],
                      crystfel=CrystfelOptions(geometry=data.geometry_path, indexamajig=str(indexamajig)),
                      max_iterations=6, workers=2)

    histories = read_ledger(root / LEDGER_NAME)
    assert len(histories) == 20
    runs = {row.run_n for h in histories.values() for row in h.rows}
    assert runs == set(range(len(runs))) and len(runs) >= 5
    truth = _truth(data)
    start = np.median([math.dist((h.rows[0].det_shift_x_mm, h.rows[0].det_shift_y_mm), truth[k.event])
                       for k, h in histories.items()])
    best = best_centres(histories)
    final = np.median([math.dist(best[k], truth[k.event]) for k in best])
    assert final < 0.5 * start, (start, final)
    assert final < 0.01
    assert sum(h.is_done for h in histories.values()) >= 10
    assert report["figures"]["median_centre_error_mm"] == pytest.approx(final)

    for name in ("report.md", "iterations.png", "trajectories.png", "iterations.csv", "manifest.json",
                 "image_run_state.json", "run_000/stream_000.stream", "run_000/chunk_metrics_000.csv",
                 "run_000/event_000000/sh_000000.sh", "run_000/event_000000/idx.stdout"):
        assert (root / name).is_file(), name
    assert "__EVENT_DONE__" in (root / "run_000/event_000000/idx.stdout").read_text()
    assert (root / "run_000/stream_000.stream").read_text().count("----- Begin chunk -----") == 20

    # The answer: centres.csv, one row per event, best/refined/final centres near the hidden truth.
    rows = list(csv.DictReader((root / "centres.csv").open()))
    assert list(rows[0]) == list(CENTRES_COLUMNS) and len(rows) == 20
    assert [int(r["event"]) for r in rows] == list(range(20))
    indexed = [r for r in rows if r["status"] != "not_indexed"]
    best_errors = [math.dist((float(r["best_shift_x_mm"]), float(r["best_shift_y_mm"])), truth[int(r["event"])])
                   for r in indexed]
    refined_errors = [math.dist((float(r["refined_shift_x_mm"]), float(r["refined_shift_y_mm"])),
                                truth[int(r["event"])]) for r in indexed if int(r["refined_n"]) > 0]
    assert np.median(best_errors) == pytest.approx(final, abs=1e-4)
    assert len(refined_errors) >= 15 and np.median(refined_errors) < 0.01
    assert all(r["beam_fast_px"] == "" for r in rows)  # HDF5 events: the centre lives in the geometry file
    assert {r["status"] for r in rows} <= {"done", "open", "not_indexed"}
    assert [row["error_final_mm"] for row in report["centres"]][:3] != ["", "", ""]

    async def logs_of_runs() -> list[str]:
        async with get_client() as client:
            return [log.message for log in await client.read_logs()]

    import asyncio

    logs = asyncio.run(logs_of_runs())
    wanted = {"ici-loop-final", "ici-summary-run-000", "ici-final-figures", "ici-centres"}
    assert artifact_keys(wanted) == wanted
    assert logs and not any("__EVENT_DONE__" in message for message in logs)


def _cli(root: Path, data, indexamajig: Path, iterations: int) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "ici", "run", "--run-root", str(root), "--input", str(data.h5_path),
            "--geometry", str(data.geometry_path), "--indexamajig", str(indexamajig),
            "--events", "0-7", "--max-iterations", str(iterations), "--workers", "2"]


def _env() -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    # Subprocesses talk to the harness' server instead of starting their own.
    return {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}


def test_second_run_on_a_locked_root_is_refused(synthetic, tmp_path: Path) -> None:
    from ptylib.io.lock import RunRootLock

    data, indexamajig = synthetic
    with RunRootLock(tmp_path, owner="another ici-loop"):
        proc = subprocess.run(_cli(tmp_path, data, indexamajig, 1), cwd=REPO, env=_env(), capture_output=True,
                              text=True)
    assert proc.returncode == 2
    assert "is in use by another run (pid" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / LEDGER_NAME).exists()


def test_an_indexer_that_fails_on_every_event_fails_the_flow_after_the_first_run(synthetic, tmp_path: Path) -> None:
    from flows.ici_loop import ici_loop
    from ptylib.ici.loop import IndexerFailedError

    data, _ = synthetic
    root = tmp_path / "run"
    missing = tmp_path / "no-such-dir" / "indexamajig"
    with pytest.raises(IndexerFailedError, match=r"failed on all 3 events of run 000 \(exit code 127\): .*indexamajig: No such file"):
        ici_loop(run_root=str(root), inputs=[str(data.h5_path)], events="0-2",
                 crystfel=CrystfelOptions(geometry=data.geometry_path, indexamajig=str(missing)), max_iterations=5)
    assert not (root / LEDGER_NAME).exists() and not (root / "run_001").exists()
    assert not (root / "run_000" / "event_000000" / ".event_complete").exists()  # a rerun retries, not skips
