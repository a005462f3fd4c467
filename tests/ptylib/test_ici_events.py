"""Event selection from HDF5 inputs and CrystFEL-style list files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from ptylib.ici.events import parse_selection, resolve_events
from ptylib.ici.model import EventKey, IciInputError


@pytest.fixture()
def two_files(tmp_path: Path) -> tuple[Path, Path]:
    paths = []
    for name, n in (("a.h5", 5), ("b.h5", 3)):
        with h5py.File(tmp_path / name, "w") as handle:
            handle["/entry/data/data"] = np.zeros((n, 4, 4), np.float32)
        paths.append(tmp_path / name)
    return paths[0], paths[1]


def test_selection_ranges() -> None:
    assert parse_selection("0-2, 4,3", 6) == [0, 1, 2, 3, 4]
    assert parse_selection("all", 3) == [0, 1, 2]
    with pytest.raises(IciInputError, match=r"--events: range '5-9' is outside 0..5"):
        parse_selection("5-9", 6)
    with pytest.raises(IciInputError, match="'x' is not an event index"):
        parse_selection("x", 6)


def test_resolve_from_inputs_and_list(two_files: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_files
    listing = tmp_path / "events.lst"
    listing.write_text("b.h5 //2\n\n; comment\na.h5 //0\n")
    keys = resolve_events([a], "1-2", str(listing))
    assert keys == [EventKey(str(b), 2), EventKey(str(a), 0), EventKey(str(a), 1), EventKey(str(a), 2)]


def test_bad_inputs_are_named(tmp_path: Path, two_files: tuple[Path, Path]) -> None:
    bogus = tmp_path / "not.h5"
    bogus.write_text("text")
    with pytest.raises(IciInputError, match=r"not.h5: cannot be read as HDF5"):
        resolve_events([bogus])
    with h5py.File(tmp_path / "flat.h5", "w") as handle:
        handle["/entry/data/data"] = np.zeros((4, 4))
    with pytest.raises(IciInputError, match=r"flat.h5, field '/entry/data/data': dataset has shape \(4, 4\)"):
        resolve_events([tmp_path / "flat.h5"])
    listing = tmp_path / "bad.lst"
    listing.write_text("a.h5 //x\n")
    with pytest.raises(IciInputError, match=r"bad.lst, line 1, field 'event'"):
        resolve_events([], event_list=str(listing))


def test_images_as_a_list_keep_their_order_and_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ptylib.io.minicbf import MiniCbfHeader, write_minicbf

    for name in ("s_000.cbf", "s_001.cbf"):
        write_minicbf(tmp_path / name, np.zeros((20, 30), np.int32), MiniCbfHeader(0.172, 155.0, 1.0, 15.0, 10.0))
    monkeypatch.chdir(tmp_path)
    # A manifest's list (absolute) and a relative path: the list's order, not sorted, absolute keys.
    keys = resolve_events([], images=[str(tmp_path / "s_001.cbf"), "s_000.cbf"])
    assert keys == [EventKey(str(tmp_path / "s_001.cbf"), 0), EventKey(str(tmp_path / "s_000.cbf"), 0)]
    with pytest.raises(IciInputError, match=r"^.*/gone\.cbf: image does not exist$"):
        resolve_events([], images=["s_000.cbf", "gone.cbf"])
