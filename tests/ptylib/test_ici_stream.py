"""CrystFEL stream parsing and the wRMSD score (ptylib.ici.backends.stream)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ptylib.ici.backends.stream import (
    Peaks,
    Reflections,
    chunk_wrmsd,
    parse_stream,
    parse_stream_text,
    wrmsd,
)
from ptylib.ici.model import IciInputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ici"
RECORDED = FIXTURES / "recorded_multi.stream"


def _peaks(rows: list[tuple[float, float, float, str]]) -> Peaks:
    fs, ss, intensity, panel = zip(*rows, strict=True)
    return Peaks(np.array(fs, float), np.array(ss, float), np.array(intensity, float), np.array(panel))


def _reflections(rows: list[tuple[float, float, str]]) -> Reflections:
    fs, ss, panel = zip(*rows, strict=True)
    n = len(rows)
    zeros = np.zeros(n)
    return Reflections(np.zeros((n, 3), np.int64), zeros, zeros, zeros, zeros, np.array(fs, float),
                       np.array(ss, float), np.array(panel))


def test_recorded_stream_chunks_and_counts() -> None:
    chunks = parse_stream(RECORDED)
    assert [c.event for c in chunks] == ["//0", "//1", "//2", "//3"]
    assert [c.event_number() for c in chunks] == [0, 1, 2, 3]
    assert {c.filename for c in chunks} == {"/data/run7/overlay_000.h5"}
    assert [c.indexed_by for c in chunks] == [
        "xgandalf-nolatt-cell", "none", "xgandalf-nolatt-cell", "mosflm-latt-nocell"]
    assert [c.indexed for c in chunks] == [True, False, True, True]
    assert [len(c.peaks) for c in chunks] == [6, 3, 5, 2]
    assert [len(c.crystals) for c in chunks] == [1, 0, 2, 1]
    assert [c.n_reflections for c in chunks] == [5, 0, 5, 0]
    first = chunks[0]
    assert first.peaks.panel.tolist() == ["p0", "p0", "p0", "p1", "p1", "p0"]
    assert first.peaks.intensity.tolist() == [100.0, 300.0, -5.0, 200.0, 50.0, 80.0]
    refl = first.crystals[0].reflections
    assert refl.hkl[1].tolist() == [-4, 5, 0]
    assert refl.fs_px.tolist() == [100.3, 151.0, 300.0, 50.6, 10.0]
    assert refl.panel.tolist() == ["p0", "p0", "p0", "p1", "p1"]
    assert first.crystals[0].det_shift_mm == (0.012, -0.004)
    assert [len(c.reflections) for c in chunks[2].crystals] == [3, 2]
    assert chunks[3].crystals[0].det_shift_mm is None
    lines = RECORDED.read_text().splitlines()
    begin = [n for n, line in enumerate(lines, start=1) if line == "----- Begin chunk -----"]
    assert [c.line for c in chunks] == begin


def test_recorded_stream_wrmsd_by_hand() -> None:
    chunks = parse_stream(RECORDED)
    # Chunk 0: matched distances 0.5, 1.0, 2.0, 1.0 px with weights 100, 300, max(-5, 0) = 0, 200; the
    # peak at (10, 10) on p0 only has a reflection on p1, and (400, 400) has none within 4 px.
    assert chunk_wrmsd(chunks[0], 4.0, 3.0) == pytest.approx(math.sqrt((100 * 0.25 + 300 * 1 + 200 * 1) / 600))
    # Chunk 2: two crystals pooled; distances 0.5, 0.5, 0, 0.5, 0.5 with equal weights.
    assert chunk_wrmsd(chunks[2], 4.0, 3.0) == pytest.approx(math.sqrt(0.2))
    assert chunk_wrmsd(chunks[1], 4.0, 3.0) is None  # not indexed
    assert chunk_wrmsd(chunks[3], 4.0, 3.0) is None  # indexed but no reflections written


def test_wrmsd_hand_computed_and_outlier_rejection() -> None:
    # Distances 0.5 px (four peaks) and 3.0 px (one): mean 1.0, std 1.0.
    peaks = _peaks([(10, 10, 100, "p0"), (20, 20, 100, "p0"), (30, 30, 100, "p0"), (40, 40, 100, "p0"),
                    (50, 50, 100, "p0")])
    refl = _reflections([(10.3, 10.4, "p0"), (20.4, 20.3, "p0"), (30.0, 30.5, "p0"), (40.5, 40.0, "p0"),
                         (51.8, 52.4, "p0")])
    assert wrmsd(peaks, refl, match_radius_px=4.0, outlier_k=10.0) == pytest.approx(math.sqrt((4 * 0.25 + 9) / 5))
    # mean + 1.5 std = 2.5 px rejects the 3 px match.
    assert wrmsd(peaks, refl, match_radius_px=4.0, outlier_k=1.5) == pytest.approx(0.5)
    # A match radius below 3 px drops it before the outlier cut.
    assert wrmsd(peaks, refl, match_radius_px=2.0, outlier_k=10.0) == pytest.approx(0.5)


def test_wrmsd_weights_panels_and_no_match() -> None:
    peaks = _peaks([(10, 10, 300, "p0"), (20, 20, 100, "p0")])
    refl = _reflections([(11, 10, "p0"), (20, 22, "p0")])
    assert wrmsd(peaks, refl, 4.0, 3.0) == pytest.approx(math.sqrt((300 * 1 + 100 * 4) / 400))
    zero_weight = _peaks([(10, 10, 0, "p0"), (20, 20, -7, "p0")])
    assert wrmsd(zero_weight, refl, 4.0, 3.0) == pytest.approx(math.sqrt((1 + 4) / 2))  # unweighted fallback
    other_panel = _reflections([(10, 10, "p1"), (20, 20, "p1")])
    assert wrmsd(peaks, other_panel, 4.0, 3.0) is None
    assert wrmsd(peaks, _reflections([(100, 100, "p0")]), 4.0, 3.0) is None
    with pytest.raises(ValueError):
        wrmsd(peaks, refl, 0.0, 3.0)


def test_garbled_table_line_names_file_and_line() -> None:
    path = FIXTURES / "garbled_table.stream"
    with pytest.raises(IciInputError) as info:
        parse_stream(path)
    assert info.value.line == 22
    assert str(path) in str(info.value) and "80.2#@!" in str(info.value)


def test_wrong_column_count_and_truncation() -> None:
    text = RECORDED.read_text()
    bad = text.replace(" 150.00  250.00       1.50      300.00   p0", " 150.00  250.00   p0", 1)
    with pytest.raises(IciInputError, match="columns") as info:
        parse_stream_text(bad, source="bad.stream")
    assert info.value.line == bad.splitlines().index(" 150.00  250.00   p0") + 1
    cut = "\n".join(text.splitlines()[:60])  # ends inside chunk 0's reflection table
    with pytest.raises(IciInputError, match="not closed"):
        parse_stream_text(cut, source="cut.stream")


def test_tolerates_old_columns_extra_lines_and_missing_sections() -> None:
    text = "\n".join([
        "CrystFEL stream format 2.2",
        "some audit line the parser does not know",
        "----- Begin chunk -----",
        "Image filename: a.h5",
        "Event: //7",
        "unknown_key = 1",
        "indexed_by = dirax",
        "Peaks from peak search",
        "  fs/px   ss/px  (1/d)/nm^-1   Intensity",
        "  10.00   10.00       1.00      50.00",
        "End of peak list",
        "--- Begin crystal",
        "Reflections measured after indexing",
        "   h    k    l          I   sigma(I)       peak background  fs/px  ss/px",
        "   1    0    0      10.00       1.00       5.00       1.00   10.0   10.5",
        "End of reflections",
        "--- End crystal",
        "----- End chunk -----",
        "----- Begin chunk -----",
        "Image filename: a.h5",
        "Event: //8",
        "----- End chunk -----",
        "",
    ])
    chunks = parse_stream_text(text)
    assert len(chunks) == 2
    assert chunks[0].peaks.panel.tolist() == [""]
    assert chunk_wrmsd(chunks[0], 4.0, 3.0) == pytest.approx(0.5)
    assert not chunks[1].indexed and len(chunks[1].peaks) == 0  # no peak list, no indexed_by line


def test_binary_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.stream"
    path.write_bytes(b"CrystFEL stream\n\xff\xfe\x00\x01")
    with pytest.raises(IciInputError, match="not a text stream"):
        parse_stream(path)
