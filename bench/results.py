"""Shared by the benchmark scripts: a one-line machine description and section updates of RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

from ptylib.io.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine_line(torch_threads: str = "") -> str:
    """Cores, CPU model, Python/numpy/torch versions, date and the load average (others share the machine)."""
    import numpy as np

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    versions = f"Python {platform.python_version()}, numpy {np.__version__}"
    try:
        import torch

        versions += f", torch {torch.__version__}{f' ({torch_threads})' if torch_threads else ''}"
    except ImportError:
        pass
    return (f"{len(os.sched_getaffinity(0))} cores (`nproc`), CPU: {cpu}, {versions}, "
            f"{datetime.date.today().isoformat()}, load average at start {os.getloadavg()[0]:.1f}")


def store_section(heading: str, report: str) -> None:
    """Put ``report`` (starting with ``heading``) into RESULTS.md, replacing an older section of that name."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = text.find(heading + "\n")
    if start >= 0:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + text[end + 1 :] if end >= 0 else text[:start]
    atomic_write_text(RESULTS, text.rstrip("\n") + "\n\n" + report)


def measurement_report(heading: str, header: str, rows: list[tuple[str, str, str]]) -> str:
    """A RESULTS.md section: heading, machine line, then a measurement | result | note table."""
    lines = [heading, "", header, "", "| measurement | result | note |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"
