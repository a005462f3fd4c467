"""A terminal progress bar for long steps (rich), shown only when stderr is a terminal."""

from __future__ import annotations

import io
import logging
import sys
from typing import Any


class _AboveTheBar(io.TextIOBase):
    """A text stream whose lines a rich console prints above its live display.

    rich's own ``FileProxy`` cannot be given to another rich console: a console unwraps it
    (``rich_proxied_file``) and writes to the terminal directly, over the bar.
    """

    def __init__(self, console: Any, original: Any) -> None:
        from rich.file_proxy import FileProxy

        self._proxy = FileProxy(console, original)
        self._original = original

    def write(self, text: str) -> int:
        return self._proxy.write(text)

    def flush(self) -> None:
        self._proxy.flush()

    def isatty(self) -> bool:
        return self._original.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")


def _terminal_log_handlers() -> list[logging.Handler]:
    """Every logging handler that writes to this process's stderr (Prefect's console handlers included)."""
    loggers = [logging.getLogger(), *(logger for logger in logging.root.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    found: dict[int, logging.Handler] = {}
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
                found[id(handler)] = handler
    return list(found.values())


class TerminalProgress:
    """A rich progress bar over ``total`` units; silent when stderr is not a TTY (logs, CI).

    While the bar is drawn, log records written to stderr are printed above it: each stderr log
    handler (Prefect's console handlers draw with their own rich console) writes through the bar's
    console for that time, so a log line never lands on the bar's line and scrambles it.
    """

    def __init__(self, total: int, description: str = "", *, enabled: bool | None = None) -> None:
        self._progress = None
        self._redirected: list[tuple[Any, str, Any]] = []
        if enabled if enabled is not None else sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            console = Console(stderr=True)
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), console=console, transient=False)
            self._task = self._progress.add_task(description or "working", total=total)
            for handler in _terminal_log_handlers():
                owner, attribute = (handler.console, "file") if hasattr(handler, "console") else (handler, "stream")
                original = getattr(owner, attribute)
                setattr(owner, attribute, _AboveTheBar(console, original))
                self._redirected.append((owner, attribute, original))
            self._progress.start()

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more units done."""
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def close(self) -> None:
        """Stop drawing the bar and give the log handlers their stream back (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        for owner, attribute, original in self._redirected:
            getattr(owner, attribute).flush()
            setattr(owner, attribute, original)
        self._redirected = []
