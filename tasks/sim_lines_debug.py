"""Prefect tasks of the sim-lines debug scenarios: thin wrappers around ``ptylib.ptycho.diagnostics.runner``
and the A/B kernels that pass paths and small records and publish every diagnostic as an artifact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ptylib.ptycho.diagnostics import ab, runner
from ptylib.ptycho.diagnostics.scenario import ScenarioOptions
from tasks.artifacts import (
    ProgressArtifact,
    publish_markdown,
    publish_pngs,
    publish_table,
)


def _publish_md(out: str, name: str, options: ScenarioOptions) -> None:
    text = (Path(out) / f"{name}.md").read_text(encoding="utf-8")
    publish_markdown(f"sim-lines-{options.name}-{name}", text, f"{options.name}: {name.replace('_', ' ')}")


@task(name="sim-lines-simulate", cache_policy=NO_CACHE)
def simulate_task(options: ScenarioOptions, out: str) -> dict[str, Any]:
    """Simulate → split → group; publish the probe-normalisation and grouping diagnostics."""
    record = runner.simulate_step(options, out)
    _publish_md(out, "probe_normalisation", options)
    _publish_md(out, "grouping", options)
    return record


@task(name="sim-lines-train", cache_policy=NO_CACHE)
def train_task(options: ScenarioOptions, out: str) -> dict[str, Any]:
    """Train the PINN with a per-epoch progress artifact; publish the history (first NaN epoch, if any)."""
    progress = ProgressArtifact(options.epochs, f"{options.name}: PINN epochs")
    record = runner.train_step(options, out, on_epoch=lambda epoch, loss: progress.advance())
    progress.advance(progress.total)
    _publish_md(out, "training_history", options)
    publish_pngs(f"sim-lines-{options.name}-history", {"training history": Path(out) / "training_history.png"})
    return record["summary"]


@task(name="sim-lines-infer-stitch", cache_policy=NO_CACHE)
def infer_stitch_task(options: ScenarioOptions, out: str) -> dict[str, Any]:
    """Predict and stitch the test split; publish the reassembly limits."""
    record = runner.infer_stitch_step(options, out)
    _publish_md(out, "reassembly", options)
    return record


@task(name="sim-lines-compare", cache_policy=NO_CACHE)
def compare_task(options: ScenarioOptions, out: str) -> dict[str, Any]:
    """Ground-truth comparison and bias statistics; publish both and the side-by-side PNG."""
    record = runner.compare_step(options, out)
    _publish_md(out, "comparison", options)
    _publish_md(out, "bias", options)
    publish_pngs(f"sim-lines-{options.name}-images", {"truth / reconstruction / difference":
                                                      Path(out) / "comparison.png"})
    return record


@task(name="sim-lines-report", cache_policy=NO_CACHE)
def report_task(options: ScenarioOptions, out: str) -> dict[str, Any]:
    """Write ``report.json`` / ``report.md``; publish the pass/fail table with the PNGs embedded."""
    record = runner.report_step(options, out)
    publish_table(f"sim-lines-{options.name}-checks", record["checks"], f"{options.name}: exit criteria")
    publish_pngs(f"sim-lines-{options.name}-report", {t: Path(out) / p for t, p in record["images"].items()},
                 (Path(out) / "report.md").read_text(encoding="utf-8").split("\n### ")[0])
    return record


@task(name="sim-lines-ab", cache_policy=NO_CACHE)
def ab_task(kind: str, options: Sequence[ScenarioOptions], out: str, canvas_px: int | None = None) -> dict[str, Any]:
    """An A/B diagnostic without training (probe, grouping or reassembly); JSON + Markdown + artifact."""
    record = ab.run_ab(kind, list(options), out, canvas_px)
    publish_markdown(f"sim-lines-ab-{kind}", (Path(out) / f"ab_{kind}.md").read_text(encoding="utf-8"),
                     f"sim-lines A/B: {kind}")
    return record


@task(name="sim-lines-ab-grid-summary", cache_policy=NO_CACHE)
def grid_summary_task(out: str, reports: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Grid vs non-grid: the two scenarios' checks side by side."""
    record = ab.grid_summary(out, reports)
    publish_markdown("sim-lines-ab-grid", (Path(out) / "ab_grid.md").read_text(encoding="utf-8"),
                     "sim-lines A/B: grid vs non-grid")
    return record
