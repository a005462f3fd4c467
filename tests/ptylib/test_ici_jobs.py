"""Indexing jobs end with the orchestrator, even after ``kill -9``; stale ones are ended on the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ptylib.ici.jobs import (
    JOB_TOKEN_VARIABLE,
    JOBS_DIR,
    end_stale_jobs,
    read_job_records,
    start_job,
)

REPO = Path(__file__).resolve().parents[2]
# Three processes in the job's group (the script, a background and a foreground child) and one
# that left the group with setsid; each writes its pid.
JOB = textwrap.dedent("""\
    echo $$ > script.pid
    sleep 60 & echo $! > background.pid
    setsid sleep 60 & echo $! > escaped.pid
    sleep 60
""")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as ended)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _event_script(root: Path, body: str) -> Path:
    event_dir = root / "run_000" / "event_000000"
    event_dir.mkdir(parents=True)
    script = event_dir / "sh_000000.sh"
    script.write_text(body)
    return script


def _pids(folder: Path, names: tuple[str, ...], timeout_s: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while not all((folder / n).is_file() and (folder / n).read_text().strip() for n in names):
        assert time.monotonic() < deadline, f"the job did not start: {sorted(p.name for p in folder.iterdir())}"
        time.sleep(0.05)
    return [int((folder / n).read_text()) for n in names]


def _wait_gone(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def test_killing_the_orchestrator_ends_the_jobs_process_group(tmp_path: Path) -> None:
    script = _event_script(tmp_path, JOB.replace("setsid sleep 60 & echo $! > escaped.pid\n", ""))
    orchestrator = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from pathlib import Path
        from ptylib.ici.runner import run_event_batch
        run_event_batch([Path({str(script)!r})], timeout_s=120, workers=1)
    """)], cwd=REPO)
    try:
        pids = _pids(script.parent, ("script.pid", "background.pid"))
        deadline = time.monotonic() + 5.0
        while not read_job_records(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)  # recorded right after the start, so possibly after the script's first lines
        (record,) = read_job_records(tmp_path)
        assert record.script == str(script.resolve()) and alive(record.pid)
        os.kill(orchestrator.pid, signal.SIGKILL)  # the flow's process only, as kill -9 would
        orchestrator.wait()
        assert _wait_gone([*pids, record.pid]) == []
    finally:
        orchestrator.kill()
        orchestrator.wait()


def test_stale_jobs_are_ended_only_when_the_record_matches(tmp_path: Path) -> None:
    script = _event_script(tmp_path, JOB)
    with open(os.devnull, "wb") as sink:
        proc, record_path = start_job(script, jobs_dir=tmp_path / JOBS_DIR, env=dict(os.environ), stdout=sink,
                                      stderr=sink)
    try:
        pids = _pids(script.parent, ("script.pid", "background.pid", "escaped.pid"))
        escaped = pids[2]
        assert os.getsid(escaped) != os.getsid(proc.pid)  # out of reach of the group's signals
        assert f"{JOB_TOKEN_VARIABLE}=".encode() in Path(f"/proc/{escaped}/environ").read_bytes()
        # A record whose start time does not match (the pid now belongs to another process) is dropped unused.
        (record,) = read_job_records(tmp_path)
        decoy = tmp_path / JOBS_DIR / f"{os.getpid()}.json"
        decoy.write_text(record_path.read_text().replace(f'"pid": {proc.pid}', f'"pid": {os.getpid()}')
                         .replace(record.token, "0" * 32))
        (tmp_path / JOBS_DIR / ".99.json.x1.tmp").write_text('{"pid": 99, "sta')  # a writer killed mid-write
        ended = end_stale_jobs(tmp_path)
        assert [r.pid for r in ended] == [proc.pid]
        assert _wait_gone([proc.pid, *pids]) == []
        assert proc.wait(timeout=5) == -signal.SIGKILL
        assert list((tmp_path / JOBS_DIR).iterdir()) == []
        assert end_stale_jobs(tmp_path) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
