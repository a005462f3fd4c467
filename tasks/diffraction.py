"""Prefect tasks of the refinement demo: thin wrappers that write into the run directory and pass paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from ptylib.diffraction.plots import report_markdown, save_plots
from ptylib.diffraction.refine import (
    IMAGES_NAME,
    RESULT_NAME,
    RefinementOptions,
    refine,
    write_result,
)
from ptylib.io.atomic import atomic_write_text
from tasks.artifacts import (
    ProgressArtifact,
    publish_markdown,
    publish_pngs,
    publish_table,
)


@task(name="refinement-run", cache_policy=NO_CACHE)
def refine_task(options: RefinementOptions, run_dir: str, device: str = "cpu") -> dict[str, Any]:
    """Run the refinement kernel with a progress artifact; write history, images and summary; return the summary."""
    progress = ProgressArtifact(options.total_iterations, "refinement steps")
    result = refine(options, device=device, progress=lambda done, total: progress.advance())
    write_result(result, run_dir)
    return result.summary()


@task(name="refinement-plots", cache_policy=NO_CACHE)
def plot_task(run_dir: str) -> dict[str, str]:
    """Loss, parameter-trajectory and image plots as PNGs in the run directory and as an artifact."""
    root = Path(run_dir)
    history = json.loads((root / "history.json").read_text())
    summary = json.loads((root / RESULT_NAME).read_text())
    with np.load(root / IMAGES_NAME) as images:
        pngs = save_plots(history, summary, images["experimental"], images["initial"], images["final"], root)
    publish_pngs("refinement-demo-plots", pngs, intro="# Refinement demo: plots\n")
    return {title: str(path) for title, path in pngs.items()}


@task(name="refinement-report", cache_policy=NO_CACHE)
def report_task(run_dir: str, summary: dict[str, Any]) -> str:
    """Criteria table artifact plus ``report.md`` (also a Markdown artifact); returns the report path."""
    publish_table("refinement-demo-criteria",
                  [{**row, "passed": "PASS" if row["passed"] else "FAIL"} for row in summary["criteria"]],
                  description="The seed's four success criteria")
    markdown = report_markdown(summary)
    path = Path(run_dir) / "report.md"
    atomic_write_text(path, markdown)
    publish_markdown("refinement-demo-report", markdown, "Refinement demo: outcome")
    return str(path)
