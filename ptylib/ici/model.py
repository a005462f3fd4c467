"""In-memory model of the ICI ledger: events, trials and proposals (lengths in mm)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

Centre = tuple[float, float]
"""A beam centre or detector shift (x, y), in mm."""

LEDGER_HEADER = (
    "run_n",
    "det_shift_x_mm",
    "det_shift_y_mm",
    "indexed",
    "wrmsd",
    "next_dx_mm",
    "next_dy_mm",
    "next_reason",
)
DONE_TOKEN = "done"


@dataclass(frozen=True, order=True)
class EventKey:
    """One frame: the absolute path of its HDF5 file and its event index in that file."""

    h5_path: str
    event: int

    def label(self) -> str:
        """Stable text form used for RNG derivation and in messages: ``<path>//<event>``."""
        return f"{self.h5_path}//{self.event}"

    def sidecar_key(self) -> str:
        """The key of the event in ``image_run_state.json``: ``<path>::<event>``, as the original tools write it."""
        return f"{self.h5_path}::{self.event}"

    @classmethod
    def from_label(cls, label: str) -> EventKey:
        """Inverse of :meth:`sidecar_key` and of :meth:`label` (earlier sidecars used that form)."""
        separator = "::" if label.rpartition("::")[2].isdigit() else "//"
        path, _, event = label.rpartition(separator)
        if not path or not (event.isascii() and event.isdigit()):
            raise ValueError(f"event key {label!r} is not '<path>::<event>'")
        return cls(path, int(event))


@dataclass(frozen=True)
class Proposal:
    """The next shift for an event (mm), or DONE when ``dx_mm``/``dy_mm`` are None and reason starts with ``done``."""

    dx_mm: float | None
    dy_mm: float | None
    reason: str

    @property
    def is_done(self) -> bool:
        """True when the event has converged and needs no further run."""
        return self.dx_mm is None and self.dy_mm is None and self.reason.startswith(DONE_TOKEN)


@dataclass
class LedgerRow:
    """One run of one event, as a line of ``image_run_log.csv``.

    ``wrmsd`` is None when the run did not index (blank or ``nan`` in the file) and
    ``math.inf`` for an explicit ``inf``, which counts as a failure. ``indexed`` is the
    sticky "ever indexed" flag of the event as of this run. ``proposal`` is the
    proposal patched onto this row (None while the row has no proposal yet).
    """

    run_n: int
    det_shift_x_mm: float
    det_shift_y_mm: float
    indexed: bool
    wrmsd: float | None
    proposal: Proposal | None = None
    # The row's line as read from the file: written back as it was while the row is unchanged
    # (whoever changes a field of a read row sets it to None), so other tools' number formats survive.
    text: str | None = field(default=None, compare=False, repr=False)

    @property
    def succeeded(self) -> bool:
        """A run succeeds when it indexed with a finite wRMSD."""
        return self.wrmsd is not None and math.isfinite(self.wrmsd)


# Column getters for the column-wise ledger I/O.
RUN_N_OF = attrgetter("run_n")
SHIFT_X_OF = attrgetter("det_shift_x_mm")
SHIFT_Y_OF = attrgetter("det_shift_y_mm")
WRMSD_OF = attrgetter("wrmsd")


@dataclass
class EventHistory:
    """All runs of one event in run order (a section of the grouped ledger)."""

    key: EventKey
    rows: list[LedgerRow] = field(default_factory=list)
    # Layout of the file it was read from: a header line right after the section line, a header above it.
    own_header: bool = field(default=False, compare=False, repr=False)
    header_above: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def from_trials(cls, key: EventKey, trials: Sequence[tuple[float, float, float | None]]) -> EventHistory:
        """Rows from (x_mm, y_mm, wRMSD px or None) trials in run order, with the sticky ever-indexed flag."""
        rows, ever = [], False
        for run_n, (x, y, wrmsd) in enumerate(trials):
            ever = ever or (wrmsd is not None and math.isfinite(wrmsd))
            rows.append(LedgerRow(run_n, x, y, ever, wrmsd))
        return cls(key, rows)

    @property
    def is_done(self) -> bool:
        """True when the last row carries a DONE proposal."""
        return bool(self.rows) and self.rows[-1].proposal is not None and self.rows[-1].proposal.is_done


class IciInputError(ValueError):
    """Bad ICI input: names the file, the line (when known) and the field."""

    def __init__(self, path: str, message: str, *, line: int | None = None, field_name: str | None = None):
        where = path if line is None else f"{path}, line {line}"
        what = f", field '{field_name}'" if field_name else ""
        super().__init__(f"{where}{what}: {message}")
        self.path = path
        self.line = line
        self.field_name = field_name


CHUNK_METRICS_HEADER = (
    "h5_path",
    "event",
    "det_shift_x_mm",
    "det_shift_y_mm",
    "indexed",
    "wrmsd",
    "n_peaks",
    "n_reflections",
    "reason",
)


@dataclass(frozen=True)
class ChunkMetric:
    """One event's indexing outcome in one run: a row of ``run_###/chunk_metrics_###.csv``.

    ``wrmsd`` (px) is None when not indexed; ``reason`` says why a run failed (empty on success).
    """

    key: EventKey
    det_shift_x_mm: float
    det_shift_y_mm: float
    indexed: bool
    wrmsd: float | None
    n_peaks: int = 0
    n_reflections: int = 0
    reason: str = ""
