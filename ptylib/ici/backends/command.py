"""Command backend: any user command, given as a template, that writes the same files as the CrystFEL path.

The template is a bash command line with these placeholders (each replaced by a shell-quoted value):

``{h5_path}`` source HDF5 file (absolute), ``{event}`` frame in that file, ``{event_index}`` stable
event index, ``{run_n}`` run number, ``{det_shift_x_mm}`` / ``{det_shift_y_mm}`` applied shift (mm),
``{event_dir}`` the event directory (absolute; also the working directory), ``{stream}`` the stream
part to write (``stream_######.stream``), ``{python}`` the interpreter running the orchestrator.

The command must write a CrystFEL-format stream part to ``{stream}`` (one chunk; its ``Event:`` is
``//{event}`` or anything when it is the only chunk) and may write ``per_frame_dx_dy.csv``.
"""

from __future__ import annotations

import shlex
import string
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ptylib.ici.backends.base import (
    BackendName,
    EventJob,
    EventResult,
    IndexerBackend,
    ScoringOptions,
    parse_stream_part,
    stream_part_name,
    write_job_script,
)

PLACEHOLDERS = ("h5_path", "event", "event_index", "run_n", "det_shift_x_mm", "det_shift_y_mm", "event_dir",
                "stream", "python")


@dataclass(frozen=True, kw_only=True)
class CommandOptions(ScoringOptions):
    """Options of the command backend: the command ``template`` (placeholders in the module docstring)."""

    template: str

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None]
        except ValueError as exc:
            raise ValueError(f"command template {self.template!r} is malformed: {exc}") from None
        unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
        if unknown or not self.template.strip():
            raise ValueError(f"command template {self.template!r}: unknown placeholders {unknown}; "
                             f"allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")


class CommandBackend(IndexerBackend):
    """Run a user command per event (see the module docstring)."""

    name = BackendName.COMMAND.value

    options: CommandOptions

    def prepare_run(self, run_dir: Path, jobs: Sequence[EventJob]) -> None:
        """Nothing run-level: the command gets the source file and the shift directly."""

    def command(self, job: EventJob, event_dir: Path) -> str:
        """The template filled in for one event, each value shell-quoted."""
        values = {
            "h5_path": job.key.h5_path,
            "event": job.key.event,
            "event_index": job.event_index,
            "run_n": job.run_n,
            "det_shift_x_mm": repr(float(job.det_shift_x_mm)),
            "det_shift_y_mm": repr(float(job.det_shift_y_mm)),
            "event_dir": event_dir.resolve(),
            "stream": stream_part_name(job.event_index),
            "python": sys.executable,
        }
        return self.options.template.format(**{k: shlex.quote(str(v)) for k, v in values.items()})

    def write_event_script(self, job: EventJob, event_dir: Path) -> Path:
        """Write ``sh_######.sh`` running the filled-in template in ``event_dir``."""
        return write_job_script(job, event_dir, self.command(job, event_dir), title="user command")

    def parse_event(self, job: EventJob, event_dir: Path) -> EventResult:
        """Score the event's stream part (the source frame ``//event``)."""
        return parse_stream_part(job, event_dir, stream_event=job.key.event, scoring=self.options)
