"""The scheduled ICI flight check's thresholds: what the demo loop must reach on a fresh run root.

The demo's synthetic events start about 0.03 mm from their true centres and all index there; a working
loop ends within ~0.005 mm (stand-in indexer) or ~0.01 mm (DIALS, refine mode: docs/ici.md). The
defaults leave a 2x margin above DIALS and fail a loop that does not improve on its start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class FlightCheckFailed(RuntimeError):
    """A flight check ran but missed a threshold; the message names each missed figure and the run root."""


class FlightCheckOptions(BaseModel):
    """Size of one flight check and the figures it must reach."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    n_events: int = Field(4, ge=1)
    """Synthetic events of the demo run."""
    max_iterations: int = Field(4, ge=1)
    """Indexing runs of the loop (on a fresh run root every time, so they all run)."""
    indexer: Literal["auto", "dials", "standin"] = "auto"
    """auto: DIALS when ``dials.import`` is on PATH, else the stand-in indexamajig."""
    min_index_rate: float = Field(0.75, gt=0.0, le=1.0)
    """Least fraction of events indexed at least once."""
    max_centre_error_mm: float = Field(0.02, gt=0.0)
    """Largest median distance (mm) from the events' best centres, and refined centres when the indexer
    refines, to their true centres."""
    keep_runs: int = Field(10, ge=1)
    """Newest flight-check run roots kept; older ones are deleted after each check."""


CHECKED = (("final_ever_indexed_rate", "min_index_rate", ">="), ("median_centre_error_mm", "max_centre_error_mm", "<="),
           ("median_refined_centre_error_mm", "max_centre_error_mm", "<="))
"""(report figure, threshold field, comparison); the refined-centre figure is checked only when reported."""


def threshold_rows(figures: Mapping[str, Any], options: FlightCheckOptions) -> list[dict[str, Any]]:
    """One row per checked figure of an ICI final report: figure, value, threshold, passed (NaN or absent fails)."""
    rows = []
    for figure, field, comparison in CHECKED:
        if figure == "median_refined_centre_error_mm" and figure not in figures:
            continue
        value = float(figures.get(figure, math.nan))
        limit = getattr(options, field)
        passed = math.isfinite(value) and (value >= limit if comparison == ">=" else value <= limit)
        rows.append({"figure": figure, "value": value, "threshold": f"{comparison} {limit:g}", "passed": passed})
    return rows


def failure_message(rows: list[dict[str, Any]], run_root: str) -> str | None:
    """One line naming every missed threshold and the run root, or None when all passed."""
    missed = [f"{r['figure']} = {r['value']:.4g} (needs {r['threshold']})" for r in rows if not r["passed"]]
    return f"ICI flight check in {run_root} missed: {'; '.join(missed)}" if missed else None
