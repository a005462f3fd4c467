"""Event runner: timeouts, completion markers and resume, stream concatenation, chunk metrics."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import pytest

from ptylib.ici.backends import EventJob, make_backend
from ptylib.ici.backends.base import EVENT_MARKER
from ptylib.ici.model import EventKey
from ptylib.ici.runner import (
    MISSING_PARTS_NAME,
    TIMEOUT_EXIT_CODE,
    collect_run,
    completed_exit_code,
    concatenate_streams,
    run_event_batch,
    run_event_script,
)
from ptylib.ici.runroot.ingest import read_chunk_metrics
from ptylib.ici.runroot.layout import chunk_metrics_path

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "ici" / "recorded_multi.stream"


def _script(run_dir: Path, event_index: int, body: str) -> Path:
    event_dir = run_dir / f"event_{event_index:06d}"
    event_dir.mkdir(parents=True, exist_ok=True)
    path = event_dir / f"sh_{event_index:06d}.sh"
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    return path


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status  # a zombie is already dead


def test_timeout_kills_the_process_group_and_records_it(tmp_path: Path) -> None:
    script = _script(tmp_path / "run_000", 0, "sleep 30 &\necho $! > child.pid\nsleep 30\necho never")
    started = time.monotonic()
    code = run_event_script(script, timeout_s=0.5)
    assert code == TIMEOUT_EXIT_CODE and time.monotonic() - started < 5.0
    event_dir = script.parent
    assert "timeout after 0.5 s" in (event_dir / "idx.stderr").read_text()
    assert "never" not in (event_dir / "idx.stdout").read_text()
    assert not _alive(int((event_dir / "child.pid").read_text()))
    marker = json.loads((event_dir / EVENT_MARKER).read_text())
    assert marker["exit_code"] == TIMEOUT_EXIT_CODE and marker["timed_out"] is True


def test_exit_code_output_files_and_marker(tmp_path: Path) -> None:
    script = _script(tmp_path / "run_000", 7, "pwd\necho oops >&2\nexit 3")
    assert run_event_script(script, timeout_s=30) == 3
    assert (script.parent / "idx.stdout").read_text().strip() == str(script.parent.resolve())
    assert (script.parent / "idx.stderr").read_text().strip() == "oops"
    assert completed_exit_code(script) == 3
    script.write_text(script.read_text() + "# edited\n")
    assert completed_exit_code(script) is None  # a changed script must run again


def test_batch_order_resume_and_quiet_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run_000"
    scripts = [_script(run_dir, i, f"echo run >> count.txt\nsleep {0.3 if i == 0 else 0}\nexit {i}") for i in range(4)]
    assert run_event_batch(scripts, timeout_s=30, workers=3) == [0, 1, 2, 3]
    assert capsys.readouterr().out == ""  # no internal markers reach the flow's logs
    # A resumed batch skips completed events and reruns only what changed.
    scripts[2].write_text(scripts[2].read_text().replace("exit 2", "exit 0"))
    assert run_event_batch(scripts, timeout_s=30, workers=2) == [0, 1, 0, 3]
    assert [len((s.parent / "count.txt").read_text().split()) for s in scripts] == [1, 1, 2, 1]
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError):
        run_event_batch(scripts, timeout_s=30, workers=0)


def test_concatenation_order_and_missing_parts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run_004"
    for index in (5, 1, 3):
        event_dir = run_dir / f"event_{index:06d}"
        event_dir.mkdir(parents=True)
        (event_dir / f"stream_{index:06d}.stream").write_text(f"part {index}\n")
    (run_dir / "event_000002").mkdir()
    (run_dir / "event_000002" / "stream_000002.stream").write_text("")  # empty: indexer died early
    assert concatenate_streams(run_dir, 4, [5, 2, 1, 3, 4]) == [2, 4]
    assert (run_dir / "stream_004.stream").read_text() == "part 1\npart 3\npart 5\n"
    assert (run_dir / MISSING_PARTS_NAME).read_text().splitlines() == [
        "event_000002/stream_000002.stream", "event_000004/stream_000004.stream"]
    assert concatenate_streams(run_dir, 4, [3, 1]) == []
    assert (run_dir / "stream_004.stream").read_text() == "part 1\npart 3\n"
    assert not (run_dir / MISSING_PARTS_NAME).exists()
    with pytest.raises(ValueError, match="not the folder of run 5"):
        concatenate_streams(run_dir, 5, [1])


def test_collect_run_writes_chunk_metrics(tmp_path: Path) -> None:
    # Each event's command copies the recorded stream; the backend scores the chunk of its frame.
    backend = make_backend("command", {"template": f"cp {shlex.quote(str(RECORDED))} {{stream}}"})
    jobs = [EventJob(EventKey("/data/run7.h5", e), i, 0, 0.01 * i, -0.01 * i) for i, e in enumerate([0, 1, 2, 3, 9])]
    run_dir = tmp_path / "run_000"
    backend.prepare_run(run_dir, jobs)
    scripts = [backend.write_event_script(j, run_dir / f"event_{j.event_index:06d}") for j in jobs]
    assert run_event_batch(scripts, timeout_s=30, workers=2) == [0] * 5
    os.remove(run_dir / "event_000001" / "stream_000001.stream")
    results = collect_run(run_dir, 0, jobs, backend)
    assert [r.metric.reason for r in results] == ["", "no_stream_part", "", "no_matched_peaks", "no_chunk"]
    assert [r.metric.indexed for r in results] == [True, False, True, False, False]
    metrics_file = chunk_metrics_path(run_dir, 0)
    assert metrics_file.name == "chunk_metrics_000.csv"
    assert read_chunk_metrics(metrics_file) == [r.metric for r in results]
