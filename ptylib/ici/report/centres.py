"""The answer of an ICI run: each event's centre, as ``centres.csv`` in the run root and as a table.

Columns (lengths in mm, wRMSD and beam centre in px)::

    event,image,status,runs,best_shift_x_mm,best_shift_y_mm,best_wrmsd_px,
    refined_shift_x_mm,refined_shift_y_mm,refined_n,beam_fast_px,beam_slow_px

- ``event``: the event's number in the run root (its ``run_###/event_######`` folder); ``image``: the
  still (an image file, the DIALS ``image_template`` of an HDF5 event, or ``<file.h5> //<N>``).
- ``status``: ``done`` (the proposer stopped), ``open`` (more runs would follow) or ``not_indexed``
  (no run indexed); ``runs``: runs of the event.
- ``best_*``: the run with the lowest wRMSD (blank when none indexed).
- ``refined_*``: the combined refined centre, ``applied - (dx, dy)`` of each successful run with a
  ``per_frame_dx_dy.csv`` weighted as the model policy does, and the number of such runs (blank and
  0 when the indexer does not refine the detector).
- ``beam_*``: the final centre in the image's own pixel convention, i.e. the header beam centre moved
  by the final shift. The final shift is the refined centre when there is one (refine mode), else
  the best-wRMSD shift (fixed mode). For a miniCBF that is ``Beam_xy + shift / Pixel_size`` along
  fast and slow; for any image DIALS indexed, the header centre and shift matrix DIALS recorded in
  ``dials_summary.json``; blank for HDF5 events without an image (their centre is in the geometry file).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ptylib.ici.images import ImageGeometry, cbf_geometry, is_hdf5
from ptylib.ici.model import Centre, EventHistory, EventKey, IciInputError
from ptylib.ici.proposer.centre_model import estimate_refined_centres, refined_estimates
from ptylib.ici.proposer.dxdy import run_root_dxdy_lookup
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.runroot.layout import CENTRES_NAME, LEDGER_NAME, event_dir
from ptylib.ici.runroot.ledger import read_ledger
from ptylib.io.atomic import atomic_write_text
from ptylib.io.manifest import MANIFEST_NAME

COLUMNS = ("event", "image", "status", "runs", "best_shift_x_mm", "best_shift_y_mm", "best_wrmsd_px",
           "refined_shift_x_mm", "refined_shift_y_mm", "refined_n", "beam_fast_px", "beam_slow_px")
DIALS_SUMMARY_NAME = "dials_summary.json"  # written by ptylib.ici.backends.dials_worker (DIALS' own Python)


@dataclass(frozen=True)
class EventCentre:
    """One row of ``centres.csv`` (see the module docstring)."""

    event: int
    key: EventKey
    image: str
    status: str
    runs: int
    best_shift_mm: Centre | None
    best_wrmsd_px: float | None
    refined_shift_mm: Centre | None
    refined_n: int
    beam_px: Centre | None

    @property
    def final_shift_mm(self) -> Centre | None:
        """The refined centre when there is one, else the best-wRMSD shift (mm)."""
        return self.refined_shift_mm if self.refined_shift_mm is not None else self.best_shift_mm

    def cells(self) -> list[str]:
        """The row's CSV cells: shifts to 0.1 µm, wRMSD to 1e-4 px, beam centre to 1e-3 px."""
        return [str(self.event), self.image, self.status, str(self.runs),
                *_pair(self.best_shift_mm, 4), _number(self.best_wrmsd_px, 4),
                *_pair(self.refined_shift_mm, 4), str(self.refined_n), *_pair(self.beam_px, 3)]


def event_image(key: EventKey, image_template: str | None) -> str:
    """The still of an event: the image file itself, the DIALS template's image, or ``<file.h5> //<N>``."""
    if not is_hdf5(key.h5_path):
        return key.h5_path
    if image_template:
        from ptylib.ici.backends.dials import event_image_path

        return str(event_image_path(image_template, key))
    return f"{key.h5_path} //{key.event}"


def event_centres(run_root: str | Path, histories: Mapping[EventKey, EventHistory], options: ProposerOptions,
                  image_template: str | None = None) -> list[EventCentre]:
    """Each event's row of ``centres.csv``; event folders are numbered in ledger order, as the proposer does."""
    root = Path(run_root)
    indices = {key: index for index, key in enumerate(histories)}
    lookup = run_root_dxdy_lookup(root, indices, options.dxdy_unit_to_mm)
    events = list(histories.values())
    refined = estimate_refined_centres(events, options, lookup)
    rows = []
    for index, (history, (centre, _)) in enumerate(zip(events, refined)):
        good = [row for row in history.rows if row.succeeded]
        best = min(good, key=lambda r: r.wrmsd) if good else None
        image = event_image(history.key, image_template)
        status = "not_indexed" if best is None else "done" if history.is_done else "open"
        row = EventCentre(
            event=index, key=history.key, image=image, status=status, runs=len(history.rows),
            best_shift_mm=(best.det_shift_x_mm, best.det_shift_y_mm) if best else None,
            best_wrmsd_px=best.wrmsd if best else None, refined_shift_mm=centre,
            refined_n=len(refined_estimates(history, options, lookup)) if centre is not None else 0, beam_px=None)
        final = row.final_shift_mm
        geometry = _geometry(root, index, history, image) if final is not None else None
        rows.append(row if geometry is None else replace(row, beam_px=geometry.beam_centre_px(final)))
    return rows


def _geometry(root: Path, index: int, history: EventHistory, image: str) -> ImageGeometry | None:
    """The header centre and shift matrix DIALS recorded for this event, else a CBF's header, else None."""
    for row in reversed(history.rows):
        try:
            summary = json.loads((event_dir(root, row.run_n, index) / DIALS_SUMMARY_NAME).read_text(encoding="utf-8"))
            header, matrix = summary["header_centre_px"], summary["shift_matrix_px_per_mm"]
            return ImageGeometry((float(header[0]), float(header[1])),
                                 ((float(matrix[0][0]), float(matrix[0][1])), (float(matrix[1][0]), float(matrix[1][1]))))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
    if image.lower().endswith(".cbf"):
        try:
            return cbf_geometry(image)
        except IciInputError:
            return None
    return None


def run_root_centres(run_root: str | Path) -> list[EventCentre]:
    """The centres of a run root's ledger with the knobs and image template its ``manifest.json`` recorded.

    Without a manifest (or with knobs this version does not know) the default knobs are used.
    """
    root = Path(run_root)
    parameters = _manifest_parameters(root)
    try:
        options = ProposerOptions(**parameters.get("proposer", {}))
    except (TypeError, ValueError):
        options = ProposerOptions()
    backend = parameters.get("backend_options") or {}
    template = backend.get("image_template") if isinstance(backend, dict) else None
    return event_centres(root, read_ledger(root / LEDGER_NAME), options, template)


def _manifest_parameters(root: Path) -> dict:
    try:
        document = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    parameters = document.get("parameters") if isinstance(document, dict) else None
    return parameters if isinstance(parameters, dict) else {}


def format_centres(rows: Sequence[EventCentre]) -> str:
    """``centres.csv`` text: the header and one row per event (LF line ends, csv quoting)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(row.cells() for row in rows)
    return buffer.getvalue()


def write_centres(run_root: str | Path, rows: Sequence[EventCentre]) -> Path:
    """Write ``run_root/centres.csv`` atomically; returns its path."""
    path = Path(run_root) / CENTRES_NAME
    atomic_write_text(path, format_centres(rows))
    return path


def centres_table(rows: Sequence[EventCentre], truth_mm: Mapping[EventKey, Centre] | None = None,
                  ) -> list[dict[str, object]]:
    """Rows for a table artifact or Markdown: the CSV columns, plus the errors (mm) to a known true centre."""
    table = []
    for row in rows:
        record: dict[str, object] = dict(zip(COLUMNS, row.cells()))
        true = truth_mm.get(row.key) if truth_mm else None
        if truth_mm:
            record["error_best_mm"] = _number(_distance(row.best_shift_mm, true), 4)
            record["error_refined_mm"] = _number(_distance(row.refined_shift_mm, true), 4)
            record["error_final_mm"] = _number(_distance(row.final_shift_mm, true), 4)
        table.append(record)
    return table


def centres_text(rows: Sequence[EventCentre]) -> str:
    """The table as aligned plain text (numbers right-aligned), one line per event, for a terminal."""
    cells = [list(COLUMNS)] + [row.cells() for row in rows]
    cells = [[cell if cell else "-" for cell in line] for line in cells]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    text_columns = {1, 2}
    return "\n".join("  ".join(cell.ljust(w) if i in text_columns else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
                     for line in cells) + "\n"


def _distance(a: Centre | None, b: Centre | None) -> float | None:
    return math.dist(a, b) if a is not None and b is not None else None


def _number(value: float | None, decimals: int) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{decimals}f}"


def _pair(value: Centre | None, decimals: int) -> list[str]:
    return ["", ""] if value is None else [_number(value[0], decimals), _number(value[1], decimals)]
