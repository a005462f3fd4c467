"""An exclusive, non-blocking lock per run root, so two runs never write the same ledger."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

LOCK_NAME = ".ptyflows.lock"


class RunRootLockedError(RuntimeError):
    """Another process holds the lock of this run root."""


class RunRootLock:
    """``flock``-based lock on ``<run_root>/.ptyflows.lock``; released when the process dies.

    The lock file records the holder's PID and host-independent description, for the error message.
    """

    def __init__(self, run_root: str | os.PathLike[str], owner: str = "") -> None:
        self.path = Path(run_root) / LOCK_NAME
        self.owner = owner
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunRootLockedError` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise RunRootLockedError(
                f"{self.path.parent} is in use by another run ({holder}); "
                "wait for it to finish or stop it before starting another on the same run root"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} {self.owner}".strip().encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (the file stays, empty of meaning once unlocked)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunRootLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
