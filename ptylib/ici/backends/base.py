"""The indexer-backend interface and the event-directory contract every backend follows.

An event directory ``run_###/event_######/`` holds, for event index ``i``:

- ``sh_{i:06d}.sh``: the job script a backend writes; it runs in its own directory, prints
  ``__EVENT_DONE__`` at the end whatever happened and exits with the indexer's exit code;
- ``stream_{i:06d}.stream``: the CrystFEL-format stream part the indexer writes;
- ``per_frame_dx_dy.csv`` (optional): header ``dx,dy``, last row = refined offset (applied − refined
  centre) in metres, read by ICI Step-2;
- ``idx.stdout``, ``idx.stderr`` and ``.event_complete`` (JSON: exit code, timeout flag, script
  hash), written by :mod:`ptylib.ici.runner`.
"""

from __future__ import annotations

import enum
import json
import math
import shlex
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptylib.ici.backends.stream import Chunk, chunk_wrmsd, parse_stream
from ptylib.ici.model import ChunkMetric, EventKey, IciInputError
from ptylib.ici.runroot.layout import DXDY_NAME
from ptylib.io.atomic import atomic_write_text
from ptylib.io.paths import reject_control_characters

EVENT_DONE_TOKEN = "__EVENT_DONE__"
EVENT_MARKER = ".event_complete"
STDOUT_NAME = "idx.stdout"
STDERR_NAME = "idx.stderr"


class BackendName(enum.StrEnum):
    """Indexer backends known to :func:`ptylib.ici.backends.make_backend`."""

    CRYSTFEL = "crystfel"
    COMMAND = "command"
    DIALS = "dials"


@dataclass(frozen=True)
class EventJob:
    """One event to index in run ``run_n`` at detector shift (mm); ``event_index`` is its stable list position."""

    key: EventKey
    event_index: int
    run_n: int
    det_shift_x_mm: float
    det_shift_y_mm: float


@dataclass(frozen=True)
class EventResult:
    """Outcome of one event: its chunk metric, the stream part and dx/dy file when present, and a readable reason."""

    metric: ChunkMetric
    stream_part: Path | None
    dxdy_path: Path | None
    reason: str


@dataclass(frozen=True)
class EventOutcome:
    """What the runner recorded in ``.event_complete``: exit code, whether it timed out, hash of the script run."""

    exit_code: int
    timed_out: bool
    script_sha256: str


@dataclass(frozen=True, kw_only=True)
class ScoringOptions:
    """How a stream part is scored by :func:`~ptylib.ici.backends.stream.wrmsd`: match radius (px), outlier cut mean + k·std."""

    match_radius_px: float = 4.0
    outlier_k: float = 3.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.match_radius_px) and self.match_radius_px > 0):
            raise ValueError(f"match_radius_px must be a positive number of pixels, got {self.match_radius_px}")
        if not (math.isfinite(self.outlier_k) and self.outlier_k > 0):
            raise ValueError(f"outlier_k must be a positive number, got {self.outlier_k}")


class IndexerBackend(ABC):
    """Writes per-event job scripts for an indexer and turns their outputs into :class:`EventResult`."""

    name: str

    def __init__(self, options: Any) -> None:
        self.options = options

    @abstractmethod
    def prepare_run(self, run_dir: Path, jobs: Sequence[EventJob]) -> None:
        """Write the run-level files the event scripts of ``jobs`` need into ``run_dir``."""

    @abstractmethod
    def write_event_script(self, job: EventJob, event_dir: Path) -> Path:
        """Write the executable ``sh_{event_index:06d}.sh`` into ``event_dir`` (created if needed); return its path."""

    @abstractmethod
    def parse_event(self, job: EventJob, event_dir: Path) -> EventResult:
        """Score the event's outputs; missing, failed or garbled outputs give a not-indexed result, never an error."""


def script_name(event_index: int) -> str:
    """File name of an event's job script."""
    return f"sh_{event_index:06d}.sh"


def stream_part_name(event_index: int) -> str:
    """File name of an event's stream part."""
    return f"stream_{event_index:06d}.stream"


def write_job_script(job: EventJob, event_dir: Path, command: str, *, title: str) -> Path:
    """Write ``sh_######.sh`` running bash ``command`` in ``event_dir``: done token at the end, exit code kept.

    ValueError, before anything is written, when the source file or ``event_dir`` holds a control character.
    """
    reject_control_characters(job.key.h5_path, "h5_path")
    reject_control_characters(event_dir.resolve(), "event_dir")
    event_dir.mkdir(parents=True, exist_ok=True)
    path = event_dir / script_name(job.event_index)
    text = "\n".join([
        "#!/usr/bin/env bash",
        f"# {title}: run {job.run_n}, event index {job.event_index}",
        f"# source {shlex.quote(job.key.h5_path)} //{job.key.event}, "
        f"detector shift x = {job.det_shift_x_mm!r} mm, y = {job.det_shift_y_mm!r} mm",
        "# Every output lands in this script's directory.",
        'cd "$(dirname "$0")" || exit 1',
        # A subshell, so that an 'exit' in the command cannot skip the done token.
        "(",
        command,
        ")",
        "rc=$?",
        f"echo {EVENT_DONE_TOKEN}",
        "exit $rc",
        "",
    ])
    atomic_write_text(path, text)
    path.chmod(0o755)
    return path


def read_event_outcome(event_dir: Path) -> EventOutcome | None:
    """The runner's ``.event_complete`` record of ``event_dir``, or None when absent or unreadable."""
    try:
        doc = json.loads((event_dir / EVENT_MARKER).read_text(encoding="utf-8"))
        return EventOutcome(int(doc["exit_code"]), bool(doc["timed_out"]), str(doc["script_sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_dxdy_csv(path: Path, dx_m: float, dy_m: float) -> None:
    """Write ``per_frame_dx_dy.csv``: header ``dx,dy`` and one row, the refined offset (applied − centre) in metres."""
    atomic_write_text(path, f"dx,dy\n{float(dx_m)!r},{float(dy_m)!r}\n")


def _pick_chunk(chunks: Sequence[Chunk], stream_event: int) -> Chunk | None:
    matching = [c for c in chunks if c.event_number() == stream_event]
    if matching:
        return matching[0]
    return chunks[0] if len(chunks) == 1 else None


def _failed(job: EventJob, code: str, detail: str, stream_part: Path | None, *, n_peaks: int = 0,
            n_reflections: int = 0) -> EventResult:
    metric = ChunkMetric(job.key, job.det_shift_x_mm, job.det_shift_y_mm, False, None, n_peaks, n_reflections, code)
    return EventResult(metric, stream_part, None, f"{code}: {detail}" if detail else code)


def parse_stream_part(job: EventJob, event_dir: Path, *, stream_event: int, scoring: ScoringOptions) -> EventResult:
    """Score an event from its stream part: success = indexed with a finite wRMSD (px).

    ``stream_event`` is the event number the indexer saw (``//N`` in the stream); a part with one
    chunk is used whatever its event. Reason codes of failures: ``timeout``, ``no_stream_part``,
    ``garbled_stream``, ``no_chunk``, ``not_indexed``, ``no_matched_peaks``; a non-zero exit code is
    appended as ``(exit N)``. The refined dx/dy comes from ``per_frame_dx_dy.csv`` when the indexer
    wrote one, else from the stream's ``predict_refine/det_shift`` (written to that file as
    ``−shift``, metres, because CrystFEL's refined shift moves the detector onto the centre).
    """
    part = event_dir / stream_part_name(job.event_index)
    outcome = read_event_outcome(event_dir)
    exit_note = f" (exit {outcome.exit_code})" if outcome and outcome.exit_code != 0 else ""
    if outcome is not None and outcome.timed_out:
        return _failed(job, "timeout", f"see {event_dir / STDERR_NAME}", part if part.is_file() else None)
    if not part.is_file() or part.stat().st_size == 0:
        return _failed(job, "no_stream_part" + exit_note, f"{part} is missing or empty", None)
    try:
        chunks = parse_stream(part)
    except IciInputError as exc:
        return _failed(job, "garbled_stream" + exit_note, str(exc), part)
    chunk = _pick_chunk(chunks, stream_event)
    if chunk is None:
        return _failed(job, "no_chunk" + exit_note, f"{part} has no chunk for event //{stream_event}", part)
    n_peaks, n_reflections = len(chunk.peaks), chunk.n_reflections
    if not chunk.indexed:
        return _failed(job, "not_indexed" + exit_note, f"indexed_by = {chunk.indexed_by}", part,
                       n_peaks=n_peaks, n_reflections=n_reflections)
    value = chunk_wrmsd(chunk, scoring.match_radius_px, scoring.outlier_k)
    if value is None or not math.isfinite(value):
        return _failed(job, "no_matched_peaks" + exit_note,
                       f"no peak within {scoring.match_radius_px} px of a predicted reflection", part,
                       n_peaks=n_peaks, n_reflections=n_reflections)
    dxdy = event_dir / DXDY_NAME
    shifts = [c.det_shift_mm for c in chunk.crystals if c.det_shift_mm is not None]
    if not dxdy.is_file() and shifts:
        write_dxdy_csv(dxdy, -shifts[0][0] * 1e-3, -shifts[0][1] * 1e-3)
    metric = ChunkMetric(job.key, job.det_shift_x_mm, job.det_shift_y_mm, True, value, n_peaks, n_reflections)
    return EventResult(metric, part, dxdy if dxdy.is_file() else None, "indexed" + exit_note)
