"""Prefect artifact helpers: Markdown reports, tables, embedded PNG plots and progress."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import FlowRunContext, TaskRunContext

from ptylib.io.progress import TerminalProgress
from ptylib.io.report import format_cell, png_markdown


def artifact_key(text: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) derived from ``text``."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")[:100] or "artifact"


def _in_run() -> bool:
    # Kernels and tasks' .fn() are also called outside any run (tests, notebooks): skip artifacts there.
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def publish_markdown(key: str, markdown: str, description: str = "") -> UUID | None:
    """Create a Markdown artifact (when inside a flow or task run)."""
    if not _in_run():
        return None
    return create_markdown_artifact(markdown=markdown, key=artifact_key(key), description=description)


def publish_table(key: str, rows: Sequence[Mapping[str, Any]], description: str = "") -> UUID | None:
    """Create a table artifact; floats are rounded for display."""
    if not _in_run():
        return None
    table = [{k: format_cell(v) for k, v in row.items()} for row in rows]
    return create_table_artifact(table=table, key=artifact_key(key), description=description)


def publish_pngs(key: str, pngs: Mapping[str, str | os.PathLike[str]], intro: str = "") -> UUID | None:
    """Create one Markdown artifact that embeds each PNG (title → path) as a data URI."""
    parts = [intro] if intro else []
    for title, path in pngs.items():
        parts.append(f"### {title}\n\n{png_markdown(path, alt=title)}")
    return publish_markdown(key, "\n".join(parts))


class ProgressArtifact:
    """Progress of a long step: a Prefect progress artifact (inside a run) and a terminal bar (on a TTY)."""

    def __init__(self, total: int, description: str = "") -> None:
        self.total = max(int(total), 1)
        self.done = 0
        self._id = create_progress_artifact(progress=0.0, description=description) if _in_run() else None
        self._bar = TerminalProgress(self.total, description)

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more units done."""
        self.done = min(self.total, self.done + n)
        self._bar.advance(n)
        if self._id is not None:
            update_progress_artifact(artifact_id=self._id, progress=100.0 * self.done / self.total)
        if self.done >= self.total:
            self._bar.close()
