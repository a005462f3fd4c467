"""``kill -9`` of the ICI flow at three points: no indexing job outlives it, and a resumed run ends with the same ledger.

The stand-in indexamajig sleeps before indexing, so every kill point has jobs in flight.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ptylib.ici.backends import CrystfelOptions
from ptylib.ici.jobs import JOB_TOKEN_VARIABLE, JOBS_DIR, read_job_records
from ptylib.ici.runroot.layout import LEDGER_NAME
from ptylib.ici.synthetic.dataset import make_synthetic_run

pytestmark = [pytest.mark.prefect_test, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
REPO = Path(__file__).parents[2]
STANDIN = REPO / "tests" / "fixtures" / "bin" / "indexamajig"
N_EVENTS, ITERATIONS, WORKERS = 4, 3, 2


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    """Four synthetic events, a slow stand-in indexamajig, and the ledger of an uninterrupted run."""
    from flows.ici_loop import ici_loop

    folder = tmp_path_factory.mktemp("ici-kills")
    run = make_synthetic_run(folder / "data", N_EVENTS, seed=5, radius_mm=0.05)
    slow = folder / "indexamajig"
    slow.write_text(f"#!/usr/bin/env bash\nsleep 0.3\nexec {shlex.quote(sys.executable)} {shlex.quote(str(STANDIN))} "
                    '"$@"\n')
    slow.chmod(0o755)
    whole = folder / "whole"
    ici_loop(run_root=str(whole), inputs=[str(run.h5_path)],
             crystfel=CrystfelOptions(geometry=run.geometry_path, indexamajig=str(slow)),
             max_iterations=ITERATIONS, workers=WORKERS)
    ledger = (whole / LEDGER_NAME).read_bytes()
    assert b"\n2," in ledger, "the uninterrupted run must reach run 2 for the third kill point"
    return run, slow, ledger


def _completed(run_dir: Path) -> int:
    return len(list(run_dir.glob("event_*/.event_complete")))


# Kill points: (run folder, events of that run already complete) with jobs in flight.
KILL_POINTS: dict[str, Callable[[Path], bool]] = {
    "run 0, first jobs": lambda root: (root / "run_000").is_dir() and _completed(root / "run_000") == 0,
    "run 1, half done": lambda root: _completed(root / "run_001") >= 2,
    "run 2, first jobs": lambda root: (root / "run_002").is_dir(),
}


def _job_processes(root: Path, tokens: set[str]) -> list[int]:
    """Live processes working in ``root`` or carrying one of the job tokens."""
    found = []
    markers = {f"{JOB_TOKEN_VARIABLE}={t}".encode() for t in tokens}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if "State:\tZ" in (entry / "status").read_text():
                continue
            cwd = Path(os.readlink(entry / "cwd"))
            environment = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if cwd.is_relative_to(root) or environment & markers:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_leaves_no_job_and_resumes_to_the_same_ledger(data, tmp_path: Path, point: str) -> None:
    from prefect.settings import PREFECT_API_URL

    from flows.ici_loop import ici_loop

    run, slow, whole_ledger = data
    root = tmp_path / "run"
    command = [sys.executable, "-m", "flows.cli", "ici", "run", "--run-root", str(root), "--input", str(run.h5_path),
               "--geometry", str(run.geometry_path), "--indexamajig", str(slow),
               "--max-iterations", str(ITERATIONS), "--workers", str(WORKERS)]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    flow = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not (KILL_POINTS[point](root) and read_job_records(root)):
            assert flow.poll() is None, "the flow ended before the kill point"
            assert time.monotonic() < deadline, "the kill point was not reached"
            time.sleep(0.02)
        tokens = {r.token for r in read_job_records(root)}
        os.kill(flow.pid, signal.SIGKILL)  # the flow's process alone: its jobs must follow it
        flow.wait()
    finally:
        flow.kill()
        flow.wait()
    assert not (root / "run_002" / "chunk_metrics_002.csv").exists()

    deadline = time.monotonic() + 5.0
    while (left := _job_processes(root, tokens)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], f"jobs of the killed flow still alive: {left}"

    ici_loop(run_root=str(root), inputs=[str(run.h5_path)],
             crystfel=CrystfelOptions(geometry=run.geometry_path, indexamajig=str(slow)),
             max_iterations=ITERATIONS, workers=WORKERS)
    assert (root / LEDGER_NAME).read_bytes() == whole_ledger
    assert not list((root / JOBS_DIR).iterdir())
