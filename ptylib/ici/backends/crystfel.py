"""CrystFEL backend: a per-run HDF5 overlay carrying each event's detector shift, and one indexamajig call per event.

Per run, :meth:`CrystfelBackend.prepare_run` writes into ``run_###/``:

``overlay_###.h5``
    Events are addressed by their event index ``i`` (the stable list position), so the list line of
    an event is ``<overlay> //i`` in every run.

    - ``<data path>`` (the geometry's ``data``, usually ``/entry/data/data``): a virtual dataset of
      shape (max index + 1, H, W) whose frame ``i`` maps to frame ``event`` of the event's source
      file (frames of events not in this run read as 0);
    - ``/entry/data/det_shift_x_mm``, ``/entry/data/det_shift_y_mm``: float64 (max index + 1,), the
      shift applied to event ``i`` in mm (NaN for events not in this run);
    - ``/entry/source/file_###``: an external link to each source file's data; ``/entry/source/file_index``
      (int32, −1 when absent) and ``/entry/source/event`` (int64) say which link and frame event ``i`` is.

``geometry_###.geom``
    The user's geometry with ``detector_shift_x = /entry/data/det_shift_x_mm mm`` and
    ``detector_shift_y = /entry/data/det_shift_y_mm mm`` at the top (older ``detector_shift_*`` lines
    are commented out), so CrystFEL reads each frame's shift from the overlay.

Per event, the job script runs ``indexamajig -i input_######.lst -o stream_######.stream -g
geometry_###.geom --indexing=<method> -j <threads> [-p <cell>] [--no-refine] <extra args>``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
from ptylib.ici.model import IciInputError
from ptylib.io.atomic import atomic_write_bytes, atomic_write_text
from ptylib.io.h5filters import h5py_with_filters
from ptylib.io.paths import reject_control_characters

DET_SHIFT_X_PATH = "/entry/data/det_shift_x_mm"
DET_SHIFT_Y_PATH = "/entry/data/det_shift_y_mm"
SOURCE_GROUP = "/entry/source"
# CrystFEL's default image location when a geometry file has no 'data' line.
_CRYSTFEL_DEFAULT_DATA = "/data/data"
# Geometry values that may name an HDF5 header location; the overlay carries only the data and
# the detector shift, so such locations would not be found.
_HEADER_KEYS = ("clen", "photon_energy", "wavelength", "electron_voltage", "bandwidth")


@dataclass(frozen=True, kw_only=True)
class CrystfelOptions(ScoringOptions):
    """Options of the CrystFEL backend.

    ``indexamajig`` is the command to run (split like a shell line, so it may hold arguments);
    ``extra_args`` are appended verbatim (a string is split like a shell line); ``refine=False``
    adds ``--no-refine``; ``threads`` is indexamajig's ``-j``; ``indexing=""`` leaves the method to
    indexamajig's auto-detection.
    """

    geometry: Path
    indexamajig: str = "indexamajig"
    indexing: str = "xgandalf"
    extra_args: tuple[str, ...] = ()
    refine: bool = True
    cell_file: Path | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "geometry", Path(self.geometry))
        if self.cell_file is not None:
            object.__setattr__(self, "cell_file", Path(self.cell_file))
        extra = shlex.split(self.extra_args) if isinstance(self.extra_args, str) else self.extra_args
        object.__setattr__(self, "extra_args", tuple(str(a) for a in extra))
        if not shlex.split(self.indexamajig):
            raise ValueError("indexamajig must name a command")
        for name in ("geometry", "cell_file", "indexamajig"):
            if getattr(self, name) is not None:
                reject_control_characters(getattr(self, name), name)
        if int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


def overlay_path(run_dir: Path, run_n: int) -> Path:
    """The run's overlay HDF5 file."""
    return run_dir / f"overlay_{run_n:03d}.h5"


def geometry_path(run_dir: Path, run_n: int) -> Path:
    """The run's geometry copy with the per-event detector-shift lines."""
    return run_dir / f"geometry_{run_n:03d}.geom"


def geometry_entries(text: str) -> list[tuple[int, str, str]]:
    """(line number, key, value) of each ``key = value`` line, comments removed."""
    entries = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(";", 1)[0]
        key, sep, value = line.partition("=")
        if sep:
            entries.append((lineno, key.strip(), value.strip()))
    return entries


def geometry_data_path(text: str, source: str) -> str:
    """The image data location of a multi-event geometry; IciInputError if the overlay cannot serve it."""
    entries = geometry_entries(text)
    data_paths = {value for _, key, value in entries if key.rpartition("/")[2] == "data"}
    if len(data_paths) > 1:
        raise IciInputError(source, f"panels read different data locations {sorted(data_paths)}; "
                            "the ICI overlay supports one", field_name="data")
    if not any(key.rpartition("/")[2].startswith("dim") and value == "%" for _, key, value in entries):
        raise IciInputError(source, "no 'dim0 = %' line: the geometry must describe multi-event data",
                            field_name="dim0")
    for lineno, key, value in entries:
        if key in _HEADER_KEYS and value.startswith("/"):
            raise IciInputError(source, f"reads '{value}' from the image file, which the ICI overlay does not "
                                "carry; give a literal value", line=lineno, field_name=key)
    return data_paths.pop() if data_paths else _CRYSTFEL_DEFAULT_DATA


def overlay_geometry_text(text: str) -> str:
    """Geometry text with the overlay's per-event detector shift lines first and older shift lines commented out."""
    lines = [
        "; ICI: per-event detector shift read from the run's overlay HDF5 (written by ptyflows)",
        f"detector_shift_x = {DET_SHIFT_X_PATH} mm",
        f"detector_shift_y = {DET_SHIFT_Y_PATH} mm",
    ]
    for raw in text.splitlines():
        key = raw.split(";", 1)[0].partition("=")[0].strip()
        lines.append(f"; replaced by ICI: {raw}" if key in ("detector_shift_x", "detector_shift_y") else raw)
    return "\n".join(lines) + "\n"


def _describe_source(name: str, data_path: str) -> tuple[int, tuple[tuple[int, int], np.dtype]]:
    """Number of frames and (frame shape, dtype) of a source file's image dataset."""
    h5py = h5py_with_filters()

    try:
        with h5py.File(name, "r") as handle:
            data = handle.get(data_path)
            if not isinstance(data, h5py.Dataset) or data.ndim != 3:
                raise IciInputError(name, f"no E x H x W image dataset at {data_path}", field_name=data_path)
            return int(data.shape[0]), ((int(data.shape[1]), int(data.shape[2])), data.dtype)
    except OSError as exc:
        raise IciInputError(name, f"cannot be read as HDF5 ({exc})") from None


def write_overlay(path: Path, jobs: Sequence[EventJob], data_path: str) -> None:
    """Write the overlay HDF5 of ``jobs`` (layout in the module docstring), atomically."""
    h5py = h5py_with_filters()

    ordered = sorted(jobs, key=lambda j: j.event_index)
    index = np.array([j.event_index for j in ordered], dtype=np.int64)
    if index.size == 0:
        raise ValueError("an overlay needs at least one job")
    if np.any(np.diff(index) == 0) or index[0] < 0:
        raise ValueError("event indices of a run must be unique and >= 0")
    sources = list(dict.fromkeys(j.key.h5_path for j in ordered))
    file_of = {name: k for k, name in enumerate(sources)}
    file_index = np.array([file_of[j.key.h5_path] for j in ordered], dtype=np.int32)
    event = np.array([j.key.event for j in ordered], dtype=np.int64)

    described = [_describe_source(name, data_path) for name in sources]
    frames = np.array([n for n, _ in described])
    frame_type = described[0][1]
    for name, (_, this_type) in zip(sources, described, strict=True):
        if this_type != frame_type:
            raise IciInputError(name, f"frames are {this_type}, other inputs {frame_type}; one overlay needs one "
                                "frame shape and type", field_name=data_path)
    n_frames = frames[file_index]
    bad = np.flatnonzero((event < 0) | (event >= n_frames))
    if bad.size:
        j = ordered[int(bad[0])]
        raise IciInputError(j.key.h5_path, f"event {j.key.event} is outside 0..{n_frames[bad[0]] - 1}",
                            field_name="event")

    (height, width), dtype = frame_type
    n_slots = int(index[-1]) + 1
    layout = h5py.VirtualLayout(shape=(n_slots, height, width), dtype=dtype)
    vsources = [h5py.VirtualSource(os.path.abspath(name), data_path, shape=(int(n), height, width))
                for name, n in zip(sources, frames, strict=True)]
    # One mapping per run of consecutive events from consecutive frames of one file, not per event.
    breaks = np.flatnonzero((np.diff(index) != 1) | (np.diff(file_index) != 0) | (np.diff(event) != 1)) + 1
    for start, stop in zip(np.r_[0, breaks], np.r_[breaks, index.size], strict=True):
        last = stop - 1
        layout[index[start]:index[last] + 1] = vsources[file_index[start]][event[start]:event[last] + 1]

    shift_x = np.full(n_slots, np.nan)
    shift_y = np.full(n_slots, np.nan)
    shift_x[index] = [j.det_shift_x_mm for j in ordered]
    shift_y[index] = [j.det_shift_y_mm for j in ordered]
    slot_file = np.full(n_slots, -1, dtype=np.int32)
    slot_event = np.full(n_slots, -1, dtype=np.int64)
    slot_file[index] = file_index
    slot_event[index] = event

    # Built in memory and written in one atomic step: a killed run never leaves half an overlay.
    with h5py.File(f"{path}.mem", "w", driver="core", backing_store=False) as handle:
        handle.create_virtual_dataset(data_path, layout, fillvalue=0)
        handle.create_dataset(DET_SHIFT_X_PATH, data=shift_x).attrs["units"] = "mm"
        handle.create_dataset(DET_SHIFT_Y_PATH, data=shift_y).attrs["units"] = "mm"
        group = handle.require_group(SOURCE_GROUP)
        for k, name in enumerate(sources):
            group[f"file_{k:03d}"] = h5py.ExternalLink(os.path.abspath(name), data_path)
        group.create_dataset("file_index", data=slot_file)
        group.create_dataset("event", data=slot_event)
        handle.attrs["run_n"] = ordered[0].run_n
        handle.flush()
        image = handle.id.get_file_image()
    atomic_write_bytes(path, image)


class CrystfelBackend(IndexerBackend):
    """Index each event with CrystFEL's ``indexamajig`` at its detector shift (see the module docstring)."""

    name = BackendName.CRYSTFEL.value

    options: CrystfelOptions

    def prepare_run(self, run_dir: Path, jobs: Sequence[EventJob]) -> None:
        """Write ``overlay_###.h5`` and ``geometry_###.geom`` for ``jobs`` (all of one run) into ``run_dir``."""
        if not jobs:
            return
        runs = {j.run_n for j in jobs}
        if len(runs) != 1:
            raise ValueError(f"jobs of one run expected, got runs {sorted(runs)}")
        run_n = runs.pop()
        source = str(self.options.geometry)
        try:
            text = self.options.geometry.read_text(encoding="utf-8")
        except OSError as exc:
            raise IciInputError(source, f"cannot read the geometry file ({exc.strerror})") from None
        data_path = geometry_data_path(text, source)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_overlay(overlay_path(run_dir, run_n), jobs, data_path)
        atomic_write_text(geometry_path(run_dir, run_n), overlay_geometry_text(text))

    def command(self, job: EventJob, event_dir: Path) -> list[str]:
        """The indexamajig argument list of one event (relative names resolve in ``event_dir``)."""
        o = self.options
        run_dir = event_dir.resolve().parent
        args = [*shlex.split(o.indexamajig),
                "-i", f"input_{job.event_index:06d}.lst",
                "-o", stream_part_name(job.event_index),
                "-g", str(geometry_path(run_dir, job.run_n))]
        if o.indexing:
            args.append(f"--indexing={o.indexing}")
        args += ["-j", str(o.threads)]
        if o.cell_file is not None:
            args += ["-p", str(o.cell_file.resolve())]
        if not o.refine:
            args.append("--no-refine")
        return args + list(o.extra_args)

    def write_event_script(self, job: EventJob, event_dir: Path) -> Path:
        """Write the event's list file and ``sh_######.sh``; ``event_dir`` must lie in the prepared run directory."""
        run_dir = event_dir.resolve().parent
        overlay = overlay_path(run_dir, job.run_n)
        if not overlay.is_file():
            raise FileNotFoundError(f"{overlay} does not exist: call prepare_run({run_dir}, jobs) first")
        event_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(event_dir / f"input_{job.event_index:06d}.lst", f"{overlay} //{job.event_index}\n")
        command = " ".join(shlex.quote(a) for a in self.command(job, event_dir))
        return write_job_script(job, event_dir, command, title="CrystFEL indexamajig")

    def parse_event(self, job: EventJob, event_dir: Path) -> EventResult:
        """Score the event's stream part (the overlay frame ``//event_index``)."""
        return parse_stream_part(job, event_dir, stream_event=job.event_index, scoring=self.options)

