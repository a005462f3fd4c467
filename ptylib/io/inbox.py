"""Watch one folder for complete HDF5 and CBF files: size stable, no partial names, nothing outside the folder.

A detector or a copy job writes files into the inbox over seconds; a file is *ready* once its size and
modification time have not changed for ``settle_s`` seconds and its first bytes carry the format's
signature. Symbolic links (files or folders) and anything whose resolved path leaves the inbox are
ignored, so a link to ``/etc`` or a name with ``..`` never reaches a pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KINDS = {".h5": "hdf5", ".hdf5": "hdf5", ".nxs": "hdf5", ".cbf": "cbf"}
"""File suffix → kind of data (the kind picks the pipeline)."""
SIGNATURES = {"hdf5": b"\x89HDF\r\n\x1a\n", "cbf": b"###CBF"}
"""First bytes of a complete file of each kind (CBF files start with the ``###CBF`` magic line)."""
PARTIAL_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".filepart", "~")
"""Names of files still being written by common copy tools; never reported."""


@dataclass(frozen=True)
class InboxFile:
    """One complete file in the inbox."""

    path: Path
    """Absolute path (inside the inbox, no symbolic link on the way)."""
    kind: str
    """``hdf5`` or ``cbf``."""
    size: int
    """Size (bytes) when it was found complete."""


def _candidates(inbox: Path) -> Iterator[tuple[Path, os.stat_result]]:
    # os.walk with followlinks=False never descends into a linked folder; linked files are dropped here.
    for folder, dirs, files in os.walk(inbox, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(folder) / name
            if name.startswith(".") or name.endswith(PARTIAL_SUFFIXES) or path.suffix.lower() not in KINDS:
                continue
            try:
                info = path.lstat()
            except FileNotFoundError:  # removed between listing and stat
                continue
            if path.is_symlink() or not path.resolve().is_relative_to(inbox):
                continue
            yield path, info


def _has_signature(path: Path, kind: str) -> bool:
    signature = SIGNATURES[kind]
    try:
        with path.open("rb") as handle:
            return handle.read(len(signature)) == signature
    except OSError:
        return False


class InboxScanner:
    """Report each complete file of an inbox once, after its size and mtime stayed unchanged for ``settle_s``.

    Parameters
    ----------
    inbox : the watched folder (resolved once; files must stay inside it).
    settle_s : seconds a file's size and modification time must stay unchanged before it counts as complete.
    seen : paths reported earlier (e.g. by a previous watcher process) that must not be reported again.
    """

    def __init__(self, inbox: str | os.PathLike[str], settle_s: float = 2.0, seen: set[str] | None = None) -> None:
        self.inbox = Path(inbox).resolve()
        if not self.inbox.is_dir():
            raise NotADirectoryError(f"inbox {self.inbox}: not a folder")
        self.settle_s = settle_s
        self.seen: set[str] = set(seen or ())
        self._last: dict[str, tuple[int, int, float]] = {}  # path -> (size, mtime_ns, first time seen so)

    def poll(self, now: float) -> list[InboxFile]:
        """Scan once at time ``now`` (seconds, monotonic); return the files that became complete."""
        ready = []
        current: dict[str, tuple[int, int, float]] = {}
        for path, info in _candidates(self.inbox):
            key = str(path)
            if key in self.seen:
                continue
            size, mtime = info.st_size, info.st_mtime_ns
            previous = self._last.get(key)
            since = previous[2] if previous and previous[:2] == (size, mtime) else now
            current[key] = (size, mtime, since)
            kind = KINDS[path.suffix.lower()]
            if size > 0 and now - since >= self.settle_s and _has_signature(path, kind):
                ready.append(InboxFile(path=path, kind=kind, size=size))
                self.seen.add(key)
        self._last = current
        return ready
