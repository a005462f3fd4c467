"""Sim-lines debug scenarios as diagnostic flows (seed 004): one scenario end to end, or an A/B diagnostic.

``sim_lines_debug`` runs simulate → split → group → train (PINN) → infer → stitch → compare → report for a
built-in scenario (or explicit options) under ``out_dir/<scenario>``; every step writes JSON + Markdown and
publishes an artifact, and the report's checks (no NaNs, canvas fits, correlation with the truth, amplitude
bias) give the run's verdict. ``sim_lines_ab`` runs the grid/nongrid pair end to end, or the probe,
grouping or reassembly A/B, which need no training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger

from ptylib.ptycho.diagnostics.ab import default_scenarios
from ptylib.ptycho.diagnostics.scenario import (
    BUILTIN,
    Rescale,
    ScenarioOptions,
    builtin_scenario,
)
from tasks.sim_lines_debug import (
    ab_task,
    compare_task,
    grid_summary_task,
    infer_stitch_task,
    report_task,
    simulate_task,
    train_task,
)

ScenarioName = Literal[tuple(BUILTIN)]  # type: ignore[valid-type]
ABKind = Literal["grid", "probe", "grouping", "reassembly"]


def resolve_scenario(scenario: str, options: ScenarioOptions | None, **overrides: Any) -> ScenarioOptions:
    """Explicit ``options`` win; otherwise the built-in ``scenario`` with the non-None ``overrides``."""
    return options if options is not None else builtin_scenario(scenario, **overrides)


@flow(name="sim-lines-debug", flow_run_name="sim-lines-{scenario}")
def sim_lines_debug(scenario: ScenarioName = "gs1_ideal", out_dir: str = "runs/sim-lines",
                    epochs: int | None = None, rescale: Rescale | None = None, probe_npz: str | None = None,
                    canvas_px: int | None = None, options: ScenarioOptions | None = None) -> dict[str, Any]:
    """Run one scenario and return its report (``checks`` and ``passed``).

    Parameters
    ----------
    scenario : built-in scenario name (ignored when ``options`` is given).
    out_dir : outputs go to ``out_dir/<scenario name>`` (relative to the working directory).
    epochs : PINN training epochs (None: the scenario's).
    rescale : amplitude rescale before saving: none, lsq or intensity_scale (None: the scenario's).
    probe_npz : custom probe NPZ (``probeGuess`` or ``probe``), needed by the ``_custom`` scenarios.
    canvas_px : stitching canvas side (None: sized from the offsets; smaller reproduces the clipping failure).
    options : a complete scenario instead of a built-in one.
    """
    opts = resolve_scenario(scenario, options, epochs=epochs, rescale=rescale, probe_npz=probe_npz,
                            canvas_px=canvas_px)
    out = str(Path(out_dir).resolve() / opts.name)
    simulate_task(opts, out)
    training = train_task(opts, out)
    if training["first_nan_epoch"] is None:
        infer_stitch_task(opts, out)
        compare_task(opts, out)
    else:
        get_run_logger().warning("%s: training went non-finite at epoch %s (%s); no inference", opts.name,
                                 training["first_nan_epoch"], training["first_nan_tensor"])
    report = report_task(opts, out)
    get_run_logger().info("%s: %s (report in %s/report.md)", opts.name, "PASSED" if report["passed"] else "FAILED",
                          out)
    return report | {"out": out}


@flow(name="sim-lines-ab", flow_run_name="sim-lines-ab-{kind}")
def sim_lines_ab(kind: ABKind = "grouping", out_dir: str = "runs/sim-lines", epochs: int | None = None,
                 canvas_px: int | None = None) -> dict[str, Any]:
    """An A/B diagnostic in ``out_dir/ab``: ``grid`` (the grid and nongrid scenarios end to end, same seeds
    and probe), ``probe`` (normalisation), ``grouping`` or ``reassembly`` (gs1_ideal vs gs2_ideal; the last on a
    required vs an undersized canvas, ``canvas_px`` or one patch).

    Parameters
    ----------
    kind : the diagnostic: grid, probe, grouping or reassembly.
    out_dir : outputs go to out_dir/ab (relative to the working directory).
    epochs : PINN training epochs (None: the scenarios').
    canvas_px : the undersized canvas side of the reassembly diagnostic (None: one patch).
    """
    out = str(Path(out_dir).resolve() / "ab")
    if kind != "grid":
        return ab_task(kind, default_scenarios(kind), out, canvas_px)
    reports = {o.name: sim_lines_debug(o.name, out_dir, epochs=epochs) for o in default_scenarios(kind)}
    return grid_summary_task(out, reports)
