"""An exclusive, non-blocking lock per run root, so two runs never write the same ledger.

The lock is held per process: a flow that holds it and the kernels it calls (which take it too,
so that a command-line tool writing the same run root is refused) share it.
"""

from __future__ import annotations

import fcntl
import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ParamSpec, TypeVar

LOCK_NAME = ".ptyflows.lock"

_P = ParamSpec("_P")
_R = TypeVar("_R")
# Lock file (real path) -> [descriptor, holders in this process]. flock conflicts between two
# descriptors of one process too, so nested holders reuse the first one's.
_HELD: dict[str, list[int]] = {}
_HELD_GUARD = threading.Lock()


class RunRootLockedError(RuntimeError):
    """Another process holds the lock of this run root."""


class RunRootLock:
    """``flock``-based lock on ``<run_root>/.ptyflows.lock``; released when the process dies.

    The lock file records the holder's PID and host-independent description, for the error message.
    Re-entrant within a process (see the module docstring).
    """

    def __init__(self, run_root: str | os.PathLike[str], owner: str = "") -> None:
        self.path = Path(run_root) / LOCK_NAME
        self.owner = owner
        self._key: str | None = None

    def acquire(self) -> None:
        """Take the lock (or join this process's holding of it) or raise :class:`RunRootLockedError` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.path)
        with _HELD_GUARD:
            if key in _HELD:
                _HELD[key][1] += 1
                self._key = key
                return
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
            _HELD[key] = [fd, 1]
            self._key = key

    def release(self) -> None:
        """Release this holding; the lock itself goes when the process's last holder releases it."""
        if self._key is None:
            return
        with _HELD_GUARD:
            entry = _HELD[self._key]
            entry[1] -= 1
            if entry[1] == 0:
                del _HELD[self._key]
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                os.close(entry[0])
        self._key = None

    def __enter__(self) -> RunRootLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def holds_run_root_lock(owner: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a writer whose first argument is ``run_root``: it runs holding that run root's lock.

    A run root that does not exist yet is not created (the writer reports what is missing itself).
    """

    def decorate(writer: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(writer)
        def locked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            run_root = Path(args[0]) if args else Path(kwargs["run_root"])  # type: ignore[arg-type]
            if not run_root.is_dir():
                return writer(*args, **kwargs)
            with RunRootLock(run_root, owner=owner):
                return writer(*args, **kwargs)

        return locked

    return decorate
