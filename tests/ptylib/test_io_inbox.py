"""The inbox scanner: complete files once, partial and foreign files never, nothing outside the inbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptylib.io.inbox import SIGNATURES, InboxScanner

HDF5 = SIGNATURES["hdf5"] + b"\0" * 64
CBF = SIGNATURES["cbf"] + b": test\r\n" + b"\0" * 64


def _names(found) -> list[str]:
    return sorted(f.path.name for f in found)


def test_file_is_reported_once_after_its_size_settles(tmp_path: Path) -> None:
    scanner = InboxScanner(tmp_path, settle_s=2.0)
    (tmp_path / "a.h5").write_bytes(HDF5[:20])
    assert scanner.poll(0.0) == []
    (tmp_path / "a.h5").write_bytes(HDF5)  # still growing: the clock restarts
    assert scanner.poll(1.5) == []
    assert scanner.poll(3.0) == []
    found = scanner.poll(3.6)
    assert _names(found) == ["a.h5"] and found[0].kind == "hdf5" and found[0].size == len(HDF5)
    assert found[0].path == (tmp_path / "a.h5").resolve()
    assert scanner.poll(10.0) == []  # reported once


def test_partial_hidden_foreign_and_unsigned_files_are_ignored(tmp_path: Path) -> None:
    sub = tmp_path / "run7"
    sub.mkdir()
    (sub / "b.cbf").write_bytes(CBF)
    for name in ("c.h5.part", ".d.h5", "e.txt", "f.h5.tmp"):
        (tmp_path / name).write_bytes(HDF5)
    (tmp_path / "g.h5").write_bytes(b"not hdf5 at all")  # a name that lies about its content
    (tmp_path / "empty.cbf").write_bytes(b"")
    scanner = InboxScanner(tmp_path, settle_s=0.5)
    scanner.poll(0.0)
    found = scanner.poll(1.0)
    assert _names(found) == ["b.cbf"] and found[0].kind == "cbf"


def test_links_and_paths_outside_the_inbox_are_never_followed(tmp_path: Path) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    (outside / "secret.h5").write_bytes(HDF5)
    (inbox / "link.h5").symlink_to(outside / "secret.h5")
    (inbox / "linked_dir").symlink_to(outside, target_is_directory=True)
    (inbox / "inside.h5").write_bytes(HDF5)
    (inbox / "internal_link.h5").symlink_to(inbox / "inside.h5")  # a link, even to a file inside, is not a file
    scanner = InboxScanner(inbox / ".." / "inbox", settle_s=0.0)
    assert scanner.inbox == inbox.resolve()
    assert _names(scanner.poll(0.0)) == ["inside.h5"]


def test_seen_files_stay_unreported_and_a_missing_inbox_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old.h5").write_bytes(HDF5)
    scanner = InboxScanner(tmp_path, settle_s=0.0, seen={str((tmp_path / "old.h5").resolve())})
    assert scanner.poll(0.0) == []
    with pytest.raises(NotADirectoryError, match="not a folder"):
        InboxScanner(tmp_path / "missing")
