"""Indexer backends: CrystFEL overlay + command line, the stand-in indexamajig end to end, the command backend."""

from __future__ import annotations

import csv
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptylib.ici.backends import (
    BackendName,
    CommandBackend,
    CommandOptions,
    CrystfelBackend,
    CrystfelOptions,
    EventJob,
    make_backend,
)
from ptylib.ici.backends.base import EVENT_MARKER, parse_stream_part
from ptylib.ici.backends.crystfel import (
    DET_SHIFT_X_PATH,
    DET_SHIFT_Y_PATH,
    geometry_path,
    overlay_path,
)
from ptylib.ici.model import EventKey, IciInputError
from ptylib.ici.runner import run_event_batch
from ptylib.ici.synthetic.dataset import SyntheticRun, make_synthetic_run

REPO = Path(__file__).resolve().parents[2]
STAND_IN = REPO / "tests" / "fixtures" / "bin" / "indexamajig"
RECORDED = REPO / "tests" / "fixtures" / "ici" / "recorded_multi.stream"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRun:
    return make_synthetic_run(tmp_path_factory.mktemp("data"), 6, seed=11)


def _job(run: SyntheticRun, event: int, event_index: int, run_n: int, shift: tuple[float, float]) -> EventJob:
    return EventJob(EventKey(str(run.h5_path), event), event_index, run_n, float(shift[0]), float(shift[1]))


def _at_distance(run: SyntheticRun, event: int, d_mm: float) -> tuple[float, float]:
    x, y = run.true_offset_mm[event]
    return x + d_mm, y


def _run_dir(root: Path, run_n: int) -> Path:
    return root / f"run_{run_n:03d}"


def _event_dir(root: Path, job: EventJob) -> Path:
    return _run_dir(root, job.run_n) / f"event_{job.event_index:06d}"


def test_make_backend_names_and_options(tmp_path: Path) -> None:
    backend = make_backend("crystfel", {"geometry": tmp_path / "g.geom", "refine": False})
    assert isinstance(backend, CrystfelBackend) and backend.options.refine is False
    assert isinstance(make_backend(BackendName.COMMAND, CommandOptions(template="true")), CommandBackend)
    with pytest.raises(ValueError, match="unknown indexer backend 'xds'.*crystfel, command"):
        make_backend("xds", {})
    with pytest.raises(ValueError, match=r"unknown \['geom'\], missing \['geometry'\]"):
        make_backend("crystfel", {"geom": "g.geom"})
    with pytest.raises(ValueError, match="unknown placeholders"):
        CommandOptions(template="run {h5} {stream}")
    with pytest.raises(ValueError, match="match_radius_px"):
        CrystfelOptions(geometry=Path("g.geom"), match_radius_px=0.0)


def test_crystfel_command_line(tmp_path: Path) -> None:
    options = CrystfelOptions(geometry=tmp_path / "det.geom", indexamajig="/opt/crystfel/bin/indexamajig --quiet",
                              indexing="xgandalf,mosflm", extra_args="--int-radius=2,3,5 --peaks=peakfinder8",
                              refine=False, cell_file=tmp_path / "lyso.cell", threads=4)
    job = EventJob(EventKey("/data/a.h5", 9), 3, 2, 0.01, -0.02)
    event_dir = tmp_path / "run_002" / "event_000003"
    args = CrystfelBackend(options).command(job, event_dir)
    assert args == [
        "/opt/crystfel/bin/indexamajig", "--quiet",
        "-i", "input_000003.lst", "-o", "stream_000003.stream",
        "-g", str((tmp_path / "run_002" / "geometry_002.geom").resolve()),
        "--indexing=xgandalf,mosflm", "-j", "4", "-p", str((tmp_path / "lyso.cell").resolve()),
        "--no-refine", "--int-radius=2,3,5", "--peaks=peakfinder8",
    ]
    refined = CrystfelBackend(CrystfelOptions(geometry=tmp_path / "det.geom")).command(job, event_dir)
    assert "--no-refine" not in refined and "--indexing=xgandalf" in refined and "-p" not in refined


def test_overlay_links_shifts_and_geometry(tmp_path: Path, synthetic: SyntheticRun) -> None:
    other = make_synthetic_run(tmp_path / "other", 3, seed=5)
    geometry = tmp_path / "det.geom"
    geometry.write_text(synthetic.geometry_path.read_text() + "detector_shift_x = 0.5 mm ; old\n")
    jobs = [_job(synthetic, 4, 1, 0, (0.01, 0.02)), _job(synthetic, 5, 2, 0, (-0.03, 0.04)),
            EventJob(EventKey(str(other.h5_path), 2), 6, 0, 0.05, -0.06)]
    backend = CrystfelBackend(CrystfelOptions(geometry=geometry))
    run_dir = tmp_path / "run_000"
    backend.prepare_run(run_dir, jobs)

    with h5py.File(overlay_path(run_dir, 0), "r") as overlay, h5py.File(synthetic.h5_path, "r") as source, \
            h5py.File(other.h5_path, "r") as source2:
        data = overlay["/entry/data/data"]
        assert data.shape == (7, 64, 64)
        np.testing.assert_array_equal(data[1], source["/entry/data/data"][4])
        np.testing.assert_array_equal(data[2], source["/entry/data/data"][5])
        np.testing.assert_array_equal(data[6], source2["/entry/data/data"][2])
        assert not data[0].any()  # not in this run
        links = [overlay["/entry/source"].get(f"file_{k:03d}", getlink=True) for k in range(2)]
        assert [link.filename for link in links] == [str(synthetic.h5_path), str(other.h5_path)]
        np.testing.assert_array_equal(overlay["/entry/source/file_001"][2], source2["/entry/data/data"][2])
        assert overlay["/entry/source/file_index"][[1, 2, 6]].tolist() == [0, 0, 1]
        assert overlay["/entry/source/event"][[1, 2, 6]].tolist() == [4, 5, 2]
        shift_x, shift_y = overlay[DET_SHIFT_X_PATH][()], overlay[DET_SHIFT_Y_PATH][()]
        assert shift_x[[1, 2, 6]].tolist() == [0.01, -0.03, 0.05]
        assert shift_y[[1, 2, 6]].tolist() == [0.02, 0.04, -0.06]
        assert np.isnan(shift_x[[0, 3, 4, 5]]).all()

    lines = geometry_path(run_dir, 0).read_text().splitlines()
    assert "detector_shift_x = /entry/data/det_shift_x_mm mm" in lines
    assert "detector_shift_y = /entry/data/det_shift_y_mm mm" in lines
    assert "; replaced by ICI: detector_shift_x = 0.5 mm ; old" in lines
    script = backend.write_event_script(jobs[2], run_dir / "event_000006")
    assert script.name == "sh_000006.sh" and os.access(script, os.X_OK)
    assert (run_dir / "event_000006" / "input_000006.lst").read_text() == f"{overlay_path(run_dir, 0).resolve()} //6\n"
    text = script.read_text()
    assert "indexamajig -i input_000006.lst -o stream_000006.stream" in text
    assert "echo __EVENT_DONE__" in text and text.rstrip().endswith("exit $rc")


def test_geometry_the_overlay_cannot_serve(tmp_path: Path, synthetic: SyntheticRun) -> None:
    job = _job(synthetic, 0, 0, 0, (0.0, 0.0))
    single = tmp_path / "single.geom"
    single.write_text(synthetic.geometry_path.read_text().replace("dim0 = %\n", ""))
    with pytest.raises(IciInputError, match="dim0"):
        CrystfelBackend(CrystfelOptions(geometry=single)).prepare_run(tmp_path / "run_000", [job])
    header = tmp_path / "header.geom"
    header.write_text(synthetic.geometry_path.read_text().replace("clen = 0.100 m", "clen = /LCLS/detector/clen mm"))
    with pytest.raises(IciInputError, match="field 'clen'"):
        CrystfelBackend(CrystfelOptions(geometry=header)).prepare_run(tmp_path / "run_000", [job])
    with pytest.raises(IciInputError, match="cannot read the geometry"):
        CrystfelBackend(CrystfelOptions(geometry=tmp_path / "absent.geom")).prepare_run(tmp_path / "run_000", [job])
    with pytest.raises(FileNotFoundError, match="prepare_run"):
        CrystfelBackend(CrystfelOptions(geometry=single)).write_event_script(job, tmp_path / "run_000" / "event_000000")


def test_stand_in_indexamajig_end_to_end(tmp_path: Path, synthetic: SyntheticRun) -> None:
    distances = [0.0, 0.1, 0.2, 0.35, 1.0]
    jobs = [_job(synthetic, e, e, 0, _at_distance(synthetic, e, d)) for e, d in enumerate(distances)]
    no_refine = [_job(synthetic, 5, 5, 1, _at_distance(synthetic, 5, 0.0))]
    refining = CrystfelBackend(CrystfelOptions(geometry=synthetic.geometry_path, indexamajig=str(STAND_IN)))
    plain = CrystfelBackend(CrystfelOptions(geometry=synthetic.geometry_path, indexamajig=str(STAND_IN), refine=False))
    scripts = []
    for backend, run_jobs in ((refining, jobs), (plain, no_refine)):
        backend.prepare_run(_run_dir(tmp_path, run_jobs[0].run_n), run_jobs)
        scripts += [backend.write_event_script(j, _event_dir(tmp_path, j)) for j in run_jobs]
    assert run_event_batch(scripts, timeout_s=60, workers=2) == [0] * 6

    results = [refining.parse_event(j, _event_dir(tmp_path, j)) for j in jobs]
    metrics = [r.metric for r in results]
    assert [m.indexed for m in metrics] == [True, True, True, True, False]
    assert metrics[4].wrmsd is None and metrics[4].reason == "not_indexed" and results[4].dxdy_path is None
    wrmsds = [m.wrmsd for m in metrics[:4]]
    assert wrmsds == sorted(wrmsds) and wrmsds[0] < 0.2 and wrmsds[3] > 0.8
    for d, value in zip(distances[:4], wrmsds, strict=True):
        assert value == pytest.approx(0.11 + 3.0 * d, rel=0.25)
    assert all(m.n_peaks >= 20 and m.n_reflections == m.n_peaks for m in metrics[:4])
    assert [m.det_shift_x_mm for m in metrics] == [j.det_shift_x_mm for j in jobs]

    for job, result, d in zip(jobs[:4], results[:4], distances[:4], strict=True):
        rows = list(csv.reader(result.dxdy_path.read_text().splitlines()))
        assert rows[0] == ["dx", "dy"] and len(rows) == 2
        dx, dy = (float(v) for v in rows[1])
        # (applied - true) in metres: +d mm along x, 0 along y, within the ~4 um noise.
        assert dx == pytest.approx(d * 1e-3, abs=2e-5) and dy == pytest.approx(0.0, abs=2e-5)
        # Step-2 (next = applied - lambda * 1e3 * dxdy) moves the shift toward the truth.
        next_x = job.det_shift_x_mm - 0.8 * dx * 1e3
        assert abs(next_x - synthetic.true_offset_mm[job.key.event][0]) <= 0.2 * d + 0.02

    plain_result = plain.parse_event(no_refine[0], _event_dir(tmp_path, no_refine[0]))
    assert plain_result.metric.indexed and plain_result.dxdy_path is None
    assert "--no-refine" in (_event_dir(tmp_path, no_refine[0]) / "sh_000005.sh").read_text()
    stdout = (_event_dir(tmp_path, jobs[0]) / "idx.stdout").read_text()
    assert stdout.strip() == "__EVENT_DONE__"
    assert "1 indexable" in (_event_dir(tmp_path, jobs[0]) / "idx.stderr").read_text()


def test_stand_in_runs_from_pythonpath_or_its_repository(tmp_path: Path) -> None:
    env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"])}
    for extra in ({}, {"PYTHONPATH": str(REPO)}):
        done = subprocess.run([str(STAND_IN), "--help"], cwd=tmp_path, env={**env, **extra},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "--no-refine" in done.stdout


def test_command_backend_template(tmp_path: Path, synthetic: SyntheticRun) -> None:
    # A per-event geometry with a literal detector shift, then the stand-in on the source file itself.
    template = (
        "printf '%s //%s\\n' {h5_path} {event} > in.lst && "
        "printf 'detector_shift_x = %s mm\\ndetector_shift_y = %s mm\\n' {det_shift_x_mm} {det_shift_y_mm} "
        f"| cat {shlex.quote(str(synthetic.geometry_path))} - > event.geom && "
        f"{shlex.quote(str(STAND_IN))} -i in.lst -o {{stream}} -g event.geom --indexing=xgandalf && "
        "echo {event_index} {run_n} {event_dir} > placeholders.txt"
    )
    backend = make_backend("command", {"template": template})
    jobs = [_job(synthetic, 3, 0, 0, _at_distance(synthetic, 3, 0.0)),
            _job(synthetic, 2, 1, 0, _at_distance(synthetic, 2, 2.0))]
    backend.prepare_run(_run_dir(tmp_path, 0), jobs)
    scripts = [backend.write_event_script(j, _event_dir(tmp_path, j)) for j in jobs]
    assert run_event_batch(scripts, timeout_s=60, workers=2) == [0, 0]
    first, second = (backend.parse_event(j, _event_dir(tmp_path, j)) for j in jobs)
    assert first.metric.indexed and first.metric.wrmsd < 0.2 and first.dxdy_path is not None
    assert not second.metric.indexed and second.metric.reason == "not_indexed"
    event_dir = _event_dir(tmp_path, jobs[0])
    assert (event_dir / "placeholders.txt").read_text().split() == ["0", "0", str(event_dir.resolve())]
    assert "Event: //3" in (event_dir / "stream_000000.stream").read_text()


def test_parse_event_never_raises(tmp_path: Path) -> None:
    job = EventJob(EventKey("/data/a.h5", 0), 0, 0, 0.0, 0.0)
    backend = CrystfelBackend(CrystfelOptions(geometry=tmp_path / "g.geom"))
    event_dir = tmp_path / "run_000" / "event_000000"
    event_dir.mkdir(parents=True)
    assert backend.parse_event(job, event_dir).metric.reason == "no_stream_part"
    part = event_dir / "stream_000000.stream"
    part.write_text("----- Begin chunk -----\nEvent: //0\nPeaks from peak search\n  fs/px\n 1.0 2.0\n")
    result = backend.parse_event(job, event_dir)
    assert result.metric.reason == "garbled_stream" and not result.metric.indexed and "line" in result.reason
    part.write_text("CrystFEL stream format 2.3\n")
    (event_dir / EVENT_MARKER).write_text('{"exit_code": 2, "timed_out": false, "script_sha256": ""}')
    assert backend.parse_event(job, event_dir).metric.reason == "no_chunk (exit 2)"
    (event_dir / EVENT_MARKER).write_text('{"exit_code": 124, "timed_out": true, "script_sha256": ""}')
    assert backend.parse_event(job, event_dir).metric.reason == "timeout"


def test_dxdy_from_the_streams_refined_shift(tmp_path: Path) -> None:
    # Chunk //0 of the recorded stream has 'predict_refine/det_shift x = 0.012 y = -0.004 mm'.
    event_dir = tmp_path / "event_000000"
    event_dir.mkdir()
    (event_dir / "stream_000000.stream").write_text(RECORDED.read_text())
    job = EventJob(EventKey("/data/run7.h5", 0), 0, 0, 0.0, 0.0)
    result = parse_stream_part(job, event_dir, stream_event=0, scoring=CrystfelOptions(geometry=Path("g")))
    assert result.metric.wrmsd == pytest.approx(math.sqrt(0.875))
    dx, dy = (float(v) for v in result.dxdy_path.read_text().splitlines()[1].split(","))
    assert (dx, dy) == pytest.approx((-0.012e-3, 0.004e-3))
    chunk3 = parse_stream_part(job, event_dir, stream_event=3, scoring=CrystfelOptions(geometry=Path("g")))
    assert chunk3.metric.reason == "no_matched_peaks" and chunk3.metric.n_peaks == 2


def test_bitshuffle_lz4_multi_event_file_is_read_through_hdf5plugin(tmp_path: Path, synthetic: SyntheticRun) -> None:
    import h5py
    import hdf5plugin

    from ptylib.ici.events import resolve_events
    from ptylib.ici.synthetic.dataset import truth_path_for

    with h5py.File(synthetic.h5_path, "r") as handle:
        frames = handle["/entry/data/data"][()]
    path = tmp_path / "eiger_like.h5"  # frames stored as an Eiger/Jungfrau master stores them
    with h5py.File(path, "w") as handle:
        handle.create_dataset("/entry/data/data", data=frames, chunks=(1, *frames.shape[1:]),
                              **hdf5plugin.Bitshuffle(cname="lz4"))
    shutil.copy(truth_path_for(synthetic.h5_path), truth_path_for(path))
    plain = subprocess.run([sys.executable, "-c", "import h5py, sys; h5py.File(sys.argv[1])['/entry/data/data'][0]",
                            str(path)], capture_output=True, text=True, timeout=60)
    assert plain.returncode != 0 and "Can't synchronously read data" in plain.stderr  # plain h5py cannot

    keys = resolve_events([str(path)], "0-1")
    assert keys == [EventKey(str(path), 0), EventKey(str(path), 1)]
    backend = CrystfelBackend(CrystfelOptions(geometry=synthetic.geometry_path, indexamajig=str(STAND_IN)))
    jobs = [EventJob(key, i, 0, *synthetic.true_offset_mm[key.event]) for i, key in enumerate(keys)]
    backend.prepare_run(_run_dir(tmp_path, 0), jobs)
    scripts = [backend.write_event_script(j, _event_dir(tmp_path, j)) for j in jobs]
    assert run_event_batch(scripts, timeout_s=60, workers=2) == [0, 0]
    results = [backend.parse_event(j, _event_dir(tmp_path, j)) for j in jobs]
    assert all(r.metric.indexed and r.metric.wrmsd < 0.2 for r in results)
