"""DIALS backend: index each event's still with Debian's ``dials`` package at the proposed detector shift.

DIALS runs on its own Python (Debian: the system ``/usr/bin/python3``), not in the project's
virtualenv, so each event script calls that interpreter on :mod:`ptylib.ici.backends.dials_worker`,
which runs ``dials.import`` → ``dials.find_spots`` → ``dials.index`` on the still (by default in a
per-user DIALS server process that imports DIALS once) and writes every file into the event
directory (see that module for the files and their meaning). Two modes, as CrystFEL's refine /
``--no-refine``:

``refine``
    the detector's position in its plane is refined with the crystal (distance, tilts and beam stay
    fixed: an ICI shift is exactly such a move, see ``dials_worker.MODE_ARGS``); the shift from the
    supplied to the refined beam centre becomes the event's ``per_frame_dx_dy.csv`` (applied − refined
    shift, metres) for ICI Step-2.
``fixed``
    detector and beam fixed; only the crystal is refined, so the RMSD grows with the distance of the
    supplied centre from the true one and Step-1's hillmap does the search.

Success is DIALS' *outputs* passing a gate (indexed fraction of the strong spots ≥
``min_indexed_fraction`` and positional RMSD ≤ ``max_rmsd_px``), never its exit code: ``dials.import``
can exit 0 without writing ``imported.expt`` and ``dials.index`` can exit 0 with a wrong lattice. The
wRMSD is the project's (:func:`ptylib.ici.backends.stream.wrmsd` on the stream part: strong spots vs predicted
positions of the indexed reflections, intensity-weighted), so it compares with the CrystFEL path;
DIALS' own RMSDs are kept beside it in ``dials_summary.json``, the stream part and the result reason.

A detector shift has CrystFEL's meaning (a translation of the detector in the lab frame), so both
backends find the same best shift on the same data; see :mod:`~ptylib.ici.backends.dials_worker`.
An event keyed by an image file (``ici run --images``) is that still; an HDF5 event's still is found
with ``image_template`` (placeholders ``{h5_dir}``, ``{h5_stem}``,
``{event}`` and ``{frame}`` = event + 1, DIALS' 1-based image number), e.g.
``{h5_dir}/cbf/still_{frame:05d}.cbf`` for the miniCBF files that
:func:`ptylib.diffraction.still_renderer.render_stills` writes beside ``still_crystfel.h5``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import shlex
import shutil
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptylib.ici.backends import dials_worker
from ptylib.ici.backends.base import (
    STDERR_NAME,
    BackendName,
    EventJob,
    EventResult,
    IndexerBackend,
    ScoringOptions,
    parse_stream_part,
    read_event_outcome,
    stream_part_name,
    write_job_script,
)
from ptylib.ici.model import EventKey
from ptylib.io.paths import reject_control_characters

IMAGE_PLACEHOLDERS = ("h5_dir", "h5_stem", "event", "frame")
INSTALL_HINT = ("install Debian's DIALS as root: apt-get update && DEBIAN_FRONTEND=noninteractive "
                "apt-get install -y dials (about 2 min, 2.4 GB), or give the DIALS Python interpreter as "
                "the backend's 'python' option")
WORKER = Path(dials_worker.__file__).resolve()


class DialsMode(enum.StrEnum):
    """What DIALS refines besides the crystal: ``refine`` the detector's in-plane position, ``fixed`` nothing."""

    REFINE = "refine"
    FIXED = "fixed"


class DialsNotFoundError(RuntimeError):
    """DIALS is not installed where the backend looks for it (the message says how to install it)."""


def _words(value: str | Sequence[str]) -> tuple[str, ...]:
    return tuple(shlex.split(value)) if isinstance(value, str) else tuple(str(v) for v in value)


@dataclass(frozen=True, kw_only=True)
class DialsOptions(ScoringOptions):
    """Options of the DIALS backend.

    ``unit_cell`` (``a,b,c,alpha,beta,gamma`` in Å and degrees, or six numbers) and ``space_group``
    (e.g. ``P43212``) are the known symmetry given to ``dials.index``; ``mode`` is ``refine`` or
    ``fixed`` (module docstring); ``image_template`` locates each event's still in an HDF5 run (module
    docstring; None when the events are image files themselves); the gate is
    ``min_indexed_fraction`` (of the strong spots) and ``max_rmsd_px`` (DIALS' positional RMSD,
    sqrt(RMSD_x² + RMSD_y²), px); ``find_spots_args`` / ``index_args`` are extra PHIL arguments (a
    string is split like a shell line); ``python`` is DIALS' interpreter (default: the one named in
    the ``#!`` line of ``dials.import`` on PATH); ``persistent`` hands each still to a per-user DIALS
    server process that imports DIALS once (started by the first event; it ends after 2 idle minutes
    or when the last flow it serves ends; ``False`` imports DIALS in every event's own process).
    """

    unit_cell: str
    space_group: str
    image_template: str | None = None
    mode: DialsMode = DialsMode.REFINE
    min_indexed_fraction: float = 0.8
    max_rmsd_px: float = 0.5
    find_spots_args: tuple[str, ...] = ()
    # dials.index refines every candidate lattice of a still (about 20 on the rendered stills); the
    # best 5 gave the same solutions at half the CPU time.
    index_args: tuple[str, ...] = ("indexing.basis_vector_combinations.max_refine=5",)
    python: str | None = None
    persistent: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        cell = self.unit_cell if isinstance(self.unit_cell, str) else ",".join(repr(float(v)) for v in self.unit_cell)
        try:
            values = [float(v) for v in cell.replace(",", " ").split()]
        except ValueError:
            values = []
        if len(values) != 6 or not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError("unit_cell must be six positive numbers a,b,c,alpha,beta,gamma (Å, deg), "
                             f"got {self.unit_cell!r}")
        object.__setattr__(self, "unit_cell", ",".join(f"{v:g}" for v in values))
        if not str(self.space_group).strip() or any(c.isspace() or c in "'\"" for c in str(self.space_group).strip()):
            raise ValueError(f"space_group must be a symbol without spaces such as P43212, got {self.space_group!r}")
        try:
            object.__setattr__(self, "mode", DialsMode(str(self.mode).strip().lower()))
        except ValueError:
            raise ValueError(f"mode must be one of {', '.join(DialsMode)}, got {self.mode!r}") from None
        if self.image_template is not None:
            self._check_template()
        if not 0.0 < self.min_indexed_fraction <= 1.0:
            raise ValueError(f"min_indexed_fraction must be in (0, 1], got {self.min_indexed_fraction}")
        if not (math.isfinite(self.max_rmsd_px) and self.max_rmsd_px > 0):
            raise ValueError(f"max_rmsd_px must be a positive number of pixels, got {self.max_rmsd_px}")
        for name in ("image_template", "python"):
            if getattr(self, name) is not None:
                reject_control_characters(getattr(self, name), name)
        object.__setattr__(self, "find_spots_args", _words(self.find_spots_args))
        object.__setattr__(self, "index_args", _words(self.index_args))

    def _check_template(self) -> None:
        """Raise ValueError for a template that is malformed or does not name the event."""
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(self.image_template) if name is not None}
        except ValueError as exc:
            raise ValueError(f"image_template {self.image_template!r} is malformed: {exc}") from None
        if not fields <= set(IMAGE_PLACEHOLDERS) or not fields & {"event", "frame"}:
            raise ValueError(f"image_template {self.image_template!r} must name the event with {{event}} or {{frame}} "
                             f"and use only {', '.join('{' + p + '}' for p in IMAGE_PLACEHOLDERS)}")


def dials_interpreter(python: str | None = None) -> list[str]:
    """The command that starts DIALS' Python: ``python`` split like a shell line, else the ``#!`` of ``dials.import``.

    Raises :class:`DialsNotFoundError` (with install instructions) when DIALS cannot be found.
    """
    if python:
        words = shlex.split(python)
        if not words or shutil.which(words[0]) is None:
            raise DialsNotFoundError(f"DIALS interpreter {python!r} does not exist; {INSTALL_HINT}")
        return words
    program = shutil.which("dials.import")
    if program is None:
        raise DialsNotFoundError(f"DIALS is not installed: 'dials.import' is not on PATH; {INSTALL_HINT}")
    with open(program, "rb") as handle:
        first = handle.readline().decode("utf-8", "replace").strip()
    words = shlex.split(first[2:]) if first.startswith("#!") else []
    if not words or shutil.which(words[0]) is None:
        raise DialsNotFoundError(f"{program} is not a Python script with a usable '#!' line ({first!r}); "
                                 f"give the DIALS interpreter as the backend's 'python' option")
    return words


def event_image_path(template: str | None, key: EventKey) -> Path:
    """The still of an event: ``template`` filled in from its HDF5 path and event number, or (no template) the event's own image file."""
    h5 = Path(key.h5_path)
    if not template:
        return h5
    return Path(template.format(h5_dir=h5.parent, h5_stem=h5.stem, event=key.event, frame=key.event + 1))


def read_summary(event_dir: Path) -> dict[str, Any] | None:
    """The worker's ``dials_summary.json`` of an event, or None when absent or unreadable."""
    try:
        doc = json.loads((event_dir / dials_worker.SUMMARY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _last_stderr_line(event_dir: Path) -> str:
    try:
        lines = (event_dir / STDERR_NAME).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


class DialsBackend(IndexerBackend):
    """Index each event's still with DIALS at its detector shift (see the module docstring)."""

    name = BackendName.DIALS.value

    def __init__(self, options: DialsOptions):
        super().__init__(options)
        self.interpreter = dials_interpreter(options.python)

    def prepare_run(self, run_dir: Path, jobs: Sequence[EventJob]) -> None:
        """Nothing run-level: each event script reads its still directly."""

    def worker_args(self, job: EventJob) -> list[str]:
        """The worker's arguments for one event (:func:`~ptylib.ici.backends.dials_worker.parser`)."""
        o = self.options
        args = ["--image", str(event_image_path(o.image_template, job.key)),
                # '=' form: a negative shift must not read as an option.
                f"--det-shift-mm={float(job.det_shift_x_mm)!r},{float(job.det_shift_y_mm)!r}",
                "--unit-cell", o.unit_cell, "--space-group", o.space_group, "--mode", o.mode.value,
                "--min-indexed-fraction", repr(float(o.min_indexed_fraction)),
                "--max-rmsd-px", repr(float(o.max_rmsd_px)),
                "--stream", stream_part_name(job.event_index),
                "--filename", job.key.h5_path, "--event", f"//{job.key.event}"]
        args += [f"--find-spots-arg={a}" for a in o.find_spots_args]
        return args + [f"--index-arg={a}" for a in o.index_args]

    def command(self, job: EventJob) -> list[str]:
        """The command line of one event's worker (it runs in the event directory)."""
        in_process = [] if self.options.persistent else ["--in-process"]
        return [*self.interpreter, "-I", str(WORKER), *in_process, *self.worker_args(job)]

    def write_event_script(self, job: EventJob, event_dir: Path) -> Path:
        """Write ``sh_######.sh`` running the DIALS worker in ``event_dir``."""
        worker = " ".join(shlex.quote(a) for a in self.command(job))
        # A rerun (resume after a kill) must not score the files of an earlier attempt.
        outputs = [stream_part_name(job.event_index), dials_worker.SUMMARY_NAME, dials_worker.DXDY_NAME,
                   *dials_worker.DIALS_OUTPUTS]
        command = "\n".join([
            "rm -f " + " ".join(outputs),
            worker,
            "rc=$?",
            # Exit codes 0 and 3 come with the worker's own reason; anything else is a crash.
            f'if [ "$rc" -ne {dials_worker.EXIT_DECIDED} ] && [ "$rc" -ne {dials_worker.EXIT_ERROR} ]; then',
            '    echo "dials_crashed: the DIALS worker ended with exit code $rc before deciding" >&2',
            "fi",
            "exit $rc",
        ])
        return write_job_script(job, event_dir, command, title=f"DIALS ({self.options.mode.value} mode)")

    def parse_event(self, job: EventJob, event_dir: Path) -> EventResult:
        """Score the event's stream part; a failure's reason comes from the worker's summary or ``idx.stderr``."""
        result = parse_stream_part(job, event_dir, stream_event=job.key.event, scoring=self.options)
        summary = read_summary(event_dir)
        outcome = read_event_outcome(event_dir)
        if result.metric.indexed:
            if summary is None:
                return result
            figures = (f"DIALS rmsd {summary.get('rmsd_px', float('nan')):.3f} px, "
                       f"{100 * summary.get('indexed_fraction', float('nan')):.1f}% of "
                       f"{summary.get('n_strong', 0)} spots indexed")
            return dataclasses.replace(result, reason=f"{result.reason} ({figures})")
        if outcome is not None and outcome.timed_out:
            return result
        if summary is not None and summary.get("reason"):
            code = str(summary["reason"])
        else:
            code = _last_stderr_line(event_dir) or result.metric.reason
        exit_note = f" (exit {outcome.exit_code})" if outcome and outcome.exit_code != 0 else ""
        metric = dataclasses.replace(result.metric, reason=code + exit_note)
        return dataclasses.replace(result, metric=metric, reason=f"{code}{exit_note}; see {event_dir / STDERR_NAME}")
