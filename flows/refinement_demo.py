"""The seed's refinement demo as a flow: recover mosaic spread and misset through the differentiable simulator."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from ptylib.diffraction.refine import CriteriaNotMet, RefinementOptions
from ptylib.io.manifest import write_manifest
from tasks.diffraction import plot_task, refine_task, report_task


def default_run_dir() -> Path:
    """``runs/refinement_demo/<UTC timestamp>`` under the working directory."""
    return Path("runs") / "refinement_demo" / datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


@flow(name="refinement-demo", flow_run_name="refinement-demo-robust-{options.robust}", log_prints=True)
def refinement_demo(options: RefinementOptions = RefinementOptions(), run_dir: str | None = None,
                    device: str = "cpu") -> dict[str, Any]:
    """Simulate the experimental image, refine from the wrong start, check the seed's criteria, plot.

    Parameters
    ----------
    options : scene, ground truth, start, optimiser and thresholds (the seed's defaults); robust mode by
        default, ``robust=False`` for the seed's single-start Adam.
    run_dir : folder for ``history.json``/``.csv``, ``images.npz``, ``result.json``, PNGs, ``report.md``
        and ``manifest.json``; default ``runs/refinement_demo/<UTC timestamp>``.
    device : torch device (``cpu``, ``cuda``).

    Returns the summary (truth, start, refined values, losses, criteria, ``success``). A NaN or Inf
    stops the run with an error naming the iteration. Unmet criteria fail the run (``CriteriaNotMet``
    naming them) after every file, plot and artifact has been written.
    """
    logger = get_run_logger()
    root = Path(run_dir) if run_dir else default_run_dir()
    root.mkdir(parents=True, exist_ok=True)
    parameters = {"options": options, "run_dir": str(root), "device": device}
    write_manifest(root, pipeline="refinement_demo", parameters=parameters)
    summary = refine_task(options, str(root), device)
    plots = plot_task(str(root))
    report = report_task(str(root), summary)
    write_manifest(root, pipeline="refinement_demo", parameters=parameters,
                   outputs={"report": report, "plots": plots, "history": str(root / "history.csv")})
    logger.info("refined mosaic %.4f deg, misset %s deg; criteria %s", summary["refined"][0],
                [round(v, 4) for v in summary["refined"][1]], "met" if summary["success"] else "NOT met")
    if not summary["success"]:
        raise CriteriaNotMet.from_summary(summary, str(root))
    return summary
