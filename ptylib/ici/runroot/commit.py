"""Write the files of a run root together (ledger and sidecar): all changed ones, or none.

A module of its own so that ``ici propose`` does not import the chunk-metrics ingest for it.
"""

from __future__ import annotations

from pathlib import Path

from ptylib.io.atomic import atomic_write_bytes, atomic_write_text


def commit_files(changes: list[tuple[Path, bytes | None, str]]) -> None:
    """Write each ``(path, old bytes or None, new text)`` whose text changed, atomically.

    On failure the files already written get their old content back (or are removed when new).
    """
    written: list[tuple[Path, bytes | None]] = []
    try:
        for path, old, text in changes:
            if old is not None and old == text.encode("utf-8"):
                continue
            atomic_write_text(path, text)
            written.append((path, old))
    except BaseException:
        for path, old in reversed(written):
            if old is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write_bytes(path, old)
        raise
