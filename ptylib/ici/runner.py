"""Run event job scripts in parallel with per-event timeouts, concatenate their streams, collect metrics.

The Prefect flow batches events into tasks and calls these kernels; they work without Prefect too.
A finished script leaves ``.event_complete`` (JSON: exit code, timeout flag, SHA-256 of the script
text) in its event directory, so a resumed run skips events whose unchanged script already ran.
Each script runs as a guarded job (:mod:`ptylib.ici.jobs`): its whole process group ends when the
orchestrator dies, and it is recorded in the run root's ``.jobs/`` while it runs.
Scripts run with the orchestrating interpreter's directory first on ``PATH`` (as an activated
virtualenv would), so Python-based indexers and wrappers see the same environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

from ptylib.ici.backends.base import (
    EVENT_MARKER,
    STDERR_NAME,
    STDOUT_NAME,
    EventOutcome,
    read_event_outcome,
    stream_part_name,
)
from ptylib.ici.jobs import JOBS_DIR, forget_job, start_job
from ptylib.ici.runroot.ingest import write_chunk_metrics
from ptylib.ici.runroot.layout import chunk_metrics_path, event_dir
from ptylib.io.atomic import atomic_open, atomic_write_json, atomic_write_text
from ptylib.io.manifest import sha256_file

if TYPE_CHECKING:
    from ptylib.ici.backends.base import EventJob, EventResult, IndexerBackend

MISSING_PARTS_NAME = "missing_event_parts.txt"
TIMEOUT_EXIT_CODE = 124  # as coreutils' timeout(1)
# After SIGTERM on timeout, how long the process group gets before SIGKILL (s).
_TERM_GRACE_S = 2.0


def _event_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env


def run_event_script(script: Path, *, timeout_s: float) -> int:
    """Run ``bash script`` in its directory; return its exit code, or 124 after killing it at ``timeout_s`` (s).

    The script must lie in ``<run root>/run_###/event_######/``. stdout/stderr go to
    ``idx.stdout``/``idx.stderr`` there; a timeout kills the whole process group and appends
    ``timeout after N s`` to ``idx.stderr``. ``.event_complete`` is written at the end.
    """
    script = Path(script).resolve()
    workdir = script.parent
    (workdir / EVENT_MARKER).unlink(missing_ok=True)
    digest = sha256_file(script)
    started = time.monotonic()
    timed_out = False
    with open(workdir / STDOUT_NAME, "wb") as out, open(workdir / STDERR_NAME, "wb") as err:
        # A process group of its own, so a timeout (and the orchestrator's death) reaches the indexer's children too.
        proc, record = start_job(script, jobs_dir=workdir.parents[1] / JOBS_DIR, env=_event_environment(),
                                 stdout=out, stderr=err)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            code = TIMEOUT_EXIT_CODE
        except BaseException:
            # Interrupted orchestrator (e.g. KeyboardInterrupt): do not leave the indexer running.
            _kill_group(proc)
            raise
        finally:
            forget_job(record)
    if timed_out:
        with open(workdir / STDERR_NAME, "a", encoding="utf-8") as err_text:
            err_text.write(f"\ntimeout after {timeout_s:g} s: process group killed\n")
    atomic_write_json(workdir / EVENT_MARKER, {
        "exit_code": code,
        "timed_out": timed_out,
        "script_sha256": digest,
        "elapsed_s": round(time.monotonic() - started, 3),
    })
    return code


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=_TERM_GRACE_S)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    # Children that ignored SIGTERM or outlived the script.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def completed_exit_code(script: Path) -> int | None:
    """Exit code recorded for exactly this script text (a resumed run skips it), or None when it must run."""
    outcome: EventOutcome | None = read_event_outcome(script.parent)
    if outcome is None or outcome.script_sha256 != sha256_file(script):
        return None
    return outcome.exit_code


def run_event_batch(scripts: Sequence[Path], *, timeout_s: float, workers: int) -> list[int]:
    """Run event scripts on ``workers`` threads (already-completed ones are skipped); exit codes in input order."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    scripts = [Path(s) for s in scripts]
    codes: list[int | None] = [completed_exit_code(s) for s in scripts]
    pending = [i for i, code in enumerate(codes) if code is None]
    if pending:
        with ThreadPoolExecutor(max_workers=min(workers, len(pending))) as pool:
            futures = {pool.submit(run_event_script, scripts[i], timeout_s=timeout_s): i for i in pending}
            for future in as_completed(futures):
                i = futures[future]
                codes[i] = future.result()
    return [int(c) for c in codes if c is not None]


def run_event_dir(run_dir: Path, run_n: int, event_index: int) -> Path:
    """``run_dir/event_######`` of an event; ``run_dir`` must be the run root's ``run_###`` folder."""
    path = event_dir(run_dir.parent, run_n, event_index)
    if path.parent != run_dir:
        raise ValueError(f"{run_dir} is not the folder of run {run_n} (expected {path.parent.name})")
    return path


def concatenate_streams(run_dir: Path, run_n: int, event_indices: Sequence[int]) -> list[int]:
    """Write ``stream_###.stream`` from the event stream parts in event order; return the missing event indices.

    A part that is absent or empty is missing; missing parts are listed (one relative path per
    line) in ``missing_event_parts.txt``, which is removed when nothing is missing.
    """
    run_dir = Path(run_dir)
    missing: list[int] = []
    with atomic_open(run_dir / f"stream_{run_n:03d}.stream", "wb") as out:
        for index in sorted(event_indices):
            part = run_event_dir(run_dir, run_n, index) / stream_part_name(index)
            if not part.is_file() or part.stat().st_size == 0:
                missing.append(index)
                continue
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out)
    listing = run_dir / MISSING_PARTS_NAME
    if missing:
        lines = [str((run_event_dir(run_dir, run_n, i) / stream_part_name(i)).relative_to(run_dir)) for i in missing]
        atomic_write_text(listing, "\n".join(lines) + "\n")
    else:
        listing.unlink(missing_ok=True)
    return missing


def collect_run(run_dir: Path, run_n: int, jobs: Sequence[EventJob], backend: IndexerBackend) -> list[EventResult]:
    """Score every job's event directory with ``backend`` and write ``chunk_metrics_###.csv`` (job order)."""
    run_dir = Path(run_dir)
    results = [backend.parse_event(job, run_event_dir(run_dir, run_n, job.event_index)) for job in jobs]
    write_chunk_metrics(chunk_metrics_path(run_dir, run_n), [r.metric for r in results])
    return results

