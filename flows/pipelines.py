"""The registry of landed pipelines: which flow runs each one, and its ``smoke`` and ``small`` profiles.

The nightly regression (``smoke``) and ``ptyflows demo`` (``small``) both run every entry of
:data:`PIPELINES` as a subflow. A pipeline that lands adds one :class:`Pipeline` entry here (its
flow, the name of its run-folder parameter, the two parameter sets and how to read its key figures
and pass/fail checks from the flow's return value); nothing else needs to change.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from prefect.flows import Flow

Profile = Literal["smoke", "small"]
Figures = dict[str, Any]


@dataclass(frozen=True)
class Pipeline:
    """One pipeline as the regression and the demo run it."""

    name: str
    """Short name, also the sub-folder of the run folder."""
    flow: str
    """``module:function`` of the flow (imported only when the pipeline runs)."""
    run_dir_parameter: str
    """The flow's parameter that takes the run folder."""
    profiles: Mapping[str, Mapping[str, Any]]
    """Flow parameters per profile (``smoke``: seconds to a minute; ``small``: the demo's, minutes)."""
    figures: Callable[[Any], Figures]
    """Key figures from the flow's return value."""
    checks: Callable[[Figures], list[str]] = field(default=lambda figures: [])
    """Failed pass/fail criteria (one message each) from the key figures; empty when all pass."""

    def load_flow(self) -> Flow:
        """Import and return the flow object."""
        module, name = self.flow.split(":")
        return getattr(importlib.import_module(module), name)


def _ici_figures(result: Mapping[str, Any]) -> Figures:
    keep = ("events", "runs", "done_events", "final_ever_indexed_rate", "median_start_error_mm",
            "median_centre_error_mm")
    return {k: result["figures"][k] for k in keep if k in result["figures"]}


def _ici_checks(figures: Figures) -> list[str]:
    failed = [] if figures.get("final_ever_indexed_rate", 0) > 0 else ["no event ever indexed"]
    start, final = figures.get("median_start_error_mm", math.nan), figures.get("median_centre_error_mm", math.nan)
    if not final <= start:  # also catches NaN: no truth or no centre
        failed.append(f"median centre error {final:.4g} mm not below the start's {start:.4g} mm")
    return failed


def _refinement_figures(result: Mapping[str, Any]) -> Figures:
    mosaic, misset = result["refined"]
    return {"success": bool(result["success"]), "refined_mosaic_deg": mosaic,
            "refined_misset_deg": [round(v, 4) for v in misset]}


def _diffuse_figures(result: Mapping[str, Any]) -> Figures:
    return {key: result[key] for key in result["targets_met"]} | {"targets_met": all(result["targets_met"].values())}


def _study_figures(result: Mapping[str, Any]) -> Figures:
    manifest = json.loads((Path(result["run_dir"]) / result["outputs"]["F"]).read_text())  # relative to run_dir
    full = [r for r in manifest["reconstructions"] if r["target"] == "full"]
    figures: Figures = {"reconstructions": len(manifest["reconstructions"]), "skipped": len(manifest["skipped"])}
    figures.update({f"phase_ms_ssim_full_{r['dose']:g}": r["phase_ms_ssim"] for r in full})
    return figures


PIPELINES: tuple[Pipeline, ...] = (
    Pipeline(
        name="ici", flow="flows.ici_demo:ici_demo", run_dir_parameter="run_root",
        profiles={"smoke": {"n_events": 4, "max_iterations": 3},
                  "small": {"n_events": 12, "max_iterations": 6}},
        figures=_ici_figures, checks=_ici_checks),
    Pipeline(
        name="refinement", flow="flows.refinement_demo:refinement_demo", run_dir_parameter="run_dir",
        profiles={"smoke": {"options": {"robust": True}}, "small": {"options": {"robust": True}}},
        figures=_refinement_figures,
        checks=lambda figures: [] if figures["success"] else ["the seed's success criteria were not met"]),
    Pipeline(
        name="dose-overlap-study", flow="flows.dose_overlap_study:dose_overlap_study", run_dir_parameter="run_dir",
        profiles={"smoke": {"profile": "smoke"}, "small": {"profile": "small"}},
        figures=_study_figures,
        checks=lambda figures: [] if figures["reconstructions"] else ["no LSQML reconstruction"]),
    Pipeline(
        name="diffuse", flow="flows.diffuse_demo:diffuse_demo", run_dir_parameter="out",
        profiles={"smoke": {"known_geometry": True}, "small": {"known_geometry": True}},
        figures=_diffuse_figures,
        checks=lambda figures: [] if figures["targets_met"] else ["the accuracy targets were not met"]),
)
"""Every landed pipeline, in the order the regression and the demo run them."""

SKIPPED_IN_DEMO: dict[str, str] = {
    "ici demo at full size": "24 stills and up to 10 iterations (DIALS: about 5 s per still): run `ptyflows ici demo`",
    "ici-study": "compares four search strategies in two modes (8 ICI loops): run `ptyflows ici study`",
    "dose-overlap-study full profile": "the seed's sizes take hours on 2 cores: run `ptyflows study lsqml --profile full`",
}
"""What the demo leaves out to stay within ~15 minutes on 2 cores, and how to run it."""


def pipeline_names() -> list[str]:
    """Names of the registered pipelines, in order."""
    return [p.name for p in PIPELINES]
