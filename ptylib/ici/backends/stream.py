"""Read CrystFEL streams (chunks, peaks, predicted reflections) and score a chunk by wRMSD (px).

A stream is the text ``indexamajig`` writes: a header, then one ``----- Begin chunk -----`` ...
``----- End chunk -----`` block per image. Inside a chunk this module reads the image filename and
event, ``indexed_by``, the table after ``Peaks from peak search`` (``fs/px ss/px (1/d)/nm^-1
Intensity Panel``, up to ``End of peak list``) and, per ``--- Begin crystal`` block, the table
after ``Reflections measured after indexing`` (``h k l I sigma(I) peak background fs/px ss/px
panel``, up to ``End of reflections``) and the ``predict_refine/det_shift`` line. Every other line
(audit header, geometry copy, cell, per-chunk metadata) is skipped, so concatenated streams and
extra header lines are fine. Older streams without a panel column read as panel ``""``.

A line inside a table that does not have the table's columns, or has a non-number where a number
belongs, raises :class:`~ptylib.ici.model.IciInputError` with the file and line; so does a chunk,
crystal or table that is never closed (a truncated stream).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ptylib.ici.model import IciInputError

CHUNK_START = "----- Begin chunk -----"
CHUNK_END = "----- End chunk -----"
PEAKS_START = "Peaks from peak search"
PEAKS_END = "End of peak list"
CRYSTAL_START = "--- Begin crystal"
CRYSTAL_END = "--- End crystal"
REFLECTIONS_START = "Reflections measured after indexing"
REFLECTIONS_END = "End of reflections"
DET_SHIFT_PREFIX = "predict_refine/det_shift"

# (number of numeric columns, number of columns with the panel name) of each table.
_PEAK_COLUMNS = (4, 5)
_REFLECTION_COLUMNS = (9, 10)


@dataclass(frozen=True)
class Peaks:
    """Peaks found by the peak search: positions (px, file coordinates), intensity, panel name."""

    fs_px: np.ndarray
    ss_px: np.ndarray
    intensity: np.ndarray
    panel: np.ndarray

    def __len__(self) -> int:
        return int(self.fs_px.size)


@dataclass(frozen=True)
class Reflections:
    """Reflections predicted (and integrated) for one crystal; positions in px, file coordinates."""

    hkl: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray
    peak: np.ndarray
    background: np.ndarray
    fs_px: np.ndarray
    ss_px: np.ndarray
    panel: np.ndarray

    def __len__(self) -> int:
        return int(self.fs_px.size)

    @classmethod
    def concatenate(cls, parts: Sequence[Reflections]) -> Reflections:
        """All reflections of ``parts`` in one table (e.g. the crystals of a multi-lattice chunk)."""
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


@dataclass(frozen=True)
class Crystal:
    """One lattice of a chunk: its reflections and the refined detector shift (mm) when written."""

    reflections: Reflections
    det_shift_mm: tuple[float, float] | None


@dataclass(frozen=True)
class Chunk:
    """One image of a stream. ``line`` is the 1-based line of its ``Begin chunk`` marker."""

    filename: str
    event: str
    indexed_by: str
    peaks: Peaks
    crystals: tuple[Crystal, ...]
    line: int

    @property
    def indexed(self) -> bool:
        """True when an indexer claimed the image and at least one crystal was written."""
        return self.indexed_by.strip().lower() != "none" and bool(self.crystals)

    @property
    def n_reflections(self) -> int:
        """Reflections over all crystals."""
        return sum(len(c.reflections) for c in self.crystals)

    def event_number(self) -> int | None:
        """The frame number of a ``//N`` event string, or None when it is not of that form."""
        token = self.event.strip().removeprefix("//").strip("/")
        return int(token) if token.isdigit() else None


def _is_numeric(parts: Sequence[str]) -> bool:
    try:
        [float(p) for p in parts]
    except ValueError:
        return False
    return True


def _table(
    rows: list[tuple[int, str]], columns: tuple[int, int], source: str, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Numeric block (n, columns[0]) and panel names (n,) of a table's data lines."""
    n_numeric, n_with_panel = columns
    split = [text.split() for _, text in rows]
    for (lineno, text), parts in zip(rows, split, strict=True):
        if len(parts) not in columns:
            raise IciInputError(source, f"{what} line has {len(parts)} columns, expected {n_numeric} or "
                                f"{n_with_panel}: {text.strip()!r}", line=lineno)
    panels = np.array([parts[n_numeric] if len(parts) == n_with_panel else "" for parts in split], dtype=str)
    try:
        numbers = np.array([parts[:n_numeric] for parts in split], dtype=float).reshape(len(rows), n_numeric)
    except ValueError:
        bad = next(k for k, parts in enumerate(split) if not _is_numeric(parts[:n_numeric]))
        lineno, text = rows[bad]
        raise IciInputError(source, f"{what} line holds a non-number: {text.strip()!r}", line=lineno) from None
    return numbers, panels


def _peaks(rows: list[tuple[int, str]], source: str) -> Peaks:
    numbers, panels = _table(rows, _PEAK_COLUMNS, source, "peak")
    return Peaks(numbers[:, 0], numbers[:, 1], numbers[:, 3], panels)


def _reflections(rows: list[tuple[int, str]], source: str) -> Reflections:
    numbers, panels = _table(rows, _REFLECTION_COLUMNS, source, "reflection")
    hkl = numbers[:, :3]
    if not np.array_equal(hkl, np.round(hkl)):
        bad = int(np.flatnonzero(np.any(hkl != np.round(hkl), axis=1))[0])
        raise IciInputError(source, "reflection indices h k l must be integers", line=rows[bad][0])
    return Reflections(hkl.astype(np.int64), numbers[:, 3], numbers[:, 4], numbers[:, 5], numbers[:, 6],
                       numbers[:, 7], numbers[:, 8], panels)


def _det_shift(text: str, source: str, lineno: int) -> tuple[float, float]:
    # Form: "predict_refine/det_shift x = 0.012 y = -0.003 mm"
    parts = text.replace("=", " ").split()
    try:
        return float(parts[parts.index("x") + 1]), float(parts[parts.index("y") + 1])
    except (ValueError, IndexError):
        raise IciInputError(source, f"unreadable refined detector shift: {text.strip()!r}", line=lineno) from None


def parse_stream_text(text: str, *, source: str = "<stream>") -> list[Chunk]:
    """Parse the text of a CrystFEL stream into its chunks, in file order; ``source`` names it in errors."""
    chunks: list[Chunk] = []
    lines = text.splitlines()
    n = len(lines)
    i = 0
    while i < n:
        if lines[i].strip() != CHUNK_START:
            i += 1
            continue
        chunk_line = i + 1
        filename = event = ""
        indexed_by = "none"
        peaks = _peaks([], source)
        crystals: list[Crystal] = []
        i += 1
        while True:
            if i >= n:
                raise IciInputError(source, "chunk is not closed (truncated stream?)", line=chunk_line)
            line = lines[i].strip()
            if line == CHUNK_END:
                break
            if line == CHUNK_START:
                raise IciInputError(source, "new chunk starts before the previous one ended", line=i + 1)
            if line.startswith("Image filename:"):
                filename = line.partition(":")[2].strip()
            elif line.startswith("Event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("indexed_by"):
                indexed_by = line.partition("=")[2].strip() or "none"
            elif line == PEAKS_START:
                rows, i = _table_rows(lines, i + 1, PEAKS_END, source, "peak list")
                peaks = _peaks(rows, source)
            elif line.startswith(CRYSTAL_START):
                crystal, i = _crystal(lines, i + 1, source)
                crystals.append(crystal)
            i += 1
        chunks.append(Chunk(filename, event, indexed_by, peaks, tuple(crystals), chunk_line))
        i += 1
    return chunks


def _table_rows(
    lines: Sequence[str], start: int, end_marker: str, source: str, what: str
) -> tuple[list[tuple[int, str]], int]:
    """Data lines (1-based number, text) of a table whose column header is at ``start``; index of its end line."""
    rows: list[tuple[int, str]] = []
    i = start + 1  # skip the column header line
    while i < len(lines):
        text = lines[i]
        stripped = text.strip()
        if stripped == end_marker:
            return rows, i
        if stripped in (CHUNK_END, CHUNK_START) or stripped.startswith((CRYSTAL_END, CRYSTAL_START)):
            raise IciInputError(source, f"{what} is not closed by '{end_marker}'", line=i + 1)
        if stripped:
            rows.append((i + 1, text))
        i += 1
    raise IciInputError(source, f"{what} is not closed by '{end_marker}' (truncated stream?)", line=start)


def _crystal(lines: Sequence[str], start: int, source: str) -> tuple[Crystal, int]:
    reflections = _reflections([], source)
    det_shift: tuple[float, float] | None = None
    i = start
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith(CRYSTAL_END):
            return Crystal(reflections, det_shift), i
        if line in (CHUNK_END, CHUNK_START) or line.startswith(CRYSTAL_START):
            break
        if line.startswith(DET_SHIFT_PREFIX):
            det_shift = _det_shift(line, source, i + 1)
        elif line == REFLECTIONS_START:
            rows, i = _table_rows(lines, i + 1, REFLECTIONS_END, source, "reflection list")
            reflections = _reflections(rows, source)
        i += 1
    raise IciInputError(source, f"crystal is not closed by '{CRYSTAL_END}'", line=start)


def parse_stream(path: str | os.PathLike[str]) -> list[Chunk]:
    """Parse a CrystFEL stream file into its chunks (see :func:`parse_stream_text`)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise IciInputError(str(path), f"not a text stream ({exc.reason} at byte {exc.start})") from None
    return parse_stream_text(text, source=str(path))


def wrmsd(peaks: Peaks, reflections: Reflections, match_radius_px: float, outlier_k: float) -> float | None:
    """Intensity-weighted RMS distance (px) from each peak to its nearest predicted reflection on the same panel.

    Matches farther than ``match_radius_px`` are dropped; of the rest, distances above
    ``mean + outlier_k * std`` are rejected. Weights are ``max(I, 0)`` of the peaks (unweighted
    when they are all zero). None when no peak has a match.
    """
    if match_radius_px <= 0:
        raise ValueError(f"match_radius_px must be > 0, got {match_radius_px}")
    if len(peaks) == 0 or len(reflections) == 0:
        return None
    from scipy.spatial import cKDTree

    # Panels become a third coordinate spaced wider than the match radius, so one tree query
    # matches within panels only.
    _, codes = np.unique(np.concatenate([peaks.panel, reflections.panel]), return_inverse=True)
    spacing = 4.0 * match_radius_px + 1.0
    third = codes.astype(float) * spacing
    n_peaks = len(peaks)
    tree = cKDTree(np.column_stack([reflections.fs_px, reflections.ss_px, third[n_peaks:]]))
    distance, _ = tree.query(np.column_stack([peaks.fs_px, peaks.ss_px, third[:n_peaks]]),
                             distance_upper_bound=match_radius_px)
    matched = np.isfinite(distance)
    if not matched.any():
        return None
    d = distance[matched]
    w = np.maximum(peaks.intensity[matched], 0.0)
    keep = d <= d.mean() + outlier_k * d.std()
    d, w = d[keep], w[keep]
    if w.sum() <= 0.0:
        w = np.ones_like(d)
    return float(np.sqrt(np.sum(w * d**2) / np.sum(w)))


def chunk_wrmsd(chunk: Chunk, match_radius_px: float, outlier_k: float) -> float | None:
    """wRMSD (px) of a chunk's peaks against the predicted reflections of all its crystals; None if not indexed."""
    if not chunk.indexed:
        return None
    pooled = Reflections.concatenate([c.reflections for c in chunk.crystals])
    return wrmsd(chunk.peaks, pooled, match_radius_px, outlier_k)
