"""A terminal progress bar for long steps (rich), shown only when stderr is a terminal."""

from __future__ import annotations

import sys


class TerminalProgress:
    """A rich progress bar over ``total`` units; silent when stderr is not a TTY (logs, CI)."""

    def __init__(self, total: int, description: str = "", *, enabled: bool | None = None) -> None:
        self._progress = None
        if enabled if enabled is not None else sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self._task = self._progress.add_task(description or "working", total=total)
            self._progress.start()

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more units done."""
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def close(self) -> None:
        """Stop drawing the bar (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
