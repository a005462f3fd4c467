"""The terminal progress bar keeps log lines off its own line."""

from __future__ import annotations

import logging
import sys

from ptylib.io.progress import TerminalProgress


def test_log_lines_written_while_the_bar_runs_go_through_its_console_and_the_stream_comes_back(capsys) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("ptyflows-test-progress")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        bar = TerminalProgress(3, "indexing", enabled=True)
        assert handler.stream is not sys.stderr  # redirected through the bar's console while it is drawn
        logger.warning("event 7 did not index")
        bar.advance(3)
        bar.close()
        assert handler.stream is sys.stderr
        logger.warning("after the bar")
    finally:
        logger.removeHandler(handler)
    lines = capsys.readouterr().err.splitlines()
    assert "event 7 did not index" in lines  # a whole line of its own, not glued to the bar
    assert lines[-1] == "after the bar"
    assert any("indexing" in line and "3/3" in line for line in lines)


class _RichConsoleHandler(logging.StreamHandler):
    """Like Prefect's console handler: draws each record with its own rich console on the stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        from rich.console import Console

        self.console = Console(file=self.stream)

    def emit(self, record: logging.LogRecord) -> None:
        self.console.print(self.format(record), soft_wrap=True)


def test_a_handler_with_its_own_rich_console_prints_through_the_bar(capsys) -> None:
    handler = _RichConsoleHandler()
    logger = logging.getLogger("ptyflows-test-progress-rich")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        bar = TerminalProgress(2, "stills", enabled=True)
        # rich unwraps its own FileProxy (rich_proxied_file) and would write straight over the bar.
        assert handler.console.file is not sys.stderr
        logger.warning("still 3: no spots")
        bar.close()
        assert handler.console.file is sys.stderr
    finally:
        logger.removeHandler(handler)
    assert "still 3: no spots" in capsys.readouterr().err.splitlines()
