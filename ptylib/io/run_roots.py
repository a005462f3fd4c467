"""Timestamped run roots under one parent folder: a fresh one for every scheduled run, the newest N kept."""

from __future__ import annotations

import datetime
import os
import re
import shutil
from pathlib import Path

from ptylib.io.lock import RunRootLock, RunRootLockedError

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
STAMPED = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
"""Names :func:`new_run_root` gives (UTC time, then ``-2``, ``-3`` … within one second); nothing else is pruned."""


def new_run_root(parent: str | os.PathLike[str]) -> Path:
    """Create and return a new, empty ``parent/<UTC timestamp>`` folder (never one that exists already)."""
    base = Path(parent)
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime(STAMP_FORMAT)
    for suffix in ("", *(f"-{n}" for n in range(2, 1000))):
        try:
            (base / f"{stamp}{suffix}").mkdir()
        except FileExistsError:
            continue
        return base / f"{stamp}{suffix}"
    raise RuntimeError(f"{base}: 1000 run roots created within one second")


def prune_run_roots(parent: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` timestamped run roots of ``parent``; returns those deleted.

    Only folders named by :func:`new_run_root` are candidates, and one whose run-root lock is held (a run
    still writing there) is left alone.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the run just made), got {keep}")
    stamped = sorted((p for p in Path(parent).iterdir() if p.is_dir() and STAMPED.match(p.name)),
                     key=lambda p: (p.name[:16], int(p.name[17:] or 1)))
    removed = []
    for old in stamped[:-keep]:
        lock = RunRootLock(old, owner="run-root pruning")
        try:
            lock.acquire()
        except RunRootLockedError:
            continue
        try:
            shutil.rmtree(old)
        finally:
            lock.release()
        removed.append(old)
    return removed
