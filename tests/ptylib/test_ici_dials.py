"""DIALS indexer backend: options, job scripts, failure reasons, and real DIALS on rendered stills."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

from ptylib.ici.backends import (
    BackendName,
    DialsBackend,
    DialsNotFoundError,
    DialsOptions,
    EventJob,
    make_backend,
)
from ptylib.ici.backends.base import STDERR_NAME
from ptylib.ici.backends.dials import DialsMode, event_image_path
from ptylib.ici.backends.dials_worker import (
    SUMMARY_NAME,
    centre_change_to_shift_mm,
    shift_to_centre_px,
    supplied_centre_px,
)
from ptylib.ici.model import EventKey
from ptylib.ici.runner import collect_run, concatenate_streams, run_event_batch
from ptylib.ici.runroot.layout import event_dir

LYSOZYME = {"unit_cell": "79.1,79.1,37.9,90,90,90", "space_group": "P43212",
            "image_template": "{h5_dir}/{h5_stem}_{frame:05d}.cbf"}


def _fake_interpreter(tmp_path: Path, body: str) -> str:
    """An executable standing in for DIALS' Python: it ignores its arguments and runs ``body`` (bash)."""
    path = tmp_path / "fake-python"
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)
    return str(path)


def _run_one(backend: DialsBackend, root: Path, job: EventJob, *, timeout_s: float = 300.0):  # noqa: ANN202
    run_dir = root / f"run_{job.run_n:03d}"
    backend.prepare_run(run_dir, [job])
    script = backend.write_event_script(job, event_dir(root, job.run_n, job.event_index))
    run_event_batch([script], timeout_s=timeout_s, workers=1)
    concatenate_streams(run_dir, job.run_n, [job.event_index])
    (result,) = collect_run(run_dir, job.run_n, [job], backend)
    return result


def test_options_are_checked() -> None:
    options = DialsOptions(unit_cell=(79.1, 79.1, 37.9, 90, 90, 90), space_group="P43212", mode="FIXED",
                           image_template="{h5_dir}/{event}.cbf")
    assert options.unit_cell == "79.1,79.1,37.9,90,90,90" and options.mode is DialsMode.FIXED
    assert DialsOptions(**LYSOZYME, index_args="a=1 b=2").index_args == ("a=1", "b=2")
    for bad in ({"unit_cell": "79.1,79.1"}, {"unit_cell": "a,b,c,d,e,f"}, {"space_group": "P 43 21 2"},
                {"mode": "both"}, {"image_template": "{h5_stem}.cbf"}, {"image_template": "{frame}_{oops}.cbf"},
                {"min_indexed_fraction": 0.0}, {"max_rmsd_px": -1.0}, {"match_radius_px": 0.0}):
        with pytest.raises(ValueError):
            DialsOptions(**{**LYSOZYME, **bad})


def test_missing_dials_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DialsNotFoundError, match="apt-get install -y dials"):
        make_backend(BackendName.DIALS, LYSOZYME)
    with pytest.raises(DialsNotFoundError, match="apt-get install -y dials"):
        make_backend("dials", {**LYSOZYME, "python": str(tmp_path / "no-such-python")})


def test_shift_is_crystfels_detector_translation() -> None:
    # A miniCBF panel: fast +x, slow -y in DIALS' imgCIF frame = -x, -y in CrystFEL's McStas frame.
    # Moving it by +x (McStas) moves the beam +x / pixel along fast; by +y, +y / pixel along slow.
    matrix = shift_to_centre_px((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.172, 0.172))
    assert supplied_centre_px((100.0, 200.0), (0.172, -0.344), matrix) == pytest.approx((101.0, 198.0))
    # A panel with fast along -y and slow along -x (rotated 90 degrees): the shift's axes swap.
    rotated = shift_to_centre_px((0.0, -1.0, 0.0), (-1.0, 0.0, 0.0), (0.1, 0.2))
    assert supplied_centre_px((0.0, 0.0), (0.2, 0.1), rotated) == pytest.approx((1.0, -1.0))
    assert centre_change_to_shift_mm((1.0, -1.0), rotated) == pytest.approx((0.2, 0.1))


def test_job_script_runs_the_worker_on_the_event_still(tmp_path: Path) -> None:
    backend = make_backend("dials", {**LYSOZYME, "python": _fake_interpreter(tmp_path, "exit 0"), "mode": "fixed",
                                     "index_args": ["indexing.refinement_protocol.n_macro_cycles=2"]})
    job = EventJob(EventKey(str(tmp_path / "data" / "lyso.h5"), 6), 2, 1, -0.012, 0.5)
    assert event_image_path(backend.options.image_template, job.key) == tmp_path / "data" / "lyso_00007.cbf"
    script = backend.write_event_script(job, tmp_path / "run_001" / "event_000002")
    assert script.name == "sh_000002.sh"
    text = script.read_text()
    for expected in ("fake-python -I ", "dials_worker.py", f"--image {tmp_path / 'data' / 'lyso_00007.cbf'}",
                     "--det-shift-mm=-0.012,0.5", "--mode fixed", "--stream stream_000002.stream", "--event //6",
                     "--index-arg=indexing.refinement_protocol.n_macro_cycles=2"):
        assert expected in text


@pytest.mark.parametrize(("body", "reason"), [
    ("kill -SEGV $$", "dials_crashed: the DIALS worker ended with exit code 139"),
    ("echo 'ptyflows dials worker: dials_error: dials.import exited: 1' >&2; exit 3", "dials_error: dials.import"),
])
def test_crash_or_error_is_not_indexed_with_its_reason(tmp_path: Path, body: str, reason: str) -> None:
    backend = make_backend("dials", {**LYSOZYME, "python": _fake_interpreter(tmp_path, body)})
    job = EventJob(EventKey(str(tmp_path / "x.h5"), 0), 0, 0, 0.0, 0.0)
    result = _run_one(backend, tmp_path / "root", job)
    assert not result.metric.indexed and result.metric.wrmsd is None
    assert reason in result.metric.reason
    assert reason in (event_dir(tmp_path / "root", 0, 0) / STDERR_NAME).read_text()


def test_timeout_is_not_indexed(tmp_path: Path) -> None:
    backend = make_backend("dials", {**LYSOZYME, "python": _fake_interpreter(tmp_path, "sleep 30")})
    job = EventJob(EventKey(str(tmp_path / "x.h5"), 0), 0, 0, 0.0, 0.0)
    result = _run_one(backend, tmp_path / "root", job, timeout_s=1.0)
    assert not result.metric.indexed and result.metric.reason.startswith("timeout")
    assert "timeout after 1 s" in (event_dir(tmp_path / "root", 0, 0) / STDERR_NAME).read_text()


@pytest.mark.dials
def test_unreadable_still_is_not_indexed(tmp_path: Path) -> None:
    (tmp_path / "bad_00001.cbf").write_bytes(b"###CBF: not really\n\x00\x01garbage")
    backend = make_backend("dials", LYSOZYME)
    job = EventJob(EventKey(str(tmp_path / "bad.h5"), 0), 0, 0, 0.0, 0.0)
    result = _run_one(backend, tmp_path / "root", job)
    assert not result.metric.indexed
    assert result.metric.reason.startswith("dials_unreadable_image")
    stderr = (event_dir(tmp_path / "root", 0, 0) / STDERR_NAME).read_text()
    assert "dials_unreadable_image" in stderr
    summary = json.loads((event_dir(tmp_path / "root", 0, 0) / SUMMARY_NAME).read_text())
    assert summary["indexed"] is False and not math.isnan(summary["det_shift_mm_applied"][0])


@pytest.fixture(scope="module")
def stills(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Two rendered lysozyme-like stills with known true shifts (the default dataset, made small)."""
    from ptylib.ici.synthetic.dials_dataset import make_dials_dataset

    return make_dials_dataset(tmp_path_factory.mktemp("stills"), events=2, seed=7, panel_px=500)


def _run_jobs(backend: DialsBackend, root: Path, jobs: list[EventJob]) -> list:
    run_dir = root / f"run_{jobs[0].run_n:03d}"
    backend.prepare_run(run_dir, jobs)
    scripts = [backend.write_event_script(j, event_dir(root, j.run_n, j.event_index)) for j in jobs]
    assert run_event_batch(scripts, timeout_s=600, workers=2) == [0] * len(jobs)
    concatenate_streams(run_dir, jobs[0].run_n, [j.event_index for j in jobs])
    return collect_run(run_dir, jobs[0].run_n, jobs, backend)


@pytest.mark.dials
def test_still_degrades_as_the_supplied_centre_moves_away(tmp_path: Path, stills) -> None:  # noqa: ANN001
    """Fixed mode: indexed at the true centre, RMSD growing with the offset, not indexed at 0.5 mm."""
    backend = make_backend("dials", {**stills.dials_options, "mode": "fixed"})
    key = EventKey(str(stills.h5_path), 0)
    true_x, true_y = stills.true_shift_mm[0]
    offsets_mm = (0.0, 0.1, 0.2, 0.5)
    jobs = [EventJob(key, i, 0, true_x + d, true_y) for i, d in enumerate(offsets_mm)]
    results = _run_jobs(backend, tmp_path, jobs)
    summaries = [json.loads((event_dir(tmp_path, 0, i) / SUMMARY_NAME).read_text()) for i in range(len(jobs))]
    assert results[0].metric.indexed and summaries[0]["rmsd_px"] < 0.5
    assert 0.5 * summaries[0]["rmsd_px"] < results[0].metric.wrmsd < 2.0 * summaries[0]["rmsd_px"]
    rmsd = [s.get("rmsd_px", math.inf) for s in summaries]
    assert rmsd[0] < rmsd[1] < rmsd[2], rmsd
    assert not results[-1].metric.indexed and results[-1].metric.reason.startswith(("gate_", "dials_not_indexed"))
    assert results[-1].metric.reason in (event_dir(tmp_path, 0, len(jobs) - 1) / STDERR_NAME).read_text()


@pytest.mark.dials
def test_refine_mode_outputs_feed_the_ledger_and_step2(tmp_path: Path, stills) -> None:  # noqa: ANN001
    """Refine mode from 0.2 mm off: indexed, dx/dy pointing at the true centre, ingested and proposed from."""
    from ptylib.ici.backends.stream import parse_stream
    from ptylib.ici.proposer.dxdy import read_dxdy
    from ptylib.ici.proposer.options import ProposerOptions
    from ptylib.ici.proposer.propose import propose_run_root
    from ptylib.ici.runroot.ingest import ingest_run
    from ptylib.ici.runroot.layout import LEDGER_NAME
    from ptylib.ici.runroot.ledger import read_ledger

    backend = make_backend("dials", stills.dials_options)
    keys = [EventKey(str(stills.h5_path), e) for e in (0, 1)]
    start = stills.true_shift_mm + [[0.2, -0.1], [0.03, 0.0]]  # at the truth the damped step would be < the spacing
    jobs = [EventJob(k, i, 0, *start[i]) for i, k in enumerate(keys)]
    results = _run_jobs(backend, tmp_path, jobs)
    assert all(r.metric.indexed and math.isfinite(r.metric.wrmsd) for r in results)
    for i, result in enumerate(results):
        dx, dy, status = read_dxdy(result.dxdy_path, 1e3)
        assert status == "dxdy_ok"
        # Step-2's full step (lambda = 1) lands within 0.01 mm of the true shift.
        assert math.dist((start[i][0] - dx, start[i][1] - dy), stills.true_shift_mm[i]) < 0.01
    chunks = parse_stream(tmp_path / "run_000" / "stream_000.stream")
    assert [c.event for c in chunks] == ["//0", "//1"] and all(c.indexed for c in chunks)

    assert ingest_run(tmp_path, 0) == 2
    assert ingest_run(tmp_path, 0) == 0  # idempotent
    propose_run_root(tmp_path, ProposerOptions(policy="hillmap"))  # the seed's Step-2: damped dx/dy
    histories = read_ledger(tmp_path / LEDGER_NAME)
    for i, key in enumerate(keys):
        (row,) = histories[key].rows
        assert row.indexed and row.wrmsd == pytest.approx(results[i].metric.wrmsd)
        assert row.proposal is not None and row.proposal.reason.startswith("dxdy")
        moved = math.dist((row.proposal.dx_mm, row.proposal.dy_mm), stills.true_shift_mm[i])
        assert moved < 0.2 * math.dist(start[i], stills.true_shift_mm[i]) + 0.01


def _processes_in(directory: Path) -> list[int]:
    """PIDs of the processes whose working directory is ``directory``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == directory:
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.dials
@pytest.mark.parametrize("persistent", [True, False])
def test_timed_out_still_leaves_no_dials_process(tmp_path: Path, stills, persistent: bool) -> None:  # noqa: ANN001
    backend = make_backend("dials", {**stills.dials_options, "persistent": persistent})
    job = EventJob(EventKey(str(stills.h5_path), 0), 0, 0, *stills.true_shift_mm[0])
    result = _run_one(backend, tmp_path, job, timeout_s=1.0)
    assert not result.metric.indexed and result.metric.reason.startswith("timeout")
    directory = event_dir(tmp_path, 0, 0).resolve()
    deadline = time.monotonic() + 10.0
    while _processes_in(directory) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_in(directory)
