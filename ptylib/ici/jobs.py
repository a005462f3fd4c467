"""Indexing jobs that end with the flow, and the run root's record of the jobs in flight.

Every event job runs under :mod:`ptylib.ici.job_guard`, the leader of the job's own process group,
which kills that group when the orchestrator dies (even by ``kill -9``). As a second line, each job
in flight is recorded in ``<run root>/.jobs/<pid>.json`` (pid, its start time in clock ticks since
boot, the boot id and a token that the job's environment carries as ``PTYFLOWS_ICI_JOB``); the
record is removed when the job ends. A record found by the next holder of the run root's lock is
stale by definition: :func:`end_stale_jobs` kills that job's group, after checking that the pid
still belongs to it (same boot, same start time), and any process carrying its token, so a resumed
run never overlaps with leftovers writing into the same event folders.

Each job also inherits the read end of this process's *flow-liveness pipe* (descriptor number in
``PTYFLOWS_ICI_FLOW_FD``), whose write end only this process holds: its end of file tells a server
shared by many jobs (the DIALS server) that the flow that started them has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ptylib.ici import job_guard
from ptylib.ici.backends.dials_worker import FLOW_FD_VARIABLE
from ptylib.io.atomic import atomic_write_json

JOBS_DIR = ".jobs"
JOB_TOKEN_VARIABLE = "PTYFLOWS_ICI_JOB"
GUARD = Path(job_guard.__file__).resolve()
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_flow_pipe: list[int] = []  # [read end, write end], made on first use
_flow_pipe_guard = threading.Lock()


@dataclass(frozen=True)
class JobRecord:
    """A job in flight: guard pid (= process group id), its start (clock ticks after boot), boot id, token, script."""

    pid: int
    start_ticks: int
    boot_id: str
    token: str
    script: str


def process_start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks after boot (``/proc/<pid>/stat`` field 22), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    return int(stat.rpartition(")")[2].split()[19])


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def flow_liveness_fd() -> int:
    """Read end of this process's flow-liveness pipe (see the module docstring); the write end is never written."""
    with _flow_pipe_guard:
        if not _flow_pipe:
            _flow_pipe.extend(os.pipe())  # both ends close on exec: only jobs given the read end get it
        return _flow_pipe[0]


def start_job(script: Path, *, jobs_dir: Path, env: dict[str, str], stdout: IO[bytes],
              stderr: IO[bytes]) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``bash script`` in its directory under the guard and record it in ``jobs_dir``; returns (process, record).

    The caller waits for the process and then calls :func:`forget_job` with the record.
    """
    token = uuid.uuid4().hex
    flow_fd = flow_liveness_fd()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(GUARD), str(os.getpid()), "bash", str(script)],
        cwd=script.parent, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, pass_fds=(flow_fd,),
        env={**env, JOB_TOKEN_VARIABLE: token, FLOW_FD_VARIABLE: str(flow_fd)}, process_group=0)
    record = jobs_dir / f"{proc.pid}.json"
    try:
        jobs_dir.mkdir(exist_ok=True)
        atomic_write_json(record, {"pid": proc.pid, "start_ticks": process_start_ticks(proc.pid) or 0,
                                   "boot_id": _boot_id(), "token": token, "script": str(script)})
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc, record


def forget_job(record: Path) -> None:
    """Remove a finished job's record."""
    record.unlink(missing_ok=True)


def read_job_records(run_root: Path) -> list[JobRecord]:
    """The job records of a run root, including the temporary file of one being written (unreadable ones are skipped)."""
    records = []
    for path in sorted((Path(run_root) / JOBS_DIR).glob("*")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            records.append(JobRecord(int(doc["pid"]), int(doc["start_ticks"]), str(doc["boot_id"]),
                                     str(doc["token"]), str(doc["script"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return records


def _token_holders(token: str, not_before: int) -> list[int]:
    """PIDs of live processes whose environment carries the job token and that started at or after ``not_before``."""
    marker = f"{JOB_TOKEN_VARIABLE}={token}".encode()
    holders = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environment = Path(entry.path, "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if marker in environment.split(b"\0"):
            started = process_start_ticks(int(entry.name))
            if started is not None and started >= not_before:
                holders.append(int(entry.name))
    return holders


def end_stale_jobs(run_root: Path) -> list[JobRecord]:
    """Kill the jobs recorded in ``run_root`` (call it holding the run root's lock); returns those found alive.

    A recorded group is signalled only while its leader's pid has the recorded start time on the
    same boot; processes that left the group are found by the token in their environment.
    """
    ended = []
    jobs_dir = Path(run_root) / JOBS_DIR
    boot_id = _boot_id()
    for record in read_job_records(run_root):
        victims: list[int] = []
        if record.boot_id == boot_id:
            if process_start_ticks(record.pid) == record.start_ticks:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(record.pid, signal.SIGKILL)
                    victims.append(record.pid)
            for pid in _token_holders(record.token, record.start_ticks):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    victims.append(pid)
        if victims:
            ended.append(record)
    # Every file left is a dead writer's: records, and the temporary file of one killed mid-write.
    for path in jobs_dir.glob("*"):
        forget_job(path)
    return ended
