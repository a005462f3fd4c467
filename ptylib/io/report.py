"""Human-readable report pieces shared by every pipeline: Markdown tables, PNG plots, data URIs."""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ptylib.io.atomic import atomic_write_bytes


def format_cell(value: Any, digits: int = 4) -> str:
    """Text of one table cell: floats with ``digits`` significant digits, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (columns default to the first row's keys)."""
    if not rows:
        return "_(no rows)_\n"
    cols = list(columns) if columns is not None else list(rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(format_cell(row.get(c)) for c in cols) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it; returns the path."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def png_markdown(path: str | os.PathLike[str], alt: str = "") -> str:
    """Markdown image with the PNG embedded as a base64 data URI (Prefect artifacts need a URL)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt or Path(path).stem}](data:image/png;base64,{data})\n"
