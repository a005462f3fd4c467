"""Step-2 of the proposer: the refined dx/dy of an event's latest successful run (strict, mm).

``run_root/run_###/event_######/per_frame_dx_dy.csv`` holds the indexer's per-frame refined
detector shift (columns ``dx``, ``dy``; metres for CrystFEL's refinement output). The LAST row is the
refined update; it is multiplied by ``dxdy_unit_to_mm`` (the seed's 1e3). Strict contract: any
problem gives ``(None, None, reason)`` and nothing here falls back to another file or run; the
switching logic in :mod:`ptylib.ici.proposer.policy` decides what to do instead.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from ptylib.ici.model import EventKey
from ptylib.ici.runroot.layout import DXDY_NAME, event_dir_name, run_dir_name

DXDY_OK = "dxdy_ok"
DXDY_NO_EVENT_DIR = "dxdy_no_event_dir"
DXDY_MISSING_FILE = "dxdy_missing_file"
DXDY_UNREADABLE = "dxdy_unreadable"
DXDY_MISSING_COLUMNS = "dxdy_missing_columns"
DXDY_EMPTY = "dxdy_empty"
DXDY_NON_NUMERIC = "dxdy_non_numeric"
DXDY_NON_FINITE = "dxdy_non_finite"

DxdyResult = tuple[float | None, float | None, str]
DxdyLookup = Callable[[EventKey, int], DxdyResult]


def read_dxdy(path: Path, unit_to_mm: float) -> DxdyResult:
    """The last row's ``(dx, dy) * unit_to_mm`` (mm) of a ``per_frame_dx_dy.csv``, or ``(None, None, reason)``."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None, None, DXDY_MISSING_FILE
    except (OSError, UnicodeDecodeError):
        return None, None, DXDY_UNREADABLE
    try:
        rows = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    except csv.Error:
        return None, None, DXDY_UNREADABLE
    if not rows:
        return None, None, DXDY_EMPTY
    header = [cell.strip() for cell in rows[0]]
    if "dx" not in header or "dy" not in header:
        return None, None, DXDY_MISSING_COLUMNS
    if len(rows) == 1:
        return None, None, DXDY_EMPTY
    last = rows[-1]
    ix, iy = header.index("dx"), header.index("dy")
    if max(ix, iy) >= len(last):
        return None, None, DXDY_MISSING_COLUMNS
    try:
        dx, dy = float(last[ix]), float(last[iy])
    except ValueError:
        return None, None, DXDY_NON_NUMERIC
    if not (math.isfinite(dx) and math.isfinite(dy)):
        return None, None, DXDY_NON_FINITE
    return dx * unit_to_mm, dy * unit_to_mm, DXDY_OK


def run_root_dxdy_lookup(run_root: Path, event_indices: Mapping[EventKey, int], unit_to_mm: float) -> DxdyLookup:
    """A Step-2 lookup ``(event, run_n) -> (dx_mm, dy_mm, reason)`` reading ``run_###/event_######/per_frame_dx_dy.csv``.

    The event's folder index comes from ``event_indices``; when ``event_######`` has no file, folders
    ``event_######_<suffix>`` (the original pipeline's names for later runs) are read in name order.
    Each ``run_###`` folder is listed once: an event folder absent from its run folder's listing (or
    a run folder that does not exist) is a missing file without touching the filesystem again.
    """
    root = os.fspath(run_root)
    listings: dict[int, frozenset[str] | None] = {}

    def listing(run_n: int) -> frozenset[str] | None:
        """Names in ``run_###`` (empty when it does not exist); None when it cannot be listed."""
        try:
            return listings[run_n]
        except KeyError:
            pass
        try:
            with os.scandir(os.path.join(root, run_dir_name(run_n))) as entries:
                names: frozenset[str] | None = frozenset(entry.name for entry in entries)
        except FileNotFoundError:
            names = frozenset()
        except OSError:
            names = None
        listings[run_n] = names
        return names

    def lookup(key: EventKey, run_n: int) -> DxdyResult:
        try:
            index = event_indices[key]
        except KeyError:
            return None, None, DXDY_NO_EVENT_DIR
        name = event_dir_name(index)
        names = listing(run_n)
        if names is None or name in names:
            result = read_dxdy(Path(root, run_dir_name(run_n), name, DXDY_NAME), unit_to_mm)
            if result[2] != DXDY_MISSING_FILE or names is None:
                return result
        # The original pipeline names later event folders event_######_<suffix>: the first with a file wins.
        for other in sorted(n for n in names if n.startswith(name + "_")):
            result = read_dxdy(Path(root, run_dir_name(run_n), other, DXDY_NAME), unit_to_mm)
            if result[2] != DXDY_MISSING_FILE:
                return result
        return None, None, DXDY_MISSING_FILE

    return lookup
